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

from ..errors import ConfigError, did_you_mean
from .metrics import ArrayLike, check_inputs

RULES = ("youden", "f1", "sensitivity:<target>", "specificity:<target>", "<number in [0, 1]>")


@dataclass(frozen=True)
class ThresholdChoice:
    """A threshold, the rule that chose it and its sensitivity/specificity on the data it was chosen on."""

    threshold: float
    rule: str
    sensitivity: float
    specificity: float


def parse_rule(rule: str) -> tuple[str, float | None]:
    """Split a rule string into ``(name, value)``: ``"sensitivity:0.95"`` -> ``("sensitivity", 0.95)``.

    Raises :class:`~medclass.errors.ConfigError` with the accepted forms (and a near match) otherwise.

    >>> parse_rule("Youden"), parse_rule("specificity:0.9"), parse_rule("0.3")
    (('youden', None), ('specificity', 0.9), ('fixed', 0.3))
    """
    text = str(rule).strip().lower()
    name, sep, value = text.partition(":")
    expected = f"expected one of {', '.join(RULES)}"
    try:
        fixed = float(text)
    except ValueError:
        fixed = None
    if fixed is not None:
        if not 0.0 <= fixed <= 1.0:
            raise ConfigError(f"Fixed threshold {rule!r} is outside [0, 1]; {expected}.")
        return "fixed", fixed
    if name in ("youden", "f1") and not sep:
        return name, None
    if name in ("sensitivity", "specificity"):
        try:
            target = float(value)
        except ValueError:
            raise ConfigError(f"Threshold rule {rule!r} needs a target after ':', e.g. '{name}:0.95'; {expected}.") from None
        if not 0.0 < target <= 1.0:
            raise ConfigError(f"Threshold rule {rule!r}: the target must be in (0, 1], e.g. '{name}:0.95'.")
        return name, target
    raise ConfigError(f"Unknown threshold rule {rule!r}; {expected}." + did_you_mean(name, ["youden", "f1", "sensitivity", "specificity"]))


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
