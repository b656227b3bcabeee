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
from .metrics import ArrayLike, scalar_metric

CHANCE_MARGIN = 0.05  # an AUC is "clearly above chance" when its CI's lower bound exceeds 0.5 + this


def occlusion_aucs(y_true: ArrayLike, probs: Mapping[str, ArrayLike], groups: ArrayLike | None, n_boot: int = 1000,
                   alpha: float = 0.05, seed: int = 0, reference: str = "full") -> dict[str, dict]:
    """ROC AUC (binary; macro one-vs-rest for more classes) of each entry of ``probs`` on the rows where it is
    defined (no NaN), with a patient-bootstrap CI and its paired difference to ``reference`` on the same rows.

    Returns ``{name: {"value", "low", "high", "n", "difference": {"value", "low", "high"}}}`` (no
    ``difference`` for the reference itself; ``low``/``high`` None with ``n_boot=0``).
    """
    y = np.asarray(y_true)
    g = None if groups is None else np.asarray(groups)
    ref = np.asarray(probs[reference], dtype=np.float64)
    out: dict[str, dict] = {}
    for name, p in probs.items():
        P = np.asarray(p, dtype=np.float64)
        ok = ~np.isnan(P).any(axis=1)
        pair = {"variant": P[ok], "reference": ref[ok]}
        point = {k: float(scalar_metric("roc_auc", y[ok], v)) for k, v in pair.items()}
        entry: dict = {"value": point["variant"], "low": None, "high": None, "n": int(ok.sum())}
        reps = {}
        if n_boot > 0:
            sub = None if g is None else g[ok]
            reps = {k: bootstrap_replicates(y[ok], v, sub, ["roc_auc"], n_boot=n_boot, seed=seed)["roc_auc"]
                    for k, v in pair.items()}
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
