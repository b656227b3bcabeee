"""Data of a cross-validation: load once, drop unusable images, link duplicates, assign patient folds, check each fold.

The steps follow :func:`medclass.data.prepare.prepare_data` (quality filter, duplicates linked into
one patient before assignment, audit after), with k patient-grouped stratified folds in place of
the train/val/test split (multi-label: stratified over all findings together, see
:func:`~medclass.data.splits.assign_folds`). Rows that the source marks ``test`` stay out of every
fold (``fold = -1``).
"""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from ..artifacts import CVDir
from ..config import DataConfig
from ..data.audit import apply_leak_policy, audit_leaks
from ..data.prepare import align_fingerprints, clean_data
from ..data.splits import assign_folds, fold_tables, patient_groups
from ..data.table import DataTable
from ..errors import LeakError
from ..utils import write_json

log = logging.getLogger(__name__)


def check_disjoint(train: DataTable, val: DataTable, fold: int) -> None:
    """Raise :class:`LeakError` when a patient (or an image path) of ``val`` is also in ``train``.

    Rows without a patient id are their own patient, so only named patients and paths can collide.

    >>> check_disjoint(train, val, fold=0)  # doctest: +SKIP
    """
    shared_patients = (set(train.frame["patient"]) & set(val.frame["patient"])) - {""}
    keys = ["path", "frame"]
    shared_images = set(map(tuple, train.frame[keys].to_numpy())) & set(map(tuple, val.frame[keys].to_numpy()))
    if shared_patients or shared_images:
        raise LeakError(
            f"Fold {fold}: {len(shared_patients)} patient(s) and {len(shared_images)} image(s) are in both its training "
            f"and validation folds (e.g. {sorted(shared_patients)[:3] or sorted(shared_images)[:3]}). The folds must "
            "be patient-disjoint; check data.patient_column / data.patient_regex."
        )


def fold_table(folds: DataTable, k: int, fp: pd.DataFrame, dcfg: DataConfig) -> tuple[DataTable, dict]:
    """Fold ``k`` as one table (``split`` = train | val), checked patient-disjoint and leak-audited.

    Duplicates were linked into one patient before the folds were drawn, so the audit normally finds
    nothing; whatever it finds is handled by ``dcfg.duplicates`` (``medclass.config.DuplicatePolicy``) like a normal split.
    """
    train, val = fold_tables(folds, k)
    check_disjoint(train, val, k)
    table = folds.with_frame(pd.concat([train.frame, val.frame], ignore_index=True))
    report = audit_leaks(table, align_fingerprints(fp, table), near_duplicates=dcfg.near_duplicates)
    table, action = apply_leak_policy(table, report, dcfg.duplicates)
    return table, {"fold": k, "audit": report.counts(), "action": {k: v for k, v in action.items() if k != "summary"}}


def prepare_folds(dcfg: DataConfig, k: int, seed: int = 42, out_dir: str | Path | None = None,
                  cache_dir: str | Path | None = None) -> tuple[DataTable, pd.DataFrame]:
    """Load ``dcfg.path``, filter quality, link duplicates into one patient, and add a ``fold`` column (0..k-1).

    Returns the table and its fingerprints (for the per-fold audits). With ``out_dir`` the table is
    written as ``folds.csv`` and the filter and duplicate links as ``quality.json`` / ``audit.json``.

    Example:
        >>> table, fp = prepare_folds(DataConfig(path="../shared/data/head_ct"), k=5)  # doctest: +SKIP
        >>> table.frame["fold"].value_counts().sort_index().tolist()                    # doctest: +SKIP
        [40, 40, 40, 40, 40]
    """
    table, fp, quality, audit = clean_data(dcfg, seed, cache_dir)
    folds = assign_folds(table, k=k, seed=seed)
    quality["skipped"] = list(folds.skipped)
    if out_dir is not None:
        cv = CVDir(out_dir)
        folds.to_csv(cv.folds)
        write_json(cv.quality, quality)
        write_json(cv.audit, {"patient_ids": audit["patient_ids"], "before_folds": audit.get("before_split", {})})
    counts = folds.frame.assign(group=patient_groups(folds.frame).to_numpy()).groupby("fold").agg(
        images=("path", "size"), patients=("group", "nunique"))
    log.info("%d-fold cross-validation by patient (seed %d):\n%s", k, seed, counts.to_string())
    return folds, fp
