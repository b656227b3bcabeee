"""Volumes prepared by MONAI transforms (orientation, spacing, HU window, crop/pad), cached, augmented, trained."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from typer.testing import CliRunner

from medclass.artifacts import load_checkpoint
from medclass.cli import _register_all, app
from medclass.data.table import DataTable
from medclass.data.volumes.prepare import VolumeCache, VolumePrep, VolumeTransform, prepare, volume_dataset
from medclass.data.volumes.read import Volume, read_volume
from medclass.errors import ConfigError

from _volumes import lidc_volume, write_series

_register_all()
runner = CliRunner()

LPS = np.diag([-1.0, -1.0, 2.5, 1.0])  # x to the left, y to the back, 2.5 mm slices (LIDC's layout)


def test_orientation_spacing_window_and_size():
    hu = np.full((10, 10, 4), -1000.0, np.float32)
    hu[0, 0, 0] = 500.0  # the right-anterior-inferior corner in LPS storage
    vol = Volume(hu, LPS, "nifti")
    out = prepare(vol, VolumePrep(spacing=(), size=(10, 10, 4), orientation="RAS", window="lung"))
    assert out.shape == (1, 10, 10, 4) and out.dtype == np.float32
    assert out[0, 9, 9, 0] == 1.0 and out[0, 0, 0, 0] == pytest.approx((-1000 + 1350) / 1500)  # turned to RAS
    bright = Volume(np.full((10, 10, 4), 1000.0, np.float32), LPS, "nifti")
    out = prepare(bright, VolumePrep(spacing=(1.0, 1.0, 1.0), size=(12, 12, 16), window="0,100"))
    assert np.count_nonzero(out[0, 6, 6, :]) == 8  # slice centres 0..7.5 mm apart: 8 of 1 mm (MONAI), then padded
    assert np.count_nonzero(out[0, :, 6, 8]) == 10


def test_prepared_lidc_volume_and_cache(shared_data, tmp_path):
    path = sorted((shared_data / "lidc_nodules" / "images").glob("*.nii.gz"))[0]
    prep = VolumePrep(spacing=(1.0, 1.0, 1.0), size=(24, 24, 16), window="lung")
    cache = VolumeCache(tmp_path / "cache", prep)
    first = cache(str(path))
    assert first.shape == (1, 24, 24, 16) and 0.0 <= first.min() and first.max() <= 1.0
    files = list((tmp_path / "cache").rglob("*.npy"))
    assert len(files) == 1 and isinstance(cache(str(path)), np.memmap)
    np.testing.assert_allclose(np.asarray(cache(str(path)), np.float32), prepare(read_volume(path), prep), atol=1e-3)
    other = VolumeCache(tmp_path / "cache", VolumePrep(spacing=(2.0, 2.0, 2.0), size=(24, 24, 16), window="lung"))
    other(str(path))  # other settings: another key, nothing reused
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 2


def test_augmentation_is_seeded_per_sample_and_epoch(tmp_path):
    import nibabel as nib

    rng = np.random.default_rng(0)
    paths = []
    for i in range(2):
        paths.append(str(tmp_path / f"v{i}.nii.gz"))
        nib.save(nib.Nifti1Image(rng.normal(0, 300, (12, 12, 6)).astype(np.float32), np.diag([0.8, 0.8, 2.0, 1])), paths[-1])
    table = DataTable(pd.DataFrame({"path": paths, "label": ["a", "b"]}), ["a", "b"])
    prep = VolumePrep(spacing=(1.0, 1.0, 1.0), size=(16, 16, 16), window="lung")
    ds = volume_dataset(table, prep, train=True, seed=3, cache_dir=tmp_path / "c")
    a, again, later = ds[(0, 1)], ds[(0, 1)], ds[(1, 1)]
    assert a["image"].shape == (1, 16, 16, 16) and a["label"] == 1
    assert torch.equal(a["image"], again["image"]) and not torch.equal(a["image"], later["image"])
    plain = volume_dataset(table, prep, train=False, cache_dir=tmp_path / "c")
    assert torch.equal(plain[0]["image"], plain[(5, 0)]["image"])
    flat = VolumeTransform(VolumePrep(size=(16, 16, 16), input="2.5d", in_chans=3))(np.zeros((1, 16, 16, 16), np.float32))
    assert flat.shape == (3, 16, 16)
    with pytest.raises(ConfigError, match="model.in_chans=1"):
        VolumePrep(input="3d", in_chans=3)


def _npz_3d(path: Path, n: int = 26, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = rng.normal(100, 20, (n, 16, 16, 16))
    images[labels == 1, 4:12, 4:12, 4:12] += 80
    np.savez(path, train_images=np.clip(images, 0, 255).astype(np.uint8), train_labels=labels[:, None])
    return path


def test_a_3d_npz_trains_by_flags_only_and_predicts_nifti_and_dicom_series(tmp_path, shared_data):
    data = _npz_3d(tmp_path / "organ3d.npz")
    out = runner.invoke(app, ["train", "--data", str(data), "--model", "resnet10_3d", "--in-chans", "1",
                              "--image-size", "16", "--epochs", "1", "--batch-size", "4", "--split-by", "image",
                              "--experiment", "v", "--quiet", "--set", f"workspace={tmp_path / 'ws'}",
                              "--set", "train.num_workers=0", "--set", "volume.spacing=[]"])
    assert out.exit_code == 0, out.output
    run = tmp_path / "ws" / "default" / "v"
    meta = load_checkpoint(run / "best.safetensors")[1]
    assert meta.model.name == "resnet10_3d" and meta.preprocessing.volume["size"] == [16, 16, 16]
    assert meta.preprocessing.volume["spacing"] == [] and meta.preprocessing.volume["input"] == "3d"
    assert list((tmp_path / "ws" / ".cache" / "volumes").rglob("*.npy"))  # prepared once, memory-mapped after
    # evaluate: every section that applies to volumes runs; examples are slice montages (tests/test_volume_cam.py)
    out = runner.invoke(app, ["evaluate", str(run), "--split", "val", "--n-boot", "20", "--cam-samples", "0"])  # no test rows here
    assert out.exit_code == 0, out.output
    found = sorted(run.rglob("metrics.json"))  # the val split's evaluation folder
    assert len(found) == 1, found
    metrics = json.loads(found[0].read_text())
    assert metrics["sections"]["examples"]["applied"] is True
    assert 0.0 <= metrics["metrics"]["roc_auc"] <= 1.0 and (found[0].parent / "report.html").is_file()
    shortcuts = metrics["shortcuts"]  # occlusion runs on the 3-D input (band along every axis); CAM shares inside masks: cam_location
    assert set(shortcuts["occlusion"]["variants"]) == {"full", "border_only", "centre_only"}
    assert shortcuts["occlusion"]["variants"]["full"]["value"] == pytest.approx(metrics["metrics"]["roc_auc"])
    assert "cam_location" in shortcuts["not_run"]["cam"]
    # predict: a real NIfTI and the same CT written as a DICOM series folder give the same probability
    nifti, voxels, spacing = lidc_volume(shared_data, 3)
    series = write_series(voxels, spacing, tmp_path / "series")
    out = runner.invoke(app, ["predict", str(run), str(nifti), str(series), "--out", str(tmp_path / "p.csv"), "--quiet"])
    assert out.exit_code == 0, out.output
    pred = pd.read_csv(tmp_path / "p.csv")
    assert pred["error"].isna().all() and len(pred) == 2, pred
    assert pred["prob_1"].iloc[0] == pytest.approx(pred["prob_1"].iloc[1], abs=1e-5)
    broken = write_series(voxels, spacing, tmp_path / "gap", drop=(1,))
    out = runner.invoke(app, ["predict", str(run), str(broken), "--out", str(tmp_path / "q.csv"), "--quiet"])
    assert out.exit_code == 0 and "missing DICOM slice" in pd.read_csv(tmp_path / "q.csv")["error"].iloc[0]
    wrong = runner.invoke(app, ["train", "--data", str(data), "--model", "simple_cnn", "--image-size", "32",
                                "--epochs", "1", "--split-by", "image", "--quiet", "--set", f"workspace={tmp_path / 'ws'}",
                                "--set", "volume.input=3d"])  # a 2-D network asked to take the whole volume
    assert wrong.exit_code != 0 and "simple_cnn is a 2-D network but the data are CT/MRI volumes" in wrong.output
    assert "resnet10_3d" in wrong.output and "volume.input=2.5d" in wrong.output  # the 3-D names, or slices
    # external volumes: the shift section describes them from their voxels (not the 2-D image reader's skips)
    other = _npz_3d(tmp_path / "other3d.npz", n=12, seed=1)
    out = runner.invoke(app, ["evaluate", str(run), "--data", str(other), "--split", "train", "--n-boot", "0",
                              "--cam-samples", "0", "--out", str(tmp_path / "ext")])
    assert out.exit_code == 0, out.output
    assert "not an image" not in out.output and "skipped" not in out.output.lower(), out.output
    shift = json.loads((tmp_path / "ext" / "metrics.json").read_text())["shift"]["image_statistics"]
    assert shift["external"]["modes"] == {"volume": 1.0} and shift["external"]["n"] == 12
    assert shift["training"]["modes"] == {"volume": 1.0} and shift["external"]["width"]["median"] == 16


def test_volumes_train_without_a_model_name_on_the_volume_default(tmp_path):
    """`medclass train --data volumes.npz` as typed, no --model: the measured volume default (config.DEFAULT_MODELS,
    VOLUME_DEFAULT) trains at its own voxel side, the output says which model and why, the checkpoint records it."""
    from medclass.config import DEFAULT_MODELS, VOLUME_DEFAULT, VOLUME_DEFAULT_WHY

    default = DEFAULT_MODELS[VOLUME_DEFAULT]
    data = _npz_3d(tmp_path / "organ3d.npz", n=20)
    out = runner.invoke(app, ["train", "--data", str(data), "--epochs", "1", "--batch-size", "4", "--split-by", "image",
                              "--quiet", "--set", f"workspace={tmp_path / 'ws'}", "--set", "train.num_workers=0",
                              "--set", "volume.spacing=[]", "--set", "train.baseline=false"])
    assert out.exit_code == 0, out.output
    said = " ".join(out.output.split())
    assert f"model: {default.name} (volume.input={VOLUME_DEFAULT}" in said and "no model named" in said, said
    assert f"default for CT/MRI volumes: {VOLUME_DEFAULT_WHY}" in said and "--model" in said  # which and why
    run = next((tmp_path / "ws" / "default").glob(f"{default.name}-*"))  # the run is named after the chosen model
    meta = load_checkpoint(run / "best.safetensors")[1]
    assert meta.model.name == default.name and meta.model.in_chans == default.in_chans
    assert meta.preprocessing.volume["input"] == VOLUME_DEFAULT
    assert meta.preprocessing.volume["size"] == [default.image_size] * 3  # not the 2-D default of 224 px
    saved = yaml.safe_load((run / "config.yaml").read_text())  # auto resolved before the run folder was written
    assert (saved["model"]["name"], saved["volume"]["input"]) == (default.name, VOLUME_DEFAULT)
    help_text = " ".join(runner.invoke(app, ["train", "--help"], terminal_width=200).output.replace("│", " ").split())
    assert f"for CT/MRI volumes {default.name} ({VOLUME_DEFAULT}" in help_text, help_text
