"""Percentile bootstrap confidence intervals that resample patients, not images.

Images of one patient are correlated (the same lungs, the same scanner, neighbouring CT slices);
resampling images as if they were independent gives intervals that are too narrow. With ``groups``
(patient ids) each bootstrap replicate draws patients with replacement and takes all their images.

A replicate on which a metric is undefined (e.g. an AUC on a resample with one class) gives NaN; it
is skipped and counted, with a warning when more than ``MAX_SKIPPED_SHARE`` of them are skipped.

Example:
    >>> import numpy as np
    >>> from medclass.metrics.metrics import roc_auc
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 200); p = np.clip(0.3 * y + rng.uniform(0, 0.7, 200), 0, 1)
    >>> point, low, high = bootstrap_ci(roc_auc, y, p, n_boot=200)
    >>> bool(low < point < high)
    True
    >>> ci = bootstrap_metrics(y, p, groups=None, metric_names=["roc_auc", "accuracy"], n_boot=200)
    >>> sorted(ci["roc_auc"])
    ['high', 'low', 'n_valid', 'value']
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import numpy as np

from .metrics import ArrayLike, UndefinedMetricWarning, check_inputs, metric_names as _available, scalar_metric

MAX_SKIPPED_SHARE = 0.05  # warn when more than this share of the replicates is undefined (NaN)
_CHUNK_CELLS = 2_000_000  # replicates x images evaluated at once by bootstrap_metrics (memory bound)


class BootstrapCI(NamedTuple):
    """A point estimate on all the data and its percentile interval."""

    point: float
    low: float
    high: float


def resample_weights(n: int, groups: ArrayLike | None = None, n_boot: int = 1000, seed: int = 0,
                     chunk: int | None = None) -> Iterator[np.ndarray]:
    """Yield bootstrap multiplicities ``(b, n)``, ``n_boot`` rows in all: how often each image is drawn.

    With ``groups`` the patients are drawn with replacement (each drawn patient brings all its images,
    so images of one patient share their count); without, the images are. Deterministic for a ``seed``.

    >>> w = next(resample_weights(4, ["a", "a", "b", "c"], n_boot=2, seed=1))
    >>> w.shape, bool((w[:, 0] == w[:, 1]).all())
    ((2, 4), True)
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1; got {n_boot}.")
    if groups is None:
        codes = np.arange(n)
    else:
        g = np.asarray(groups)
        if g.shape != (n,):
            raise ValueError(f"groups must have one patient id per image ({n}); got shape {g.shape}.")
        codes = np.unique(g.astype(str), return_inverse=True)[1]
    n_groups = int(codes.max()) + 1 if n else 0
    rng = np.random.default_rng(seed)
    chunk = chunk or max(1, _CHUNK_CELLS // max(n, 1))
    for start in range(0, n_boot, chunk):
        counts = rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=min(chunk, n_boot - start))
        yield counts[:, codes].astype(np.float64)


def percentile_interval(values: np.ndarray, alpha: float, what: str = "metric") -> tuple[float, float, int]:
    """``(low, high, n_valid)``: the ``alpha/2`` and ``1 - alpha/2`` percentiles of the non-NaN ``values``.

    Warns (:class:`UndefinedMetricWarning`) when more than ``MAX_SKIPPED_SHARE`` of them are NaN.

    >>> percentile_interval(np.array([1.0, 2.0, 3.0]), 0.5)
    (1.5, 2.5, 3)
    """
    ok = values[~np.isnan(values)]
    skipped = len(values) - len(ok)
    if skipped > MAX_SKIPPED_SHARE * len(values):
        warnings.warn(f"{what}: {skipped} of {len(values)} bootstrap replicates are undefined (e.g. one class "
                      "only) and were skipped; the interval is less reliable. Use more patients per class.",
                      UndefinedMetricWarning, stacklevel=3)
    if not len(ok):
        return float("nan"), float("nan"), 0
    low, high = np.percentile(ok, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high), len(ok)


def check_alpha(alpha: float) -> None:
    """Raise ``ValueError`` unless ``0 < alpha < 1``."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), e.g. 0.05 for a 95% interval; got {alpha}.")


def bootstrap_ci(metric_fn: Callable[..., float], y_true: ArrayLike, probs: ArrayLike, groups: ArrayLike | None = None,
                 n_boot: int = 1000, alpha: float = 0.05, seed: int = 0, **kw) -> BootstrapCI:
    """Percentile CI of any ``metric_fn(y_true, probs, **kw) -> float``, resampling patients when ``groups`` are given.

    Calls ``metric_fn`` once per replicate (simple, any function); for the named metrics of
    :mod:`medclass.metrics.metrics` :func:`bootstrap_metrics` is much faster and draws the same
    replicates for the same ``seed``.

    >>> from medclass.metrics.metrics import brier_score
    >>> point, low, high = bootstrap_ci(brier_score, [0, 1, 1, 0], [0.2, 0.9, 0.6, 0.1], n_boot=50)
    >>> round(point, 4)
    0.055
    """
    check_alpha(alpha)
    y, P = np.asarray(y_true), np.asarray(probs)
    if len(y) != len(P):
        raise ValueError(f"y_true has {len(y)} entries but probs has {len(P)} rows; they must match.")
    point = float(metric_fn(y, P, **kw))
    values = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        for W in resample_weights(len(y), groups, n_boot, seed):
            for w in W.astype(np.int64):
                idx = np.repeat(np.arange(len(y)), w)
                values.append(float(metric_fn(y[idx], P[idx], **kw)))
    low, high, _ = percentile_interval(np.array(values), alpha, getattr(metric_fn, "__name__", "metric"))
    return BootstrapCI(point, low, high)


def bootstrap_replicates(y_true: ArrayLike, probs: ArrayLike, groups: ArrayLike | None, metric_names: Sequence[str],
                         threshold: float = 0.5, n_boot: int = 1000, seed: int = 0) -> dict[str, np.ndarray]:
    """Each named metric on each of ``n_boot`` bootstrap replicates (resampling patients with ``groups``);
    NaN where a replicate leaves it undefined. The replicates of :func:`bootstrap_metrics` for the same ``seed``.

    >>> reps = bootstrap_replicates([0, 1, 1, 0], [0.2, 0.9, 0.6, 0.1], None, ["accuracy"], n_boot=5)
    >>> reps["accuracy"].shape
    (5,)
    """
    y, P = check_inputs(y_true, probs)
    values: dict[str, list[np.ndarray]] = {name: [] for name in metric_names}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        for W in resample_weights(len(y), groups, n_boot, seed):
            for name in metric_names:
                values[name].append(np.atleast_1d(scalar_metric(name, y, P, threshold, sample_weight=W)))
    return {name: np.concatenate(v).astype(np.float64) for name, v in values.items()}


def bootstrap_metrics(y_true: ArrayLike, probs: ArrayLike, groups: ArrayLike | None = None,
                      metric_names: Sequence[str] | None = None, threshold: float = 0.5, n_boot: int = 1000,
                      alpha: float = 0.05, seed: int = 0) -> dict[str, dict[str, float]]:
    """Percentile CIs of named metrics (default: all of :func:`~medclass.metrics.metrics.metric_names`).

    All metrics are computed on the same replicates, many replicates at once (weighted metrics), so
    1000 replicates of 5 metrics on 1000 images take about a second. Returns
    ``{name: {"value", "low", "high", "n_valid"}}`` (``n_valid``: replicates where the metric was defined).

    >>> ci = bootstrap_metrics([0, 1, 1, 0, 1, 0], [0.1, 0.8, 0.7, 0.3, 0.4, 0.6], ["a", "a", "b", "b", "c", "c"],
    ...                        ["accuracy"], n_boot=100)
    >>> round(ci["accuracy"]["value"], 4), ci["accuracy"]["n_valid"]
    (0.6667, 100)
    """
    check_alpha(alpha)
    y, P = check_inputs(y_true, probs)
    names = list(metric_names) if metric_names is not None else _available(P.shape[1])
    out = {name: {"value": float(scalar_metric(name, y, P, threshold))} for name in names}
    for name, values in bootstrap_replicates(y, P, groups, names, threshold, n_boot, seed).items():
        low, high, n_valid = percentile_interval(values, alpha, name)
        out[name] |= {"low": low, "high": high, "n_valid": n_valid}
    return out
