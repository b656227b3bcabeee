"""Per-patient aggregation and error listing on small hand-made tables."""
from __future__ import annotations

import numpy as np
import pytest

from medclass.metrics.patients import aggregate_by_patient, natural_key, patient_errors

GROUPS = np.array(["p2", "p1", "p2", "p3", "p1", "p3"])
Y = np.array([0, 1, 1, 0, 0, 0])
P = np.array([0.2, 0.9, 0.6, 0.1, 0.3, 0.4])


@pytest.mark.parametrize(
    "how, expected_p",
    [("mean", [0.6, 0.4, 0.25]), ("max", [0.9, 0.6, 0.4])],  # p1: {0.9, 0.3}, p2: {0.2, 0.6}, p3: {0.1, 0.4}
)
def test_binary_aggregation(how: str, expected_p: list[float]) -> None:
    ids, y, probs = aggregate_by_patient(Y, P, GROUPS, how=how)
    assert ids.tolist() == ["p1", "p2", "p3"]
    assert y.tolist() == [1, 1, 0]  # any positive image makes a positive patient
    np.testing.assert_allclose(probs[:, 1], expected_p, atol=1e-12)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-12)


def test_multiclass_mode_and_max() -> None:
    y = np.array([2, 1, 1, 0, 0, 2])
    groups = np.array(["a", "a", "a", "b", "b", "b"])
    probs = np.array([[0.1, 0.2, 0.7], [0.2, 0.6, 0.2], [0.3, 0.5, 0.2],
                      [0.5, 0.4, 0.1], [0.6, 0.2, 0.2], [0.2, 0.2, 0.6]])
    ids, y_pat, mean = aggregate_by_patient(y, probs, groups)
    assert y_pat.tolist() == [1, 0]  # a: labels 2,1,1 -> 1; b: 0,0,2 -> 0
    np.testing.assert_allclose(mean[0], [0.2, 1.3 / 3, 1.1 / 3], atol=1e-12)
    _, _, mx = aggregate_by_patient(y, probs, groups, how="max")
    np.testing.assert_allclose(mx[1], np.array([0.6, 0.4, 0.6]) / 1.6, atol=1e-12)
    _, tie, _ = aggregate_by_patient([2, 1], [[0, 0, 1], [0, 1, 0]], ["t", "t"])
    assert tie.tolist() == [1]  # tie between classes 1 and 2 goes to the lower index


def test_patient_errors_in_series_order() -> None:
    paths = ["ct/p1/slice10.dcm", "ct/p1/slice2.dcm", "ct/p1/slice1.dcm", "ct/p2/img1.dcm", "ct/p2/img2.dcm", "ct/p3/a.dcm"]
    groups = ["p1", "p1", "p1", "p2", "p2", "p3"]
    y_true = [1, 1, 1, 0, 0, 0]
    y_pred = [0, 1, 0, 1, 0, 0]
    probs = [0.4, 0.8, 0.3, 0.7, 0.2, 0.1]
    errs = patient_errors(paths, groups, y_true, y_pred, probs, class_names=["normal", "bleed"])
    assert [e["patient"] for e in errs] == ["p1", "p2"]  # p3 has no errors; most errors first
    p1 = errs[0]
    assert (p1["n_images"], p1["n_wrong"], p1["wrong_positions"]) == (3, 2, [1, 3])  # slice1, slice2, slice10
    assert [w["path"] for w in p1["wrong"]] == ["ct/p1/slice1.dcm", "ct/p1/slice10.dcm"]
    assert p1["wrong"][0] == {"path": "ct/p1/slice1.dcm", "position": 1, "true": "bleed", "pred": "normal",
                              "p_pred": pytest.approx(0.7), "p_true": pytest.approx(0.3)}
    assert errs[1]["wrong"][0]["pred"] == "bleed" and errs[1]["wrong_positions"] == [1]


def test_patient_errors_with_explicit_order() -> None:
    paths = ["x/a.dcm", "x/b.dcm", "x/c.dcm"]
    errs = patient_errors(paths, ["x"] * 3, [1, 1, 1], [0, 1, 0], [0.2, 0.9, 0.4], order=[30, 10, 20])
    assert errs[0]["wrong_positions"] == [2, 3] and [w["path"] for w in errs[0]["wrong"]] == ["x/c.dcm", "x/a.dcm"]


def test_natural_key() -> None:
    assert sorted(["IM-0010.dcm", "IM-0002.dcm", "im-0001.dcm"], key=natural_key) == ["im-0001.dcm", "IM-0002.dcm", "IM-0010.dcm"]


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="one patient id per image"):
        aggregate_by_patient(Y, P, GROUPS[:3])
    with pytest.raises(ValueError, match="Did you mean 'mean'"):
        aggregate_by_patient(Y, P, GROUPS, how="meen")
    with pytest.raises(ValueError, match="same length"):
        patient_errors(["a"], ["a", "b"], [0, 1], [0, 1], [0.1, 0.9])
    with pytest.raises(ValueError, match="one sort value per image"):
        patient_errors(["a", "b"], ["a", "b"], [0, 1], [0, 1], [0.1, 0.9], order=[1])
