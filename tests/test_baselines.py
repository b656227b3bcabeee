"""Metadata baselines (issue 25): the baseline AUC against scikit-learn by hand, the paired patient bootstrap, the
warning when a metadata column carries the label (and its absence when none does), multi-label per finding, and
``medclass evaluate RUN --baselines ...`` as typed (table, warning, metrics.json, report, model card, errors)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from _run_fixture import make_run
from medclass.metrics.baselines import column_kinds, fit_predict, metadata_baselines
from medclass.metrics.bootstrap import bootstrap_metrics


def _table(n: int, seed: int, leak: float | None) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Rows of 2 images per patient: label, an image-model probability (AUC about 0.8), metadata; ``leak``: the
    share of rows whose ``marker`` equals the label (None: a marker independent of the label)."""
    rng = np.random.default_rng(seed)
    patients = np.repeat(np.arange(n // 2), 2).astype(str)
    y = np.repeat(rng.integers(0, 2, n // 2), 2)
    p = 1 / (1 + np.exp(-(1.6 * (y - 0.5) + rng.normal(0, 1, n))))
    marker = rng.integers(0, 2, n) if leak is None else np.where(rng.uniform(size=n) < leak, y, 1 - y)
    age = rng.normal(50, 15, n).round(0).astype(object)
    age[rng.uniform(size=n) < 0.1] = ""  # blanks, as split.csv holds them
    frame = pd.DataFrame({"marker": np.where(marker == 1, "AP", "PA"), "age": age, "patient": patients})
    return frame, y, np.stack([1 - p, p], axis=1), patients


def test_baseline_auc_equals_scikit_learn_by_hand():
    train, y_train, _, _ = _table(200, 1, leak=0.7)
    test, y_test, p_image, groups = _table(120, 2, leak=0.7)
    train.loc[train.index[:7], "marker"] = ""  # missing categories too
    out = metadata_baselines(train, y_train, test, y_test, p_image, groups, ["age", "marker"], ["neg", "pos"], n_boot=0)
    assert out.kinds == {"age": "numeric", "marker": "categorical"}

    def features(frame: pd.DataFrame) -> np.ndarray:  # the documented recipe, written out with numpy and pandas
        age = pd.to_numeric(frame["age"].replace("", np.nan))
        seen = pd.to_numeric(train["age"].replace("", np.nan))
        numeric = np.stack([age.fillna(seen.median()), age.isna()], axis=1).astype(float)
        ref = np.stack([seen.fillna(seen.median()), seen.isna()], axis=1).astype(float)
        numeric = (numeric - ref.mean(0)) / ref.std(0)
        marker = frame["marker"].replace("", np.nan)
        filled = marker.fillna(train["marker"].replace("", np.nan).mode()[0])
        one_hot = [(filled == v).to_numpy(float) for v in sorted(train["marker"].replace("", np.nan).dropna().unique())]
        return np.column_stack([numeric, *one_hot, ~marker.isna(), marker.isna()])

    by_hand = LogisticRegression(max_iter=1000).fit(features(train), y_train).predict_proba(features(test))[:, 1]
    assert fit_predict(train, y_train, test, out.kinds, 2)[:, 1] == pytest.approx(by_hand, abs=1e-4)
    c = out.comparisons[0]
    assert c.baseline_auc["value"] == pytest.approx(roc_auc_score(y_test, by_hand), abs=1e-9)
    assert c.image_auc["value"] == pytest.approx(roc_auc_score(y_test, p_image[:, 1]), abs=1e-12)
    assert c.difference["value"] == pytest.approx(c.image_auc["value"] - c.baseline_auc["value"])
    assert (c.n_train, c.n_test, c.test_patients) == (200, 120, 60)


def test_cis_come_from_the_same_patient_resamples():
    train, y_train, _, _ = _table(200, 3, leak=0.7)
    test, y_test, p_image, groups = _table(160, 4, leak=0.7)
    out = metadata_baselines(train, y_train, test, y_test, p_image, groups, ["marker"], ["neg", "pos"], n_boot=300, seed=5)
    c = out.comparisons[0]
    direct = bootstrap_metrics(y_test, p_image, groups, ["roc_auc"], n_boot=300, seed=5)["roc_auc"]
    assert (c.image_auc["low"], c.image_auc["high"]) == pytest.approx((direct["low"], direct["high"]))
    assert c.difference["low"] < c.difference["value"] < c.difference["high"]
    assert "resampling patients" in out.ci_method


def test_a_column_that_carries_the_label_is_caught():
    train, y_train, _, _ = _table(300, 5, leak=0.97)
    test, y_test, p_image, groups = _table(200, 6, leak=0.97)
    out = metadata_baselines(train, y_train, test, y_test, p_image, groups, ["marker"], ["normal", "pneumonia"])
    c = out.comparisons[0]
    assert c.baseline_auc["value"] > 0.9 > c.image_auc["value"]
    assert c.verdict == "worse" and c.difference["high"] < 0
    assert out.warnings == [c.message] and "WORSE than a baseline that sees only marker" in c.message
    assert out.to_dict()["comparisons"][0]["warning"] is True


def test_a_column_without_the_label_raises_no_warning():
    train, y_train, _, _ = _table(300, 7, leak=None)
    test, y_test, p_image, groups = _table(200, 8, leak=None)
    out = metadata_baselines(train, y_train, test, y_test, p_image, groups, ["marker", "age"], ["normal", "pneumonia"])
    c = out.comparisons[0]
    assert abs(c.baseline_auc["value"] - 0.5) < 0.1 and c.verdict == "beats" and c.difference["low"] > 0
    assert out.warnings == [] and "beats a baseline that sees only marker + age" in c.message


def test_multi_label_has_one_baseline_per_finding_on_its_known_rows():
    train, y0, _, _ = _table(300, 9, leak=0.97)
    test, t0, p0, groups = _table(200, 10, leak=0.97)
    rng = np.random.default_rng(11)
    y1, t1 = rng.integers(0, 2, 300).astype(float), np.repeat(rng.integers(0, 2, 100), 2).astype(float)
    y1[:40] = np.nan  # masked training labels take no part
    p1 = np.clip(0.3 * t1 + 0.7 * rng.uniform(size=200), 0, 1)
    out = metadata_baselines(train, np.stack([y0, y1], 1), test, np.stack([t0, t1], 1), np.stack([p0[:, 1], p1], 1),
                             groups, ["marker"], ["effusion", "mass"], multi_label=True, n_boot=200)
    by = {c.target: c for c in out.comparisons}
    assert by["effusion"].warned and by["effusion"].baseline_auc["value"] > 0.9
    assert not by["mass"].warned and by["mass"].n_train == 260
    assert by["mass"].image_auc["value"] == pytest.approx(roc_auc_score(t1, p1))


def test_column_kinds_and_a_training_split_with_one_class():
    kinds = column_kinds(pd.DataFrame({"a": ["1", "2.5", ""], "b": ["x", "1", ""], "c": ["", "", ""]}), ["a", "b", "c"])
    assert kinds == {"a": "numeric", "b": "categorical", "c": "categorical"}
    frame = pd.DataFrame({"marker": ["AP", "PA"] * 5})
    out = metadata_baselines(frame, np.zeros(10), frame, np.tile([0, 1], 5), np.full((10, 2), 0.5), None, ["marker"],
                             ["a", "b"], n_boot=0)
    assert out.comparisons == [] and "only class [0]" in out.skipped["b"]


def _run_with_metadata(tmp_path):
    """The tiny evaluation run with metadata in split.csv: ``view`` carries the label, ``age`` does not (one blank)."""
    run = make_run(tmp_path, seed=2)
    split = pd.read_csv(run / "split.csv", dtype=str, keep_default_na=False)
    split["view"] = np.where(split["label"] == "PNEUMONIA", "AP", "PA")
    split["age"] = [str(20 + 3 * i) for i in range(len(split))]
    split.loc[0, "age"] = ""
    split.to_csv(run / "split.csv", index=False)
    return run


def _cli(*args: str):
    from typer.testing import CliRunner

    from medclass.cli import _register_all, app

    _register_all()
    return CliRunner().invoke(app, ["evaluate", *args, "--n-boot", "50", "--cam-samples", "0", "--num-workers", "0"])


def test_cli_evaluate_with_baselines(tmp_path):
    run = _run_with_metadata(tmp_path)
    out = _cli(str(run), "--baselines", "view,age")
    assert out.exit_code == 0, out.output
    assert "Shortcuts: metadata baseline on view, age" in out.output
    assert "Shortcut warning" in out.output and "sees only view + age" in out.output
    m = json.loads((run / "metrics.json").read_text())
    b = m["baselines"]
    status = m["sections"]["baselines"]
    assert {k: status[k] for k in ("title", "applied")} == {"title": "Shortcuts: metadata baselines", "applied": True}
    assert status["seconds"] >= 0
    assert b["kinds"] == {"view": "categorical", "age": "numeric"} and b["comparisons"][0]["target"] == "PNEUMONIA"
    assert b["comparisons"][0]["baseline_auc"]["value"] == 1.0 and b["warnings"]
    assert "20 images of 10 patients" in b["fitted_on"]
    assert 'id="metadata-baselines"' in (run / "report.html").read_text()
    assert "Metadata baseline (view, age)" in (run / "model_card.md").read_text()


def test_cli_unknown_column_is_one_line_naming_the_columns(tmp_path):
    run = _run_with_metadata(tmp_path)
    out = _cli(str(run), "--baselines", "veiw")
    assert out.exit_code == 2
    line = " ".join(out.output.split())
    assert "no column 'veiw'" in line and "['view', 'age']" in line and "did you mean 'view'" in line.lower()


def test_external_data_is_scored_by_the_baseline_of_the_training_rows(tmp_path):
    from _run_fixture import pattern, write_image
    from medclass.evaluation.evaluate import evaluate

    run = _run_with_metadata(tmp_path)
    m = evaluate(run, n_boot=0, cam_samples=0, num_workers=0, report=False).metrics
    assert "not requested (--baselines COLUMNS" in m["sections"]["baselines"]["reason"]
    rng = np.random.default_rng(0)
    rows = [{"image": write_image(tmp_path / "ext" / f"{i:04d}.png", pattern(rng, i % 2)), "label": ["NORMAL", "PNEUMONIA"][i % 2],
             "patient_id": f"e{i}", "view": ["PA", "AP"][i % 2]} for i in range(12)]
    csv = tmp_path / "ext" / "labels.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    flags = {"path_column": "image", "patient_column": "patient_id"}
    m = evaluate(run, data=str(csv), n_boot=0, cam_samples=0, num_workers=0, report=False, data_settings=flags,
                 baselines="view").metrics
    b = m["baselines"]
    assert b["fitted_on"].endswith("20 images of 10 patients; scored on the external data")
    assert b["comparisons"][0]["n_test"] == 12 and b["comparisons"][0]["baseline_auc"]["value"] == 1.0
    m = evaluate(run, data=str(csv), n_boot=0, cam_samples=0, num_workers=0, report=False, data_settings=flags,
                 baselines="view,age").metrics
    assert m["sections"]["baselines"]["reason"] == ("column(s) ['age'] missing from the evaluated data, whose metadata "
                                                    "columns are ['view']")
