"""Multi-label classification (issue 14): data forms, the uncertain policy, splits, metrics, training and serving."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medclass.config import DataConfig
from medclass.data.multilabel import apply_uncertain, resolve_task
from medclass.data.sources import from_npz, load_source
from medclass.data.splits import patient_groups, split_patients
from medclass.errors import DatasetError
from _helpers import FINDINGS, multilabel_config, write_multilabel_csv


@pytest.fixture(scope="module")
def ml_csv(tmp_path_factory) -> Path:
    return write_multilabel_csv(tmp_path_factory.mktemp("ml"))


def test_task_rule():
    assert resolve_task(DataConfig()) == "single_label"
    assert resolve_task(DataConfig(labels_from="finding_labels")) == "multi_label"
    assert resolve_task(DataConfig(label_columns=["a", "b"])) == "multi_label"
    with pytest.raises(DatasetError, match="labels_from"):
        resolve_task(DataConfig(task="multi_label"))


def test_pipe_list_form(ml_csv):
    table = load_source(DataConfig(path=str(ml_csv), patient_column="patient", labels_from="finding_labels"))
    assert table.multi_label and table.classes == list(FINDINGS)
    df = pd.read_csv(ml_csv, keep_default_na=False)
    expected = np.array([[f in s.split("|") for f in FINDINGS] for s in df["finding_labels"]], dtype=np.float32)
    np.testing.assert_array_equal(table.targets, expected)
    assert table.frame.loc[df["finding_labels"] == "No Finding", "label"].eq("none").all()
    renamed = load_source(DataConfig(path=str(ml_csv), labels_from="finding_labels", label_map={"Mass": "x"}))
    assert renamed.classes == ["Effusion", "x", "Nodule"]  # label_map renames findings (tests/test_filters.py)
    np.testing.assert_array_equal(renamed.targets, expected)


@pytest.mark.parametrize("policy, expected", [("ignore", np.nan), ("ones", 1.0), ("zeros", 0.0)])
def test_column_form_and_uncertain_policy(ml_csv, policy, expected):
    table = load_source(DataConfig(path=str(ml_csv), patient_column="patient", label_columns=list(FINDINGS),
                                   uncertain=policy))
    y = table.targets
    assert y.shape == (48, 3)
    for row in (1, 3):  # -1 (uncertain) and blank (missing)
        assert (np.isnan(y[row, 2]) if np.isnan(expected) else y[row, 2] == expected)
    assert not np.isnan(np.delete(y, [1, 3], axis=0)).any()


def test_column_form_refuses_bad_cells(tmp_path, ml_csv):
    df = pd.read_csv(ml_csv, dtype=str, keep_default_na=False)
    df.loc[0, "Mass"] = "maybe"
    df.to_csv(tmp_path / "bad.csv", index=False)
    (tmp_path / "images").symlink_to(ml_csv.parent / "images")
    with pytest.raises(DatasetError, match="'Mass' holds 'maybe'"):
        load_source(DataConfig(path=str(tmp_path / "bad.csv"), label_columns=list(FINDINGS)))


def test_uncertain_policy_values():
    m = np.array([[1.0, -1.0, 0.0, np.nan]])
    assert np.isnan(apply_uncertain(m, "ignore")[0, [1, 3]]).all()
    assert apply_uncertain(m, "zeros").tolist() == [[1.0, 0.0, 0.0, 0.0]]


def test_npz_multilabel(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {f"{s}_images": rng.integers(0, 255, (n, 28, 28), dtype=np.uint8) for s, n in (("train", 6), ("val", 2), ("test", 2))}
    arrays.update({f"{s}_labels": rng.integers(0, 2, (n, 14)) for s, n in (("train", 6), ("val", 2), ("test", 2))})
    np.savez(tmp_path / "chestmnist.npz", **arrays)
    table = from_npz(tmp_path / "chestmnist.npz")
    assert table.multi_label and len(table.classes) == 14
    np.testing.assert_array_equal(table.targets[:6], arrays["train_labels"])
    with pytest.raises(DatasetError, match=r"\(n, K\)"):
        from_npz(tmp_path / "chestmnist.npz", task="single_label")


def test_split_keeps_patients_and_spreads_findings(ml_csv):
    table = load_source(DataConfig(path=str(ml_csv), patient_column="patient", labels_from="finding_labels"))
    out = split_patients(table, 0.25, 0.25, seed=3)
    assert out.multi_label
    assert (out.frame.groupby(patient_groups(out.frame).to_numpy())["split"].nunique() == 1).all()
    y = out.targets
    for split in ("train", "val", "test"):
        in_split = (out.frame["split"] == split).to_numpy()
        assert (y[in_split] == 1).sum(axis=0).min() >= 1, f"a finding has no positive image in {split}"


def test_data_check_counts_findings_per_split_and_warns_on_rare_ones(ml_csv, tmp_path):
    from medclass.data.check import check_data

    cfg = DataConfig(path=str(ml_csv), patient_column="patient", labels_from="finding_labels")
    report = check_data(cfg, near_duplicates=False, workers=1)
    rows = pd.DataFrame(report["counts"]["findings"])
    assert set(rows["finding"]) == set(FINDINGS) and set(rows["split"]) == {"train", "val", "test"}
    table = load_source(cfg)
    assert rows["positive_images"].sum() == (table.targets == 1).sum()  # every positive is counted once
    rare = [w for w in report["warnings"] if w["kind"] == "finding_too_rare"]
    assert {w["details"][0]["finding"] for w in rare} == set(FINDINGS)  # 24 patients: too few positives in val/test


# -- metrics and the mask ------------------------------------------------------------------------
def _random_multilabel(seed: int = 0, n: int = 60, k: int = 3, masked: float = 0.2):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, k)) < 0.4).astype(float)
    p = np.clip(0.35 * y + rng.random((n, k)) * 0.65, 0, 1)
    y[rng.random((n, k)) < masked] = np.nan
    return y, p


def test_per_finding_metrics_match_sklearn():
    from sklearn.metrics import average_precision_score, recall_score, roc_auc_score

    from medclass.metrics.multilabel import macro_auc, micro_auc, per_finding_metrics

    y, p = _random_multilabel()
    thresholds = [0.4, 0.5, 0.6]
    rows = per_finding_metrics(y, p, list(FINDINGS), thresholds, n_boot=0)
    for k, row in enumerate(rows):
        keep = ~np.isnan(y[:, k])
        yk, pk = y[keep, k].astype(int), p[keep, k]
        assert row["n"] == keep.sum() and row["masked"] == (~keep).sum() and row["positives"] == yk.sum()
        assert row["roc_auc"] == pytest.approx(roc_auc_score(yk, pk))
        assert row["pr_auc"] == pytest.approx(average_precision_score(yk, pk))
        decided = (pk >= thresholds[k]).astype(int)
        assert row["sensitivity"] == pytest.approx(recall_score(yk, decided))
        assert row["specificity"] == pytest.approx(recall_score(1 - yk, 1 - decided))
    aucs = [roc_auc_score(y[~np.isnan(y[:, k]), k], p[~np.isnan(y[:, k]), k]) for k in range(3)]
    assert macro_auc(y, p) == pytest.approx(np.mean(aucs))
    keep = ~np.isnan(y)
    assert micro_auc(y, p) == pytest.approx(roc_auc_score(y[keep], p[keep]))


def test_per_finding_cis_resample_patients():
    from medclass.metrics.multilabel import per_finding_metrics

    y, p = _random_multilabel(1)
    groups = [f"p{i // 3}" for i in range(len(y))]
    row = per_finding_metrics(y, p, list(FINDINGS), [0.5] * 3, groups, n_boot=200)[0]
    assert row["roc_auc_low"] <= row["roc_auc"] <= row["roc_auc_high"]


def test_masked_labels_leave_loss_and_metrics_untouched():
    import torch

    from medclass.config import RunConfig
    from medclass.metrics.multilabel import finding_aucs, label_accuracy, per_finding_metrics
    from medclass.models import create_model
    from medclass.training.module import ClassifierModule

    y, p = _random_multilabel(2)
    masked = np.isnan(y)
    other_p = p.copy()
    other_p[masked] = 1 - other_p[masked]  # change the probabilities at masked positions only
    assert np.allclose(finding_aucs(y, p), finding_aucs(y, other_p))
    assert label_accuracy(y, p) == label_accuracy(y, other_p)
    assert per_finding_metrics(y, p, list(FINDINGS), [0.5] * 3, n_boot=0) == \
        per_finding_metrics(y, other_p, list(FINDINGS), [0.5] * 3, n_boot=0)

    module = ClassifierModule(create_model("simple_cnn", 3, in_chans=1, multi_label=True), list(FINDINGS), RunConfig(),
                              class_weights=torch.tensor([1.0, 2.0, 0.5]), multi_label=True)
    logits = torch.randn(len(y), 3)
    other_logits = logits.clone()
    other_logits[torch.from_numpy(masked)] += 5.0  # change the logits at masked positions only
    target = torch.from_numpy(y).float()
    base = module.per_sample_loss(logits, target)
    assert torch.allclose(base, module.per_sample_loss(other_logits, target))
    # and the masked positions are not read as 0 or 1
    as_zero = module.per_sample_loss(logits, torch.nan_to_num(target, nan=0.0))
    assert not torch.allclose(base, as_zero)
    # an unmasked change does change the loss (the test can fail)
    other_logits[~torch.from_numpy(masked)] += 1.0
    assert not torch.allclose(base, module.per_sample_loss(other_logits, target))


def test_balanced_positive_weights():
    from medclass.training.runner import class_weight_vector

    y = np.array([[1, 0], [0, 0], [0, np.nan], [1, 1]], dtype=float)
    np.testing.assert_allclose(class_weight_vector("balanced", y, 2).numpy(), [1.0, 2.0])


def test_checkpoint_meta_task_and_thresholds():
    from medclass.artifacts.meta import CheckpointMeta, build_meta
    from medclass.errors import CheckpointError

    meta = build_meta(classes=list(FINDINGS), model_name="simple_cnn", in_chans=1, image_size=32, mean=[0.5],
                      std=[0.25], task="multi_label").with_decision(0.5, "youden", 1.0, [0.2, 0.4, 0.6])
    again = CheckpointMeta.from_dict(meta.to_dict())
    assert again.multi_label and again.finding_thresholds == (0.2, 0.4, 0.6) and again.model.num_outputs == 3
    old = {k: v for k, v in meta.to_dict().items() if k not in ("task", "thresholds")}
    old["model"] = {**old["model"], "num_outputs": 3}
    assert CheckpointMeta.from_dict(old).task == "single_label"  # files without a task are single-label
    with pytest.raises(CheckpointError, match="thresholds"):
        CheckpointMeta.from_dict({**meta.to_dict(), "thresholds": [0.5]})


# -- end to end: train, evaluate, predict through every serving path -------------------------------
@pytest.fixture(scope="module")
def ml_run(ml_csv, tmp_path_factory):
    from medclass.training.runner import train

    return train(multilabel_config(ml_csv, tmp_path_factory.mktemp("ws"), "ml"), progress=False)


def test_train_writes_macro_auc_and_per_finding_thresholds(ml_run):
    from medclass.artifacts import read_meta

    assert {"val_auc", "train_auc"} <= set(ml_run.metrics.columns)
    assert "val_auc" in ml_run.baseline
    meta = read_meta(ml_run.best_checkpoint)
    assert meta.multi_label and meta.classes == FINDINGS and len(meta.thresholds) == 3
    assert meta.run_config.data.uncertain == "ignore"


def test_evaluate_reports_every_finding(ml_run):
    from medclass.evaluation.evaluate import evaluate

    res = evaluate(ml_run.run_dir, n_boot=20, num_workers=0, cam_samples=1)
    rows = res.metrics["findings"]["per_finding"]
    assert [r["finding"] for r in rows] == list(FINDINGS)
    assert all("roc_auc_low" in r for r in rows if r["positives"] and r["positives"] < r["n"])
    assert res.metrics["leak_check"]["clean"] is True
    html = res.files["report"].read_text()
    for sid in ("findings", "patients", "curves", "cooccurrence", "most-wrong"):
        assert f'id="{sid}"' in html
    from medclass.cli.evaluate import findings_table

    assert findings_table(res.metrics, "t").row_count == len(FINDINGS)
    df = res.predictions
    assert {f"prob_{f}" for f in FINDINGS} <= set(df.columns) and {f"pred_{f}" for f in FINDINGS} <= set(df.columns)


def test_checkpoint_predicts_through_every_serving_path(ml_run, ml_csv, tmp_path):
    from fastapi.testclient import TestClient

    from medclass.serving.api import create_api
    from medclass.serving.export import export_model
    from medclass.serving.predictor import Predictor

    images = sorted((ml_csv.parent / "images").glob("*.png"))[:4]
    predictor = Predictor.from_checkpoint(ml_run.best_checkpoint)
    probs = predictor.predict_proba([str(p) for p in images])
    assert probs.shape == (4, 3) and not np.allclose(probs.sum(axis=1), 1.0)  # independent sigmoids
    thresholds = np.array(predictor.meta.finding_thresholds)
    expected = ["|".join(f for f, on in zip(FINDINGS, row >= thresholds) if on) or "none" for row in probs]
    assert predictor.predict([str(p) for p in images]) == expected
    table = predictor.predict_files([str(p) for p in images], progress=False)
    assert table[[f"pred_{f}" for f in FINDINGS]].to_numpy().astype(bool).tolist() == (probs >= thresholds).tolist()
    overlay, _ = predictor.explain(str(images[0]), target_class=2)  # Grad-CAM of one finding
    assert overlay.ndim == 3
    from medclass.evaluation.explain_images import explain_images

    row = explain_images(ml_run.best_checkpoint, [str(images[0])], tmp_path / "cams", target_class="Nodule", device="cpu")[0]
    assert row["explained_class"] == "Nodule" and row["predicted"] == expected[0]
    assert row["probability"] == pytest.approx(probs[0, 2], abs=1e-5)

    with TestClient(create_api(ml_run.best_checkpoint)) as client:
        answer = client.post("/predict", files={"file": (images[0].name, images[0].read_bytes(), "image/png")}).json()
    assert answer["probabilities"] == pytest.approx(dict(zip(FINDINGS, probs[0].tolist())), abs=1e-5)
    assert answer["findings"] == dict(zip(FINDINGS, (probs[0] >= thresholds).tolist()))
    assert answer["decision"] == expected[0]

    from medclass.serving._verdict import decision_line, probability_bars  # the web app: present findings, every bar

    present = [f for f, on in zip(FINDINGS, probs[0] >= thresholds) if on]
    assert decision_line(predictor.decision_rule, probs[0]).startswith(f"Findings present: {', '.join(present) or 'none'} (")
    bars = probability_bars(predictor.decision_rule, probs[0])
    assert all(f">{f}<" in bars for f in FINDINGS) and bars.count("medclass-threshold") == len(FINDINGS)

    onnx = export_model(ml_run.best_checkpoint, "onnx", tmp_path / "ml.onnx")
    via_onnx = Predictor.from_checkpoint(ml_run.best_checkpoint, onnx=onnx)
    np.testing.assert_allclose(via_onnx.predict_proba([str(p) for p in images]), probs, atol=1e-5)


# -- out-of-distribution flag: one Gaussian over the training images, in every serving path ----------
def _own_and_far_off(ml_run, split: str = "test") -> tuple[list[str], dict[str, np.ndarray]]:
    """The run's own ``split`` images, and far-off arrays of the same shape: inverted, uniform noise, constant."""
    from medclass.data.io import read_image

    rows = pd.read_csv(ml_run.run_dir / "split.csv", keep_default_na=False)
    paths = rows.loc[rows["split"] == split, "path"].tolist()
    images = np.stack([read_image(p) for p in paths])
    rng = np.random.default_rng(1)
    return paths, {"inverted": 1.0 - images, "noise": rng.random(images.shape).astype(np.float32),
                   "constant": np.full(images.shape, 0.9, np.float32)}


def test_multilabel_run_has_one_gaussian_ood_that_flags_far_off_images(ml_run):
    import json

    from medclass.artifacts import load_ood, read_meta
    from medclass.serving.predictor import Predictor

    ood = load_ood(ml_run.best_checkpoint)
    assert ood is not None and ood.means.shape[0] == 1 and np.isfinite(ood.threshold)  # one mean: findings overlap
    assert read_meta(ml_run.best_checkpoint).ood.n_train == ood.n_train == (pd.read_csv(ml_run.run_dir / "split.csv")
                                                                            ["split"] == "train").sum()
    info = json.loads((ml_run.run_dir / "threshold.json").read_text())
    assert info["ood_threshold"] == pytest.approx(ood.threshold) and set(info["thresholds"]) == set(FINDINGS)
    predictor = Predictor.from_checkpoint(ml_run.best_checkpoint)
    val_paths, _ = _own_and_far_off(ml_run, "val")
    val = predictor.predict_with_ood(val_paths)  # the threshold: the conformal 95% quantile of the validation scores
    assert ood.n_val == len(val) and ood.n_calibration == ood.n_val + ood.n_train  # and the cross-fitted training ones
    assert np.quantile(val["ood_score"], 0.5) < ood.threshold and (val["ood_score"] > ood.threshold).mean() <= 0.2
    own_paths, far = _own_and_far_off(ml_run)
    own_rate = predictor.predict_with_ood(own_paths)["ood"].astype(bool).mean()
    for kind, images in far.items():
        rate = predictor.predict_with_ood(images)["ood"].astype(bool).mean()
        assert rate >= 0.9 and rate > own_rate, f"{kind}: {rate:.2f} flagged vs {own_rate:.2f} of the own test images"


def test_every_serving_path_flags_ood_for_a_multilabel_checkpoint(ml_run, tmp_path):
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from medclass.cli import _register_all, app
    from medclass.serving.api import create_api
    from medclass.serving.predictor import Predictor
    from medclass.serving.webapp import analysis

    predictor = Predictor.from_checkpoint(ml_run.best_checkpoint)
    own_paths, far = _own_and_far_off(ml_run, "val")
    scores = predictor.predict_with_ood(own_paths)["ood_score"].to_numpy()
    own = own_paths[int(np.argmin(scores))]  # a validation image below the threshold
    noise = far["noise"][0]
    (tmp_path / "odd").mkdir()
    Image.fromarray((noise[..., 0] * 255).astype(np.uint8)).save(tmp_path / "odd" / "noise.png")

    df = predictor.predict_with_ood([own, str(tmp_path / "odd" / "noise.png")])
    assert list(df.columns) == ["predicted", *(f"prob_{f}" for f in FINDINGS), "ood_score", "ood"]
    assert df["ood"].tolist() == [False, True]
    probs = predictor.predict_proba([own, str(tmp_path / "odd" / "noise.png")])
    np.testing.assert_allclose(df[[f"prob_{f}" for f in FINDINGS]].to_numpy(), probs, atol=1e-5)  # sigmoids, not softmax
    assert df["predicted"].tolist() == predictor.predict([own, str(tmp_path / "odd" / "noise.png")])

    with TestClient(create_api(predictor)) as client:
        answers = [client.post("/predict", files={"file": (Path(p).name, Path(p).read_bytes(), "image/png")}).json()
                   for p in (own, tmp_path / "odd" / "noise.png")]
    assert [a["ood"] for a in answers] == [False, True]
    assert answers[1]["ood_score"] > predictor.ood.threshold > answers[0]["ood_score"]
    assert answers[1]["probabilities"] == pytest.approx(dict(zip(FINDINGS, probs[1].tolist())), abs=1e-5)
    assert set(answers[1]["findings"]) == set(FINDINGS)

    from medclass.data.io import read_image

    assert analysis(predictor, read_image(own)).banner == ""  # the web app: a banner, then every finding's bar
    shown = analysis(predictor, noise)
    assert shown.flagged and "Out-of-distribution" in shown.banner and all(f">{f}<" in shown.bars for f in FINDINGS)

    _register_all()
    result = CliRunner().invoke(app, ["predict", str(ml_run.run_dir), own, str(tmp_path / "odd"),
                                      "--out", str(tmp_path / "p.csv"), "--quiet"])
    assert result.exit_code == 0, result.output
    out = pd.read_csv(tmp_path / "p.csv")
    assert out.set_index(out["path"].map(lambda p: Path(p).name))["ood"].to_dict() == {Path(own).name: False,
                                                                                        "noise.png": True}
    assert "look unlike the training data" in result.output and "noise.png" in " ".join(result.output.split())


def test_ood_fit_refits_a_multilabel_run(ml_run, tmp_path):
    import shutil

    from typer.testing import CliRunner

    from medclass.artifacts import load_checkpoint, load_ood, save_checkpoint
    from medclass.cli import _register_all, app

    run = Path(shutil.copytree(ml_run.run_dir, tmp_path / "run"))
    fitted = load_ood(run / "best.safetensors")
    model, meta = load_checkpoint(run / "best.safetensors")  # as a multi-label run trained before OOD statistics
    save_checkpoint(run / "best.safetensors", model, meta)
    assert load_ood(run / "best.safetensors") is None
    _register_all()
    result = CliRunner().invoke(app, ["ood-fit", str(run)])
    assert result.exit_code == 0, result.output
    again = load_ood(run / "best.safetensors")
    assert again.means.shape[0] == 1 and again.n_train == fitted.n_train
    assert again.threshold == pytest.approx(fitted.threshold, rel=1e-6)  # the same images, the same fit
    np.testing.assert_allclose(again.means, fitted.means, rtol=1e-6)


def test_evaluation_of_a_multilabel_run_reports_ood_and_shift(ml_run, ml_csv, tmp_path):
    from medclass.evaluation.evaluate import evaluate

    own = evaluate(ml_run.run_dir, n_boot=0, num_workers=0, cam_samples=0, report=False, out=tmp_path / "own")
    m = own.metrics
    assert m["ood"]["available"] and m["ood"]["n_scored"] == m["data"]["n_predicted"] and m["shift"] is None
    assert np.isfinite(own.predictions["ood_score"]).all()
    # external data: every image of the source inverted, with its findings, under other patient ids
    source = pd.read_csv(ml_csv, keep_default_na=False)
    (tmp_path / "ext" / "images").mkdir(parents=True)
    for name in source["path"]:
        Image.fromarray(255 - np.asarray(Image.open(ml_csv.parent / name))).save(tmp_path / "ext" / name)
    source.assign(patient="x" + source["patient"]).to_csv(tmp_path / "ext" / "labels.csv", index=False)
    res = evaluate(ml_run.run_dir, data=str(tmp_path / "ext" / "labels.csv"), n_boot=0, num_workers=0, cam_samples=0,
                   out=tmp_path / "ext-eval")
    m = res.metrics
    assert m["ood"]["share_flagged"] >= 0.9 > own.metrics["ood"]["share_flagged"]
    assert m["shift"] is not None and m["shift"]["large"] and "flagged out-of-distribution" in m["shift"]["warning"]
    html = res.files["report"].read_text()
    assert 'id="shift"' in html and "flagged out-of-distribution" in html


def test_patient_aggregation_of_findings():
    from medclass.metrics.multilabel import aggregate_findings

    y = np.array([[0, np.nan, 1], [1, np.nan, 0], [0, 0, np.nan]])
    p = np.array([[0.1, 0.5, 0.9], [0.7, 0.2, 0.3], [0.4, 0.6, 0.2]])
    ids, y_pat, p_pat = aggregate_findings(y, p, ["a", "a", "b"])
    assert ids.tolist() == ["a", "b"]
    np.testing.assert_array_equal(y_pat, [[1, np.nan, 1], [0, 0, np.nan]])
    np.testing.assert_allclose(p_pat, [[0.7, 0.5, 0.9], [0.4, 0.6, 0.2]])


# -- the recipes on the real data (reduced) --------------------------------------------------------
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SMALL = ["train.num_workers=0", "train.seed=0", "model.name=simple_cnn", "model.pretrained=false", "model.image_size=48", "train.epochs=2",
         "data.near_duplicates=false"]


def _recipe(rel: str, shared_data: Path, tmp_path: Path, overrides: list[str]):
    from medclass.config import apply_overrides, load_config

    cfg = load_config(EXAMPLES / rel)
    data_path = cfg.data.path.replace("../shared/data", str(shared_data), 1)
    return apply_overrides(cfg, [f"data.path={data_path}", f"workspace={tmp_path / 'ws'}", *SMALL, *overrides])


@pytest.mark.slow
def test_recipe8_nih_findings(shared_data, tmp_path):
    # Reductions: about 20 images per stratification key, 48 px, simple_cnn, 2 epochs (recipe: 1000 images,
    # resnet18 at 128 px, 10 epochs). Checks that every NIH finding is read and scored, not that it is learnt.
    from medclass.evaluation.evaluate import evaluate
    from medclass.training import train

    result = train(_recipe("8_nih_multilabel/config.yaml", shared_data, tmp_path, ["data.limit_per_class=20"]),
                   progress=False)
    res = evaluate(result.run_dir, n_boot=50, num_workers=0, cam_samples=0)
    assert len(res.metrics["findings"]["per_finding"]) == 14
    assert np.isfinite(res.metrics["findings"]["summary"]["macro_auc"])


@pytest.mark.slow
def test_recipe9_fundus_flags(shared_data, tmp_path):
    import importlib.util

    from medclass.evaluation.evaluate import evaluate
    from medclass.training import train

    spec = importlib.util.spec_from_file_location("make_manifest", EXAMPLES / "9_fundus_multilabel" / "make_manifest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    manifest = module.main(shared_data / "fundus_odir", tmp_path / "eyes.csv")
    result = train(_recipe("9_fundus_multilabel/config.yaml", shared_data, tmp_path, [
        f"data.path={manifest}", f"data.image_root={shared_data / 'fundus_odir' / 'images'}", "data.limit_per_class=15"]),
        progress=False)
    res = evaluate(result.run_dir, n_boot=50, num_workers=0, cam_samples=0)
    assert [r["finding"] for r in res.metrics["findings"]["per_finding"]] == list("NDGCAHMO")
    split = pd.read_csv(result.run_dir / "split.csv")
    assert (split.groupby("patient")["split"].nunique() == 1).all()  # both eyes of a patient on one side


def test_multilabel_cross_validation_reports_macro_auc_per_fold(ml_csv, tmp_path):
    """Two folds of the tiny multi-label CSV, one short epoch each: folds stratified over the findings, macro AUC per fold."""
    import json

    from medclass.config import RunConfig, apply_overrides
    from medclass.experiments.crossval import cross_validate
    from medclass.metrics.multilabel import finding_aucs, macro_auc

    cfg = apply_overrides(RunConfig(), [
        f"data.path={ml_csv}", "data.patient_column=patient", "data.labels_from=finding_labels",
        "data.near_duplicates=false", "model.name=simple_cnn", "model.in_chans=1", "model.image_size=32",
        "train.epochs=1", "train.max_steps_per_epoch=2", "train.batch_size=8", "train.num_workers=0",
        "train.baseline=false", f"workspace={tmp_path}", "project=ml", "experiment=cv"])
    cv = cross_validate(cfg, folds=2, progress=False, n_boot=50)
    folds = pd.read_csv(cv.out_dir / "folds.csv")
    assert (folds.groupby("patient")["fold"].nunique() == 1).all() and set(folds["fold"]) == {0, 1}
    oof = cv.oof
    assert len(oof) == len(folds) and oof["path"].is_unique  # every image predicted once, out of fold
    columns = [f"label_{f}" for f in FINDINGS], [f"prob_{f}" for f in FINDINGS]
    for k in range(2):
        rows = oof[oof["fold"] == k]
        assert (rows[columns[0]] == 1).sum().min() >= 1  # every finding has positives in every fold
        assert cv.folds.loc[k, "macro_auc"] == pytest.approx(macro_auc(rows[columns[0]].to_numpy(float),
                                                                        rows[columns[1]].to_numpy(float)))
    summary = json.loads((cv.out_dir / "cv_summary.json").read_text())
    assert summary["task"] == "multi_label"
    assert summary["mean"]["macro_auc"] == pytest.approx(cv.folds["macro_auc"].mean())
    assert summary["sd"]["macro_auc"] == pytest.approx(cv.folds["macro_auc"].std(ddof=1))
    y, p = oof[columns[0]].to_numpy(float), oof[columns[1]].to_numpy(float)
    assert summary["pooled"]["macro_auc"]["value"] == pytest.approx(macro_auc(y, p))
    assert summary["pooled"]["macro_auc"]["low"] <= summary["pooled"]["macro_auc"]["high"]
    assert list(summary["pooled_findings_auc"].values()) == pytest.approx(finding_aucs(y, p).tolist())
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(cv.summary_table())
    text = console.export_text()
    assert "macro_auc" in text and "mean ± sd" in text and "pooled (95% CI)" in text and "per finding" in text
    assert "optimistic" in text and "counted from 1" in text  # the caveat is printed, not only in the JSON
    # issue 23: every finding's pooled out-of-fold AUC, sensitivity and specificity with CIs (or n/e and why)
    from medclass.metrics.rare import positive_patients

    groups = patient_groups(oof).to_numpy()
    for k, f in enumerate(FINDINGS):
        row = summary["pooled_findings"][f]
        assert row["roc_auc"]["value"] == pytest.approx(finding_aucs(y, p)[k])
        assert row["positive_patients"] == positive_patients(y[:, k], groups)[0]
        decided = oof[f"pred_{f}"].to_numpy()[y[:, k] == 1]
        assert row["sensitivity"]["value"] == pytest.approx(decided.mean())  # each fold's own decision
        assert (row["roc_auc"]["low"] is None) == bool(row["roc_auc"].get("not_estimable"))
    console.print(cv.findings_table())
    text = console.export_text()
    assert all(f in text for f in FINDINGS) and "positive patients" in text
