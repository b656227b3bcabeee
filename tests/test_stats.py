"""DeLong test vs the slow structural-components definition; error rates on simulated models; paired bootstrap."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import kstest, norm
from sklearn.metrics import roc_auc_score

from medclass.metrics.stats import delong_test, describe_difference, paired_bootstrap_auc


def _psi(x: float, y: float) -> float:
    return 1.0 if x > y else 0.5 if x == y else 0.0


def _delong_slow(y: np.ndarray, p1: np.ndarray, p2: np.ndarray) -> tuple[np.ndarray, float]:
    """DeLong et al. (1988) written out: structural components by an O(m n) double loop."""
    v10, v01 = [], []
    for p in (p1, p2):
        pos, neg = p[y == 1], p[y == 0]
        v10.append([np.mean([_psi(x, z) for z in neg]) for x in pos])  # V10(X_i) = mean_j psi(X_i, Y_j)
        v01.append([np.mean([_psi(x, z) for x in pos]) for z in neg])  # V01(Y_j) = mean_i psi(X_i, Y_j)
    v10, v01 = np.array(v10), np.array(v01)
    m, n = v10.shape[1], v01.shape[1]
    auc = v10.mean(1)
    s10 = (v10 - auc[:, None]) @ (v10 - auc[:, None]).T / (m - 1)
    s01 = (v01 - auc[:, None]) @ (v01 - auc[:, None]).T / (n - 1)
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    return auc, float(np.sqrt(var))


def _two_models(rng: np.random.Generator, n: int, d1: float, d2: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two correlated models (a shared image effect) with separations d1, d2; p = sigmoid(score)."""
    y = rng.integers(0, 2, n)
    shared = rng.normal(0, 1, n)
    s1 = d1 * y + 0.7 * shared + rng.normal(0, 0.7, n)
    s2 = d2 * y + 0.7 * shared + rng.normal(0, 0.7, n)
    return y, 1 / (1 + np.exp(-s1)), 1 / (1 + np.exp(-s2))


@pytest.mark.parametrize("seed, n, rounding", [(0, 60, None), (1, 120, 1), (2, 45, 2), (3, 200, None)])
def test_delong_matches_slow_definition_and_sklearn(seed: int, n: int, rounding) -> None:
    y, p1, p2 = _two_models(np.random.default_rng(seed), n, 1.0, 0.6)
    if rounding is not None:  # ties within and across classes
        p1, p2 = np.round(p1, rounding), np.round(p2, rounding)
    r = delong_test(y, p1, p2)
    auc, se = _delong_slow(y, p1, p2)
    assert (r["auc1"], r["auc2"]) == pytest.approx((roc_auc_score(y, p1), roc_auc_score(y, p2)), abs=1e-10)
    assert (r["auc1"], r["auc2"]) == pytest.approx(tuple(auc), abs=1e-10)
    assert r["se"] == pytest.approx(se, abs=1e-10)
    z = (auc[0] - auc[1]) / se
    assert r["z"] == pytest.approx(z, abs=1e-9)
    assert r["p_value"] == pytest.approx(2 * norm.sf(abs(z)), abs=1e-10)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((r["diff"] - 1.959963984540054 * se, r["diff"] + 1.959963984540054 * se), abs=1e-10)


def test_delong_type_one_error_and_uniform_p_values() -> None:
    rng = np.random.default_rng(11)
    p_values = np.array([delong_test(*_two_models(rng, 100, 1.0, 1.0))["p_value"] for _ in range(300)])
    assert 0.02 <= np.mean(p_values < 0.05) <= 0.09
    assert kstest(p_values, "uniform").pvalue > 0.01


def test_clearly_different_models_are_detected() -> None:
    rng = np.random.default_rng(5)
    for _ in range(5):
        r = delong_test(*_two_models(rng, 200, 2.5, 0.3))
        assert r["p_value"] < 0.01 and r["ci_low"] > 0


def test_identical_models() -> None:
    y, p1, _ = _two_models(np.random.default_rng(0), 50, 1.0, 1.0)
    r = delong_test(y, p1, p1)
    assert (r["diff"], r["se"], r["p_value"]) == (0.0, 0.0, 1.0)
    b = paired_bootstrap_auc(y, p1, p1, n_boot=100)
    assert (b["diff"], b["ci_low"], b["ci_high"], b["p_value"]) == (0.0, 0.0, 0.0, 1.0)


def test_paired_bootstrap_agrees_with_delong() -> None:
    y, p1, p2 = _two_models(np.random.default_rng(3), 300, 1.2, 0.6)
    d, b = delong_test(y, p1, p2), paired_bootstrap_auc(y, p1, p2, n_boot=2000)
    assert b["diff"] == pytest.approx(d["diff"], abs=1e-12)
    assert (b["ci_high"] - b["ci_low"]) == pytest.approx(d["ci_high"] - d["ci_low"], rel=0.2)
    assert b["p_value"] < 0.05 and d["p_value"] < 0.05 and b["n_valid"] == 2000


def test_paired_bootstrap_over_patients_is_wider() -> None:
    rng = np.random.default_rng(4)
    y_pat = rng.integers(0, 2, 40)
    y = np.repeat(y_pat, 6)
    groups = np.repeat(np.arange(40).astype(str), 6)
    base = np.repeat(rng.normal(0, 1, 40), 6)  # both models share a strong patient effect
    p1 = 1 / (1 + np.exp(-(base + 1.0 * y + np.repeat(rng.normal(0, 1, 40), 6) + rng.normal(0, 0.1, 240))))
    p2 = 1 / (1 + np.exp(-(base + 0.8 * y + np.repeat(rng.normal(0, 1, 40), 6) + rng.normal(0, 0.1, 240))))
    by_patient = paired_bootstrap_auc(y, p1, p2, groups, n_boot=500)
    by_image = paired_bootstrap_auc(y, p1, p2, None, n_boot=500)
    assert by_patient["ci_high"] - by_patient["ci_low"] > 1.5 * (by_image["ci_high"] - by_image["ci_low"])
    assert by_patient["method"] == "paired bootstrap over patients"


def test_describe_difference() -> None:
    r = {"method": "DeLong", "auc1": 0.9, "auc2": 0.8, "diff": 0.1, "ci_low": 0.04, "ci_high": 0.16,
         "p_value": 0.0004, "alpha": 0.05}
    text = describe_difference(r, names=("resnet18", "simple_cnn"))
    assert text.startswith("AUC of resnet18 0.900 vs simple_cnn 0.800: difference +0.100 (95% CI +0.040 to +0.160)")
    assert "p < 0.001 (DeLong); statistically significant at alpha = 0.05." in text
    assert "not statistically significant at alpha = 0.01" in describe_difference({**r, "p_value": 0.03}, alpha=0.01)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="at least 2 positive"):
        delong_test([0, 0, 0, 1], [0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1])
    with pytest.raises(ValueError, match="p2 must hold 4"):
        delong_test([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2])
    with pytest.raises(ValueError, match="only 2 classes"):
        delong_test([0, 2, 1, 1], [0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1])


def test_paired_bootstrap_macro_auc_matches_resampled_rows() -> None:
    """Multi-label: each replicate's difference = macro AUC on the drawn rows (masked labels left out), the same
    replicates as resample_weights draws; the interval and p-value are computed from them as for one AUC."""
    from medclass.metrics.bootstrap import resample_weights
    from medclass.metrics.multilabel import macro_auc
    from medclass.metrics.stats import paired_bootstrap_macro_auc

    rng = np.random.default_rng(4)
    n, k = 60, 3
    y = (rng.random((n, k)) < 0.4).astype(float)
    good = np.clip(0.5 * y + 0.5 * rng.random((n, k)), 0, 1)
    weak = np.clip(0.15 * y + 0.85 * rng.random((n, k)), 0, 1)
    y[rng.random((n, k)) < 0.2] = np.nan
    y[:, 2] = np.where(np.isnan(y[:, 2]), np.nan, 0.0)  # a finding without positives: left out of every mean
    groups = np.array([f"p{i // 2}" for i in range(n)])
    r = paired_bootstrap_macro_auc(y, good, weak, groups=groups, n_boot=150, seed=3)
    assert (r["auc1"], r["auc2"]) == (macro_auc(y, good), macro_auc(y, weak))
    direct = []
    for W in resample_weights(n, groups, 150, seed=3):
        for w in W.astype(np.int64):
            rows = np.repeat(np.arange(n), w)
            direct.append(macro_auc(y[rows], good[rows]) - macro_auc(y[rows], weak[rows]))
    direct = np.array(direct)
    assert np.nanpercentile(direct, 2.5) == pytest.approx(r["ci_low"]) and np.nanpercentile(direct, 97.5) == pytest.approx(r["ci_high"])
    assert r["p_value"] == pytest.approx(min(1.0, 2 * min(np.mean(direct <= 0), np.mean(direct >= 0))))
    assert r["diff"] > 0 and r["p_value"] < 0.05 and r["method"].endswith("over patients")
    same = paired_bootstrap_macro_auc(y, good, good, n_boot=50)
    assert same["diff"] == 0 and same["p_value"] == 1.0
    with pytest.raises(ValueError, match="at least one finding"):
        paired_bootstrap_macro_auc(np.zeros((4, 2)), good[:4, :2], weak[:4, :2])
