"""Calibration: temperature scaling (Guo et al. 2017) and the reliability curve (computed here, plotted elsewhere).

Temperature scaling divides the logits by one scalar ``T`` fitted on validation data to minimise the
negative log-likelihood; ``T > 1`` softens over-confident models. It never changes the argmax, nor
the ranking of binary scores (AUC), only the probabilities.

Logits: binary models have one logit per image (``(n,)`` or ``(n, 1)``, ``p = sigmoid(z / T)``);
multi-class models ``(n, k)`` (``softmax(z / T)``), as ``medclass.inference.to_probs``.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(0, 2, 2000); y = (rng.uniform(size=2000) < 1 / (1 + np.exp(-z))).astype(int)
    >>> T = fit_temperature(3 * z, y)   # three times over-confident
    >>> 2.5 < T < 3.5
    True
    >>> curve = reliability_curve(y, apply_temperature(3 * z, T)[:, 1], n_bins=10)
    >>> len(curve["bin_centers"]), curve["ece"] < 0.05
    (10, True)
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from .metrics import (ECE_BINS, ArrayLike, as_labels, as_prob_matrix, calibration_bins, calibration_kind,
                      expected_calibration_error)

T_BOUNDS = (0.01, 100.0)  # search range of the temperature


def _logits(logits: ArrayLike) -> np.ndarray:
    """Logits as ``(n, 1)`` (binary, one logit) or ``(n, k)``, float64 and finite."""
    z = np.asarray(logits, dtype=np.float64)
    z = z[:, None] if z.ndim == 1 else z
    if z.ndim != 2:
        raise ValueError(f"logits must be (n,) / (n, 1) for binary or (n, k) for multi-class; got shape {np.shape(logits)}.")
    if not np.isfinite(z).all():
        raise ValueError("logits contain NaN or inf; check the model outputs.")
    return z


def apply_temperature(logits: ArrayLike, temperature: float) -> np.ndarray:
    """Probabilities ``(n, n_classes)`` of ``logits / temperature``: ``[1 - p, p]`` for one logit, else softmax.

    >>> apply_temperature([0.0, 2.0], 2.0).round(4).tolist()
    [[0.5, 0.5], [0.2689, 0.7311]]
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0; got {temperature}.")
    z = _logits(logits) / temperature
    if z.shape[1] == 1:
        p = 1.0 / (1.0 + np.exp(-z[:, 0]))
        return np.column_stack([1.0 - p, p])
    return softmax(z, axis=1)


def temperature_nll(logits: ArrayLike, y_true: ArrayLike, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``y_true`` under ``logits / temperature`` (numerically stable).

    >>> round(temperature_nll([0.0, 0.0], [0, 1]), 4)  # log 2
    0.6931
    """
    z = _logits(logits) / temperature
    y = as_labels(y_true, max(z.shape[1], 2))
    if len(y) != len(z):
        raise ValueError(f"y_true has {len(y)} entries but logits has {len(z)} rows; they must match.")
    if z.shape[1] == 1:
        return float(np.mean(np.logaddexp(0.0, z[:, 0]) - y * z[:, 0]))
    return float(-np.mean(log_softmax(z, axis=1)[np.arange(len(y)), y]))


def fit_temperature(logits: ArrayLike, y_true: ArrayLike) -> float:
    """The temperature ``T`` minimising :func:`temperature_nll` (bounded Brent search on ``log T``).

    Fit on validation data only. Warns when ``T`` ends on a bound of :data:`T_BOUNDS` (e.g. one class
    only, or perfectly separated data where the NLL keeps falling as ``T -> 0``).

    >>> fit_temperature([-3.0, -1.0, 1.0, 3.0, 2.0, -2.0], [0, 0, 1, 1, 0, 1]) > 1  # confident mistakes
    True
    """
    z = _logits(logits)
    y = as_labels(y_true, max(z.shape[1], 2))
    lo, hi = np.log(T_BOUNDS)
    result = minimize_scalar(lambda log_t: temperature_nll(z, y, float(np.exp(log_t))), bounds=(lo, hi),
                             method="bounded", options={"xatol": 1e-7})
    T = float(np.exp(result.x))
    if min(abs(result.x - lo), abs(result.x - hi)) < 1e-3:
        warnings.warn(f"Fitted temperature {T:.3g} is at the edge of the search range {T_BOUNDS}; the validation data "
                      "may hold one class only or be perfectly separated. Check it before using it.", stacklevel=2)
    return T


def reliability_curve(y_true: ArrayLike, p: ArrayLike, n_bins: int = ECE_BINS, kind: str = "auto") -> dict:
    """Per equal-width bin: mean confidence, observed hit rate and count, plus the ECE (JSON-able lists).

    Binary (``kind='positive'``): confidence = predicted probability of class 1, accuracy = share of
    positives in the bin (like ``sklearn.calibration.calibration_curve``). Multi-class (``'top_label'``):
    confidence = top probability, accuracy = share of correct argmax. Empty bins hold NaN.

    >>> c = reliability_curve([0, 0, 1, 1], [0.1, 0.3, 0.7, 0.9], n_bins=2)
    >>> c["bin_centers"], c["accuracy"], c["confidence"], c["counts"]
    ([0.25, 0.75], [0.0, 1.0], [0.2, 0.8], [2, 2])
    """
    counts, conf, hit = calibration_bins(y_true, p, n_bins, kind)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    nonempty = counts > 0
    mean_conf = np.divide(conf, counts, out=np.full(n_bins, np.nan), where=nonempty)
    hit_rate = np.divide(hit, counts, out=np.full(n_bins, np.nan), where=nonempty)
    return {"bin_edges": edges.tolist(), "bin_centers": ((edges[:-1] + edges[1:]) / 2).tolist(),
            "accuracy": hit_rate.tolist(), "confidence": mean_conf.tolist(), "counts": counts.astype(int).tolist(),
            "ece": expected_calibration_error(y_true, p, n_bins, kind),
            "kind": calibration_kind(as_prob_matrix(p).shape[1], kind)}
