"""No patient ids never means a silent split by image (issue 29): refusal, known naming schemes, the estimate."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from medclass.cli import _register_all, app
from medclass.config import DataConfig
from medclass.data.audit import audit_leaks
from medclass.data.check import check_data
from medclass.data.fingerprint import from_hex
from medclass.data.naming import name_prefixes, recognise_scheme
from medclass.data.patients import describe_patient_ids
from medclass.data.prepare import prepare_data
from medclass.data.sources import load_source
from medclass.data.table import DataTable
from medclass.evaluation._leakcheck import patient_id_warnings
from medclass.errors import DatasetError

runner = CliRunner()
_register_all()


def _write(folder, names_per_class: dict[str, list[str]], size: int = 24, seed: int = 0):
    rng = np.random.default_rng(seed)
    for label, names in names_per_class.items():
        (folder / label).mkdir(parents=True, exist_ok=True)
        for name in names:
            Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(folder / label / name)
    return folder


@pytest.fixture
def anonymous(tmp_path):
    """A folder whose names carry no patient: img_0001.png ... (4 'series' share a prefix: scan12_1, scan12_2)."""
    names = {c: [f"img_{c}{i:03d}.png" for i in range(10)] + [f"scan{c}{k}_{j}.png" for k in range(2) for j in range(3)]
             for c in ("a", "b")}
    return _write(tmp_path / "data", {f"class_{c}": n for c, n in names.items()})


def test_prefixes_and_schemes():
    assert name_prefixes(pd.Series(["IM-0115-0001.jpeg", "00000001_000.png", "scan_17.png", "p/x.nii.gz"])).tolist() == [
        "IM-0115", "00000001", "scan_17", "x"]
    assert name_prefixes(pd.Series(["scan_17.png", "a/IM-1-2.png"]), numbered_only=True).tolist() == ["", "IM-1"]
    cases = {
        "kermany_chest_xray": ["d/NORMAL/IM-0115-0001.jpeg", "d/PNEUMONIA/person1_virus_6.jpeg", "NORMAL2-IM-0012-0001.jpeg"],
        "nih_chestxray14": ["images/00000001_000.png", "images/00000001_001.png"],
        "odir": ["img/0_left.jpg", "img/0_right_69_Female_N.jpg"],
        "chexpert": ["train/patient00001/study1/view1_frontal.jpg"],
        "mimic_cxr": ["files/p10/p10000032/s50414267/02aa804e-bde0afdd.jpg"],
        "montgomery_shenzhen": ["CXR_png/MCUCXR_0001_0.png", "CHNCXR_0001_1.png"],
    }
    for scheme, paths in cases.items():
        assert recognise_scheme(pd.Series(paths)).scheme.name == scheme, paths
    assert recognise_scheme(pd.Series(["a/x1.png", "a/IM-0001-0001.jpeg"])) is None  # under 90 % follow it
    assert recognise_scheme(pd.Series([], dtype=str)) is None


def test_a_folder_without_patient_ids_is_refused_before_training(anonymous, tmp_path):
    with pytest.raises(DatasetError) as e:
        prepare_data(DataConfig(path=str(anonymous), near_duplicates=False), workers=1)
    message = str(e.value)
    for words in ("No patient ids", "same patient in training and test", "--patient-column", "--patient-regex",
                  "--split-by image", "differ only in their last number", "scana0 (3 images)"):
        assert words in message, words
    table = prepare_data(DataConfig(path=str(anonymous), near_duplicates=False, split_by="image"), workers=1,
                         out_dir=tmp_path / "run")
    audit = json.loads((tmp_path / "run" / "audit.json").read_text())
    assert audit["patient_ids"]["missing"] and audit["patient_ids"]["split_by"] == "image"
    assert audit["patient_ids"]["warning"].startswith("Split by image (--split-by image)")
    final = audit["final"]["summary"]
    assert final.startswith("No patient ids: patient overlap between splits cannot be checked; estimate:")
    assert set(table.frame["split"]) == {"train", "val", "test"}


def test_the_cli_says_it_before_training_and_data_check_warns(anonymous, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["train", "--data", str(anonymous), "--model", "simple_cnn", "--epochs", "1",
                                 "--image-size", "32", "--quiet"])
    assert result.exit_code != 0 and "No patient ids" in result.output and "--split-by image" in result.output
    assert not list(tmp_path.glob("workspace/*/*/best.safetensors"))  # nothing was trained
    result = runner.invoke(app, ["data", "check", str(anonymous), "--workers", "1", "--no-near-duplicates"])
    assert result.exit_code == 0, result.output
    assert "warning (no_patient_ids)" in result.output and "No warnings" not in result.output
    assert "refuses to split this data" in result.output


def test_csv_without_a_patient_column_names_the_likely_column(tmp_path):
    folder = _write(tmp_path, {"img": [f"{i}.png" for i in range(12)]})
    frame = pd.DataFrame({"file": [f"img/{i}.png" for i in range(12)], "y": ["pos", "neg"] * 6,
                          "subject_id": [f"s{i // 3}" for i in range(12)], "age": range(12)})
    frame.to_csv(folder / "labels.csv", index=False)
    cfg = DataConfig(path=str(folder / "labels.csv"), path_column="file", label_column="y")
    info = describe_patient_ids(load_source(cfg), cfg)
    assert info.missing and info.candidate_columns == ("subject_id",)
    assert "--patient-column subject_id" in info.warning()
    report = check_data(cfg, workers=1, near_duplicates=False)
    assert [w["kind"] for w in report["warnings"]][0] == "no_patient_ids"
    cfg_ok = DataConfig(path=str(folder / "labels.csv"), path_column="file", label_column="y", patient_column="subject_id")
    assert describe_patient_ids(load_source(cfg_ok), cfg_ok).warning() == ""


def test_kermany_names_get_their_patients_and_the_preset_is_named(tmp_path):
    names = {"NORMAL": [f"IM-{p:04d}-000{k}.jpeg" for p in range(6) for k in (1, 2)],
             "PNEUMONIA": [f"person{p}_{kind}_{k}.jpeg" for p in range(6) for kind, k in (("bacteria", 1), ("virus", 2))]}
    folder = _write(tmp_path / "cxr", names)
    cfg = DataConfig(path=str(folder))
    table = load_source(cfg)
    assert table.frame["patient"].nunique() == 12 and (table.frame["patient"] != "").all()
    report = check_data(cfg, workers=1, near_duplicates=False)
    assert "kermany_chest_xray" in report["patients"]["how"] and "--preset kermany_chest_xray" in report["patients"]["how"]
    assert "no_patient_ids" not in {w["kind"] for w in report["warnings"]}
    split = prepare_data(DataConfig(path=str(folder), near_duplicates=False, val_fraction=0.2, test_fraction=0.2),
                         workers=1).frame
    assert (split.groupby("patient")["split"].nunique() == 1).all()  # a person's images stay together
    # asked explicitly to split by image: the scheme is not applied, and the warning names it
    by_image = DataConfig(path=str(folder), split_by="image")
    info = describe_patient_ids(load_source(by_image), by_image)
    assert info.missing and "follow the kermany_chest_xray scheme" in info.warning()


def test_nih_names_give_the_patient_before_the_underscore(tmp_path):
    names = {"no_finding": [f"{p:08d}_{k:03d}.png" for p in range(1, 5) for k in range(3)],
             "pneumonia": [f"{p:08d}_{k:03d}.png" for p in range(5, 9) for k in range(3)]}
    table = load_source(DataConfig(path=str(_write(tmp_path / "nih", names))))
    assert sorted(table.frame["patient"].unique()) == [f"{p:08d}" for p in range(1, 9)]


def test_audit_estimates_patient_leaks_it_cannot_see():
    rows = [("IM-0001-0001.jpeg", "train"), ("IM-0001-0002.jpeg", "test"), ("IM-0002-0001.jpeg", "train"),
            ("IM-0002-0002.jpeg", "train"), ("scan_7.png", "val"), ("scan_8.png", "test")]
    table = DataTable(pd.DataFrame([{"path": p, "label": "A", "split": s} for p, s in rows]), ["A"])
    fp = from_hex(pd.DataFrame({"path": [p for p, _ in rows], "sha256": [f"{i:064x}" for i in range(6)], "phash": ""}))
    report = audit_leaks(table, fp, near_duplicates=False)
    counts = report.counts()
    assert counts["images_without_patient"] == 6 and counts["prefix_groups_cross_split"] == 1
    assert counts["probable_patient_leaks"] == 1
    assert report.prefix_examples == [{"prefix": "IM-0001", "splits": {"test": 1, "train": 1}}]
    assert "No patient ids" in report.summary() and "1 probable patient leak(s)" in report.summary()


def test_evaluation_says_the_run_was_split_by_image():
    reference = pd.DataFrame({"path": ["t/IM-0001-0001.png", "t/a.png"], "patient": ["", "dup:a"]})
    evaluated = pd.DataFrame({"path": ["t/IM-0001-0002.png", "t/b.png"], "patient": ["", ""]})
    ids = patient_id_warnings(evaluated, reference, near=0, ref_names="training or validation")
    assert ids["reference_without_id"] == 2 and ids["probable_same_patient"] == 1
    assert ids["warning"].startswith("The run was split by image")
    assert "confidence intervals treat each image as its own patient" in ids["warning"]
    named = patient_id_warnings(evaluated.assign(patient=["p1", "p2"]), reference.assign(patient=["p1", "p3"]), 0, "x")
    assert named["warning"] == ""


def test_evaluate_report_and_model_card_say_the_run_was_split_by_image(tmp_path):
    from _run_fixture import make_run

    from medclass.evaluation.evaluate import evaluate

    run = make_run(tmp_path)
    split = pd.read_csv(run / "split.csv", dtype=str, keep_default_na=False)
    split.assign(patient="").to_csv(run / "split.csv", index=False)  # a run split by image
    result = evaluate(run, n_boot=50, cam_samples=0, num_workers=0, report=True)
    leak = result.metrics["leak_check"]
    assert leak["patient_ids"]["warning"].startswith("The run was split by image")
    assert "The run was split by image" in leak["statement"]
    card = (result.out_dir / "model_card.md").read_text()
    assert "**Warning: patients.** The run was split by image" in card
    html = (result.out_dir / "report.html").read_text()
    assert html.count("The run was split by image") >= 2  # the summary box and the leak check
