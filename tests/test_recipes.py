"""Reduced end-to-end runs of the five recipes in ``examples/`` on the real data.

Each test loads the recipe's own ``config.yaml`` and shrinks it so that the whole file runs in a few
minutes on a 2-core CPU. The reductions are listed in each test (``SMALL`` plus the per-recipe ones);
what stays is the recipe's point (grey input and x-ray augmentation, frozen vs fine-tuned pretrained
weights, three classes from file names, k-fold CV with a sensitivity threshold, DICOM with patient ids).
Every test asserts that training beats the untrained baseline measured on the same validation images.
Measured with ``pytest tests/test_recipes.py --durations=10`` on the 2-core development machine: 63 s in
all when the cores were quiet (recipe 4: 20 s, 5: 11 s, 3: 10 s, 1: 9 s, 2: 4 s while it still failed
early on the saturated Lite0 head), 199 s while a CI run and a training job shared them. Since the head
fix (commit a511b64) recipe 2 trains both Lite0 runs: 63 s alone, with a training job beside it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from medclass.config import RunConfig, apply_overrides, load_config
from medclass.data.sources import from_folders
from medclass.data.to_dicom import images_to_dicom
from medclass.evaluation.evaluate import evaluate
from medclass.experiments.compare import compare_runs
from medclass.experiments.crossval import cross_validate
from medclass.training import train

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# Common reductions: no DataLoader worker processes (their start-up costs more than they save on ~100
# images), a fixed seed, and a larger validation share so that the baseline-vs-trained AUC is less noisy.
SMALL = ["train.num_workers=0", "train.seed=0", "data.val_fraction=0.25", "data.test_fraction=0.2"]


def recipe(rel: str, shared_data: Path, tmp_path: Path, overrides: list[str]) -> RunConfig:
    """The recipe's config with its ``../shared/data`` path resolved, the workspace in ``tmp_path``, reduced."""
    cfg = load_config(EXAMPLES / rel)
    data_path = cfg.data.path.replace("../shared/data", str(shared_data), 1)
    return apply_overrides(cfg, [f"data.path={data_path}", f"workspace={tmp_path / 'ws'}", *SMALL, *overrides])


def assert_beats_baseline(result, margin: float = 0.1, floor: float = 0.75) -> float:
    """Best validation AUC >= the untrained model's validation AUC + ``margin``, or >= ``floor``.

    The 'or' is there because the untrained model's AUC on a few dozen validation images is noisy
    (0.4-0.85 were seen); a trained model at ``floor`` has learnt something either way.
    """
    best = float(result.metrics["val_auc"].max())
    base = float(result.baseline["val_auc"])
    assert best >= base + margin or best >= floor, \
        f"best val AUC {best:.3f}: neither >= baseline {base:.3f} + {margin} nor >= {floor}"
    return best


@pytest.mark.slow
def test_recipe1_cnn_from_scratch(shared_data, tmp_path):
    # Reductions: 80 images per class, 48 px, 3 epochs (recipe: all images, 128 px, <= 20 epochs).
    cfg = recipe("1_xray_cnn_from_scratch/config.yaml", shared_data, tmp_path,
                 ["data.limit_per_class=80", "model.image_size=48", "train.epochs=3", "train.batch_size=32"])
    assert (cfg.model.name, cfg.model.in_chans, cfg.train.augment, cfg.train.class_weights) == \
        ("simple_cnn", 1, "xray", "balanced")
    result = train(cfg, progress=False)
    assert_beats_baseline(result)
    ev = evaluate(result.run_dir, n_boot=50, cam_samples=1, num_workers=0)
    assert 0.0 <= ev.metrics["metrics"]["roc_auc"] <= 1.0
    assert ev.files["report"].is_file() and ev.files["report"].stat().st_size > 10_000  # figures embedded


@pytest.mark.slow
def test_recipe2_frozen_vs_finetuned(shared_data, tmp_path):
    # Reductions: only the two EfficientNet-Lite0 runs (resnet50/densenet121 are too slow here), 60 images
    # per class, 64 px, 2 epochs (frozen) / 2 epochs with 1 frozen (fine-tuned); recipe: 128 px, <= 8 epochs.
    runs = []
    for name in ("lite0_frozen", "lite0_finetune"):
        cfg = recipe(f"2_xray_transfer_compare/{name}.yaml", shared_data, tmp_path,
                     ["data.limit_per_class=60", "model.image_size=64", "train.epochs=2"])
        assert cfg.model.pretrained
        result = train(cfg, progress=False)
        assert_beats_baseline(result, margin=0.05, floor=0.75)
        evaluate(result.run_dir, n_boot=0, cam_samples=0, report=False, num_workers=0)
        runs.append(result.run_dir)
    comp = compare_runs(runs, tmp_path / "compare", n_boot=200, plots=False)
    assert len(comp.table) == 2
    assert len(comp.pairs) == 1  # both were evaluated on the same held-out test images
    assert 0.0 <= float(comp.pairs["delong_p"].iloc[0]) <= 1.0


@pytest.mark.slow
def test_recipe3_three_classes(shared_data, tmp_path):
    # Reductions: simple_cnn instead of resnet18, 80 images per class, 48 px, 3 epochs.
    cfg = recipe("3_xray_three_classes/config.yaml", shared_data, tmp_path,
                 ["model.name=simple_cnn", "data.limit_per_class=80", "model.image_size=48", "train.epochs=3",
                  "train.batch_size=32"])
    result = train(cfg, progress=False)
    assert_beats_baseline(result, margin=0.1, floor=0.65)  # macro one-vs-rest AUC; viral vs bacterial is hard
    ev = evaluate(result.run_dir, n_boot=0, cam_samples=0, report=False, num_workers=0)
    m = ev.metrics["metrics"]
    assert set(m["per_class"]) == {"normal", "bacterial", "viral"}
    assert np.array(m["confusion_matrix"]).shape == (3, 3)
    assert 0.0 <= m["macro_f1"] <= 1.0


@pytest.mark.slow
def test_recipe4_head_ct_cv(shared_data, tmp_path):
    # Reductions: 2 folds instead of 5, 30 images per class, simple_cnn at 48 px instead of inception_v3 at
    # 128 px (inception's minimum, 75 px, is checked below), 5 epochs, best epoch by val_auc (with 30
    # validation images val_loss picked epoch 0 in one fold). The threshold rule stays.
    cfg = recipe("4_head_ct_hemorrhage/config.yaml", shared_data, tmp_path,
                 ["model.name=simple_cnn", "data.limit_per_class=30", "model.image_size=48", "train.epochs=5",
                  "train.monitor=val_auc"])
    from medclass.models.registry import model_info

    assert load_config(EXAMPLES / "4_head_ct_hemorrhage/config.yaml").model.image_size >= \
        model_info("inception_v3").min_input_size
    assert cfg.eval.threshold == "sensitivity:0.95" and cfg.data.class_names == ["normal", "hemorrhage"]
    cv = cross_validate(cfg, folds=2, progress=False, n_boot=50)
    assert len(cv.folds) == 2 and len(cv.oof) == 60
    assert set(cv.oof["fold"]) == {0, 1}
    assert cv.oof["path"].is_unique  # every image predicted once, by the fold that did not train on it
    mean_auc = cv.summary["mean"]["roc_auc"]
    baselines = [json.loads((Path(d) / "baseline.json").read_text())["val_auc"] for d in cv.run_dirs]
    # The untrained simple_cnn already reached 0.71 and 0.82 here (intensity alone separates some slices),
    # hence the 'or': mean fold AUC above the baselines' mean + 0.1, or >= 0.75.
    assert mean_auc >= np.mean(baselines) + 0.1 or mean_auc >= 0.75, (mean_auc, baselines)
    assert 0.0 <= cv.summary["pooled"]["roc_auc"]["value"] <= 1.0


@pytest.mark.slow
def test_recipe5_dicom_per_patient(shared_data, tmp_path):
    # Reductions: 60 images per class of multi-image patients, simple_cnn instead of resnet18, 48 px, 3 epochs.
    table = from_folders(shared_data / "chest_xray", "chest_xray")
    df = table.frame
    multi = df["patient"].map(df["patient"].value_counts()) > 1
    keep = np.zeros(len(df), dtype=bool)
    for label in table.classes:
        idx = df.index[(df["label"] == label) & multi][:60]
        keep[idx] = True
    dicoms = images_to_dicom(table.subset(keep), tmp_path / "dicom")
    assert len(dicoms) == keep.sum()
    for path, patient in zip(dicoms.frame["path"][::17], dicoms.frame["patient"][::17]):
        ds = pydicom.dcmread(path)  # no force=True: the file meta is proper
        assert ds.PatientID == patient and ds.PhotometricInterpretation == "MONOCHROME2"
        assert ds.pixel_array.dtype == np.uint8 and ds.pixel_array.std() > 10  # real pixels, not blank
    reread = from_folders(tmp_path / "dicom")
    assert sorted(reread.frame["patient"]) == sorted(dicoms.frame["patient"])
    cfg = recipe("5_dicom_per_patient/config.yaml", shared_data, tmp_path,
                 [f"data.path={tmp_path / 'dicom'}", "model.name=simple_cnn", "model.image_size=48",
                  "train.epochs=3", "train.batch_size=32"])
    result = train(cfg, progress=False)
    assert_beats_baseline(result, margin=0.1, floor=0.7)
    ev = evaluate(result.run_dir, n_boot=0, cam_samples=0, num_workers=0)
    patients = pd.read_csv(ev.files["patients"])
    test_patients = set(pd.read_csv(result.run_dir / "split.csv").query("split == 'test'")["patient"])
    assert set(patients["patient"]) == test_patients
    assert len(patients) < (ev.predictions.shape[0])  # several images per patient were aggregated



@pytest.mark.slow
def test_recipe10_lidc_volumes_beside_the_size_baseline(shared_data, tmp_path):
    # Reductions: 40 nodules per class, 1 epoch, 50 bootstrap replicates (recipe: all 994 nodules,
    # 5 epochs, 1,000 replicates). What stays: 2.5-D volumes in the lung window and the diameter_mm baseline.
    cfg = recipe("10_lidc_nodules_volumes/config.yaml", shared_data, tmp_path,
                 ["data.limit_per_class=40", "train.epochs=1"])
    assert (cfg.model.name, cfg.volume.input, cfg.data.window, cfg.data.patient_column) == \
        ("simple_cnn", "2.5d", "lung", "patient_id")
    result = train(cfg, progress=False)
    ev = evaluate(result.run_dir, n_boot=50, cam_samples=0, report=False, num_workers=0, baselines="diameter_mm")
    b = ev.metrics["baselines"]
    assert ev.metrics["sections"]["baselines"]["applied"] and b["kinds"] == {"diameter_mm": "numeric"}
    c = b["comparisons"][0]
    assert c["target"] == "malignant" and c["baseline_auc"]["value"] > 0.75  # size alone separates the classes
    assert c["difference"]["value"] == pytest.approx(c["image_auc"]["value"] - c["baseline_auc"]["value"])

def test_images_to_dicom_roundtrip(tmp_path):
    """Fast: two tiny PNGs become DICOM files that pydicom reads without force, pixels and patient kept."""
    from PIL import Image

    from medclass.data.io import read_image
    from medclass.data.table import DataTable

    rng = np.random.default_rng(0)
    rows = []
    for i, (label, patient) in enumerate([("NORMAL", "IM-0001"), ("PNEUMONIA", "person7")]):
        pixels = rng.integers(0, 256, (12, 10), dtype=np.uint8)
        path = tmp_path / "src" / f"img{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(pixels).save(path)
        rows.append({"path": str(path), "label": label, "patient": patient, "pixels": pixels})
    table = DataTable(pd.DataFrame(rows).drop(columns="pixels"), ["NORMAL", "PNEUMONIA"])
    out = images_to_dicom(table, tmp_path / "dcm")
    assert [Path(p).relative_to(tmp_path / "dcm").as_posix() for p in out.frame["path"]] == \
        ["NORMAL/img0.dcm", "PNEUMONIA/img1.dcm"]
    for row, path in zip(rows, out.frame["path"]):
        ds = pydicom.dcmread(path)
        assert ds.PatientID == row["patient"] and ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        np.testing.assert_array_equal(ds.pixel_array, row["pixels"])
        px = row["pixels"].astype(np.float32)  # no VOI window in the file: the reader windows min-max
        np.testing.assert_allclose(read_image(path)[..., 0], (px - px.min()) / (px.max() - px.min()), atol=1e-6)
    with pytest.raises(Exception, match="no patient id"):
        images_to_dicom(table.with_frame(table.frame.assign(patient="")), tmp_path / "dcm2")
