"""ROC and precision-recall curve points (one-vs-rest per class; binary: the positive class only)."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve

from .metrics import pr_auc, roc_auc


def score_curves(y: np.ndarray, P: np.ndarray, classes: list[str]) -> dict:
    """``{"roc": {class: {fpr, tpr, thresholds, auc}}, "pr": {class: {recall, precision, thresholds, ap}},
    "prevalence": {class: share}}``; classes without positives or negatives are left out.

    >>> c = score_curves(np.array([0, 0, 1, 1]), np.array([[.9, .1], [.6, .4], [.65, .35], [.2, .8]]), ["a", "b"])
    >>> list(c["roc"]), c["roc"]["b"]["auc"]
    (['b'], 0.75)
    """
    aucs, aps = np.atleast_1d(roc_auc(y, P, None)), np.atleast_1d(pr_auc(y, P, None))
    which = [1] if len(classes) == 2 else range(len(classes))
    out: dict = {"roc": {}, "pr": {}, "prevalence": {}}
    for c in which:
        pos = y == c
        if pos.all() or not pos.any():
            continue
        fpr, tpr, thr = roc_curve(pos, P[:, c])
        prec, rec, pthr = precision_recall_curve(pos, P[:, c])
        name = classes[c]
        out["roc"][name] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": np.minimum(thr, 1.0).tolist(),
                            "auc": float(aucs[c])}
        out["pr"][name] = {"recall": rec.tolist(), "precision": prec.tolist(), "thresholds": pthr.tolist(),
                           "ap": float(aps[c])}
        out["prevalence"][name] = float(pos.mean())
    return out
