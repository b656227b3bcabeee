"""Temperature scaling on simulated logits with a known calibration; reliability curve vs scikit-learn."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.calibration import calibration_curve
from sklearn.metrics import log_loss

from medclass.metrics import metrics as M
from medclass.metrics.calibration import apply_temperature, fit_temperature, reliability_curve, temperature_nll


def _binary(seed: int, n: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """True logits z and labels drawn from sigmoid(z): the logits z are calibrated by construction."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.3, 2.0, n)
    return z, (rng.uniform(size=n) < 1 / (1 + np.exp(-z))).astype(int)


def _multi(seed: int, n: int = 4000, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, k))
    cum = softmax(z, axis=1).cumsum(1)
    y = (rng.uniform(size=(n, 1)) > cum).sum(1)
    return z, np.minimum(y, k - 1)


@pytest.mark.parametrize("make", [_binary, _multi])
@pytest.mark.parametrize("scale", [2.5, 0.5])
def test_recovers_the_miscalibration_factor(make, scale: float) -> None:
    """Logits multiplied by ``scale`` are fixed by T ~ scale; the NLL drops, argmax (and binary AUC) unchanged."""
    z, y = make(0)
    T = fit_temperature(scale * z, y)
    assert T == pytest.approx(scale, rel=0.12)
    assert (T > 1) == (scale > 1)
    before, after = temperature_nll(scale * z, y), temperature_nll(scale * z, y, T)
    assert after < before - 0.01
    assert after == pytest.approx(log_loss(y, apply_temperature(scale * z, T)), abs=1e-9)
    P0, P1 = apply_temperature(scale * z, 1.0), apply_temperature(scale * z, T)
    assert np.array_equal(P0.argmax(1), P1.argmax(1))
    if z.ndim == 1:  # one logit: a monotone map of the score, so the ranking is kept
        assert M.roc_auc(y, P0) == pytest.approx(M.roc_auc(y, P1), abs=1e-12)
    assert M.expected_calibration_error(y, P1) < M.expected_calibration_error(y, P0)


@pytest.mark.parametrize("make", [_binary, _multi])
def test_calibrated_logits_give_t_near_one(make) -> None:
    z, y = make(1)
    assert fit_temperature(z, y) == pytest.approx(1.0, abs=0.08)
    assert fit_temperature(z[:, None] if z.ndim == 1 else z, y) == pytest.approx(fit_temperature(z, y), abs=1e-6)


def test_fit_is_the_minimum_of_the_nll() -> None:
    z, y = _binary(2, 500)
    T = fit_temperature(3 * z, y)
    grid = np.exp(np.linspace(np.log(0.5), np.log(10), 400))
    assert temperature_nll(3 * z, y, T) <= min(temperature_nll(3 * z, y, t) for t in grid) + 1e-9


def test_apply_temperature_matches_sigmoid_and_softmax() -> None:
    np.testing.assert_allclose(apply_temperature([2.0, -1.0], 2.0)[:, 1], 1 / (1 + np.exp([-1.0, 0.5])), atol=1e-15)
    z = np.array([[1.0, 2.0, 3.0]])
    np.testing.assert_allclose(apply_temperature(z, 0.5), softmax(z / 0.5, axis=1), atol=1e-15)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        apply_temperature(z, 0.0)


def test_edge_temperature_warns() -> None:
    with pytest.warns(UserWarning, match="edge of the search range"):
        fit_temperature([-1.0, 1.0, 2.0], [1, 0, 0])  # anti-correlated: the best is 'no information', T -> inf


@pytest.mark.parametrize("n_bins", [5, 10])
def test_reliability_curve_matches_sklearn(n_bins: int) -> None:
    z, y = _binary(3, 1000)
    p = 1 / (1 + np.exp(-1.7 * z))
    curve = reliability_curve(y, p, n_bins)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=n_bins, strategy="uniform")
    nonempty = np.array(curve["counts"]) > 0
    np.testing.assert_allclose(np.array(curve["accuracy"])[nonempty], prob_true, atol=1e-12)
    np.testing.assert_allclose(np.array(curve["confidence"])[nonempty], prob_pred, atol=1e-12)
    assert sum(curve["counts"]) == 1000 and curve["kind"] == "positive"
    expected_ece = np.sum(np.array(curve["counts"])[nonempty] / 1000 * np.abs(prob_true - prob_pred))
    assert curve["ece"] == pytest.approx(expected_ece, abs=1e-12)


def test_reliability_curve_top_label_multiclass() -> None:
    y = np.array([0, 1, 2, 2])
    P = np.array([[0.9, 0.05, 0.05], [0.1, 0.45, 0.45], [0.2, 0.1, 0.7], [0.6, 0.3, 0.1]])
    c = reliability_curve(y, P, n_bins=4)
    # top probabilities 0.9 (right), 0.45 (argmax 1: right), 0.7 (right), 0.6 (wrong)
    assert c["kind"] == "top_label" and c["counts"] == [0, 1, 2, 1]
    assert np.isnan(c["accuracy"][0]) and c["accuracy"][1:] == [1.0, 0.5, 1.0]
    assert c["confidence"][1:] == pytest.approx([0.45, 0.65, 0.9])
    assert c["ece"] == pytest.approx((0.55 + 2 * 0.15 + 0.1) / 4)
