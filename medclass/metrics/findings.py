"""Bootstrap CIs of every finding and of the macro AUC on shared patient resamples, and the same for two sets.

One replicate draws patients with replacement (all their images) and scores every finding on its
unmasked rows at its own threshold, so the macro AUC of a replicate is the mean of that replicate's
finding AUCs (over the findings defined there), and a difference between two sets takes one
replicate of each. A finding with fewer than :data:`~medclass.metrics.rare.MIN_POSITIVE_PATIENTS`
positive (or negative) patients gets no interval: :func:`~medclass.metrics.rare.not_estimable`.

Example:
    >>> rng = np.random.default_rng(0)
    >>> y = (rng.uniform(size=(200, 2)) < 0.3).astype(float); p = np.clip(0.4 * y + 0.6 * rng.uniform(size=y.shape), 0, 1)
    >>> out = findings_cis(y, p, np.arange(200).astype(str), ["a", "b"], [0.5, 0.5], n_boot=100)
    >>> sorted(out["per_finding"]["a"]), out["macro_auc"]["low"] < out["macro_auc"]["value"] < out["macro_auc"]["high"]
    (['roc_auc', 'sensitivity', 'specificity'], True)
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from .bootstrap import check_alpha, percentile_interval, resample_weights
from .external import calibration_fit
from .metrics import UndefinedMetricWarning, scalar_metric
from .multilabel import check_multilabel, macro_auc
from .rare import not_estimable, positive_patients, too_few_patients

FINDING_COMPARED = ("roc_auc", "sensitivity", "specificity")  # per finding, internal vs external and per subgroup


def _column(y: np.ndarray, p: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    keep = ~np.isnan(y[:, k])
    pk = p[keep, k]
    return keep, y[keep, k].astype(np.int64), np.stack([1 - pk, pk], axis=1)


def finding_points(y: np.ndarray, p: np.ndarray, thresholds: Sequence[float],
                   names: Sequence[str] = FINDING_COMPARED) -> dict[str, np.ndarray]:
    """Each named metric of every finding on all the rows: ``{name: (K,)}`` (NaN where undefined)."""
    return {n: v[0] for n, v in finding_replicates(y, p, None, thresholds, names, weights=np.ones((1, len(y)))).items()}


def finding_replicates(y: np.ndarray, p: np.ndarray, groups: Sequence[str] | None, thresholds: Sequence[float],
                       names: Sequence[str] = FINDING_COMPARED, n_boot: int = 1000, seed: int = 0,
                       weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """``{name: (n_boot, K)}``: each metric of each finding on each replicate (the same patient draws for every
    finding); ``weights`` replaces the draws (e.g. ones for the point estimate)."""
    y, p = check_multilabel(y, p)
    K = y.shape[1]
    blocks: dict[str, list[np.ndarray]] = {n: [] for n in names}
    draws = [weights] if weights is not None else resample_weights(len(y), groups, n_boot, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        for W in draws:
            for name in names:
                block = np.full((len(W), K), np.nan)
                for k in range(K):
                    keep, yk, Pk = _column(y, p, k)
                    if keep.any():
                        block[:, k] = scalar_metric(name, yk, Pk, float(thresholds[k]), sample_weight=W[:, keep])
                blocks[name].append(block)
    return {n: np.concatenate(b) for n, b in blocks.items()}


def _macro(block: np.ndarray, defined: np.ndarray) -> np.ndarray:
    """Mean over the findings ``defined`` on all the data, per replicate (NaN where none is defined)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(block[:, defined], axis=1) if defined.any() else np.full(len(block), np.nan)


def _ci(values: np.ndarray, point: float, alpha: float, what: str, reason: str = "") -> dict:
    if reason:
        return not_estimable(point, reason)
    low, high, n_valid = percentile_interval(values, alpha, what)
    return {"value": float(point), "low": low, "high": high, "n_valid": n_valid}


def rare_reasons(y: np.ndarray, groups: Sequence[str] | None) -> list[str]:
    """Per finding: why its CIs are not estimable (``''`` when they are), by the one rule of :mod:`.rare`."""
    return [too_few_patients(*positive_patients(y[:, k], groups)) for k in range(y.shape[1])]


def findings_cis(y: np.ndarray, p: np.ndarray, groups: Sequence[str] | None, findings: Sequence[str],
                 thresholds: Sequence[float], n_boot: int = 1000, seed: int = 0, alpha: float = 0.05,
                 names: Sequence[str] = FINDING_COMPARED) -> dict:
    """``{"per_finding": {finding: {metric: ci}}, "macro_auc": ci}`` with ``ci = {"value", "low", "high", "n_valid"}``
    (or not estimable); the macro AUC's interval comes from the same replicates as the findings'."""
    check_alpha(alpha)
    y, p = check_multilabel(y, p)
    names = list(dict.fromkeys(["roc_auc", *names]))
    point = finding_points(y, p, thresholds, names)
    reps = finding_replicates(y, p, groups, thresholds, names, max(n_boot, 1), seed)
    reasons = rare_reasons(y, groups)
    per = {f: {n: _ci(reps[n][:, k], point[n][k], alpha, f"{f} {n}", reasons[k]) for n in names}
           for k, f in enumerate(findings)}
    defined = np.isfinite(point["roc_auc"])
    macro = _ci(_macro(reps["roc_auc"], defined), macro_auc(y, p), alpha, "macro AUC",
                "" if defined.any() else "no finding has both classes")
    return {"per_finding": per, "macro_auc": macro}


def compare_findings(external: tuple, internal: tuple, findings: Sequence[str], thresholds: Sequence[float],
                     n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Internal vs external per finding and for the macro AUC, each ``{"internal", "external", "difference"}``.

    ``external``/``internal`` are ``(y (n, K), p (n, K), patient ids or None)``; both decided at the same
    per-finding ``thresholds``; independent bootstraps of the two sets (seeds ``seed`` and ``seed + 1``). A
    finding too rare in either set gets no intervals (its reason given).

    >>> ext = (np.array([[1, 0], [0, 1]] * 10, float), np.array([[.6, .4], [.3, .7]] * 10), None)
    >>> c = compare_findings(ext, ext, ["a", "b"], [0.5, 0.5], n_boot=20)
    >>> c["macro_auc"]["difference"]["value"], sorted(c["per_finding"]["a"])
    (0.0, ['roc_auc', 'sensitivity', 'specificity'])
    """
    check_alpha(alpha)
    (ye, pe), (yi, pi) = check_multilabel(*external[:2]), check_multilabel(*internal[:2])
    names = list(FINDING_COMPARED)
    pts_e, pts_i = finding_points(ye, pe, thresholds, names), finding_points(yi, pi, thresholds, names)
    rep_e = finding_replicates(ye, pe, external[2], thresholds, names, max(n_boot, 1), seed)
    rep_i = finding_replicates(yi, pi, internal[2], thresholds, names, max(n_boot, 1), seed + 1)
    why_e, why_i = rare_reasons(ye, external[2]), rare_reasons(yi, internal[2])
    per: dict = {}
    for k, f in enumerate(findings):
        both = "; ".join(f"{where}: {w}" for where, w in (("internal", why_i[k]), ("external", why_e[k])) if w)
        per[f] = {n: {"internal": _ci(rep_i[n][:, k], pts_i[n][k], alpha, f"internal {f} {n}", why_i[k]),
                      "external": _ci(rep_e[n][:, k], pts_e[n][k], alpha, f"external {f} {n}", why_e[k]),
                      "difference": _ci(rep_e[n][:, k] - rep_i[n][:, k], pts_e[n][k] - pts_i[n][k], alpha,
                                        f"difference in {f} {n}", both)} for n in names}
    de, di = np.isfinite(pts_e["roc_auc"]), np.isfinite(pts_i["roc_auc"])
    me, mi = _macro(rep_e["roc_auc"], de), _macro(rep_i["roc_auc"], di)
    ve, vi = macro_auc(ye, pe), macro_auc(yi, pi)
    macro = {"internal": _ci(mi, vi, alpha, "internal macro AUC"), "external": _ci(me, ve, alpha, "external macro AUC"),
             "difference": _ci(me - mi, ve - vi, alpha, "difference in macro AUC")}
    return {"macro_auc": macro, "per_finding": per}


def finding_calibration(y: np.ndarray, p: np.ndarray, findings: Sequence[str]) -> dict[str, dict]:
    """Calibration-in-the-large and slope of every finding on its unmasked rows (NaN with one class)."""
    y, p = check_multilabel(y, p)
    out = {}
    for k, f in enumerate(findings):
        keep = ~np.isnan(y[:, k])
        out[f] = calibration_fit(y[keep, k].astype(np.int64), p[keep, k]).to_dict() if keep.sum() > 1 else {}
    return out


def finding_prevalence(y: np.ndarray, findings: Sequence[str]) -> dict[str, float]:
    """Share of positives of every finding among its unmasked labels."""
    y = np.asarray(y, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return {f: float(np.nanmean(y[:, k])) if len(y) else float("nan") for k, f in enumerate(findings)}


__all__ = ["FINDING_COMPARED", "compare_findings", "finding_calibration", "finding_points", "finding_prevalence",
           "finding_replicates", "findings_cis", "rare_reasons"]
