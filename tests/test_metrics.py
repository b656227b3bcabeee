"""Metric functions checked against scikit-learn on a table of cases (to 1e-10)."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from medclass.metrics import metrics as M
from medclass.utils import to_json

TOL = 1e-10


def _binary(seed: int, n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.25, n), 0, 1)
    return y, p


def _multi(seed: int, n: int = 90, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k)) + 1.5 * np.eye(k)[y]
    P = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, P


def _ties(seed: int) -> tuple[np.ndarray, np.ndarray]:
    y, p = _binary(seed, 80)
    return y, np.round(p, 1)  # many tied scores, some across classes


CASES = {
    "random_binary": _binary(0),
    "random_binary_large": _binary(1, 500),
    "ties": _ties(2),
    "perfect": (np.array([0, 0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.7, 0.9])),
    "all_wrong": (np.array([0, 0, 1, 1, 1]), np.array([0.9, 0.8, 0.1, 0.3, 0.2])),
    "all_tied": (np.array([0, 1, 0, 1]), np.full(4, 0.5)),
    "multi3": _multi(3),
    "multi3_ties": (lambda y, P: (y, np.round(P, 1) / np.round(P, 1).sum(1, keepdims=True)))(*_multi(4)),
    "multi4_absent_class": (np.array([0, 1, 2, 0, 1, 2, 0]), M.as_prob_matrix(np.eye(4)[[0, 1, 1, 0, 3, 2, 0]] * 0.7 + 0.075)),
}


def _sk_scores(y: np.ndarray, P: np.ndarray, average: str | None) -> tuple[np.ndarray, np.ndarray]:
    k = P.shape[1]
    classes = [1] if (k == 2 and average) else range(k)
    auc = np.array([skm.roc_auc_score(y == c, P[:, c]) if 0 < (y == c).sum() < len(y) else np.nan for c in classes])
    ap = np.array([skm.average_precision_score(y == c, P[:, c]) if (y == c).any() else np.nan for c in classes])
    return auc, ap


@pytest.mark.parametrize("case", CASES)
def test_decision_metrics_match_sklearn(case: str) -> None:
    y, p = CASES[case]
    P = M.as_prob_matrix(p)
    k = P.shape[1]
    d = M.predict_labels(P)
    labels = list(range(k))
    kw = dict(labels=labels, zero_division=np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.array_equal(M.confusion_matrix(y, d, k), skm.confusion_matrix(y, d, labels=labels))
        assert M.accuracy(y, d) == pytest.approx(skm.accuracy_score(y, d), abs=TOL)
        assert M.balanced_accuracy(y, d, k) == pytest.approx(skm.balanced_accuracy_score(y, d), abs=TOL)
        for ours, theirs in ((M.precision, skm.precision_score), (M.recall, skm.recall_score), (M.f1_score, skm.f1_score)):
            for average in ("macro", "weighted", None):
                np.testing.assert_allclose(ours(y, d, average, k), theirs(y, d, average=average, **kw), atol=TOL)
            if k == 2:
                np.testing.assert_allclose(ours(y, d), theirs(y, d, **kw), atol=TOL)
        np.testing.assert_allclose(M.per_class_accuracy(y, d, k), skm.recall_score(y, d, average=None, **kw), atol=TOL)
        report, sk_report = M.classification_report_dict(y, d, n_classes=k), skm.classification_report(y, d, output_dict=True, **kw)
    assert report.keys() == sk_report.keys()
    for key, value in sk_report.items():
        if isinstance(value, dict):
            np.testing.assert_allclose([report[key][m] for m in value], list(value.values()), atol=TOL, err_msg=key)
        else:
            assert report[key] == pytest.approx(value, abs=TOL)


@pytest.mark.parametrize("case", CASES)
def test_score_metrics_match_sklearn(case: str) -> None:
    y, p = CASES[case]
    P = M.as_prob_matrix(p)
    k = P.shape[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for average in ("macro", None):
            auc, ap = _sk_scores(y, P, average)
            np.testing.assert_allclose(M.roc_auc(y, p, average), auc.mean() if average else auc, atol=TOL)
            np.testing.assert_allclose(M.pr_auc(y, p, average), ap.mean() if average else ap, atol=TOL)
        if k > 2 and len(np.unique(y)) == k:
            assert M.roc_auc(y, P) == pytest.approx(skm.roc_auc_score(y, P, multi_class="ovr"), abs=TOL)
    assert M.brier_score(y, p) == pytest.approx(skm.brier_score_loss(y, P if k > 2 else P[:, 1], labels=list(range(k))), abs=TOL)


@pytest.mark.parametrize("case", [c for c in CASES if M.as_prob_matrix(CASES[c][1]).shape[1] == 2])
@pytest.mark.parametrize("spec", [0.0, 0.5, 0.9, 0.95, 1.0])
def test_sensitivity_at_specificity_matches_roc_curve(case: str, spec: float) -> None:
    """The best sensitivity with specificity >= spec, read off scikit-learn's full ROC curve."""
    y, p = CASES[case]
    fpr, tpr, _ = skm.roc_curve(y, M.as_prob_matrix(p)[:, 1], drop_intermediate=False)
    expected = tpr[fpr <= 1 - spec + 1e-12].max()
    assert M.sensitivity_at_specificity(y, p, spec) == pytest.approx(expected, abs=TOL)


def _ece_by_hand(y: np.ndarray, P: np.ndarray, n_bins: int) -> float:
    conf, hit = (P[:, 1], y == 1) if P.shape[1] == 2 else (P.max(1), P.argmax(1) == y)
    total = 0.0
    for i in range(n_bins):
        lo, hi = i / n_bins, (i + 1) / n_bins
        inside = (conf > lo) & (conf <= hi) | ((i == 0) & (conf == 0))
        if inside.any():
            total += inside.sum() / len(y) * abs(hit[inside].mean() - conf[inside].mean())
    return total


@pytest.mark.parametrize("case", ["random_binary", "random_binary_large", "multi3", "perfect"])
@pytest.mark.parametrize("n_bins", [5, 15])
def test_ece_equal_width_bins(case: str, n_bins: int) -> None:
    y, p = CASES[case]
    assert M.expected_calibration_error(y, p, n_bins) == pytest.approx(_ece_by_hand(y, M.as_prob_matrix(p), n_bins), abs=TOL)


def test_hand_computed_binary_values() -> None:
    y = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    d = np.array([1, 1, 0, 0, 0, 1, 0, 1])  # TP 3, FN 1, TN 3, FP 1
    assert (M.sensitivity(y, d), M.specificity(y, d), M.ppv(y, d), M.npv(y, d)) == (0.75, 0.75, 0.75, 0.75)
    d2 = np.array([1, 1, 1, 1, 0, 0, 0, 1])  # TP 4, FN 0, TN 3, FP 1
    assert (M.sensitivity(y, d2), M.specificity(y, d2), M.ppv(y, d2), M.npv(y, d2)) == (1.0, 0.75, 0.8, 1.0)
    assert M.roc_auc([0, 1], [0.3, 0.3]) == 0.5  # a tie counts one half


@pytest.mark.parametrize("case", ["random_binary", "ties", "multi3"])
def test_sample_weights_equal_repetition(case: str) -> None:
    """Integer weights give exactly the metric of the repeated data; 2-D weights give one value per row."""
    y, p = CASES[case]
    P = M.as_prob_matrix(p)
    rng = np.random.default_rng(7)
    W = rng.integers(0, 4, (3, len(y))).astype(float)
    for name in M.metric_names(P.shape[1]):
        batch = M.scalar_metric(name, y, P, sample_weight=W)
        assert batch.shape == (3,)
        for b in range(3):
            idx = np.repeat(np.arange(len(y)), W[b].astype(int))
            assert batch[b] == pytest.approx(M.scalar_metric(name, y[idx], P[idx]), abs=TOL, nan_ok=True), name
            assert M.scalar_metric(name, y, P, sample_weight=W[b]) == pytest.approx(batch[b], abs=TOL, nan_ok=True)


@pytest.mark.parametrize("y", [np.zeros(5, int), np.ones(5, int)])
def test_one_class_gives_nan_with_warning(y: np.ndarray) -> None:
    p = np.linspace(0.1, 0.9, 5)
    with pytest.warns(M.UndefinedMetricWarning, match="ROC AUC"):
        assert np.isnan(M.roc_auc(y, p))
    with pytest.warns(M.UndefinedMetricWarning):
        m = M.compute_metrics(y, p)
    assert np.isnan(m["roc_auc"])
    assert np.isnan(m["specificity"] if y[0] == 1 else m["sensitivity"])
    assert m["accuracy"] == M.accuracy(y, p >= 0.5)
    if y[0] == 0:
        with pytest.warns(M.UndefinedMetricWarning, match="PR AUC"):
            assert np.isnan(M.pr_auc(y, p))


def test_zero_division_warns_and_gives_nan() -> None:
    with pytest.warns(M.UndefinedMetricWarning, match="precision"):
        assert np.isnan(M.ppv([0, 1, 1], [0, 0, 0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning for the defined value
        assert M.npv([0, 1, 1], [0, 0, 0]) == pytest.approx(1 / 3)


def test_compute_metrics_binary_keys_and_json() -> None:
    y, p = CASES["random_binary"]
    m = M.compute_metrics(y, p, threshold=0.6, class_names=["NORMAL", "PNEUMONIA"])
    d = (p >= 0.6).astype(int)
    assert set(M.metric_names(2)) <= m.keys()
    assert m["sensitivity"] == pytest.approx(skm.recall_score(y, d), abs=TOL)
    assert m["specificity"] == pytest.approx(skm.recall_score(y, d, pos_label=0), abs=TOL)
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p), abs=TOL)
    assert m["per_class"]["PNEUMONIA"]["support"] == int(y.sum())
    assert m["per_class"]["NORMAL"]["accuracy"] == pytest.approx(m["specificity"], abs=TOL)
    assert m["confusion_matrix"] == skm.confusion_matrix(y, d).tolist()
    assert json.loads(json.dumps(m)) == m  # plain floats, ints, lists, strings


def test_compute_metrics_multiclass() -> None:
    y, P = CASES["multi3"]
    m = M.compute_metrics(y, P, class_names=["a", "b", "c"])
    assert "sensitivity" not in m and m["decision"] == "argmax"
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, P.argmax(1), average="macro"), abs=TOL)
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, P, multi_class="ovr"), abs=TOL)
    assert m["per_class"]["b"]["roc_auc"] == pytest.approx(skm.roc_auc_score(y == 1, P[:, 1]), abs=TOL)
    assert m["brier"] == pytest.approx(skm.brier_score_loss(y, P), abs=TOL)
    json.loads(to_json(m))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: M.roc_auc([0, 1], [[2.0, -1.0], [0.5, 0.5]]), "not logits"),
        (lambda: M.roc_auc([0, 1, 1], [0.2, 0.8]), "must match"),
        (lambda: M.roc_auc([0, 3], [0.2, 0.8]), "only 2 classes"),
        (lambda: M.accuracy([0, 0.5], [0, 1]), "integer class indices"),
        (lambda: M.precision([0, 1, 2], [0, 1, 2], average="binary"), "needs 2 classes"),
        (lambda: M.roc_auc([0, 1], [np.nan, 0.5]), "NaN"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_unknown_names_suggest() -> None:
    with pytest.raises(ValueError, match="Did you mean 'macro'"):
        M.precision([0, 1], [0, 1], average="makro")
    with pytest.raises(ValueError, match="Did you mean 'sensitivity'"):
        M.scalar_metric("sensitvity", [0, 1], [0.2, 0.8])
