"""Occlusion tests as numbers: the AUC of a model on occluded inputs beside its AUC on the full images.

Each occluded variant (``border_only``, ``centre_only``, ...) is scored on the same images as the full
input; the CIs resample patients and every variant uses the same replicates (same ``seed``), so the
differences to the full image are paired.

The rule (:func:`above_chance`): an AUC is *clearly above chance* when the lower bound of its 95 % CI is
above ``0.5 + CHANCE_MARGIN`` (the point estimate when no CI was computed). A border-only AUC clearly above
chance means the model still separates the classes from the border band alone.

>>> y = np.array([0, 0, 1, 1]); full = np.array([[.9, .1], [.8, .2], [.3, .7], [.1, .9]])
>>> s = occlusion_aucs(y, {"full": full, "border_only": full[::-1]}, groups=None, n_boot=0)
>>> s["full"]["value"], s["border_only"]["value"], s["border_only"]["difference"]["value"]
(1.0, 0.0, -1.0)
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .bootstrap import bootstrap_replicates, percentile_interval
from .findings import _macro, finding_replicates
from .metrics import ArrayLike, scalar_metric
from .multilabel import finding_aucs, macro_auc

CHANCE_MARGIN = 0.05  # an AUC is "clearly above chance" when its CI's lower bound exceeds 0.5 + this


def _auc(y: np.ndarray, P: np.ndarray, groups: np.ndarray | None, n_boot: int, seed: int) -> tuple[float, np.ndarray]:
    """(AUC on all rows, AUC on each of ``n_boot`` replicates): ROC AUC, macro one-vs-rest for more than two classes;
    multi-label (``y`` of shape (n, K), NaN = masked): the mean AUC of the findings defined on all rows."""
    if y.ndim == 1:
        reps = bootstrap_replicates(y, P, groups, ["roc_auc"], n_boot=n_boot, seed=seed)["roc_auc"] if n_boot else None
        return float(scalar_metric("roc_auc", y, P)), reps
    if not n_boot:
        return macro_auc(y, P), None
    block = finding_replicates(y, P, groups, [0.5] * y.shape[1], ["roc_auc"], n_boot, seed)["roc_auc"]
    return macro_auc(y, P), _macro(block, np.isfinite(finding_aucs(y, P)))


def occlusion_aucs(y_true: ArrayLike, probs: Mapping[str, ArrayLike], groups: ArrayLike | None, n_boot: int = 1000,
                   alpha: float = 0.05, seed: int = 0, reference: str = "full") -> dict[str, dict]:
    """ROC AUC (binary; macro one-vs-rest for more classes; multi-label: the macro AUC of the findings) of each entry
    of ``probs`` on the rows where it is defined (no NaN), with a patient-bootstrap CI and its paired difference to
    ``reference`` on the same rows.

    Returns ``{name: {"value", "low", "high", "n", "difference": {"value", "low", "high"}}}`` (no
    ``difference`` for the reference itself; ``low``/``high`` None with ``n_boot=0``).
    """
    y = np.asarray(y_true)
    g = None if groups is None else np.asarray(groups)
    ref = np.asarray(probs[reference], dtype=np.float64)
    out: dict[str, dict] = {}
    on_rows: dict[bytes, tuple[float, np.ndarray | None]] = {}  # the reference on each set of rows, scored once
    for name, p in probs.items():
        P = np.asarray(p, dtype=np.float64)
        ok = ~np.isnan(P).any(axis=1)
        sub = None if g is None else g[ok]
        if ok.tobytes() not in on_rows:
            on_rows[ok.tobytes()] = _auc(y[ok], ref[ok], sub, n_boot, seed)
        scored = {"variant": _auc(y[ok], P[ok], sub, n_boot, seed), "reference": on_rows[ok.tobytes()]}
        point = {k: v[0] for k, v in scored.items()}
        reps = {k: v[1] for k, v in scored.items() if v[1] is not None}
        entry: dict = {"value": point["variant"], "low": None, "high": None, "n": int(ok.sum())}
        if reps:
            entry["low"], entry["high"], _ = percentile_interval(reps["variant"], alpha, f"{name} AUC")
        if name != reference:
            diff = {"value": point["variant"] - point["reference"], "low": None, "high": None}
            if reps:
                diff["low"], diff["high"], _ = percentile_interval(reps["variant"] - reps["reference"], alpha,
                                                                   f"{name} - {reference} AUC")
            entry["difference"] = diff
        out[name] = entry
    return out


def above_chance(ci: Mapping) -> bool:
    """Whether an AUC (``{"value", "low", ...}``) is clearly above chance: its CI's lower bound (else its value)
    above ``0.5 + CHANCE_MARGIN``.

    >>> above_chance({"value": 0.8, "low": 0.56}), above_chance({"value": 0.8, "low": 0.52}), above_chance({"value": 0.6})
    (True, False, True)
    """
    bound = ci.get("low")
    bound = ci.get("value") if bound is None else bound
    return bound is not None and bound == bound and bound > 0.5 + CHANCE_MARGIN


__all__ = ["CHANCE_MARGIN", "above_chance", "occlusion_aucs"]
