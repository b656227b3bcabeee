"""Named data presets: the rules of one published data set, applied only when ``data.preset`` names it.

A user's own folder or CSV gets no data-set-specific rule: its patient ids come from a column
(``data.patient_column``), from DICOM (PatientID) or from an explicit file-name rule
(``data.patient_regex``). A preset bundles what one public data set needs:

* ``kermany_chest_xray`` — the paediatric chest X-rays of Kermany et al. 2018
  (``../shared/data/chest_xray``): patient ids from the file names (``person1234_bacteria_567.jpeg``
  -> ``person1234``, ``IM-0115-0001.jpeg`` -> ``IM-0115``, ``NORMAL2-IM-0012-0001.jpeg`` ->
  ``NORMAL2-IM-0012``), a ``sublabel`` column (``bacteria``/``virus``) and the three-class
  relabelling ``data.label_from_name: chest_xray_3class`` (normal / bacterial / viral).

Example:
    >>> preset = get_preset("kermany_chest_xray")
    >>> preset.patient_rule, sorted(preset.relabels)
    ('chest_xray', ['chest_xray_3class'])
    >>> patient_rule_summary(DataConfig(patient_column="patient_id"))
    "column 'patient_id'"
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from types import MappingProxyType

from ..config import DataConfig
from ..errors import ConfigError, check_choice
from ._scan import skip
from .naming import SCHEME_RULES
from .table import DataTable

CHEST_XRAY_RULE = re.compile(r"^(person\d+(?=_)|(?:NORMAL\d+-)?IM-\d+(?=-))", re.IGNORECASE)
NAMED_RULES: Mapping[str, re.Pattern[str]] = MappingProxyType({  # data.patient_regex names
    "chest_xray": CHEST_XRAY_RULE, **{name: re.compile(rule, re.IGNORECASE) for name, rule in SCHEME_RULES.items()}})
_SUBLABEL = re.compile(r"_(bacteria|virus)(?:_|\.|$)", re.IGNORECASE)
CHEST_XRAY_3CLASSES = ("normal", "bacterial", "viral")  # class order of the 'chest_xray_3class' relabelling
_SUBLABEL_TO_CLASS = {"bacteria": "bacterial", "virus": "viral"}


def sublabel_from_name(name: str) -> str:
    """``'bacteria'`` / ``'virus'`` from a chest X-ray pneumonia file name, '' otherwise.

    >>> sublabel_from_name("person1_bacteria_1.jpeg"), sublabel_from_name("IM-0001-0001.jpeg")
    ('bacteria', '')
    """
    match = _SUBLABEL.search(PurePath(name).name)
    return match.group(1).lower() if match else ""


def chest_xray_3class(name: str, folder_label: str) -> str:
    """Three-class label (``'normal'``, ``'bacterial'``, ``'viral'``) of a chest X-ray image.

    ``folder_label`` is the two-class label (``NORMAL`` / ``PNEUMONIA``, any case). A pneumonia
    image whose name says neither bacteria nor virus gives ''.

    >>> chest_xray_3class("IM-0001-0001.jpeg", "NORMAL"), chest_xray_3class("person3_bacteria_9.jpeg", "PNEUMONIA")
    ('normal', 'bacterial')
    """
    if folder_label.strip().lower() == "normal":
        return "normal"
    return _SUBLABEL_TO_CLASS.get(sublabel_from_name(name), "")


def relabel_chest_xray_3class(table: DataTable) -> DataTable:
    """Labels ``normal`` / ``bacterial`` / ``viral`` from chest X-ray file names (rows it cannot tell are skipped)."""
    df = table.frame.copy()
    df["label"] = [chest_xray_3class(os.path.basename(p), lab) for p, lab in zip(df["path"], df["label"])]
    skipped = list(table.skipped)
    for path in df.loc[df["label"] == "", "path"]:
        skip(skipped, path, "label_from_name=chest_xray_3class: the name says neither bacteria nor virus")
    df = df[df["label"] != ""]
    classes = [c for c in CHEST_XRAY_3CLASSES if c in set(df["label"])]
    return DataTable(df, classes, skipped, table.source, table.root)


@dataclass(frozen=True)
class DataPreset:
    """The rules of one public data set (see the module docstring)."""

    name: str  # the data.preset value
    description: str  # one line: which data set, where it comes from
    patient_rule: str = ""  # file-name patient rule used when data.patient_regex and data.patient_column are ''
    sublabel: Callable[[str], str] | None = None  # file name -> value of a 'sublabel' column ('' = none)
    relabels: Mapping[str, Callable[[DataTable], DataTable]] = field(default_factory=dict)  # data.label_from_name values


DATA_PRESETS: Mapping[str, DataPreset] = MappingProxyType({
    "kermany_chest_xray": DataPreset(
        "kermany_chest_xray", "paediatric chest X-rays, Kermany et al. 2018 (NORMAL/ and PNEUMONIA/ folders)",
        patient_rule="chest_xray", sublabel=sublabel_from_name,
        relabels={"chest_xray_3class": relabel_chest_xray_3class}),
})


def get_preset(name: str) -> DataPreset | None:
    """The preset called ``name`` ('' = none); an unknown name raises :class:`ConfigError` with a hint."""
    if not name:
        return None
    return DATA_PRESETS[check_choice("data.preset", name, DATA_PRESETS)]


def effective_patient_rule(cfg: DataConfig) -> str:
    """The file-name rule a source is read with: ``data.patient_regex``, else the preset's, else ``'none'``."""
    preset = get_preset(cfg.preset)
    return cfg.patient_regex or (preset.patient_rule if preset else "") or "none"


def relabel_for(cfg: DataConfig) -> Callable[[DataTable], DataTable] | None:
    """The relabelling named by ``data.label_from_name`` (offered by ``data.preset``), or None."""
    if not cfg.label_from_name:
        return None
    preset = get_preset(cfg.preset)
    offered = dict(preset.relabels) if preset else {}
    if cfg.label_from_name not in offered:
        owners = [p.name for p in DATA_PRESETS.values() if cfg.label_from_name in p.relabels]
        hint = f" set data.preset={owners[0]}" if owners else f" use one of {sorted(offered) or 'none'}"
        raise ConfigError(f"data.label_from_name={cfg.label_from_name!r} is not a relabelling of data.preset="
                          f"{cfg.preset!r}; it belongs to a data set preset:{hint}.")
    return offered[cfg.label_from_name]


def patient_rule_summary(cfg: DataConfig) -> str:
    """How patient ids were found, in words (shown by ``/model`` and the report).

    >>> patient_rule_summary(DataConfig(preset="kermany_chest_xray"))
    "file names, rule 'chest_xray' (preset kermany_chest_xray)"
    """
    if cfg.patient_column:
        return f"column {cfg.patient_column!r}"
    rule = effective_patient_rule(cfg)
    if rule == "none" and cfg.split_by == "image":
        return ("none: split by image (data.split_by=image); every image without a DICOM PatientID is its own patient, "
                "so a patient with several images may be in training and test")
    if rule == "none":
        return ("DICOM PatientID, else the file-name rule of a recognised public data set (see `medclass data check`); "
                "data with neither is refused")
    origin = "" if cfg.patient_regex else f" (preset {cfg.preset})"
    return f"file names, rule {rule!r}{origin}"

