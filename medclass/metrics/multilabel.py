"""Multi-label metrics: every finding scored on its own (masked labels left out), then macro and micro.

``y`` is an ``(n, K)`` array of 1 / 0 / NaN (NaN = masked: missing or uncertain under
``data.uncertain=ignore``) and ``p`` the ``(n, K)`` sigmoid probabilities. A masked entry takes no
part in any number here: changing its value or its probability changes nothing.

Each finding is a binary problem scored with the single-label functions of
:mod:`~medclass.metrics.metrics` on its unmasked rows (``[1 - p, p]``), so the definitions (ties,
NaN for one class, weights) are the same as everywhere else.

Example:
    >>> y = np.array([[1, 0], [0, 1], [1, np.nan], [0, 0]])
    >>> p = np.array([[0.9, 0.2], [0.3, 0.7], [0.8, 0.5], [0.1, 0.4]])
    >>> finding_aucs(y, p).tolist(), macro_auc(y, p)
    ([1.0, 1.0], 1.0)
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from .bootstrap import bootstrap_metrics
from .metrics import UndefinedMetricWarning, accuracy, roc_auc

FINDING_METRICS = ("roc_auc", "pr_auc", "sensitivity", "specificity")


def check_multilabel(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(y, p)`` as float arrays of one shape ``(n, K)``; labels must be 0, 1 or NaN, probabilities in [0, 1]."""
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    if y.ndim != 2 or y.shape != p.shape:
        raise ValueError(f"Multi-label y and p must both be (n, K); got {y.shape} and {p.shape}.")
    known = y[~np.isnan(y)]
    if not np.isin(known, (0.0, 1.0)).all():
        raise ValueError(f"Multi-label y holds {sorted(set(known.tolist()) - {0.0, 1.0})[:4]}; expected 0, 1 or NaN (masked).")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("Multi-label probabilities must lie in [0, 1] (sigmoid outputs) without NaN.")
    return y, p


def _column(y: np.ndarray, p: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Finding ``k``: its unmasked rows, integer labels and ``[1 - p, p]`` probabilities."""
    keep = ~np.isnan(y[:, k])
    pk = p[keep, k]
    return keep, y[keep, k].astype(np.int64), np.stack([1 - pk, pk], axis=1)


def finding_aucs(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """ROC AUC of every finding on its unmasked rows (NaN, silently, where only one class is present)."""
    y, p = check_multilabel(y, p)
    out = np.full(y.shape[1], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        for k in range(y.shape[1]):
            _, yk, pk = _column(y, p, k)
            if len(yk):
                out[k] = float(roc_auc(yk, pk))
    return out


def macro_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Mean AUC over the findings with both classes present (NaN when there is none)."""
    aucs = finding_aucs(y, p)
    return float(np.nanmean(aucs)) if np.isfinite(aucs).any() else float("nan")


def micro_auc(y: np.ndarray, p: np.ndarray) -> float:
    """AUC of all unmasked (image, finding) pairs pooled."""
    y, p = check_multilabel(y, p)
    keep = ~np.isnan(y)
    flat = p[keep]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        return float(roc_auc(y[keep].astype(np.int64), np.stack([1 - flat, flat], axis=1)))


def label_accuracy(y: np.ndarray, p: np.ndarray, thresholds: Sequence[float] | float = 0.5) -> float:
    """Share of unmasked (image, finding) decisions ``p >= threshold`` that are right."""
    y, p = check_multilabel(y, p)
    keep = ~np.isnan(y)
    decided = (p >= np.broadcast_to(np.asarray(thresholds, dtype=float), (y.shape[1],))).astype(np.int64)
    return float(accuracy(y[keep].astype(np.int64), decided[keep])) if keep.any() else float("nan")


def multilabel_summary(y: np.ndarray, p: np.ndarray, loss: float, stage: str) -> dict[str, float]:
    """Per-epoch numbers: ``{stage}_loss``, ``{stage}_acc`` (label accuracy at 0.5), ``{stage}_auc`` (macro AUC)."""
    return {f"{stage}_loss": float(loss), f"{stage}_acc": label_accuracy(y, p), f"{stage}_auc": macro_auc(y, p)}


def per_finding_metrics(y: np.ndarray, p: np.ndarray, findings: Sequence[str], thresholds: Sequence[float],
                        groups: Sequence[str] | None = None, n_boot: int = 1000, seed: int = 0,
                        alpha: float = 0.05) -> list[dict]:
    """One row per finding: counts, AUC, AP, sensitivity and specificity at its own threshold, with
    patient-bootstrap CIs (``{metric}``, ``{metric}_low``, ``{metric}_high``); ``n_boot=0``: no CIs.

    >>> rows = per_finding_metrics(np.array([[1, 0], [0, 1], [1, 0], [0, 1]]),
    ...                            np.array([[.9, .2], [.3, .7], [.6, .4], [.2, .9]]), ["a", "b"], [0.5, 0.5], n_boot=0)
    >>> rows[0]["finding"], rows[0]["roc_auc"], rows[0]["sensitivity"]
    ('a', 1.0, 1.0)
    """
    y, p = check_multilabel(y, p)
    if len(findings) != y.shape[1] or len(thresholds) != y.shape[1]:
        raise ValueError(f"{y.shape[1]} findings in y but {len(findings)} names and {len(thresholds)} thresholds.")
    g = None if groups is None else np.asarray(groups).astype(str)
    rows = []
    for k, name in enumerate(findings):
        keep, yk, pk = _column(y, p, k)
        row: dict = {"finding": name, "threshold": float(thresholds[k]), "n": int(len(yk)),
                     "positives": int(yk.sum()), "masked": int((~keep).sum())}
        if len(yk) == 0:
            rows.append(row | {m: float("nan") for m in FINDING_METRICS})
            continue
        ci = bootstrap_metrics(yk, pk, None if g is None else g[keep], FINDING_METRICS, float(thresholds[k]),
                               n_boot=max(n_boot, 1), alpha=alpha, seed=seed)
        for m in FINDING_METRICS:
            row[m] = ci[m]["value"]
            if n_boot > 0:
                row[f"{m}_low"], row[f"{m}_high"] = ci[m]["low"], ci[m]["high"]
        rows.append(row)
    return rows


def aggregate_findings(y: np.ndarray, p: np.ndarray, groups: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per patient: ``(ids, labels, probabilities)``; a finding is positive when any image is positive, negative
    when an image is negative and none positive, masked otherwise; its probability is the maximum over the images.

    >>> ids, y_pat, p_pat = aggregate_findings(np.array([[1, np.nan], [0, np.nan]]), np.array([[.2, .3], [.6, .1]]), ["a", "a"])
    >>> ids.tolist(), y_pat.tolist(), p_pat.tolist()
    (['a'], [[1.0, nan]], [[0.6, 0.3]])
    """
    y, p = check_multilabel(y, p)
    ids, codes = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    y_pat = np.full((len(ids), y.shape[1]), np.nan)
    p_pat = np.zeros((len(ids), y.shape[1]))
    np.maximum.at(p_pat, codes, p)
    for value in (0.0, 1.0):  # negatives first, then positives win
        rows, cols = np.nonzero(y == value)
        y_pat[codes[rows], cols] = value
    return ids, y_pat, p_pat


def cooccurrence(y: np.ndarray) -> np.ndarray:
    """``(K, K)`` counts of images positive for both findings (diagonal: positives of each); masked = not positive."""
    pos = (np.nan_to_num(np.asarray(y, dtype=np.float64), nan=0.0) == 1.0).astype(np.int64)
    return pos.T @ pos


def finding_errors(y: np.ndarray, p: np.ndarray, k: int, n: int = 4) -> np.ndarray:
    """Row indices of the ``n`` most wrong unmasked predictions of finding ``k`` (largest ``|y - p|``)."""
    y, p = check_multilabel(y, p)
    keep = np.flatnonzero(~np.isnan(y[:, k]))
    error = np.abs(y[keep, k] - p[keep, k])
    return keep[np.argsort(-error, kind="stable")[:n]]
