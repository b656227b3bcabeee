"""Warnings of ``medclass data check`` before training: what would make a run misleading.

Each :class:`DataWarning` names what it found (classes, patient ids, values) and what to do:

* ``split_too_small`` — a class that a patient split with the configured fractions leaves with
  fewer than :data:`MIN_EVAL_IMAGES` validation or test images (the counts per split are given);
* ``finding_too_rare`` — multi-label: a finding with fewer than :data:`MIN_POSITIVE_PATIENTS`
  positive patients in validation or test after the split (positives per split are given);
* ``conflicting_labels`` — patients whose images carry different labels (by id);
* ``imbalance`` — the largest class is more than :data:`IMBALANCE_RATIO` times the smallest;
* ``acquisition`` — metadata values that look like another acquisition (a lateral view among
  frontal ones, another modality) or a minority of images in another colour mode;
* ``duplicate_patients`` — byte-identical or near-duplicate images under two patient ids (training
  links those ids into one patient, named here);
* ``no_patient_ids`` — no image (or only some) has a patient id, so a split is by image: the risk,
  a recognised public naming scheme, columns that look like patient ids and the flags that fix it;
* ``no_readable_image`` — not one image of the source can be read (then the only warning).

Example:
    >>> [w.kind for w in data_warnings(table, fp, audit, DataConfig())]   # doctest: +SKIP
    ['conflicting_labels', 'acquisition']
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from ..config import DataConfig
from ..metrics.rare import MIN_POSITIVE_PATIENTS, too_few_patients
from .audit import LeakReport
from .multilabel import positive_counts
from .patients import describe_patient_ids
from .splits import patient_groups, split_patients
from .table import DataTable

MIN_EVAL_IMAGES = 10  # fewer validation/test images of a class than this gives unusable estimates
IMBALANCE_RATIO = 5.0  # largest / smallest class count above which a warning suggests weighting
MINORITY_SHARE = 0.1  # a metadata value or colour mode held by fewer rows than this share is 'other'
_ACQUISITION_COLUMN = re.compile(r"view|position|projection|modality|body.?part|protocol", re.IGNORECASE)
_OTHER_ACQUISITION = re.compile(r"^(ll|rl|lat\w*|oblique|ct|mr|mri|us|pet|nm)$", re.IGNORECASE)  # beside the usual value
_SHOW = 10  # names listed in one message


@dataclass
class DataWarning:
    """One finding of the data check: a kind, a sentence for people, and the names behind it."""

    kind: str  # split_too_small | ... | duplicate_patients | no_readable_image (see the module docstring)
    message: str  # what was found and what to do
    details: list[Any] = field(default_factory=list)  # the names/counts behind the message

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (``data_check.json``)."""
        return asdict(self)


def _names(values: list[Any]) -> str:
    shown = ", ".join(map(str, values[:_SHOW]))
    return shown + (f" and {len(values) - _SHOW} more" if len(values) > _SHOW else "")


def split_warnings(table: DataTable, cfg: DataConfig, seed: int = 42) -> list[DataWarning]:
    """Classes a patient split (or the source's own split) leaves with too few validation/test images."""
    split = table if (table.frame["split"] != "").all() else split_patients(table, cfg.val_fraction, cfg.test_fraction, seed)
    df = split.frame.assign(group=patient_groups(split.frame))
    images = df.groupby(["label", "split"]).size().unstack(fill_value=0)
    patients = df.groupby(["label", "split"])["group"].nunique().unstack(fill_value=0)
    out = []
    for label, row in images.iterrows():
        per_split = {s: int(row.get(s, 0)) for s in ("train", "val", "test")}
        groups = {s: int(patients.loc[label].get(s, 0)) for s in ("train", "val", "test")}
        if min(per_split["val"], per_split["test"]) < MIN_EVAL_IMAGES:
            shown = ", ".join(f"{per_split[s]} {s} images ({groups[s]} patients)" for s in ("train", "val", "test"))
            out.append(DataWarning(
                "split_too_small",
                f"class {label!r} has {sum(per_split.values())} images: a patient split with val {cfg.val_fraction:g} / "
                f"test {cfg.test_fraction:g} gives it {shown}; metrics on so few are unreliable. Merge or drop the "
                "class (--label-map), collect more images, or use cross-validation (train --folds 5).",
                [{"class": str(label), **per_split, "patients": groups}]))
    return out


def finding_warnings(table: DataTable, cfg: DataConfig, seed: int = 42) -> list[DataWarning]:
    """Multi-label: findings that the split leaves with too few positive patients in validation or test."""
    split = table if (table.frame["split"] != "").all() else split_patients(table, cfg.val_fraction, cfg.test_fraction, seed)
    counts = positive_counts(split.frame, split.classes, patient_groups(split.frame))
    out = []
    for finding, rows in counts.groupby("finding", sort=False):
        patients = dict(zip(rows["split"], rows["positive_patients"]))
        if too_few_patients(min(patients.get("val", 0), patients.get("test", 0))):  # the one rule (metrics.rare)
            shown = ", ".join(f"{patients.get(s, 0)} {s}" for s in ("train", "val", "test"))
            out.append(DataWarning(
                "finding_too_rare",
                f"finding {finding!r} has positive patients {shown} after a patient split with val "
                f"{cfg.val_fraction:g} / test {cfg.test_fraction:g}; its threshold falls back to a fixed value and its CIs are not estimable below "
                f"{MIN_POSITIVE_PATIENTS} positive patients. "
                "Collect more positives, drop the finding (data.classes), or give validation/test a larger share.",
                [{"finding": str(finding), **{s: int(patients.get(s, 0)) for s in ("train", "val", "test")}}]))
    return out


def label_conflicts(table: DataTable) -> list[DataWarning]:
    """Patients whose images carry more than one label, by id."""
    named = table.frame[table.frame["patient"] != ""]
    labels = named.groupby("patient")["label"].agg(lambda s: sorted(set(s)))
    mixed = labels[labels.map(len) > 1]
    if mixed.empty:
        return []
    listed = [f"{p} ({' / '.join(ls)})" for p, ls in mixed.items()]
    return [DataWarning(
        "conflicting_labels",
        f"{len(mixed)} patient(s) have images under different labels: {_names(listed)}. Follow-up studies can do "
        "that; otherwise check the labels (per-patient results mix them).",
        [{"patient": str(p), "labels": ls} for p, ls in mixed.items()])]


def imbalance(table: DataTable) -> list[DataWarning]:
    """The largest class more than :data:`IMBALANCE_RATIO` times the smallest."""
    counts = table.frame["label"].value_counts()
    if len(counts) < 2 or counts.min() * IMBALANCE_RATIO >= counts.max():
        return []
    return [DataWarning(
        "imbalance",
        f"strong class imbalance: {', '.join(f'{k} {v}' for k, v in counts.items())} images "
        f"({counts.max() / counts.min():.0f} : 1). Consider train.class_weights=balanced or train.sampler=weighted, "
        "and read balanced accuracy / per-class sensitivity rather than accuracy.",
        [{"class": str(k), "images": int(v)} for k, v in counts.items()])]


def acquisition(table: DataTable, fp: pd.DataFrame | None = None) -> list[DataWarning]:
    """Metadata values (view, modality...) and colour modes that look like a different acquisition."""
    out = []
    df = table.frame
    for column in table.metadata_columns():
        if not _ACQUISITION_COLUMN.search(column):
            continue
        counts = df[column].astype(str).value_counts()
        top = counts.index[0]
        other = [v for v, n in counts.items()
                 if v and v != top and (_OTHER_ACQUISITION.match(v) or n < MINORITY_SHARE * len(df))]
        if other:
            out.append(DataWarning(
                "acquisition",
                f"column {column!r}: {', '.join(f'{int(counts[v])} x {v!r}' for v in other)} among "
                f"{', '.join(f'{int(n)} x {v!r}' for v, n in counts.items() if v not in other)}; these look like a "
                f"different acquisition. Keep one kind with e.g. --where \"{column} not in {other!r}\".",
                [{"column": column, "value": v, "images": int(counts[v])} for v in other]))
    if fp is not None and "mode" in fp:
        modes = fp.loc[fp["error"] == "", "mode"].value_counts()
        rare = [m for m, n in modes.items() if len(modes) > 1 and n < MINORITY_SHARE * modes.sum()]
        if rare:
            out.append(DataWarning(
                "acquisition",
                f"image modes {', '.join(f'{int(modes[m])} x {m}' for m in rare)} among "
                f"{', '.join(f'{int(n)} x {m}' for m, n in modes.items() if m not in rare)}: a few images are stored "
                "differently (e.g. colour photographs among grey radiographs); look at them before training.",
                [{"mode": str(m), "images": int(modes[m])} for m in rare]))
    return out


def duplicate_patients(audit: LeakReport) -> list[DataWarning]:
    """Every pair of patient ids linked by a byte-identical or near-duplicate image."""
    links = sorted({tuple(sorted(set(g["patients"]) - {""})) for g in audit.exact_groups + audit.near_groups
                    if len(set(g["patients"]) - {""}) > 1})
    if not links:
        return []
    return [DataWarning(
        "duplicate_patients",
        f"{len(links)} duplicate image group(s) link different patient ids: {_names([' = '.join(l) for l in links])}. "
        "Training keeps each linked set on one side of the split and writes one id for it in split.csv.",
        [list(link) for link in links])]


def patient_warnings(table: DataTable, cfg: DataConfig) -> list[DataWarning]:
    """Images without a patient id: the same words that ``train`` refuses (or warns) with."""
    info = describe_patient_ids(table, cfg)
    if not info.warning():
        return []
    refused = " `medclass train` refuses to split this data until then." if info.missing and cfg.split_by == "patient" else ""
    return [DataWarning("no_patient_ids", info.warning() + refused, [info.to_dict()])]


def data_warnings(table: DataTable, fp: pd.DataFrame | None, audit: LeakReport, cfg: DataConfig,
                  seed: int = 42) -> list[DataWarning]:
    """All warnings of the data check, in the order of the module docstring; counts are of readable images
    (training skips the others), and a source with none gives the one warning ``no_readable_image``."""
    if fp is not None and len(fp) == len(table) and "error" in fp:
        readable = (fp["error"].fillna("") == "").to_numpy()
        if not readable.any():
            return [DataWarning("no_readable_image",
                                f"None of the {len(table)} images can be read (each reason is listed under "
                                "Unreadable); training would stop here. Fix or replace the files.")]
        table = table.subset(readable) if not readable.all() else table
    if len(table.classes) < 2:
        return []  # a one-class source (unlabelled DICOM) is not training data; train refuses it
    if table.multi_label:  # findings combine freely within a patient; pos_weight handles their imbalance
        found = [*patient_warnings(table, cfg), *finding_warnings(table, cfg, seed), *acquisition(table, fp),
                 *duplicate_patients(audit)]
    else:
        found = [*patient_warnings(table, cfg), *split_warnings(table, cfg, seed), *label_conflicts(table),
                 *imbalance(table), *acquisition(table, fp), *duplicate_patients(audit)]
    return list({(w.kind, w.message): w for w in found}.values())  # each warning once
