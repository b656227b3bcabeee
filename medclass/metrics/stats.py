"""Is model 1's ROC AUC different from model 2's on the same images? Paired tests.

* :func:`delong_test`: DeLong, DeLong & Clarke-Pearson (1988) for correlated AUCs, computed with the
  fast midrank algorithm of Sun & Xu (2014), O(n log n). Treats images as independent.
* :func:`paired_bootstrap_auc`: the same question by resampling (patients when ``groups`` are given),
  which respects images that are correlated within a patient.
* :func:`paired_bootstrap_macro_auc`: the same for two multi-label models' macro AUC over their findings
  (masked labels left out, as in :mod:`medclass.metrics.multilabel`).
* :func:`describe_difference`: one sentence for a report.

``p1``/``p2`` are positive-class probabilities ``(n,)`` (binary probs ``(n, 2)`` are accepted).

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 300)
    >>> good, weak = (1 / (1 + np.exp(-(y + rng.normal(0, sd, 300)))) for sd in (0.5, 2.0))
    >>> r = delong_test(y, good, weak)
    >>> r["auc1"] > r["auc2"], r["p_value"] < 0.01
    (True, True)
    >>> describe_difference(r).endswith("statistically significant at alpha = 0.05.")
    True
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import norm, rankdata

from .bootstrap import check_alpha, percentile_interval, resample_weights
from .metrics import ArrayLike, UndefinedMetricWarning, as_labels, as_prob_matrix, roc_auc
from .multilabel import check_multilabel, macro_auc


def _paired_inputs(y_true: ArrayLike, p1: ArrayLike, p2: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Binary labels ``(n,)`` and the two score vectors stacked ``(2, n)``."""
    y = as_labels(y_true, 2)
    scores = []
    for name, p in (("p1", p1), ("p2", p2)):
        s = as_prob_matrix(p)[:, 1]
        if s.shape != y.shape:
            raise ValueError(f"{name} must hold {len(y)} probabilities, one per label; got {len(s)}.")
        scores.append(s)
    n_pos = int(y.sum())
    if min(n_pos, len(y) - n_pos) < 2:
        raise ValueError(f"Comparing AUCs needs at least 2 positive and 2 negative images; got {n_pos} positive(s) "
                         f"of {len(y)}.")
    return y, np.stack(scores)


def delong_test(y_true: ArrayLike, p1: ArrayLike, p2: ArrayLike, alpha: float = 0.05) -> dict:
    """DeLong's paired test of ``AUC(p1) - AUC(p2)`` (two-sided) with a normal ``1 - alpha`` CI of the difference.

    Returns ``{"method", "auc1", "auc2", "diff", "se", "z", "p_value", "ci_low", "ci_high", "alpha"}``.
    Ties count one half (midranks).

    >>> r = delong_test([0, 0, 1, 1, 0, 1], [0.1, 0.3, 0.7, 0.8, 0.6, 0.4], [0.2, 0.1, 0.9, 0.6, 0.3, 0.5])
    >>> round(r["auc1"], 4), round(r["auc2"], 4)
    (0.8889, 1.0)
    """
    check_alpha(alpha)
    y, scores = _paired_inputs(y_true, p1, p2)
    pos, neg = scores[:, y == 1], scores[:, y == 0]
    m, n = pos.shape[1], neg.shape[1]
    tz = rankdata(np.concatenate([pos, neg], axis=1), axis=1)  # midranks in the pooled sample
    v10 = (tz[:, :m] - rankdata(pos, axis=1)) / n  # per positive: share of negatives scored below it
    v01 = 1.0 - (tz[:, m:] - rankdata(neg, axis=1)) / m  # per negative: share of positives scored above it
    auc = v10.mean(1)
    contrast = np.array([1.0, -1.0])
    var = contrast @ np.cov(v10) @ contrast / m + contrast @ np.cov(v01) @ contrast / n
    diff, se = float(auc[0] - auc[1]), float(np.sqrt(max(var, 0.0)))
    if se > 0:
        z = diff / se
    else:  # identical rankings: no variance of the difference
        z = 0.0 if diff == 0 else float(np.sign(diff) * np.inf)
    half = float(norm.ppf(1 - alpha / 2)) * se
    return {"method": "DeLong", "auc1": float(auc[0]), "auc2": float(auc[1]), "diff": diff, "se": se, "z": float(z),
            "p_value": float(2 * norm.sf(abs(z))), "ci_low": diff - half, "ci_high": diff + half, "alpha": alpha}


def paired_bootstrap_auc(y_true: ArrayLike, p1: ArrayLike, p2: ArrayLike, groups: ArrayLike | None = None,
                         n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Paired bootstrap of ``AUC(p1) - AUC(p2)``: both models on the same replicates (patients when ``groups``).

    The p-value is two-sided, ``min(1, 2 * min(P(d* <= 0), P(d* >= 0)))`` over the replicate
    differences ``d*``; the CI is their percentile interval. Replicates with one class are skipped.
    Returns ``{"method", "auc1", "auc2", "diff", "ci_low", "ci_high", "p_value", "n_valid", "alpha"}``.

    >>> r = paired_bootstrap_auc([0, 0, 1, 1, 0, 1], [0.1, 0.3, 0.7, 0.8, 0.6, 0.4],
    ...                          [0.2, 0.1, 0.9, 0.6, 0.3, 0.5], n_boot=200)
    >>> round(r["diff"], 4), r["ci_low"] <= r["diff"] <= r["ci_high"]
    (-0.1111, True)
    """
    check_alpha(alpha)
    y, scores = _paired_inputs(y_true, p1, p2)
    diffs = []
    with warnings.catch_warnings():  # one-class replicates are NaN, counted by percentile_interval
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        for W in resample_weights(len(y), groups, n_boot, seed):
            diffs.append(roc_auc(y, scores[0], sample_weight=W) - roc_auc(y, scores[1], sample_weight=W))
    d = np.concatenate(diffs)
    low, high, n_valid = percentile_interval(d, alpha, "AUC difference")
    auc1, auc2 = (roc_auc(y, s) for s in scores)
    return {"method": "paired bootstrap" + (" over patients" if groups is not None else " over images"),
            "auc1": auc1, "auc2": auc2, "diff": auc1 - auc2, "ci_low": low, "ci_high": high,
            "p_value": _bootstrap_p(d), "n_valid": n_valid, "alpha": alpha}


def _bootstrap_p(d: np.ndarray) -> float:
    """Two-sided ``min(1, 2 * min(P(d* <= 0), P(d* >= 0)))`` over the defined replicate differences."""
    ok = d[~np.isnan(d)]
    return float(min(1.0, 2 * min(np.mean(ok <= 0), np.mean(ok >= 0)))) if len(ok) else float("nan")


def paired_bootstrap_macro_auc(y_true: np.ndarray, p1: np.ndarray, p2: np.ndarray, groups: ArrayLike | None = None,
                               n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Paired bootstrap of ``macro AUC(p1) - macro AUC(p2)`` of two multi-label models on the same images.

    ``y_true`` ``(n, K)`` 1 / 0 / NaN (masked), ``p1``/``p2`` ``(n, K)`` probabilities. Each replicate
    (patients when ``groups``) scores every finding on its unmasked rows and averages the findings
    with both classes in it, as :func:`~medclass.metrics.multilabel.macro_auc` does; p-value and CI as
    :func:`paired_bootstrap_auc`. Returns the same keys (``auc1``/``auc2`` = the two macro AUCs).

    >>> y = np.array([[1, 0], [0, 1], [1, np.nan], [0, 0], [1, 1], [0, 0]])
    >>> good = np.where(np.isnan(y), 0.5, 0.2 + 0.6 * np.nan_to_num(y))
    >>> r = paired_bootstrap_macro_auc(y, good, np.full(y.shape, 0.5), n_boot=200)
    >>> r["auc1"], r["auc2"], r["diff"]
    (1.0, 0.5, 0.5)
    """
    check_alpha(alpha)
    y, s1 = check_multilabel(y_true, p1)
    _, s2 = check_multilabel(y, p2)
    auc1, auc2 = macro_auc(y, s1), macro_auc(y, s2)
    if np.isnan(auc1):
        raise ValueError("Comparing macro AUCs needs at least one finding with positive and negative images; none has.")
    diffs = []
    with warnings.catch_warnings():  # one-class findings / replicates are NaN, left out of the mean
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.simplefilter("ignore", RuntimeWarning)  # the mean of a replicate without any defined finding
        for W in resample_weights(len(y), groups, n_boot, seed):
            per = np.full((2, len(W), y.shape[1]), np.nan)
            for k in range(y.shape[1]):
                known = ~np.isnan(y[:, k])
                yk = y[known, k].astype(np.int64)
                if len(np.unique(yk)) < 2:
                    continue
                for m, s in enumerate((s1, s2)):
                    per[m, :, k] = roc_auc(yk, s[known, k], sample_weight=W[:, known])
            diffs.append(np.nanmean(per[0], axis=1) - np.nanmean(per[1], axis=1))
    d = np.concatenate(diffs)
    low, high, n_valid = percentile_interval(d, alpha, "macro AUC difference")
    return {"method": "paired bootstrap of the macro AUC" + (" over patients" if groups is not None else " over images"),
            "auc1": auc1, "auc2": auc2, "diff": auc1 - auc2, "ci_low": low, "ci_high": high, "p_value": _bootstrap_p(d),
            "n_valid": n_valid, "alpha": alpha}


def wilson_interval(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k / n`` (e.g. the share of images flagged out-of-distribution).

    Images count as independent here (no patient clustering); ``(nan, nan)`` for ``n == 0``.

    >>> [round(v, 3) for v in wilson_interval(10, 84)]
    [0.066, 0.206]
    """
    if n <= 0:
        return float("nan"), float("nan")
    check_alpha(alpha)
    z = float(norm.ppf(1 - alpha / 2))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def describe_difference(result: dict, alpha: float = 0.05, names: tuple[str, str] = ("model 1", "model 2"),
                        metric: str = "AUC") -> str:
    """One sentence on a :func:`delong_test` / :func:`paired_bootstrap_auc` result and its significance
    (``metric``: what was compared, e.g. ``"macro AUC"`` for :func:`paired_bootstrap_macro_auc`).

    >>> describe_difference({"method": "DeLong", "auc1": 0.91, "auc2": 0.88, "diff": 0.03, "ci_low": -0.01,
    ...                      "ci_high": 0.07, "p_value": 0.14, "alpha": 0.05})
    'AUC of model 1 0.910 vs model 2 0.880: difference +0.030 (95% CI -0.010 to +0.070), p = 0.14 (DeLong); not statistically significant at alpha = 0.05.'
    """
    check_alpha(alpha)
    level = round(100 * (1 - result.get("alpha", 0.05)))
    p = result["p_value"]
    p_text = "p < 0.001" if p < 0.001 else f"p = {p:.2g}" if p < 0.995 else "p = 1"
    verdict = "statistically significant" if p < alpha else "not statistically significant"
    return (f"{metric} of {names[0]} {result['auc1']:.3f} vs {names[1]} {result['auc2']:.3f}: difference "
            f"{result['diff']:+.3f} ({level}% CI {result['ci_low']:+.3f} to {result['ci_high']:+.3f}), "
            f"{p_text} ({result['method']}); {verdict} at alpha = {alpha:g}.")
