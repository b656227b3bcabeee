"""Predictor: checkpoint preprocessing, temperature, threshold, input checks, files/folders/CSV/DICOM."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from medclass.data.io import read_image
from medclass.data.transforms import build_transform
from medclass.errors import CheckpointError, ImageReadError
from medclass.models import create_model
from medclass.serving.predictor import Predictor
from _helpers import make_checkpoint, xray_paths


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "m.safetensors", temperature=2.0)


@pytest.fixture(scope="module")
def predictor(ckpt) -> Predictor:
    return Predictor.from_checkpoint(ckpt)


@pytest.fixture(scope="module")
def xrays() -> list[Path]:
    return xray_paths()


def reference_probs(ckpt: Path, paths: list[Path]) -> np.ndarray:
    """What the checkpoint should give, computed step by step: read, transform, model, sigmoid(logit / T)."""
    from medclass.artifacts.checkpoint import load_checkpoint

    model, meta = load_checkpoint(ckpt)
    pre = meta.preprocessing
    tf = build_transform("none", pre.image_size, pre.in_chans, pre.mean, pre.std, train=False)
    x = torch.stack([tf(read_image(p, size_hint=pre.image_size)) for p in paths])
    with torch.no_grad():
        p1 = torch.sigmoid(model(x)[:, 0] / meta.temperature).numpy()
    return np.stack([1 - p1, p1], axis=1)


def test_predict_proba_matches_step_by_step_reference_with_temperature(ckpt, predictor, xrays):
    probs = predictor.predict_proba(xrays)
    expected = reference_probs(ckpt, xrays)
    assert probs.shape == (4, 2)
    np.testing.assert_allclose(probs, expected, atol=1e-6)
    assert np.ptp(probs[:, 1]) > 0.01  # the random model does not answer the same for every image
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)


def test_temperature_softens_probabilities(ckpt, xrays, tmp_path):
    sharp = Predictor.from_checkpoint(make_checkpoint(tmp_path / "t1.safetensors", temperature=1.0)).predict_proba(xrays)
    soft = Predictor.from_checkpoint(ckpt).predict_proba(xrays)  # same weights (seed 0), T = 2
    logit = np.log(sharp[:, 1] / sharp[:, 0])
    np.testing.assert_allclose(soft[:, 1], 1 / (1 + np.exp(-logit / 2)), atol=1e-5)


def test_decision_uses_the_stored_threshold(predictor, xrays):
    assert predictor.threshold == 0.4
    assert predictor.decide(np.array([[0.55, 0.45], [0.61, 0.39], [0.6, 0.4]])) == ["PNEUMONIA", "NORMAL", "PNEUMONIA"]
    probs = predictor.predict_proba(xrays)
    assert predictor.predict(xrays) == ["PNEUMONIA" if p >= 0.4 else "NORMAL" for p in probs[:, 1]]


def test_arrays_uint8_uint16_pil_and_float_agree(predictor, xrays):
    gray = np.asarray(Image.open(xrays[0]).convert("L"))
    as_float = predictor.predict_proba(gray.astype(np.float32) / 255)
    np.testing.assert_allclose(predictor.predict_proba(gray), as_float, atol=1e-6)
    np.testing.assert_allclose(predictor.predict_proba(Image.open(xrays[0]).convert("L")), as_float, atol=1e-6)
    np.testing.assert_allclose(predictor.predict_proba(gray.astype(np.uint16) * 257), as_float, atol=1e-6)
    rgb = np.repeat(gray[..., None], 3, axis=2)  # same picture in 3 equal channels -> the same gray input
    one_grey_level = 1 / 255 / predictor.meta.preprocessing.std[0]  # in normalised input units
    gap = (predictor.transform(predictor.load(rgb)) - predictor.transform(predictor.load(gray))).abs().max()
    assert float(gap) < 0.1 * one_grey_level  # only float32 luma rounding separates the two inputs
    # an untrained model sits near p = 0.5, where that rounding moves p by ~1e-4
    np.testing.assert_allclose(predictor.predict_proba(rgb), as_float, atol=1e-3)
    batch = np.stack([gray, gray[::-1]])[..., None].astype(np.float32) / 255  # a 4-D array is a batch
    assert predictor.predict_proba(batch).shape == (2, 2)


@pytest.mark.parametrize("array, message", [
    (np.full((32, 32), 200.0, np.float32), r"must lie in \[0, 1\].*got min 200"),
    (np.full((32, 32), -0.5, np.float32), r"must lie in \[0, 1\]"),
    (np.zeros((32, 32), np.int64), "pixel type int64 is ambiguous"),
    (np.zeros((3, 32, 32), np.float32), r"channels-first.*transpose\(1, 2, 0\)"),
    (np.zeros((32, 32, 4), np.float32), r"alpha channel"),
    (np.zeros((32, 32, 2), np.float32), "1 \\(grayscale\\) or 3 \\(RGB\\)"),
    (np.zeros((0, 32), np.float32), "empty image"),
])
def test_arrays_outside_the_convention_are_refused_clearly(predictor, array, message):
    with pytest.raises(ValueError, match=message):
        predictor.predict_proba(array)


def test_unreadable_path_raises_in_predict_proba(predictor, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ImageReadError, match="not an image"):
        predictor.predict_proba(bad)


def test_predict_files_folder_with_bad_files_and_dicom_frames(predictor, xrays, shared_data, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for p in xrays:
        (folder / p.name).symlink_to(p)
    (folder / "truncated.jpeg").write_bytes(xrays[0].read_bytes()[:2000])
    (folder / "notes.txt").write_text("hello")
    (folder / "multi.dcm").symlink_to(shared_data / "dicom" / "emri_small.dcm")  # 10 frames
    (folder / "nopixels.dcm").symlink_to(shared_data / "dicom" / "emri_small_jpeg_2k_lossless_too_short.dcm")
    df = predictor.predict_files([folder, tmp_path / "missing.png"], batch_size=3, progress=False)
    assert list(df.columns) == ["path", "frame", "patient", "prob_NORMAL", "prob_PNEUMONIA", "predicted", "threshold", "ood_score", "ood",
                          "error"]
    ok = df[df["error"] == ""]
    errors = dict(zip(df.loc[df["error"] != "", "path"].map(lambda p: Path(p).name), df.loc[df["error"] != "", "error"]))
    assert set(errors) == {"truncated.jpeg", "notes.txt", "nopixels.dcm", "missing.png"}
    assert "truncated" in errors["truncated.jpeg"] and "no pixel data" in errors["nopixels.dcm"]
    assert "unsupported file extension" in errors["notes.txt"] and "does not exist" in errors["missing.png"]
    assert df.loc[df["error"] != "", "prob_NORMAL"].isna().all() and (df.loc[df["error"] != "", "predicted"] == "").all()
    frames = ok[ok["path"].str.endswith("multi.dcm")]
    assert sorted(frames["frame"]) == list(range(10))
    multi = predictor.predict_proba([read_image(shared_data / "dicom" / "emri_small.dcm", frame=f) for f in (0, 9)])
    # batch of 3 vs 2 images: float noise only (seen: 1.4e-5 in p), as for the JPEGs below
    np.testing.assert_allclose(frames.sort_values("frame")[["prob_NORMAL", "prob_PNEUMONIA"]].to_numpy()[[0, 9]], multi, atol=1e-4)
    jpgs = ok[ok["path"].str.endswith(".jpeg")]
    jpgs = jpgs.set_index(jpgs["path"].map(lambda p: Path(p).name))  # batch of 3 vs 4: float noise only
    expected = predictor.predict_proba(xrays)  # (~2e-5 in p near 0.5, the steepest part of the sigmoid)
    np.testing.assert_allclose(jpgs.loc[[p.name for p in xrays], ["prob_NORMAL", "prob_PNEUMONIA"]].to_numpy(), expected, atol=1e-4)
    assert list(jpgs.loc[[p.name for p in xrays], "predicted"]) == predictor.decide(expected)
    assert jpgs.loc["person1016_virus_1704.jpeg", "patient"] == "person1016"  # the checkpoint's patient rule
    assert (ok["threshold"] == 0.4).all()


def test_predict_files_csv_manifest(predictor, xrays, tmp_path):
    manifest = tmp_path / "list.csv"
    pd.DataFrame({"path": [str(xrays[0]), "missing.jpeg"], "patient": ["p1", "p2"]}).to_csv(manifest, index=False)
    df = predictor.predict_files(manifest, progress=False)
    assert len(df) == 2
    assert df.loc[0, "patient"] == "p1" and df.loc[0, "error"] == ""
    np.testing.assert_allclose(df.loc[0, ["prob_NORMAL", "prob_PNEUMONIA"]].to_numpy(float), predictor.predict_proba(xrays[0])[0], atol=1e-5)
    assert "does not exist" in df.loc[1, "error"]


def test_three_classes_argmax_and_no_threshold(tmp_path, xrays):
    p = Predictor.from_checkpoint(make_checkpoint(tmp_path / "c3.safetensors", classes=("normal", "bacterial", "viral")))
    probs = p.predict_proba(xrays)
    assert probs.shape == (4, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert p.predict(xrays) == [p.classes[i] for i in probs.argmax(axis=1)]
    assert p.decide(np.array([[0.2, 0.3, 0.5]])) == ["viral"]
    df = p.predict_files(xrays[:1], progress=False)
    assert df["threshold"].isna().all() and df.loc[0, "predicted"] in p.classes


def test_rgb_checkpoint_reads_grayscale_dicom(tmp_path, shared_data):
    p = Predictor.from_checkpoint(make_checkpoint(tmp_path / "rgb.safetensors", in_chans=3))
    probs = p.predict_proba(shared_data / "dicom" / "CT_small.dcm")
    assert probs.shape == (1, 2) and np.isfinite(probs).all()


@pytest.mark.parametrize("suffix", [".pth", ".ckpt"])
def test_pickled_checkpoints_are_refused(tmp_path, suffix):
    path = tmp_path / f"model{suffix}"
    torch.save({"state_dict": create_model("simple_cnn", 2, in_chans=1).state_dict()}, path)
    with pytest.raises(CheckpointError, match="pickled PyTorch file.*safetensors"):
        Predictor.from_checkpoint(path)


def test_cli_predict_writes_csv_and_json(ckpt, xrays, tmp_path):
    from typer.testing import CliRunner

    from medclass.cli import _register_all, app

    _register_all()
    runner = CliRunner()
    out_csv, out_json = tmp_path / "p.csv", tmp_path / "p.json"
    result = runner.invoke(app, ["predict", str(ckpt), str(xrays[0]), str(xrays[2]), "--out", str(out_csv), "--quiet"])
    assert result.exit_code == 0, result.output
    df = pd.read_csv(out_csv)
    assert len(df) == 2 and "2 predicted" in result.output
    result = runner.invoke(app, ["predict", str(ckpt), str(xrays[0]), "--out", str(out_json), "--quiet"])
    assert json.loads(out_json.read_text())[0]["predicted"] == df.loc[0, "predicted"]
    result = runner.invoke(app, ["predict", str(tmp_path / "nope.safetensors"), str(xrays[0])])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_copy_of_checkpoint_in_run_folder_is_found(ckpt, tmp_path, xrays):
    shutil.copy(ckpt, tmp_path / "best.safetensors")
    assert Predictor.from_checkpoint(tmp_path).predict(xrays[:1]) == Predictor.from_checkpoint(ckpt).predict(xrays[:1])


def read_output(path: Path) -> pd.DataFrame:
    """A `predict --out` file of any format as a table, sorted by path."""
    reader = {".csv": pd.read_csv, ".jsonl": lambda p: pd.read_json(p, lines=True), ".json": pd.read_json,
              ".parquet": pd.read_parquet}[path.suffix]
    df = reader(path)
    df["error"] = df["error"].fillna("").astype(str)
    return df.sort_values("path", ignore_index=True)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".json", ".parquet"])
def test_cli_predict_streams_its_output_and_resumes_after_a_kill(ckpt, xrays, tmp_path, monkeypatch, suffix):
    """A run killed after its first part leaves those rows (and, for the line formats, half a line) on disk;
    --resume keeps them, predicts only the rest and gives the same file as one uninterrupted run."""
    from typer.testing import CliRunner

    from medclass.cli import _register_all, app
    from medclass.serving import predictor as predictor_module

    _register_all()
    runner = CliRunner()
    folder = tmp_path / "images"
    folder.mkdir()
    for path in xrays:
        shutil.copy(path, folder / path.name)
    (folder / "notes.txt").write_text("not an image")  # a row with its reason, met while walking
    whole, killed = tmp_path / f"whole{suffix}", tmp_path / f"killed{suffix}"
    monkeypatch.setattr(predictor_module, "STREAM_ROWS", 2)
    assert runner.invoke(app, ["predict", str(ckpt), str(folder), "--output", str(whole), "--quiet"]).exit_code == 0

    real = predictor_module.Predictor.iter_predict_files

    def killed_after_one_part(self, *args, **kwargs):
        parts = real(self, *args, **kwargs)
        yield next(parts)
        raise KeyboardInterrupt  # the kill, after the first part reached the disk

    monkeypatch.setattr(predictor_module.Predictor, "iter_predict_files", killed_after_one_part)
    runner.invoke(app, ["predict", str(ckpt), str(folder), "--out", str(killed), "--quiet"])
    assert not killed.exists() or suffix in (".csv", ".jsonl")  # .json and .parquet are finished at the end only
    journal = {".json": tmp_path / "killed.json.partial"}.get(suffix, killed)
    if suffix != ".parquet":
        with open(journal, "a") as f:
            f.write('/half/a/li')  # what a kill in the middle of a write leaves
    monkeypatch.setattr(predictor_module.Predictor, "iter_predict_files", real)
    seen = []
    monkeypatch.setattr(predictor_module, "read_image", lambda path, **kw: seen.append(path) or read_image(path, **kw))
    result = runner.invoke(app, ["predict", str(ckpt), str(folder), "--out", str(killed), "--resume", "--quiet"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "2 row(s) already written" in said and len(seen) == len(xrays) - 2  # the text file is never read
    pd.testing.assert_frame_equal(read_output(killed), read_output(whole))
    assert f"{len(xrays)} predicted" in said and "1 unreadable" in said
    assert not any(tmp_path.glob("killed*.partial")) and not any(tmp_path.glob("killed*.parts"))
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        assert pq.ParquetFile(killed).num_row_groups == 3  # one per part: 5 rows in parts of 2
    if suffix == ".json":  # a finished array is not appended to: said, and the file is left as it is
        again = runner.invoke(app, ["predict", str(ckpt), str(folder), "--out", str(killed), "--resume", "--quiet"])
        assert again.exit_code == 2 and "use .jsonl" in " ".join(again.output.split())
