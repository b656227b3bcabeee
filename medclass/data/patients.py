"""Patient ids from file names.

A patient rule turns a file name into a patient id ('' when the name carries none):

* a named rule of :data:`~medclass.data.presets.NAMED_RULES`, e.g. ``'chest_xray'`` (the Kermany
  chest X-ray names, used by the ``kermany_chest_xray`` preset): ``person1234_bacteria_567.jpeg``
  -> ``person1234``, ``IM-0115-0001.jpeg`` -> ``IM-0115``, ``NORMAL2-IM-0012-0001.jpeg`` -> ``NORMAL2-IM-0012``;
* ``'none'`` or ``''`` — no patient from the name;
* any regular expression with exactly one capture group, searched in the file name
  (e.g. ``r'^(\\d+)_'``); the group is the patient id.

Example:
    >>> patient_from_name("person1234_virus_890.jpeg", "chest_xray")
    'person1234'
    >>> patient_from_name("0042_left.png", r"^(\\d+)_")
    '0042'
"""
from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePath

import pandas as pd

from ..config import DataConfig
from ..errors import ConfigError, DatasetError
from .naming import PATH_RULES, SchemeMatch, name_prefixes, recognise_scheme
from .presets import NAMED_RULES, effective_patient_rule, patient_rule_summary
from .table import DataTable

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=32)
def patient_rule(rule: str = "none") -> Callable[[str], str]:
    """Compile a patient rule once into a function ``name -> patient id``.

    Raises :class:`ConfigError` naming the regex when it is invalid or has not exactly one group.

    >>> patient_rule(r"^(\\d+)_")("0042_left.png")
    '0042'
    """
    if rule == "none" or rule == "":
        return lambda name: ""
    pattern = NAMED_RULES[rule] if rule in NAMED_RULES else _compile_user_regex(rule)

    whole_path = rule in PATH_RULES  # the patient is a folder (CheXpert, MIMIC-CXR)

    def find(name: str) -> str:
        match = pattern.search(str(name).replace("\\", "/") if whole_path else PurePath(name).name)
        return match.group(1) if match and match.group(1) else ""

    return find


def _compile_user_regex(rule: str) -> re.Pattern[str]:
    try:
        pattern = re.compile(rule)
    except re.error as e:
        raise ConfigError(
            f"Patient rule {rule!r} is not a valid regular expression ({e}); use a named rule "
            f"({', '.join(NAMED_RULES)}), 'none' or a regex with one capture group such as '^(\\d+)_'."
        ) from None
    if pattern.groups != 1:
        raise ConfigError(
            f"Patient regex {rule!r} has {pattern.groups} capture groups; it needs exactly one, the patient id, "
            "e.g. '^(patient\\d+)_'. Use (?:...) for groups that are not the id."
        )
    return pattern


def patient_from_name(name: str, rule: str = "none") -> str:
    """Patient id of a file name (or path) under ``rule``; '' when the name matches nothing.

    >>> patient_from_name("NORMAL2-IM-0012-0001.jpeg", "chest_xray")
    'NORMAL2-IM-0012'
    >>> patient_from_name("scan_17.png", r"scan_(\\d+)")
    '17'
    """
    return patient_rule(rule)(name)



# --- Where a table's patient ids come from, and what happens without them -------------------------------------

LINKED_PREFIX = "dup:"  # patient id the leak audit gives duplicate images that had none (not a real patient id)


def known_patient(patients: pd.Series) -> pd.Series:
    """True where a row has a real patient id (not '' and not an id made up to link duplicate images)."""
    ids = patients.astype(str)
    return (ids != "") & ~ids.str.startswith(LINKED_PREFIX)


SPLIT_BY_IMAGE_FLAG = "--split-by image"  # the acknowledgement a user gives when every image is a different patient
_RISK = ("if a patient has several images, a split by image can put the same patient in training and test, and "
         "every test figure is then optimistic")
_GIVE = ("give the patient with --patient-column COLUMN (CSV), --patient-regex REGEX (a regex with one group on the "
         "file name, e.g. '^(\\d+)_') or --preset NAME")
_FIX = f"{_GIVE}; if every image is a different patient, say so with {SPLIT_BY_IMAGE_FLAG} (data.split_by=image)"
_PATIENT_LIKE = re.compile(r"patient|subject|person|participant|case|mrn|pid|pat_?id", re.IGNORECASE)
_SHOW_PREFIXES = 3  # example prefix groups named in a message


@dataclass(frozen=True)
class PatientIds:
    """How a table's rows got their patient ids, and how many have none (see :func:`describe_patient_ids`)."""

    how: str  # in words: "column 'patient_id'", "file names, rule 'chest_xray' (...)", "DICOM PatientID", "none"
    images: int  # rows of the table
    without_id: int  # rows with an empty patient id (each is its own patient in a split)
    patients: int  # distinct patient ids
    split_by: str  # data.split_by: patient | image
    scheme: SchemeMatch | None = None  # a public data set's naming recognised in the paths
    candidate_columns: tuple[str, ...] = ()  # CSV columns that look like patient ids
    prefix_groups: int = 0  # file-name prefix groups of several images among the rows without an id
    prefix_examples: tuple[str, ...] = ()  # a few of them, "IM-0115 (3 images)"

    @property
    def missing(self) -> bool:
        """No row has a patient id: any split of this table is a split by image."""
        return self.images > 0 and self.without_id == self.images

    def warning(self) -> str:
        """The never-silent sentence: what is missing, the risk and the flags that fix it ('' when all rows have ids)."""
        if not self.without_id:
            return ""
        if not self.missing:
            return (f"{self.without_id} of {self.images} images have no patient id ({self.how} gave none); each counts "
                    f"as its own patient: {_RISK}. Fill the ids for those images.")
        head = (f"Split by image ({SPLIT_BY_IMAGE_FLAG}): " if self.split_by == "image" else "No patient ids: ") + (
            f"none of the {self.images} images has a patient id (no --patient-column, no --patient-regex or --preset, "
            f"no DICOM PatientID), so each image counts as its own patient: {_RISK}.")
        hints = []
        if self.scheme is not None:
            hints.append(self.scheme.describe())
        if self.candidate_columns:
            hints.append("Columns that look like patient ids: " + ", ".join(
                f"--patient-column {c}" for c in self.candidate_columns) + ".")
        if self.prefix_groups:
            hints.append(f"{self.prefix_groups} groups of file names differ only in their last number, probably one "
                         f"patient each (e.g. {', '.join(self.prefix_examples)}).")
        if self.split_by == "patient":
            fix = f" Fix: {_FIX}."
        elif self.scheme is not None and self.scheme.scheme.one_per_patient:
            fix = ""
        else:
            fix = f" If patients have several images, {_GIVE}."
        return " ".join([head, *hints]) + fix

    def to_dict(self) -> dict:
        """JSON-able form (data_check.json, audit.json)."""
        return {"how": self.how, "images": self.images, "without_id": self.without_id, "patients": self.patients,
                "split_by": self.split_by, "missing": self.missing,
                "scheme": self.scheme.to_dict() if self.scheme else None,
                "candidate_columns": list(self.candidate_columns), "prefix_groups": self.prefix_groups,
                "warning": self.warning()}


def _configured_rule(cfg: DataConfig) -> str:
    return "" if cfg.patient_column else effective_patient_rule(cfg).replace("none", "")


def fill_from_scheme(table: DataTable, cfg: DataConfig) -> DataTable:
    """Patient ids from a recognised public naming scheme, when the config gives none and no row has one.

    Safer by default: such names are known to carry the patient, and joining images into patients can
    only make a split stricter. Logged as a warning naming the scheme and the flags that do the same
    explicitly; ``data.split_by=image`` or an explicit ``data.patient_regex=none`` turns it off.
    """
    df = table.frame
    if cfg.split_by != "patient" or _configured_rule(cfg) or cfg.patient_regex or (df["patient"] != "").any():
        return table
    match = recognise_scheme(df["path"])
    if match is None or not match.scheme.patient_rule:
        return table
    patient = df["path"].map(patient_rule(match.scheme.patient_rule))
    log.warning("No patient ids were given, but %s Patient ids are taken from the file names (%d patients); pass %s "
                "to say so, or --patient-regex none %s to split by image.",
                match.describe(), patient[patient != ""].nunique(), match.flags, SPLIT_BY_IMAGE_FLAG)
    return table.with_frame(df.assign(patient=patient))


def describe_patient_ids(table: DataTable, cfg: DataConfig) -> PatientIds:
    """Where the patient ids of ``table`` (read with ``cfg``) come from, and what is known when there are none.

    >>> info = describe_patient_ids(table, DataConfig(split_by="image"))   # doctest: +SKIP
    >>> info.missing, info.warning()[:40]                                  # doctest: +SKIP
    (True, 'Split by image (--split-by image): none ')
    """
    df = table.frame
    has_id = known_patient(df["patient"])
    match = recognise_scheme(df["path"]) if table.source != "npz" else None
    if cfg.patient_column:
        how = f"column {cfg.patient_column!r}"
    elif _configured_rule(cfg):
        how = patient_rule_summary(cfg)
    elif has_id.any() and match is not None and match.scheme.patient_rule:
        how = f"file names, rule {match.scheme.patient_rule!r} (recognised: {match.scheme.name}; {match.flags})"
    elif has_id.any():
        how = "DICOM PatientID"
    else:
        how = "none"
    prefixes = name_prefixes(df.loc[~has_id, "path"], numbered_only=True).value_counts()
    groups = prefixes[(prefixes > 1) & (prefixes.index != "")]
    candidates = tuple(c for c in table.metadata_columns()
                       if _PATIENT_LIKE.search(c) and df[c].astype(str).nunique() < len(df)) if not has_id.any() else ()
    return PatientIds(how=how, images=len(df), without_id=int((~has_id).sum()), patients=int(df.loc[has_id, "patient"].nunique()),
                      split_by=cfg.split_by, scheme=match, candidate_columns=candidates, prefix_groups=len(groups),
                      prefix_examples=tuple(f"{p} ({n} images)" for p, n in groups.head(_SHOW_PREFIXES).items()))


def require_patient_ids(table: DataTable, cfg: DataConfig) -> PatientIds:
    """Check the patient ids before a split is made; refuse a split by image that the user did not ask for.

    Rows that already have a split (a source's own train/val/test) are not split again and pass. Raises
    :class:`DatasetError` when no row has a patient id and ``data.split_by`` is ``patient``; logs the
    warning when the user chose ``image`` or when only some rows lack an id.
    """
    info = describe_patient_ids(table, cfg)
    if (table.frame["split"] != "").all() or not info.without_id:
        return info
    if info.missing and cfg.split_by == "patient":
        raise DatasetError(f"{cfg.path}: {info.warning()}")
    log.warning("%s", info.warning())
    return info
