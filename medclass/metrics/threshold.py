"""Choose a binary decision threshold on validation data by a named rule.

Decisions are ``p >= threshold`` (class 1 = positive). Candidate thresholds are the distinct scores
(``sklearn.metrics.roc_curve`` without dropping points), plus one just above the highest score
(nothing positive). Rules:

==================  =================================================================================
``youden``          maximise Youden's J = sensitivity + specificity - 1
``f1``              maximise F1 of the positive class
``sensitivity:X``   the highest threshold whose sensitivity is >= X (best specificity at that sensitivity)
``specificity:X``   the lowest threshold whose specificity is >= X (best sensitivity at that specificity)
``0.5`` (a number)  that fixed threshold
==================  =================================================================================

Ties between candidates go to the highest threshold.

Example:
    >>> choice = choose_threshold([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], "sensitivity:1.0")
    >>> choice.threshold, choice.sensitivity, choice.specificity
    (0.35, 1.0, 0.5)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_curve

from .._formats import parse_threshold_rule as parse_rule  # the format of eval.threshold (medclass.config declares it on the field)
from .metrics import ArrayLike, check_inputs



@dataclass(frozen=True)
class ThresholdChoice:
    """A threshold, the rule that chose it and its sensitivity/specificity on the data it was chosen on."""

    threshold: float
    rule: str
    sensitivity: float
    specificity: float


def choose_threshold(y_true: ArrayLike, p: ArrayLike, rule: str = "youden") -> ThresholdChoice:
    """Choose the decision threshold for ``p >= threshold`` by ``rule`` (see the module docstring).

    ``p`` is the positive-class probability ``(n,)`` (or binary probs ``(n, 2)``). Binary only;
    both classes must be present. Choose on validation data, never on the test set.

    >>> choose_threshold([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], "youden").threshold
    0.8
    """
    name, value = parse_rule(rule)
    y, P = check_inputs(y_true, p)
    if P.shape[1] != 2:
        raise ValueError(f"choose_threshold is for binary problems; got probabilities for {P.shape[1]} classes. "
                         "Multi-class decisions use argmax.")
    n_pos = int(y.sum())
    if n_pos in (0, len(y)):
        raise ValueError(f"choose_threshold needs both classes in y_true; got {n_pos} positive(s) of {len(y)}. "
                         "Choose the threshold on a validation split that holds both classes.")
    score = P[:, 1]
    if name == "fixed":
        d = score >= value
        return ThresholdChoice(float(value), str(rule), float(d[y == 1].mean()), float(1 - d[y == 0].mean()))
    fpr, tpr, thresholds = roc_curve(y, score, drop_intermediate=False)
    thresholds[0] = np.nextafter(score.max(), np.inf)  # 'nothing positive' instead of inf
    if name == "youden":
        i = int(np.argmax(tpr - fpr))
    elif name == "f1":
        tp, fp = tpr * n_pos, fpr * (len(y) - n_pos)
        i = int(np.argmax(2 * tp / (tp + fp + n_pos)))
    elif name == "sensitivity":
        i = int(np.flatnonzero(tpr >= value - 1e-12)[0])
    else:
        i = int(np.flatnonzero(1 - fpr >= value - 1e-12)[-1])
    return ThresholdChoice(float(thresholds[i]), str(rule), float(tpr[i]), float(1 - fpr[i]))
