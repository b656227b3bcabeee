"""Input checks and shared helpers of :mod:`medclass.metrics.metrics` (kept apart so that module stays short).

The public names (``as_prob_matrix``, ``as_labels``, ``check_inputs``, ``UndefinedMetricWarning``,
``ArrayLike``, ``Metric``) are re-exported by :mod:`medclass.metrics.metrics`; import them from there.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

ArrayLike = np.ndarray | Sequence
Metric = float | np.ndarray


class UndefinedMetricWarning(UserWarning):
    """A metric is undefined on this data (one class present, zero denominator): its value is NaN."""


# ---------------------------------------------------------------------------------------------- inputs
def as_prob_matrix(probs: ArrayLike) -> np.ndarray:
    """Return ``probs`` as a float ``(n, n_classes)`` matrix; a 1-D ``p`` (or ``(n, 1)``) becomes ``[1 - p, p]``.

    >>> as_prob_matrix([0.2, 0.9]).tolist()
    [[0.8, 0.2], [0.09999999999999998, 0.9]]
    """
    P = np.asarray(probs, dtype=np.float64)
    if P.ndim == 2 and P.shape[1] == 1:
        P = P[:, 0]
    if P.ndim == 1:
        P = np.column_stack([1.0 - P, P])
    if P.ndim != 2 or P.shape[1] < 2:
        raise ValueError(f"probs must be (n,) or (n, n_classes >= 2); got shape {np.shape(probs)}.")
    if not np.isfinite(P).all():
        raise ValueError("probs contain NaN or inf; check the model outputs before computing metrics.")
    if P.size and (P.min() < -1e-6 or P.max() > 1 + 1e-6 or not np.allclose(P.sum(1), 1.0, atol=1e-3)):
        raise ValueError(
            f"probs must be probabilities in [0, 1] with rows summing to 1; got values in [{P.min():.3g}, {P.max():.3g}] "
            f"and row sums in [{P.sum(1).min():.3g}, {P.sum(1).max():.3g}]. Pass softmax/sigmoid outputs, not logits."
        )
    return P


def as_labels(y: ArrayLike, n_classes: int | None = None, name: str = "y_true") -> np.ndarray:
    """Return ``y`` as an int64 ``(n,)`` array of class indices in ``[0, n_classes)``; raise ``ValueError`` otherwise."""
    a = np.asarray(y)
    a = a.astype(np.int64) if a.dtype == bool else a
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class indices; got shape {a.shape}.")
    if a.size and (not np.issubdtype(a.dtype, np.number) or not np.all(np.mod(a, 1) == 0) or a.min() < 0):
        raise ValueError(f"{name} must hold non-negative integer class indices; got {a[:5].tolist()}... "
                         "Map class names to indices with the ordered class list first.")
    a = a.astype(np.int64)
    if n_classes is not None and a.size and a.max() >= n_classes:
        raise ValueError(f"{name} holds class index {a.max()} but there are only {n_classes} classes.")
    return a


def check_inputs(y_true: ArrayLike, probs: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(y_true int64 (n,), probs float (n, n_classes))``; raise ``ValueError`` naming the problem.

    >>> check_inputs([0, 1], [0.3, 0.8])[1].shape
    (2, 2)
    """
    P = as_prob_matrix(probs)
    y = as_labels(y_true, P.shape[1])
    if len(y) != len(P):
        raise ValueError(f"y_true has {len(y)} entries but probs has {len(P)} rows; they must match.")
    return y, P


def _pair(y_true: ArrayLike, y_pred: ArrayLike, n_classes: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    y, d = as_labels(y_true), as_labels(y_pred, name="y_pred")
    if len(y) != len(d):
        raise ValueError(f"y_true has {len(y)} entries but y_pred has {len(d)}; they must match.")
    k = n_classes or int(max(y.max(initial=-1), d.max(initial=-1), 1)) + 1
    for a, name in ((y, "y_true"), (d, "y_pred")):
        as_labels(a, k, name)
    return y, d, k


def _weights(sample_weight: ArrayLike | None, n: int) -> tuple[np.ndarray, bool]:
    """(B, n) weights and whether the caller wants a scalar back."""
    if sample_weight is None:
        return np.ones((1, n)), True
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.ndim in (1, 2) and w.shape[-1] == n:
        return np.atleast_2d(w), w.ndim == 1
    raise ValueError(f"sample_weight must have shape (n,) or (B, n) with n = {n}; got {w.shape}.")


def _out(values: np.ndarray, scalar: bool) -> Metric:
    return float(values[0]) if scalar else values


def _ratio(num: np.ndarray, den: np.ndarray, what: str = "") -> np.ndarray:
    """num / den, NaN where den == 0 (with one warning naming ``what`` unless it is '')."""
    num, den = np.broadcast_arrays(np.asarray(num, float), np.asarray(den, float))
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    if what:
        _warn_nan(out, what)
    return out


def _warn_nan(values: np.ndarray, what: str) -> None:
    bad = int(np.isnan(values).sum())
    if bad:
        warnings.warn(f"{what} is undefined (division by zero) for {bad} value(s); NaN is returned"
                      " (and left out of macro/weighted means).", UndefinedMetricWarning, stacklevel=4)


def _nanavg(values: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Average over the last axis ignoring NaN entries (NaN when all are NaN)."""
    w = np.ones_like(values) if weights is None else np.broadcast_to(weights, values.shape).astype(float)
    ok = ~np.isnan(values)
    den = (w * ok).sum(-1)
    num = np.where(ok, values * w, 0.0).sum(-1)
    return np.divide(num, den, out=np.full(den.shape, np.nan), where=den > 0)
