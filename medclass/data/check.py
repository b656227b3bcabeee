"""``medclass data check``: everything worth knowing about a data set before training on it.

Example:
    >>> report = check_data("../shared/data/chest_xray", out=Path("reports"))  # doctest: +SKIP
    >>> report["audit"]["counts"]["exact_groups"]                             # doctest: +SKIP
    25
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import DataConfig
from ..utils import write_json
from .advice import data_warnings
from .audit import LIST_LIMIT, audit_leaks
from .fingerprint import fingerprint
from .patients import describe_patient_ids
from .quality import QualityThresholds, quality_report
from .table import DataTable

log = logging.getLogger(__name__)

REPORT_FILE = "data_check.json"
UNSPLIT = "unsplit"  # name of the '' split in the report


def _nested(series: pd.Series) -> dict[str, dict[str, int]]:
    """``{split: {class: n}}`` from a Series indexed by (split, label)."""
    out: dict[str, dict[str, int]] = {}
    for (split, label), n in series.items():
        out.setdefault(split or UNSPLIT, {})[str(label)] = int(n)
    return out


def _counts(table: DataTable, cfg: DataConfig) -> dict[str, Any]:
    df = table.frame
    named = df[df["patient"] != ""]
    if table.multi_label:  # positives per finding (and masked labels) in each split, after the patient split
        from .multilabel import positive_counts
        from .splits import patient_groups, split_patients

        split = table if (df["split"] != "").all() else split_patients(table, cfg.val_fraction, cfg.test_fraction)
        per = positive_counts(split.frame, table.classes, patient_groups(split.frame))
        return {"findings": per.to_dict(orient="records"), "images": int(len(df)),
                "patients_total": int(named["patient"].nunique()),
                "images_without_patient": int((df["patient"] == "").sum()),
                "uncertain_labels": cfg.uncertain}
    return {
        "images": _nested(df.groupby(["split", "label"]).size()),
        "patients": _nested(named.groupby(["split", "label"])["patient"].nunique()),
        "patients_total": int(named["patient"].nunique()),
        "images_without_patient": int((df["patient"] == "").sum()),
    }


def _sizes(fp: pd.DataFrame) -> dict[str, Any]:
    ok = fp[fp["error"] == ""]
    if ok.empty:
        return {"readable": 0}
    stats = {
        side: {"min": int(ok[side].min()), "median": float(ok[side].median()), "max": int(ok[side].max())}
        for side in ("width", "height")
    }
    return {
        "readable": len(ok),
        **stats,
        "modes": {str(k): int(v) for k, v in ok["mode"].value_counts().items()},
        "channels": {str(k): int(v) for k, v in ok["channels"].value_counts().items()},
    }


def check_data(
    path_or_cfg: str | Path | DataConfig,
    out: Path | None = None,
    near_duplicates: bool = True,
    workers: int | None = None,
    cache_dir: str | Path | None = None,
    thresholds: QualityThresholds | None = None,
    progress: bool = False,
    log_warnings: bool = True,
    cluster: str = "",
) -> dict[str, Any]:
    """Load a data source, fingerprint it and report counts, sizes, leaks, quality and skipped files.

    Args:
        path_or_cfg: a folder/CSV/.npz/DICOM path (source detected automatically, see
            :func:`~medclass.data.sources.detect_source`) or a full DataConfig.
        out: folder to write ``data_check.json`` into (``None`` = do not write).
        near_duplicates: also look for near-duplicate images (perceptual hash).
        workers: processes for reading images (``None`` = all usable cores).
        cache_dir: fingerprint cache folder; a second check of the same files is then fast.
        thresholds: quality thresholds (defaults of :class:`QualityThresholds`).
        progress: show a progress bar while reading images.
        log_warnings: also log every warning (off where the caller prints the report's warnings itself).
        cluster: read the images on this Dask cluster (``tcp://HOST:8786`` or ``local:N``,
            :mod:`medclass.data.cluster`); put ``cache_dir`` on shared storage to keep the fingerprints.

    Returns:
        A JSON-able dict with keys ``source, counts, patients, sizes, audit, quality, unreadable, skipped, listed,
        warnings`` and, for CT/MRI volumes, ``volumes`` (shapes, spacings, slice counts, thin and inconsistent ones:
        :func:`~medclass.data.volumes.check.volume_summary`). ``patients``: where the patient ids come from, see
        :class:`~medclass.data.patients.PatientIds`; ``warnings``: :mod:`~medclass.data.advice` findings, e.g. a
        class too small for the split. The lists ``quality``, ``unreadable``, ``skipped`` and the audit's groups
        stop at ``LIST_LIMIT`` items; ``listed`` gives each list's total.

    Example:
        >>> r = check_data("../shared/data/head_ct/labels.csv")  # doctest: +SKIP
        >>> r["counts"]["images"]                                  # doctest: +SKIP
        {'unsplit': {'0': 100, '1': 100}}
    """
    from .sources import load_source

    cfg = path_or_cfg if isinstance(path_or_cfg, DataConfig) else DataConfig(path=str(path_or_cfg))
    table = load_source(cfg)
    fp = fingerprint(table, workers=workers, cache_dir=cache_dir, progress=progress, window=cfg.window, cluster=cluster)
    audit = audit_leaks(table, fp, near_duplicates=near_duplicates)
    quality = quality_report(table, fp, thresholds)
    unreadable = fp[fp["error"] != ""]
    report = {
        "source": {"path": cfg.path, "type": table.source, "root": table.root, "images": len(table),
                   "classes": list(table.classes), "task": table.task, "positive": table.positive},
        "counts": _counts(table, cfg),
        "patients": describe_patient_ids(table, cfg).to_dict(),
        "sizes": _sizes(fp),
        "audit": audit.to_dict(),
        "quality": quality.head(LIST_LIMIT).to_dict(orient="records"),
        "unreadable": unreadable.head(LIST_LIMIT)[["path", "frame", "error"]].rename(columns={"error": "reason"})
        .astype({"frame": int}).to_dict(orient="records"),
        "skipped": list(table.skipped[:LIST_LIMIT]),
        "listed": {key: {"listed": min(n, LIST_LIMIT), "total": n}  # the lists above stop at LIST_LIMIT items
                   for key, n in (("quality", len(quality)), ("unreadable", len(unreadable)),
                                  ("skipped", len(table.skipped)))},
        "filters": {"where": cfg.where, "label_map": dict(cfg.label_map), "preset": cfg.preset},
        "warnings": [w.to_dict() for w in data_warnings(table, fp, audit, cfg)],
    }
    if table.spatial_dims == 3:
        from .volumes.check import volume_summary

        report["volumes"] = volume_summary(table)
    if log_warnings:  # the CLI prints them itself: once, not again through the log
        for w in report["warnings"]:
            log.warning("data check: %s", w["message"])
    if out is not None:
        write_json(Path(out) / REPORT_FILE, report)
        log.info("Wrote %s", Path(out) / REPORT_FILE)
    return report


__all__ = ["REPORT_FILE", "check_data"]
