"""`check_data` and `medclass data check` on a generated folder and on the real data sets."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from medclass.cli import _register_all, app
from medclass.config import DataConfig
from medclass.data.check import REPORT_FILE, check_data

runner = CliRunner()
_register_all()


@pytest.fixture
def folder(tmp_path):
    """Two class folders; one image copied into the other class; one corrupt file."""
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    for cls, n in (("cat", 4), ("dog", 3)):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray((rng.random((40, 36, 3)) * 255).astype(np.uint8)).save(root / cls / f"{cls}{i}.png")
    shutil.copy(root / "cat" / "cat0.png", root / "dog" / "copy_of_cat0.png")
    (root / "dog" / "broken.png").write_bytes(b"not an image at all")
    return root


def test_check_data_reports_counts_sizes_duplicates_and_unreadable(folder, tmp_path):
    report = check_data(str(folder), out=tmp_path / "out", workers=1)
    assert report["source"]["classes"] == ["cat", "dog"]
    images = report["counts"]["images"]
    in_table = sum(n for per_class in images.values() for n in per_class.values())
    assert in_table + len(report["skipped"]) == 9  # 4 cats, 3 dogs, a copy, a broken file
    assert report["sizes"]["width"] == {"min": 36, "median": 36.0, "max": 36}
    assert report["sizes"]["height"]["max"] == 40
    audit = report["audit"]
    assert audit["counts"]["exact_groups"] == 1
    assert sorted(p.rsplit("/", 1)[-1] for p in audit["exact_groups"][0]["paths"]) == ["cat0.png", "copy_of_cat0.png"]
    assert audit["exact_groups"][0]["conflicting_labels"]
    broken = [r for r in report["unreadable"] + report["skipped"] if r["path"].endswith("broken.png")]
    assert len(broken) == 1 and broken[0]["reason"]
    written = json.loads((tmp_path / "out" / REPORT_FILE).read_text())
    assert written["audit"]["counts"] == audit["counts"]


def test_check_data_accepts_a_data_config(folder):
    report = check_data(DataConfig(path=str(folder), classes=["dog", "cat"]), near_duplicates=False, workers=1)
    assert report["source"]["classes"] == ["dog", "cat"]
    assert report["audit"]["max_distance"] == -1


def test_cli_prints_tables_and_writes_the_report(folder, tmp_path):
    result = runner.invoke(app, ["data", "check", str(folder), "--out", str(tmp_path / "o"), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "Byte-identical images" in result.output
    assert "1 group(s) of byte-identical images (2 images)" in result.output
    assert "broken.png" in result.output
    assert (tmp_path / "o" / REPORT_FILE).is_file()


def test_cli_error_is_one_red_line(tmp_path):
    result = runner.invoke(app, ["data", "check", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "error:" in result.output and "nowhere" in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_chest_xray_check(shared_data, request):
    cache = request.config.cache.mkdir("medclass-fingerprints")
    result = runner.invoke(app, ["data", "check", str(shared_data / "chest_xray"), "--preset", "kermany_chest_xray",
                                 "--cache-dir", str(cache)])
    assert result.exit_code == 0, result.output
    report = check_data(DataConfig(path=str(shared_data / "chest_xray"), preset="kermany_chest_xray"), cache_dir=cache)
    assert report["audit"]["counts"]["exact_groups"] == 25
    assert report["counts"]["images"]["unsplit"] == {"NORMAL": 1337, "PNEUMONIA": 3642}
    assert report["counts"]["images_without_patient"] == 0
    assert "25 group(s) of byte-identical images" in result.output
    links = next(w["details"] for w in report["warnings"] if w["kind"] == "duplicate_patients")
    assert ["NORMAL2-IM-0095", "NORMAL2-IM-0096"] in links and "duplicate_patients" in result.output  # by name
    assert report["counts"]["images_without_patient"] == 0 and "imbalance" not in {w["kind"] for w in report["warnings"]}


@pytest.mark.slow
@pytest.mark.parametrize("target", ["head_ct/labels.csv", "head_ct"])
def test_head_ct_labels_csv(shared_data, request, target):
    cache = request.config.cache.mkdir("medclass-fingerprints")
    report = check_data(DataConfig(path=str(shared_data / target), path_column="id", label_column="hemorrhage"),
                        cache_dir=cache)
    per_class = report["counts"]["images"]["unsplit"]
    assert sorted(per_class.values()) == [100, 100]
    assert report["unreadable"] == [] and report["skipped"] == []


@pytest.mark.slow
def test_dicom_folder_lists_unreadable_files(shared_data, request):
    cache = request.config.cache.mkdir("medclass-fingerprints")
    report = check_data(shared_data / "dicom", cache_dir=cache)
    problems = report["unreadable"] + report["skipped"]
    assert problems and all(p["reason"] for p in problems)
    assert report["sizes"]["readable"] > 0
    result = runner.invoke(app, ["data", "check", str(shared_data / "dicom"), "--cache-dir", str(cache)])
    assert result.exit_code == 0, result.output
    for p in problems:  # rich may shorten long names to the terminal width
        assert p["path"].rsplit("/", 1)[-1][:25] in result.output


def test_data_check_of_an_outside_csv_names_the_positive_class_and_links_patient_ids(tmp_path):
    """A COVID-style CSV: sorted names made `non_covid` positive, and one file listed under two patient ids was
    silently kept once (313 patients became 311 without a word). Now both are said where a person reads them."""
    from _helpers import covid_style_csv

    csv, flags = covid_style_csv(tmp_path / "covid")
    out = runner.invoke(app, ["data", "check", str(csv), *flags, "--positive", "covid", "--workers", "1"])
    text = " ".join(out.output.replace("│", " ").split())  # table cells wrap over lines
    assert out.exit_code == 0, out.output
    assert "classes ['non_covid', 'covid']" in text and "Positive class: covid" in text
    assert "'covid-99' here, 'covid-5' there" in text and "linked into one" in text
    assert "39 patients" in text  # 20 + 19 after the link and the filters (40 if the ids stayed apart)
    default = runner.invoke(app, ["data", "check", str(csv), *flags, "--workers", "1"])
    assert "Positive class: non_covid" in " ".join(default.output.split())  # the default, said out loud
    typo = runner.invoke(app, ["data", "check", str(csv), *flags, "--positive", "covd"])
    assert typo.exit_code == 2 and "is not a class" in typo.output and "'covid'" in typo.output
    three = runner.invoke(app, ["data", "check", str(csv), *flags[:-4], "--positive", "covid"])  # unknown kept: 3 classes
    assert three.exit_code == 2 and "is for two classes" in " ".join(three.output.split())
