"""`medclass evaluate` and `medclass explain` through typer's CliRunner; explain_images on its own."""
from __future__ import annotations

import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from _run_fixture import make_run
from medclass.cli import _register_all, app
from medclass.data.io import read_image
from medclass.data.transforms import build_transform
from medclass.evaluation.explain_images import explain_images
from medclass.artifacts.checkpoint import load_checkpoint

_register_all()
runner = CliRunner()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("cli"))


def _test_images(run, n=2) -> list[str]:
    split = pd.read_csv(run / "split.csv")
    return split.loc[split["split"] == "test", "path"].tolist()[:n]


def test_explain_images_matches_model_and_writes_overlays(run, tmp_path):
    paths = _test_images(run)
    rows = explain_images(run, paths + [paths[0]], tmp_path, method="gradcam++", target_class="PNEUMONIA")
    model, meta = load_checkpoint(run / "best.safetensors")
    pre = meta.preprocessing
    tf = build_transform("none", pre.image_size, 1, pre.mean, pre.std, train=False)
    with torch.no_grad():
        p = torch.sigmoid(model(tf(read_image(paths[0]))[None])[0, 0] / meta.temperature).item()
    assert rows[0]["probs"]["PNEUMONIA"] == pytest.approx(p, rel=1e-5)
    assert rows[0]["predicted"] == ("PNEUMONIA" if p >= meta.threshold else "NORMAL")
    assert all(r["explained_class"] == "PNEUMONIA" for r in rows)
    assert len({r["overlay"] for r in rows}) == 3  # same stem twice gets a second name
    with Image.open(rows[0]["overlay"]) as im, Image.open(paths[0]) as original:
        assert im.size == original.size and im.mode == "RGB"  # drawn on the original image, not the model input


def test_explain_cli(run, tmp_path):
    paths = _test_images(run)
    res = runner.invoke(app, ["explain", str(run), *paths, "--out", str(tmp_path), "--method", "eigencam"])
    assert res.exit_code == 0, res.output
    assert "NORMAL" in res.output or "PNEUMONIA" in res.output
    assert len(list(tmp_path.glob("*_eigencam.png"))) == 2
    bad = runner.invoke(app, ["explain", str(run), paths[0], "--out", str(tmp_path), "--method", "gradkam"])
    assert bad.exit_code == 2 and "gradcam" in bad.output
    cls = runner.invoke(app, ["explain", str(run), paths[0], "--out", str(tmp_path), "--target-class", "PNEUMONA"])
    assert cls.exit_code == 2 and "PNEUMONIA" in cls.output
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    res = runner.invoke(app, ["explain", str(run), str(broken), "--out", str(tmp_path)])
    assert res.exit_code == 1 and "unreadable" in res.output


def test_evaluate_cli(run, tmp_path):
    res = runner.invoke(app, ["evaluate", str(run), "--out", str(tmp_path), "--n-boot", "30", "--no-tta",
                              "--cam-samples", "1", "--num-workers", "0"])
    assert res.exit_code == 0, res.output
    assert "No evaluated image or patient was used" in " ".join(res.output.split()) and "roc_auc" in res.output
    assert (tmp_path / "report.html").is_file() and (tmp_path / "metrics.json").is_file()
    missing = runner.invoke(app, ["evaluate", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "does not exist" in " ".join(missing.output.split())


def test_explain_and_predict_tables_keep_file_names_whole_at_80_columns(run, tmp_path, monkeypatch):
    """Issue 12: at 80 columns the tables folded every path into 13-character pieces."""
    from pathlib import Path

    from medclass.cli._common import console

    monkeypatch.setattr(console, "width", 80)
    paths = _test_images(run)
    res = runner.invoke(app, ["explain", str(run), *paths, "--out", str(tmp_path / "cams")])
    assert res.exit_code == 0, res.output
    assert all(Path(p).name in res.output for p in paths), res.output
    res = runner.invoke(app, ["predict", str(run), *paths, "--quiet"])
    assert res.exit_code == 0, res.output
    assert all(Path(p).name in res.output for p in paths), res.output
