"""Data preparation of a run: source -> quality filter -> leak-aware patient split -> audit, all recorded.

Every step writes what it did next to the run, so a reader of the run folder sees what was trained
on and what was left out, and why:

- ``split.csv``: the final table (path, label, patient, split, frame, ...);
- ``audit.json``: the leak audit before and after the split and the policy's actions;
- ``quality.json``: images dropped by the quality filter, with reasons; unreadable files included.

Example:
    >>> from medclass.config import DataConfig
    >>> table = prepare_data(DataConfig(path="../shared/data/chest_xray"), seed=42)  # doctest: +SKIP
    >>> sorted(set(table.frame["split"]))                                           # doctest: +SKIP
    ['test', 'train', 'val']
"""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from ..artifacts import RunDir
from ..config import DataConfig
from ..errors import DatasetError
from ..utils import write_json
from .audit import apply_leak_policy, audit_leaks
from .fingerprint import fingerprint
from .patients import require_patient_ids
from .quality import filter_quality, quality_report
from .sources import load_source
from .splits import split_patients, split_summary
from .table import DataTable

log = logging.getLogger(__name__)


def align_fingerprints(fp: pd.DataFrame, table: DataTable) -> pd.DataFrame:
    """Rows of ``fp`` (from :func:`fingerprint` on a larger table) in the order of ``table``'s rows."""
    keyed = fp.drop_duplicates(["path", "frame"]).set_index(["path", "frame"])
    index = pd.MultiIndex.from_frame(table.frame[["path", "frame"]])
    return keyed.reindex(index).reset_index()


def clean_data(dcfg: DataConfig, seed: int = 42, cache_dir: str | Path | None = None, workers: int | None = None,
               progress: bool = False) -> tuple[DataTable, pd.DataFrame, dict, dict]:
    """Load ``dcfg.path``, drop unusable images and link duplicate images into one patient.

    The common first half of a train/val/test split (:func:`prepare_data`) and of k-fold
    cross-validation. Linking happens only for rows without a split, so a following split or
    fold assignment keeps copies together.

    Returns ``(table, fingerprints aligned with it, quality record, audit record)``.
    """
    table = load_source(dcfg, seed=seed)
    if len(table.classes) < 2:
        raise DatasetError(
            f"{dcfg.path} gives one class only ({table.classes}, {len(table)} images); a classifier needs at least two. "
            "Check the label column (--label-column), data.where / data.label_map / data.classes, or that the "
            "folder holds one sub-folder per class.")
    patient_ids = require_patient_ids(table, dcfg)
    fp = fingerprint(table, workers=workers, cache_dir=cache_dir, progress=progress, window=dcfg.window,
                     cluster=dcfg.cluster)
    errors = fp["error"].fillna("").astype(str)
    if len(table) and (errors != "").all():
        raise DatasetError(f"None of the {len(table)} images of {dcfg.path} can be read ({_reasons(errors)}); "
                           "check the files (`medclass data check` lists every one).")
    quality: dict = {"dropped": []}
    if dcfg.quality_filter:
        flagged = quality_report(table, fp)
        if len(flagged) == len(table):
            raise DatasetError(f"The quality filter flags all {len(table)} images of {dcfg.path} "
                               f"({_reasons(flagged['reason'])}); nothing is left to train on. Check the data "
                               "(`medclass data check`) or set data.quality_filter=false.")
        table = filter_quality(table, flagged)
        quality["dropped"] = flagged.to_dict(orient="records")
        fp = align_fingerprints(fp, table)
    audit: dict = {"patient_ids": patient_ids.to_dict()}
    if (table.frame["split"] == "").any():
        before = audit_leaks(table, fp, near_duplicates=dcfg.near_duplicates)
        table, merged = apply_leak_policy(table, before, "merge")
        audit["before_split"] = {"counts": before.counts(), "merged": merged["merged"]}
    return table, fp, quality, audit


def _reasons(reasons: pd.Series, n: int = 3) -> str:
    """The most frequent reasons with their counts, e.g. "12 x 'not an image file'"."""
    counts = reasons.value_counts()
    return "; ".join(f"{count} x {reason!r}" for reason, count in counts.head(n).items()) + (
        f"; {len(counts) - n} other reason(s)" if len(counts) > n else "")


def prepare_data(dcfg: DataConfig, seed: int = 42, out_dir: str | Path | None = None,
                 cache_dir: str | Path | None = None, workers: int | None = None, progress: bool = False) -> DataTable:
    """Load ``dcfg.path``, drop unusable images, split by patient without leaks, and record it all.

    Duplicate images are first linked into one patient (so the split keeps copies together); after
    the split the leak audit runs again and ``dcfg.duplicates`` (``medclass.config.DuplicatePolicy``) decides what
    happens to anything still shared between splits. A final audit must come out clean unless the
    policy is ``warn``.
    """
    table, fp, quality, audit = clean_data(dcfg, seed, cache_dir, workers, progress)
    table = split_patients(table, dcfg.val_fraction, dcfg.test_fraction, seed=seed)
    after = audit_leaks(table, fp, near_duplicates=dcfg.near_duplicates)
    log.info("Leak audit after the split:\n%s", after.summary())
    table, action = apply_leak_policy(table, after, dcfg.duplicates)
    fp = align_fingerprints(fp, table)
    final = audit_leaks(table, fp, near_duplicates=dcfg.near_duplicates)
    audit.update(after_split=after.to_dict(), action=action, final=final.to_dict(), final_clean=not final.has_leaks)
    quality["skipped"] = list(table.skipped)
    if out_dir is not None:
        run = RunDir(out_dir)
        table.to_csv(run.split)
        write_json(run.audit, audit)
        write_json(run.quality, quality)
        write_json(run.split_summary, split_summary(table).reset_index().to_dict(orient="records"))
    log.info("data ready: %d images, %d classes; final leak audit %s", len(table), len(table.classes),
             "clean" if not final.has_leaks else "NOT clean (policy 'warn')")
    return table
