"""Reliability through the CLI as typed: Ctrl-C during `train` (exit 130 and the resume command), library
noise kept off the console (`--debug` shows it), messages that name what a user types, atomic writes that
survive a full disk or a kill, and one `train` per run folder at a time."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medclass.cli import _register_all, app

from _helpers import make_checkpoint, make_images

_register_all()
runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "from medclass.cli import main; main()"]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def _wait_for(path: Path, proc: subprocess.Popen, limit: float = 120.0) -> None:
    """Wait for ``path`` to appear (the event), failing early if the process ends first."""
    deadline = time.monotonic() + limit
    while not path.exists():
        assert proc.poll() is None, f"the process ended (code {proc.returncode}) before {path.name} appeared"
        assert time.monotonic() < deadline, f"{path} did not appear within {limit} s"
        time.sleep(0.05)


def test_ctrl_c_during_train_exits_130_and_names_the_resume_command(tmp_path: Path) -> None:
    data = make_images(tmp_path / "data", n_per_class=8)
    run = tmp_path / "ws" / "default" / "ctrlc"
    proc = subprocess.Popen(
        [*CLI, "train", "--data", str(data), "--model", "simple_cnn", "--image-size", "32", "--in-chans", "1",
         "--epochs", "500", "--batch-size", "8", "--quiet", "--experiment", "ctrlc",
         "--set", f"workspace={tmp_path / 'ws'}", "--set", "train.num_workers=0", "--set", "train.early_stopping=0",
         "--set", r"data.patient_regex=^(p[a-z]+\d+)_", "--set", "data.near_duplicates=false"],
        cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(run / "metrics.csv", proc)  # the event: epoch 1 is done, training is under way
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, out + err
    assert f"interrupted; resume with `medclass train --resume {run}`" in err.replace("\n", ""), err
    assert "Traceback" not in out + err


@pytest.mark.slow
def test_real_dicom_gives_no_library_tracebacks_unless_debug(shared_data: Path, tmp_path: Path) -> None:
    """pydicom logs a traceback for each file it cannot decode and warns about non-conforming headers: medclass
    reports those files once with their reason; the library's own lines appear with --debug only."""
    ckpt = make_checkpoint(tmp_path / "m.safetensors")
    predict = [*CLI, "predict", str(ckpt), str(shared_data / "dicom"), "--out", str(tmp_path / "p.csv")]
    check = subprocess.run([*CLI, "data", "check", str(shared_data / "dicom"), "--out", str(tmp_path / "dc")],
                           env=_env(), capture_output=True, text=True, timeout=300)
    quiet = subprocess.run(predict, env=_env(), capture_output=True, text=True, timeout=300)
    for proc in (check, quiet):
        assert proc.returncode == 0, proc.stderr[-3000:]
        for noise in ("Traceback", "Invalid value for VR", "End of file reached", "site-packages"):
            assert noise not in proc.stdout + proc.stderr, (proc.args[3], noise, proc.stderr[-3000:])
    assert "unreadable" in quiet.stdout  # the files pydicom failed on are still reported, on one line each
    debug = subprocess.run([*CLI[:3], "--debug", *predict[3:]], env=_env(), capture_output=True, text=True, timeout=300)
    assert debug.returncode == 0 and "Traceback" in debug.stderr and "pydicom/" in debug.stderr, debug.stderr[-3000:]


def test_train_without_data_says_it_uses_the_shipped_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    import medclass.cli.train as train_cli
    from medclass.errors import ConfigError

    def stop(*args, **kwargs):
        raise ConfigError("stopped before training (test)")

    monkeypatch.setattr(train_cli, "_train", stop)
    out = runner.invoke(app, ["train", "--model", "simple_cnn"])
    assert out.exit_code == 2 and "data: chest_xray_sample, the 600 chest X-rays shipped with medclass" in \
        out.output.replace("\n", " "), out.output
    out = runner.invoke(app, ["train", "--model", "simple_cnn", "--data", "/some/folder"])
    assert "shipped" not in out.output  # the user named the data


def test_a_class_with_one_image_names_the_folds_flag(tmp_path: Path) -> None:
    data = make_images(tmp_path / "data", n_per_class=8)
    for extra in sorted((data / "plain").iterdir())[1:]:
        extra.unlink()
    out = runner.invoke(app, ["train", "--data", str(data), "--model", "simple_cnn", "--image-size", "32", "--epochs", "1",
                              "--set", f"workspace={tmp_path / 'ws'}", "--set", "data.near_duplicates=false", "--quiet"])
    assert out.exit_code == 2, out.output
    text = out.output.replace("\n", " ")
    assert "only 1 patient(s)" in text and "medclass train --folds" in text and "assign_folds" not in text, text


def test_a_folder_of_unreadable_files_says_so(tmp_path: Path) -> None:
    for label in ("a", "b"):
        (tmp_path / "data" / label).mkdir(parents=True)
        for i in range(6):
            (tmp_path / "data" / label / f"{label}{i}.png").write_text("not an image")
    out = runner.invoke(app, ["data", "check", str(tmp_path / "data"), "--out", str(tmp_path)])
    assert out.exit_code == 0, out.output
    text = out.output.replace("\n", " ")
    assert "None of the 12 images can be read" in text and "split_too_small" not in text, text
