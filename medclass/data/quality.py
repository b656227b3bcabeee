"""Quality flags from the fingerprints: unreadable, blank, too dark or bright, tiny images.

"Tiny" is relative: an image under ``min_side`` pixels that is also smaller than the data set's
median (a thumbnail among radiographs). A data set that is small throughout, such as MedMNIST's
28 px images, is not flagged: the transform resizes every image to ``model.image_size``.

Example:
    >>> fp = fingerprint(table)
    >>> report = quality_report(table, fp, QualityThresholds(min_side=64))
    >>> report.groupby("reason").size()
    >>> table = filter_quality(table, report)  # flagged rows move to table.skipped
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .table import DataTable

log = logging.getLogger(__name__)


@dataclass
class QualityThresholds:
    """When an image is flagged; pixel statistics are over the [0, 1] pixels of the reader."""

    min_std: float = 0.01  # blank or near-constant below this standard deviation
    dark_mean: float = 0.02  # very dark (e.g. an empty black frame) below this mean
    bright_mean: float = 0.98  # very bright (e.g. a white page) above this mean
    min_side: int = 32  # tiny when width or height is below this, and below the data set's median side


def quality_report(
    table: DataTable, fingerprints: pd.DataFrame, thresholds: QualityThresholds | None = None
) -> pd.DataFrame:
    """Rows of ``table`` that fail a quality check, with columns ``path, frame, reason``.

    ``reason`` joins every failed check with '; ' (e.g. ``"near-constant (std 0.000 < 0.01); very
    dark (mean 0.000 < 0.02)"``); unreadable images carry the reader's reason.

    Example:
        >>> quality_report(table, fingerprint(table))
              path  frame                              reason
        0  x/a.png     -1  unreadable: not an image file
    """
    t = thresholds or QualityThresholds()
    fp = fingerprints.reset_index(drop=True)
    if len(fp) != len(table) or (fp["path"].astype(str).to_numpy() != table.frame["path"].to_numpy()).any():
        raise ValueError(
            f"Fingerprints ({len(fp)} rows) do not line up with the table ({len(table)} rows); "
            "compute them with fingerprint(table) on this very table."
        )
    error = fp["error"].fillna("").astype(str)
    readable = error == ""
    mean, std = fp["mean"].astype(float), fp["std"].astype(float)
    side = np.minimum(fp["width"].astype(int), fp["height"].astype(int))
    # a thumbnail among larger images, not a data set that is small throughout (MedMNIST's 28 px)
    typical = float(side[readable].median()) if readable.any() else 0.0
    checks = [
        (~readable, "unreadable: " + error),
        (readable & (std < t.min_std), std.map(lambda v: f"near-constant (std {v:.3f} < {t.min_std})")),
        (readable & (mean < t.dark_mean), mean.map(lambda v: f"very dark (mean {v:.3f} < {t.dark_mean})")),
        (readable & (mean > t.bright_mean), mean.map(lambda v: f"very bright (mean {v:.3f} > {t.bright_mean})")),
        (readable & (side < t.min_side) & (side < typical), fp["width"].astype(str) + "x" + fp["height"].astype(str)
         + f" px is tiny (min side < {t.min_side}; the median is {typical:g})"),
    ]
    reasons = pd.Series([[] for _ in range(len(fp))])
    for flagged, text in checks:
        for i in np.flatnonzero(flagged.to_numpy()):
            reasons[i].append(text.iloc[i])
    flagged_rows = np.flatnonzero(reasons.map(len).to_numpy() > 0)
    report = pd.DataFrame({
        "path": table.frame["path"].iloc[flagged_rows].to_numpy(),
        "frame": table.frame["frame"].iloc[flagged_rows].to_numpy(),
        "reason": reasons.iloc[flagged_rows].map("; ".join).to_numpy(),
    })
    if len(report):
        log.info("Quality check flagged %d of %d image(s).", len(report), len(table))
    return report


def filter_quality(table: DataTable, report: pd.DataFrame) -> DataTable:
    """Drop the rows of ``report`` (from :func:`quality_report`) and list them in ``skipped``.

    >>> clean = filter_quality(table, quality_report(table, fp))
    >>> clean.skipped[-1]
    {'path': 'x/a.png', 'reason': 'quality: unreadable: not an image file'}
    """
    keys = pd.MultiIndex.from_frame(table.frame[["path", "frame"]])
    flagged = keys.isin(pd.MultiIndex.from_frame(report[["path", "frame"]].astype({"path": str, "frame": int})))
    out = table.with_frame(table.frame[~flagged])
    out.skipped.extend({"path": p, "reason": f"quality: {r}"} for p, r in zip(report["path"], report["reason"]))
    return out


__all__ = ["QualityThresholds", "filter_quality", "quality_report"]
