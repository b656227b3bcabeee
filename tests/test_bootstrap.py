"""Bootstrap CIs: patient resampling, coverage of a known truth, skipped undefined replicates."""
from __future__ import annotations

import time

import numpy as np
import pytest
from scipy.stats import norm

from medclass.metrics import metrics as M
from medclass.metrics.bootstrap import bootstrap_ci, bootstrap_metrics, resample_weights


def _binormal(rng: np.random.Generator, n_per_class: int, d: float) -> tuple[np.ndarray, np.ndarray]:
    """Scores N(-d/2, 1) for negatives and N(d/2, 1) for positives; p = sigmoid(score).

    True AUC = Phi(d / sqrt 2); true accuracy at p >= 0.5 (score >= 0) = Phi(d / 2).
    """
    y = np.repeat([0, 1], n_per_class)
    score = rng.normal(0, 1, 2 * n_per_class) + d * (y - 0.5)
    return y, 1 / (1 + np.exp(-score))


def _clustered(rng: np.random.Generator, n_patients: int, per_patient: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Patients with one label each and a strong patient effect shared by all their images."""
    y_pat = rng.integers(0, 2, n_patients)
    effect = rng.normal(0, 1.5, n_patients)
    groups = np.repeat([f"p{i:03d}" for i in range(n_patients)], per_patient)
    y = np.repeat(y_pat, per_patient)
    score = np.repeat(effect + 1.0 * y_pat, per_patient) + rng.normal(0, 0.3, len(y))
    return y, 1 / (1 + np.exp(-score)), groups


def test_resample_weights_draw_whole_patients() -> None:
    groups = np.array(["a", "a", "a", "b", "c", "c"])
    W = np.concatenate(list(resample_weights(6, groups, n_boot=500, seed=3, chunk=64)))
    assert W.shape == (500, 6)
    assert (W[:, 0] == W[:, 1]).all() and (W[:, 0] == W[:, 2]).all() and (W[:, 4] == W[:, 5]).all()
    assert (W[:, [0, 3, 4]].sum(1) == 3).all()  # 3 patients drawn per replicate
    assert W[:, 3].mean() == pytest.approx(1.0, abs=0.15)  # each patient drawn once on average
    again = np.concatenate(list(resample_weights(6, groups, n_boot=500, seed=3, chunk=64)))
    assert np.array_equal(W, again)
    images = next(resample_weights(6, None, n_boot=100, seed=0))
    assert (images.sum(1) == 6).all() and not (images[:, 0] == images[:, 1]).all()


@pytest.mark.parametrize("groups", [None, "patients"])
def test_vectorised_bootstrap_equals_generic_loop(groups) -> None:
    y, p, g = _clustered(np.random.default_rng(0), 30, 3)
    g = g if groups else None
    fast = bootstrap_metrics(y, p, g, ["roc_auc", "accuracy", "brier"], n_boot=150, seed=5)
    for name, fn in (("roc_auc", M.roc_auc), ("brier", M.brier_score)):
        assert tuple(bootstrap_ci(fn, y, p, g, n_boot=150, seed=5)) == pytest.approx(
            (fast[name]["value"], fast[name]["low"], fast[name]["high"]), abs=1e-12)
    acc = bootstrap_ci(lambda yy, pp: M.accuracy(yy, pp >= 0.5), y, p, g, n_boot=150, seed=5)
    assert tuple(acc) == pytest.approx((fast["accuracy"]["value"], fast["accuracy"]["low"], fast["accuracy"]["high"]))
    assert fast["roc_auc"]["low"] < fast["roc_auc"]["value"] < fast["roc_auc"]["high"]


def test_coverage_of_known_auc_and_accuracy() -> None:
    """Over 200 simulated data sets the 95% CIs cover the true AUC and accuracy about 95% of the time."""
    d = 1.2
    truth = {"roc_auc": norm.cdf(d / np.sqrt(2)), "accuracy": norm.cdf(d / 2)}
    rng = np.random.default_rng(2024)
    covered = {name: 0 for name in truth}
    widths = []
    n_sets = 200
    for i in range(n_sets):
        y, p = _binormal(rng, 100, d)
        ci = bootstrap_metrics(y, p, None, list(truth), n_boot=300, seed=i)
        for name, value in truth.items():
            covered[name] += ci[name]["low"] <= value <= ci[name]["high"]
        widths.append(ci["roc_auc"]["high"] - ci["roc_auc"]["low"])
    for name in truth:
        assert 0.90 <= covered[name] / n_sets <= 0.99, (name, covered[name])
    # theoretical SE of the AUC at this size is ~0.033, so the 95% width is ~0.13
    assert 0.10 < np.mean(widths) < 0.16


def test_patient_resampling_is_wider_when_images_are_correlated() -> None:
    y, p, g = _clustered(np.random.default_rng(1), 60, 8)
    by_patient = bootstrap_metrics(y, p, g, ["roc_auc", "accuracy"], n_boot=500)
    by_image = bootstrap_metrics(y, p, None, ["roc_auc", "accuracy"], n_boot=500)
    for name in ("roc_auc", "accuracy"):
        wide = by_patient[name]["high"] - by_patient[name]["low"]
        narrow = by_image[name]["high"] - by_image[name]["low"]
        assert wide > 1.8 * narrow, (name, wide, narrow)  # ~ sqrt(8) with 8 near-identical images per patient


def test_one_class_replicates_are_skipped_and_counted() -> None:
    y = np.array([0, 0, 0, 0, 0, 1])  # a single positive patient: ~1/3 of replicates have no positive
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.9])
    with pytest.warns(M.UndefinedMetricWarning, match="replicates are undefined"):
        ci = bootstrap_metrics(y, p, None, ["roc_auc", "accuracy"], n_boot=300)
    expected_valid = 300 * (1 - (5 / 6) ** 6)
    assert ci["roc_auc"]["n_valid"] == pytest.approx(expected_valid, rel=0.15)
    assert ci["accuracy"]["n_valid"] == 300
    assert ci["roc_auc"]["value"] == 1.0 and ci["roc_auc"]["high"] == 1.0


def test_thousand_resamples_of_five_metrics(capsys) -> None:
    """Correct on 1,000 patient resamples; the time is printed, not asserted (no test depends on machine speed)."""
    rng = np.random.default_rng(0)
    y, p = _binormal(rng, 500, 1.0)
    groups = np.repeat(np.arange(250).astype(str), 4)
    start = time.perf_counter()
    ci = bootstrap_metrics(y, p, groups, ["roc_auc", "pr_auc", "accuracy", "sensitivity", "specificity"], n_boot=1000)
    with capsys.disabled():
        print(f"\nbootstrap: 1000 resamples x 5 metrics of 500 images in {time.perf_counter() - start:.2f} s")
    assert all(c["n_valid"] == 1000 and c["low"] <= c["value"] <= c["high"] for c in ci.values())


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="one patient id per image"):
        bootstrap_metrics([0, 1, 1], [0.2, 0.8, 0.6], ["a", "b"], ["accuracy"])
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_ci(M.roc_auc, [0, 1], [0.2, 0.8], alpha=5)
    with pytest.raises(ValueError, match="Did you mean 'roc_auc'"):
        bootstrap_metrics([0, 1], [0.2, 0.8], None, ["roc_acu"])
