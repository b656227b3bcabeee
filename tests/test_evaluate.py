"""evaluate(): held-out selection, checked leak statement, predictions, metrics against scikit-learn, external data."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.metrics import accuracy_score, confusion_matrix, roc_auc_score

from _run_fixture import IMAGES_PER_PATIENT, SPLIT_PATIENTS, make_run, pattern, write_image
from medclass.data.io import read_image
from medclass.data.transforms import build_transform
from medclass.errors import DatasetError
from medclass.evaluation._examples import per_image_loss, pick_cells, pick_gallery
from medclass.evaluation.evaluate import evaluate
from medclass.artifacts.checkpoint import load_checkpoint

N_TEST = SPLIT_PATIENTS["test"] * IMAGES_PER_PATIENT
N_REF = (SPLIT_PATIENTS["train"] + SPLIT_PATIENTS["val"]) * IMAGES_PER_PATIENT


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    run = make_run(root)
    return run, evaluate(run, n_boot=200, cam_samples=1, num_workers=0, report=False)


def test_files_and_strict_json(evaluated):
    run, result = evaluated
    assert result.out_dir == run
    for name in ("metrics", "predictions", "patients"):
        assert result.files[name].is_file()
    text = result.files["metrics"].read_text()
    assert "NaN" not in text and "Infinity" not in text
    m = json.loads(text)
    assert m["classes"] == ["NORMAL", "PNEUMONIA"] and m["threshold"] == 0.4 and m["temperature"] == 2.0
    assert m["metrics"]["n"] == N_TEST and m["data"]["n_patients"] == SPLIT_PATIENTS["test"]
    assert m["training"]["history"]["val_auc"] == [0.55, 0.6] and m["baseline"]["val_auc"] == 0.5


def test_evaluates_only_the_test_split(evaluated):
    run, result = evaluated
    split = pd.read_csv(run / "split.csv")
    pred = pd.read_csv(result.files["predictions"])
    assert sorted(pred["path"]) == sorted(split.loc[split["split"] == "test", "path"])


def test_predictions_use_checkpoint_preprocessing_and_temperature(evaluated):
    run, result = evaluated
    pred = pd.read_csv(result.files["predictions"])
    model, meta = load_checkpoint(run / "best.safetensors")
    pre = meta.preprocessing
    tf = build_transform("none", pre.image_size, pre.in_chans, pre.mean, pre.std, train=False)
    x = torch.stack([tf(read_image(p)) for p in pred["path"][:4]])
    with torch.no_grad():
        p = torch.sigmoid(model(x)[:, 0] / 2.0).numpy()
    np.testing.assert_allclose(pred["prob_PNEUMONIA"][:4], p, rtol=1e-5, atol=1e-6)


def test_metrics_match_sklearn_at_stored_threshold(evaluated):
    _, result = evaluated
    pred = pd.read_csv(result.files["predictions"])
    m = result.metrics
    y = (pred["label"] == "PNEUMONIA").astype(int)
    decided = (pred["prob_PNEUMONIA"] >= 0.4).astype(int)
    assert (pred["predicted"] == np.where(decided, "PNEUMONIA", "NORMAL")).all()
    assert m["metrics"]["roc_auc"] == pytest.approx(roc_auc_score(y, pred["prob_PNEUMONIA"]))
    assert m["metrics"]["accuracy"] == pytest.approx(accuracy_score(y, decided))
    assert m["metrics"]["confusion_matrix"] == confusion_matrix(y, decided, labels=[0, 1]).tolist()
    tn, fp, fn, tp = confusion_matrix(y, decided, labels=[0, 1]).ravel()
    op = m["operating_point"]
    if tp + fn:
        assert op["sensitivity"] == pytest.approx(tp / (tp + fn)) and op["tpr"] == op["sensitivity"]
    if tn + fp:
        assert op["specificity"] == pytest.approx(tn / (tn + fp))
    ci = m["ci"]["roc_auc"]
    assert ci["low"] <= ci["value"] <= ci["high"] and ci["value"] == m["metrics"]["roc_auc"]
    loss = -np.log(np.where(y == 1, pred["prob_PNEUMONIA"], pred["prob_NORMAL"]))
    np.testing.assert_allclose(pred["loss"], loss, rtol=1e-5)
    assert m["log_loss"] == pytest.approx(loss.mean(), rel=1e-5)
    assert m["top_losses"][0]["loss"] == pytest.approx(loss.max(), rel=1e-5)


def test_patient_results(evaluated):
    _, result = evaluated
    pred = pd.read_csv(result.files["predictions"])
    p = result.metrics["patients"]
    assert p["n_patients"] == SPLIT_PATIENTS["test"]
    wrong = pred[~pred["correct"]]
    assert sum(e["n_wrong"] for e in p["errors"]) == len(wrong)
    assert {e["patient"] for e in p["errors"]} == set(wrong["patient"])
    table = pd.read_csv(result.files["patients"])
    mean = pred.groupby("patient")["prob_PNEUMONIA"].mean()
    np.testing.assert_allclose(table.set_index("patient")["mean_prob_PNEUMONIA"].loc[mean.index], mean, rtol=1e-6)
    # patient-level CIs: the point is the patient-level metric, the interval resamples patients
    from sklearn.metrics import roc_auc_score

    y_pat = (table["label"] == "PNEUMONIA").to_numpy()
    for how in ("mean", "max"):
        ci = p["ci"][how]["roc_auc"]
        assert ci["value"] == pytest.approx(roc_auc_score(y_pat, table[f"{how}_prob_PNEUMONIA"]))
        assert ci["value"] == pytest.approx(p[how]["roc_auc"])
        assert ci["low"] <= ci["value"] <= ci["high"] and ci["high"] > ci["low"]


def test_leak_check_clean_statement(evaluated):
    _, result = evaluated
    lc = result.metrics["leak_check"]
    assert lc["checked"] and lc["clean"] and not result.metrics["contaminated"]
    assert lc["statement"].startswith(
        f"No evaluated image or patient was used in training or validation: checked {N_TEST} images / "
        f"{SPLIT_PATIENTS['test']} patients against the {N_REF} training or validation images")
    assert lc["counts"] == {"same_path": 0, "same_file_hash": 0, "near_duplicates": 0, "same_patient": 0}


def test_examples_and_cams(evaluated):
    _, result = evaluated
    ex = result.examples
    assert len(ex["top_losses"]) == min(12, N_TEST)
    assert [e.loss for e in ex["top_losses"]] == sorted((e.loss for e in ex["top_losses"]), reverse=True)
    assert ex["cam"] and all(e.overlay.dtype == np.uint8 and e.overlay.shape == (32, 32, 3) for e in ex["cam"])
    assert all(e.cam_class == e.predicted for e in ex["cam"])


def test_leaks_are_found_and_flagged(tmp_path):
    run = make_run(tmp_path, seed=1)
    split = pd.read_csv(run / "split.csv", keep_default_na=False)
    train = split[split["split"] == "train"]
    test_rows = split.index[split["split"] == "test"]
    split.loc[test_rows[0], ["path", "patient"]] = [train["path"].iloc[0], "ptest-new"]  # same path (and hash)
    split.loc[test_rows[2], "patient"] = train["patient"].iloc[3]  # a training patient
    copy = tmp_path / "images" / "copy_of_train.png"
    shutil.copy(train["path"].iloc[5], copy)
    split.loc[test_rows[4], ["path", "patient"]] = [str(copy), "pcopy"]  # same bytes, other path and patient
    near = np.asarray(Image.open(train["path"].iloc[7]), np.int16) + 3  # brightened: new hash, same look
    split.loc[test_rows[6], ["path", "patient"]] = [write_image(tmp_path / "images" / "near.png",
                                                                np.clip(near, 0, 255).astype(np.uint8)), "pnear"]
    split.to_csv(run / "split.csv", index=False)
    m = evaluate(run, n_boot=0, cam_samples=0, num_workers=0, report=False).metrics
    lc = m["leak_check"]
    assert m["contaminated"] and lc["clean"] is False and lc["statement"].startswith("The evaluated data overlaps")
    assert lc["counts"] == {"same_path": 1, "same_file_hash": 2, "near_duplicates": 1, "same_patient": 1}
    assert lc["same_path"] == [train["path"].iloc[0]]
    assert lc["same_patient"][0]["patient"] == train["patient"].iloc[3]
    assert lc["near_duplicates"][0]["evaluated"] == [str(tmp_path / "images" / "near.png")]


def test_external_data_and_bare_checkpoint(tmp_path):
    run = make_run(tmp_path, seed=2)
    ext = tmp_path / "external"
    rng = np.random.default_rng(7)
    for i in range(6):
        label = i % 2
        write_image(ext / ("NORMAL", "PNEUMONIA")[label] / f"pat{100 + i}_img0.png", pattern(rng, label))
    train_img = pd.read_csv(run / "split.csv").query("split == 'train'")["path"].iloc[0]
    shutil.copy(train_img, ext / Path(train_img).parent.name / "pat200_img0.png")
    result = evaluate(run, data=str(ext), n_boot=50, cam_samples=0, num_workers=0, report=False)
    assert result.out_dir == run / "evaluation-external-test"
    assert result.metrics["metrics"]["n"] == 7 and result.metrics["data"]["source"] == "external"
    assert result.metrics["leak_check"]["counts"]["same_file_hash"] == 1 and result.metrics["contaminated"]

    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run / "best.safetensors", bare / "model.safetensors")
    with pytest.raises(FileNotFoundError, match="--data"):
        evaluate(bare / "model.safetensors", report=False)
    res = evaluate(bare / "model.safetensors", data=str(ext), n_boot=0, cam_samples=0, num_workers=0, report=False)
    assert res.metrics["leak_check"]["checked"] is False and "NOT CHECKED" in res.metrics["leak_check"]["statement"]

    (ext / "OTHER").mkdir()
    write_image(ext / "OTHER" / "pat300_img0.png", pattern(rng, 0))
    with pytest.raises(DatasetError, match=r"'OTHER' \(1 image\(s\)\) do not map onto the model's classes"):
        evaluate(run, data=str(ext), report=False)


def test_unknown_split_is_explained(tmp_path):
    run = make_run(tmp_path, seed=3)
    with pytest.raises(DatasetError, match="no rows in split 'holdout'"):
        evaluate(run, split="holdout", report=False)


def test_selection_helpers():
    P = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    np.testing.assert_allclose(per_image_loss(P, np.array([0, 0, 1])), -np.log([0.9, 0.2, 0.4]))
    correct = np.array([True] * 10 + [False] * 3)
    picked = pick_gallery(correct, 8, seed=1)
    assert len(picked) == 8 and len(set(picked)) == 8 and (~correct[picked]).sum() == 3
    assert sorted(pick_gallery(correct, 8, seed=1)) == sorted(picked)
    cells = pick_cells(np.array([0, 0, 1, 1, 1]), np.array([True, False, True, True, False]), 2, per_cell=1)
    assert [(c, ok, len(r)) for c, ok, r in cells] == [(0, True, 1), (0, False, 1), (1, True, 1), (1, False, 1)]


@pytest.mark.slow
def test_train_then_evaluate_real_chest_xrays(tmp_path):
    """A short run on real chest X-rays (the sample shipped in the package), evaluated with its report."""
    from medclass.config import RunConfig
    from medclass.training.runner import train

    cfg = RunConfig.from_dict({
        "workspace": str(tmp_path / "ws"), "project": "p", "experiment": "e",
        "data": {"path": "chest_xray_sample", "preset": "kermany_chest_xray", "limit_per_class": 80},
        "model": {"name": "simple_cnn", "in_chans": 1, "image_size": 32},
        "train": {"epochs": 1, "batch_size": 32, "num_workers": 0, "accelerator": "cpu", "early_stopping": 0}})
    run = train(cfg, progress=False).run_dir
    result = evaluate(run, n_boot=200, cam_samples=1, num_workers=0)
    m = result.metrics
    split = pd.read_csv(run / "split.csv", keep_default_na=False)
    test = split[split["split"] == "test"]
    assert m["metrics"]["n"] == len(test) > 0 and m["leak_check"]["clean"]
    assert m["leak_check"]["reference_images"] == int((split["split"] != "test").sum())
    assert m["threshold"] == json.loads((run / "threshold.json").read_text()).get("threshold", 0.5)
    assert (run / "report.html").stat().st_size > 50_000


def test_leak_statement_without_patient_ids():
    """Data sets without patient ids (head_ct) are described as such, not as '0 patients'."""
    from medclass.evaluation._leakcheck import _statement

    clean = {"same_path": 0, "same_file_hash": 0, "near_duplicates": 0, "same_patient": 0}
    text = _statement(clean, 40, 0, 160, 0, "training", "path")
    assert text == ("No evaluated image or patient was used in training: checked 40 images (no patient ids) "
                    "against the 160 training images (no patient ids) by path.")
    assert "checked 40 images / 12 patients against the 160 training images (50 patients)" in \
        _statement(clean, 40, 12, 160, 50, "training", "path")
    assert _statement({**clean, "same_patient": 2}, 40, 12, 160, 50, "training", "path").startswith(
        "The evaluated data overlaps the training data (2 same patient)")
