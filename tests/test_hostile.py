"""One guarded reader: every command that reads images meets the same hostile files (tests/_hostile.py) and
skips or reports each one on one line, never with a traceback: data check, train, evaluate --data, predict,
explain, the serving Predictor and the upload decoder of the API / web app."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from medclass.cli import _register_all, app
from medclass.data.io import image_info, read_image
from medclass.errors import ImageReadError, ImageTooLargeError

from _helpers import make_images
from _hostile import ODD_BUT_READABLE, UNREADABLE, write_hostile

_register_all()
runner = CliRunner()
TOO_LARGE = ("bomb.png", "huge.dcm")
PATIENTS = ["--patient-regex", r"^(p[a-z]+\d+)_"]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two class folders of 8 good images each, plus the hostile files in each."""
    data = make_images(tmp_path_factory.mktemp("hostile") / "data", n_per_class=8)
    for label in ("disk", "plain"):
        write_hostile(data / label)
    return data


@pytest.fixture(scope="module")
def run(hostile: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``medclass train`` on the hostile folder (1 epoch, simple_cnn at 32 px): the train command's test."""
    ws = tmp_path_factory.mktemp("ws")
    out = runner.invoke(app, ["train", "--data", str(hostile), "--model", "simple_cnn", "--image-size", "32",
                              "--in-chans", "1", "--epochs", "1", "--batch-size", "8", "--quiet", *PATIENTS,
                              "--set", f"workspace={ws}", "--set", "train.num_workers=0",
                              "--set", "data.near_duplicates=false", "--experiment", "hostile"])
    _no_traceback(out, 0)
    return ws / "default" / "hostile"


def _no_traceback(out, code: int) -> None:
    assert out.exit_code == code, out.output + repr(out.exception)
    assert "Traceback" not in out.output, out.output
    assert out.exception is None or isinstance(out.exception, SystemExit), repr(out.exception)


@pytest.mark.parametrize("name", UNREADABLE)
def test_the_reader_refuses_each_unreadable_file_with_a_reason(hostile: Path, name: str) -> None:
    path = hostile / "disk" / name
    readers = (read_image, image_info) if name != "truncated.png" else (read_image,)  # its header is intact
    for read in readers:
        with pytest.raises(ImageReadError) as e:
            read(path, frame=0) if read is read_image and name.endswith(".dcm") else read(path)
        assert e.value.reason and str(path) in str(e.value)
        assert isinstance(e.value, ImageTooLargeError) == (name in TOO_LARGE)


@pytest.mark.parametrize("name", ODD_BUT_READABLE)
def test_the_reader_reads_odd_but_valid_files(hostile: Path, name: str) -> None:
    img = read_image(hostile / "disk" / name)
    assert img.shape[:2] == (40, 40) and 0 <= img.min() <= img.max() <= 1
    assert image_info(hostile / "disk" / name)["width"] == 40


def test_data_check_lists_every_unreadable_file(hostile: Path, tmp_path: Path) -> None:
    out = runner.invoke(app, ["data", "check", str(hostile), "--out", str(tmp_path), *PATIENTS])
    _no_traceback(out, 0)
    report = json.loads((tmp_path / "data_check.json").read_text())
    listed = {Path(r["path"]).name for r in report["unreadable"] + report["skipped"]}
    assert set(UNREADABLE) <= listed, listed


def test_train_skips_the_unreadable_files(run: Path) -> None:
    split = pd.read_csv(run / "split.csv")
    assert "huge.dcm" not in {Path(p).name for p in split["path"]}  # refused when listed, not 1,000 frame rows
    assert (run / "best.safetensors").is_file()


def test_evaluate_on_hostile_data_writes_its_shift_section(run: Path, hostile: Path, tmp_path: Path) -> None:
    out = runner.invoke(app, ["evaluate", str(run), "--data", str(hostile), "--out", str(tmp_path / "ev"),
                              "--n-boot", "20", *PATIENTS])
    _no_traceback(out, 0)
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["shift"]["image_statistics"]["external"]  # the step that used to end in DecompressionBombError
    assert "WARNING: WARNING:" not in out.output
    skips = [line for line in out.output.splitlines() if "Skipping unreadable image" in line]
    assert len(skips) == len(set(skips))  # each file reported once per process, not once per pass over the data


def test_predict_gives_each_unreadable_file_a_reason(run: Path, hostile: Path, tmp_path: Path) -> None:
    out = runner.invoke(app, ["predict", str(run), str(hostile / "disk"), "--out", str(tmp_path / "p.csv")])
    _no_traceback(out, 0)
    table = pd.read_csv(tmp_path / "p.csv").assign(name=lambda d: d["path"].map(lambda p: Path(p).name))
    errors = table.set_index("name")["error"]
    assert errors[list(UNREADABLE)].notna().all() and errors[list(ODD_BUT_READABLE)].isna().all()
    assert "too large" in errors["bomb.png"] and "too large" in errors["huge.dcm"]


def test_explain_reports_unreadable_files_on_their_rows(run: Path, hostile: Path, tmp_path: Path) -> None:
    files = [str(hostile / "disk" / n) for n in UNREADABLE + ODD_BUT_READABLE]
    out = runner.invoke(app, ["explain", str(run), *files, "--out", str(tmp_path / "x")])
    _no_traceback(out, 1)  # exit 1: some inputs could not be explained (documented)
    assert out.output.count("unreadable:") == len(UNREADABLE)
    assert len(list((tmp_path / "x").glob("*.png"))) == len(ODD_BUT_READABLE)


def test_serving_predictor_and_uploads(run: Path, hostile: Path) -> None:
    from medclass.serving._upload import UploadError, decode_upload
    from medclass.serving.predictor import Predictor

    predictor = Predictor.from_checkpoint(run / "best.safetensors")
    table = predictor.predict_files([hostile / "disk" / n for n in UNREADABLE + ODD_BUT_READABLE], progress=False)
    assert table["error"].fillna("").astype(bool).sum() == len(UNREADABLE)
    for name in UNREADABLE:
        with pytest.raises(UploadError) as e:
            decode_upload((hostile / "disk" / name).read_bytes(), name, None, frame=0)
        assert e.value.status == (413 if name in TOO_LARGE else 422), (name, e.value.message)
    for name in ODD_BUT_READABLE:
        assert decode_upload((hostile / "disk" / name).read_bytes(), name, None).shape[:2] == (40, 40)
