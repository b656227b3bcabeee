"""Threshold rules: hand-computed cases and a brute-force search over every candidate threshold."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_curve

from medclass.errors import ConfigError
from medclass.metrics.threshold import ThresholdChoice, choose_threshold, parse_rule

Y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
P = np.array([0.1, 0.2, 0.45, 0.7, 0.3, 0.6, 0.8, 0.9])


@pytest.mark.parametrize(
    "rule, threshold, sens, spec",
    [
        ("youden", 0.8, 0.5, 1.0),  # J = 0.5 at 0.8 and at 0.6 (0.75 + 0.75 - 1): ties go to the highest
        ("sensitivity:1.0", 0.3, 1.0, 0.5),
        ("sensitivity:0.7", 0.6, 0.75, 0.75),
        ("specificity:1.0", 0.8, 0.5, 1.0),
        ("specificity:0.75", 0.6, 0.75, 0.75),
        ("specificity:0.5", 0.3, 1.0, 0.5),
        ("f1", 0.3, 1.0, 0.5),  # F1 = 8/12 at 0.3 vs 6/10 at 0.6
        ("0.5", 0.5, 0.75, 0.75),
        (" 0.95 ", 0.95, 0.0, 1.0),
    ],
)
def test_hand_computed(rule: str, threshold: float, sens: float, spec: float) -> None:
    choice = choose_threshold(Y, P, rule)
    assert choice == ThresholdChoice(threshold, rule, sens, spec)
    d = P >= choice.threshold
    assert (d[Y == 1].mean(), 1 - d[Y == 0].mean()) == (sens, spec)


def _brute_force(y: np.ndarray, p: np.ndarray, rule: str) -> float:
    """Every distinct score (and one above the highest) as a threshold; the rule's pick by its definition."""
    cands = np.r_[np.unique(p), np.nextafter(p.max(), 1.0)][::-1]  # highest first, so ties go to the highest
    sens = np.array([(p[y == 1] >= t).mean() for t in cands])
    spec = np.array([(p[y == 0] < t).mean() for t in cands])
    if rule == "youden":
        return cands[np.argmax(sens + spec - 1)]
    if rule == "f1":
        return cands[np.argmax([f1_score(y, p >= t, zero_division=0) for t in cands])]
    name, target = rule.split(":")
    if name == "sensitivity":
        return cands[sens >= float(target)].max()
    return cands[spec >= float(target)].min()


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("rule", ["youden", "f1", "sensitivity:0.95", "sensitivity:0.8", "specificity:0.9", "specificity:0.6"])
def test_matches_brute_force_and_roc_curve(seed: int, rule: str) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 150)
    p = np.round(1 / (1 + np.exp(-(rng.normal(0, 1, 150) + 1.2 * y))), 2)  # rounded: ties
    choice = choose_threshold(y, p, rule)
    assert choice.threshold == _brute_force(y, p, rule)
    fpr, tpr, thr = roc_curve(y, p, drop_intermediate=False)
    i = np.flatnonzero(thr == choice.threshold)
    if len(i):  # every candidate but 'above the highest score' is an ROC point
        assert (choice.sensitivity, choice.specificity) == pytest.approx((tpr[i[0]], 1 - fpr[i[0]]), abs=1e-12)
    target = float(rule.split(":")[1]) if ":" in rule else 0.0
    assert (choice.sensitivity if rule.startswith("sens") else choice.specificity if rule.startswith("spec") else 1) >= target


def test_accepts_binary_probability_matrix() -> None:
    assert choose_threshold(Y, np.column_stack([1 - P, P]), "youden").threshold == 0.8


def test_specificity_one_can_mean_nothing_positive() -> None:
    choice = choose_threshold([0, 1, 0], [0.9, 0.5, 0.1], "specificity:1.0")
    assert choice.threshold > 0.9 and choice.sensitivity == 0.0 and choice.specificity == 1.0


@pytest.mark.parametrize(
    "rule, match",
    [
        ("yuoden", "Did you mean 'youden'"),
        ("sensitvity:0.9", "Did you mean 'sensitivity'"),
        ("sensitivity", "needs a target"),
        ("specificity:abc", "needs a target"),
        ("sensitivity:95", r"must be in \(0, 1\]"),
        ("1.5", "outside"),
    ],
)
def test_bad_rules(rule: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        choose_threshold(Y, P, rule)


def test_parse_rule() -> None:
    assert parse_rule(" Sensitivity:0.95 ") == ("sensitivity", 0.95)
    assert parse_rule("F1") == ("f1", None)


def test_binary_only_and_both_classes() -> None:
    with pytest.raises(ValueError, match="binary"):
        choose_threshold([0, 1, 2], np.full((3, 3), 1 / 3), "youden")
    with pytest.raises(ValueError, match="both classes"):
        choose_threshold([1, 1], [0.3, 0.8], "youden")
