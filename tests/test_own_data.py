"""Your own data, end to end, with flags only (issue 12): nih_cxr's labels.csv as it is, and recipe 6 (fundus)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from medclass.cli import _register_all, app

_register_all()
runner = CliRunner()
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TINY = ["--set", "data.limit_per_class=40", "--set", "train.num_workers=0", "--set", "data.near_duplicates=false",
        "--set", "train.batch_size=16"]


def _ok(res) -> str:
    assert res.exit_code == 0, res.output + repr(res.exception)
    return " ".join(res.output.split())


@pytest.mark.slow
def test_nih_cxr_csv_as_it_is_with_a_label_map_and_a_view_filter(shared_data, tmp_path):
    labels = shared_data / "nih_cxr" / "labels.csv"  # paths images/x.png relative to the CSV, patient_id, metadata
    flags = ["--path-column", "image", "--patient-column", "patient_id", "--label-map", "no_finding=normal",
             "--where", "view in [PA]"]
    out = _ok(runner.invoke(app, ["data", "check", str(labels), *flags, "--no-near-duplicates", "--workers", "1"]))
    assert "433 images" in out and "['normal', 'pneumonia']" in out and "view in [PA]" in out
    out = _ok(runner.invoke(app, ["train", "--data", str(labels), *flags, "--model", "simple_cnn", "--epochs", "1",
                                  "--image-size", "32", "--in-chans", "1", "--project", "own", "--experiment", "nih",
                                  "--quiet", "--set", f"workspace={tmp_path / 'ws'}", *TINY]))
    run = tmp_path / "ws" / "own" / "nih"
    split = pd.read_csv(run / "split.csv", dtype=str, keep_default_na=False)
    assert set(split["view"]) == {"PA"} and set(split["label"]) == {"normal", "pneumonia"}
    assert {"age", "sex", "follow_up", "finding_labels"} <= set(split.columns)  # metadata kept
    assert split.groupby("patient")["split"].nunique().max() == 1
    config = yaml.safe_load((run / "config.yaml").read_text())["data"]
    assert config["where"] == "view in [PA]" and config["label_map"] == {"no_finding": "normal"}
    from medclass.serving._card import model_card
    from medclass.artifacts import read_meta

    assert model_card(read_meta(run / "best.safetensors"))["data"]["patient_rule"] == "column 'patient_id'"

    _ok(runner.invoke(app, ["evaluate", str(run), "--n-boot", "0", "--cam-samples", "1", "--num-workers", "0"]))
    predictions = pd.read_csv(run / "predictions.csv")
    assert {"view", "age", "sex"} <= set(predictions.columns) and set(predictions["view"]) == {"PA"}
    report = (run / "report.html").read_text()
    assert "view in [PA]" in report and "no_finding" in report
    # the same model on the AP views: an external evaluation read with the same flags (the report's CAMs included)
    ap = [f if f != "view in [PA]" else "view in [AP]" for f in flags]
    _ok(runner.invoke(app, ["evaluate", str(run), "--data", str(labels), *ap, "--n-boot", "0", "--cam-samples", "1",
                            "--num-workers", "0", "--out", str(tmp_path / "ap")]))
    assert set(pd.read_csv(tmp_path / "ap" / "predictions.csv")["view"]) == {"AP"}
    _ok(runner.invoke(app, ["predict", str(run), str(labels), *flags, "--quiet", "--out", str(tmp_path / "p.csv")]))
    predicted = pd.read_csv(tmp_path / "p.csv")
    assert len(predicted) == 433 and (predicted["error"].fillna("") == "").all()
    assert set(predicted["view"]) == {"PA"} and predicted["patient"].notna().all()


def _manifest_code(shared_data: Path, out: Path) -> str:
    """The pandas lines of recipe 6's README, pointed at this machine's data and a temporary folder."""
    text = (EXAMPLES / "6_fundus_odir" / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    return code.replace('"../shared/data/fundus_odir"', repr(str(shared_data / "fundus_odir"))) \
               .replace('"workspace/recipes', f'"{out}')


@pytest.mark.slow
def test_recipe6_fundus_per_eye_manifest_and_a_tiny_run(shared_data, tmp_path):
    exec(compile(_manifest_code(shared_data, tmp_path), "recipe6_readme", "exec"), {})
    manifest = pd.read_csv(tmp_path / "fundus_eyes.csv")
    assert set(manifest["label"]) == {"normal", "diabetic_retinopathy", "other"}
    assert manifest.groupby("ID")["eye"].nunique().max() == 2 and len(manifest) > 6000
    assert manifest["path"].is_unique

    from medclass.config import apply_overrides, load_config
    from medclass.training import train

    cfg = load_config(EXAMPLES / "6_fundus_odir" / "config.yaml")
    assert cfg.data.patient_column == "ID" and cfg.train.augment == "fundus" and cfg.model.in_chans == 3
    assert cfg.data.classes == ["normal", "diabetic_retinopathy"]  # diabetic retinopathy is the positive class
    cfg = apply_overrides(cfg, [f"data.path={tmp_path / 'fundus_eyes.csv'}",
                                f"data.image_root={shared_data / 'fundus_odir' / 'images'}",
                                f"workspace={tmp_path / 'ws'}", "model.image_size=48", "train.epochs=1",
                                "train.num_workers=0", "data.limit_per_class=60", "data.near_duplicates=false"])
    result = train(cfg, progress=False)
    split = pd.read_csv(result.run_dir / "split.csv", dtype=str)
    assert set(split["label"]) == {"normal", "diabetic_retinopathy"}
    assert split.groupby("patient")["split"].nunique().max() == 1  # both eyes on one side of every split
    assert json.loads((result.run_dir / "audit.json").read_text())["final_clean"]


def test_a_hospital_csv_with_its_own_column_names_needs_no_column_flags(tmp_path):
    """A manifest as a new site sends it: the image column named otherwise (found by its values, which name image
    files in a sub-folder), 'Label' capitalised, a patient column the user must still name (its hint is given)."""
    import numpy as np
    from PIL import Image

    (tmp_path / "site" / "imgs").mkdir(parents=True)
    rows = []
    for i in range(24):
        Image.fromarray(np.full((16, 16), 10 * i, np.uint8)).save(tmp_path / "site" / "imgs" / f"s{i:03d}.png")
        rows.append({"Image File": f"imgs/s{i:03d}.png", "Label": ["normal", "effusion"][i % 2],
                     "PatientID": f"P{i // 2}", "age": str(40 + i)})
    csv = tmp_path / "site" / "manifest.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    out = _ok(runner.invoke(app, ["data", "check", str(csv), "--no-near-duplicates", "--workers", "1"]))
    assert "using 'Image File' (its values name the image files" in out and "using 'Label'" in out
    assert "24 images" in out and "['effusion', 'normal']" in out
    assert "--patient-column PatientID" in out  # the patient column is named, never guessed silently
    out = _ok(runner.invoke(app, ["data", "check", str(csv), "--patient-column", "PatientID", "--no-near-duplicates",
                                  "--workers", "1"]))
    assert "12 patients" in out
    ids = pd.DataFrame({"id_code": [f"s{i:03d}" for i in range(24)], "diagnosis": [r["Label"] for r in rows],
                        "PatientID": [r["PatientID"] for r in rows]})  # ids without an extension, a usual label name
    ids.to_csv(tmp_path / "site" / "ids.csv", index=False)
    out = _ok(runner.invoke(app, ["data", "check", str(tmp_path / "site" / "ids.csv"), "--image-root",
                                  str(tmp_path / "site" / "imgs"), "--patient-column", "PatientID",
                                  "--no-near-duplicates", "--workers", "1"]))
    assert "using 'id_code' (a usual name" in out and "using 'diagnosis'" in out and "24 images" in out
    (tmp_path / "site" / "two.csv").write_text("a,b,label\nimgs/s000.png,imgs/s001.png,normal\n")
    res = runner.invoke(app, ["data", "check", str(tmp_path / "site" / "two.csv")])  # two image columns: no guess
    assert res.exit_code != 0 and "no column 'path'" in " ".join(res.output.split())
