"""The CLI's output and errors: one line and exit code 2 for every expected error (traceback with --debug),
unexpected exceptions keep theirs; --quiet prints nothing but errors, --verbose adds INFO, third-party noise filtered."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from medclass.cli import _register_all, app
from medclass.errors import ConfigError

from _helpers import make_checkpoint, make_images

_register_all()
runner = CliRunner()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "m.safetensors")


def _one_error_line(out, *needles: str) -> None:
    assert out.exit_code == 2, out.output
    lines = [ln for ln in out.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), out.output
    for needle in needles:
        assert needle in lines[0], out.output
    assert "Traceback" not in out.output


def test_predict_on_an_unknown_device_is_one_line(checkpoint: Path, tmp_path: Path) -> None:
    _one_error_line(runner.invoke(app, ["predict", str(checkpoint), str(tmp_path), "--device", "banana"]),
                    "Unknown device 'banana'", "cuda:N")


def test_predict_on_a_gpu_this_machine_lacks_is_one_line(checkpoint: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    _one_error_line(runner.invoke(app, ["predict", str(checkpoint), str(tmp_path), "--device", "cuda"]),
                    "torch sees 0 CUDA GPU(s)", "--device cpu")


@pytest.mark.parametrize("args, needles", [
    (["train", "--set", "data.classes={a: b}"], ["data.classes={'a': 'b'}", "expected a list of names"]),
    (["train", "--set", "train.lr=-1"], ["train.lr=-1.0 is out of range"]),
    (["train", "--set", "model.pool=maxx", "--data", "/no/such/data"], ["model.pool"]),
    (["train", "--data", "/no/such/data", "--model", "simple_cnn"], ["/no/such/data"]),
    (["config", "--set", "eval.cam_method=gradcamm"], ["eval.cam_method", "gradcam++"]),
    (["lr-find", "--set", "train.accumulate=0"], ["train.accumulate=0 is out of range"]),
])
def test_expected_errors_are_one_line_with_exit_code_2(args: list[str], needles: list[str]) -> None:
    _one_error_line(runner.invoke(app, args), *needles)


@pytest.mark.parametrize("content, needle", [
    (b"train:\n\tlr: 0.1\n", "not tabs"),
    (b"\x00\x01binary", "holds binary data"),
    (b"train: [1\n", "is not valid YAML"),
])
def test_bad_config_files_are_one_line(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "run.yaml"
    path.write_bytes(content)
    _one_error_line(runner.invoke(app, ["train", str(path)]), str(path), needle)


def test_debug_keeps_the_traceback_of_expected_errors() -> None:
    out = runner.invoke(app, ["--debug", "train", "--set", "train.lr=-1"])
    assert isinstance(out.exception, ConfigError) and out.exit_code == 1


def test_unexpected_exceptions_keep_their_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    import medclass.cli.models as models_cli

    def broken(pattern: str = "*"):
        raise RuntimeError("a bug")

    monkeypatch.setattr(models_cli, "models_table", broken)
    out = runner.invoke(app, ["models"])
    assert isinstance(out.exception, RuntimeError) and out.exit_code == 1


def test_a_missing_optional_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import medclass.cli.models as models_cli

    def needs_optuna(pattern: str = "*"):
        raise ModuleNotFoundError("No module named 'optuna'", name="optuna")

    monkeypatch.setattr(models_cli, "models_table", needs_optuna)
    _one_error_line(runner.invoke(app, ["models"]), "pip install 'medclass[tune]'")


def test_quiet_prints_nothing_but_errors() -> None:
    out = runner.invoke(app, ["--quiet", "models", "simple*"])
    assert out.exit_code == 0 and out.output == ""
    _one_error_line(runner.invoke(app, ["--quiet", "models", "nothing*"]), "No registered model matches")
    assert "simple_cnn" in runner.invoke(app, ["models", "simple*"]).output  # printed again without --quiet


def test_training_output_is_quiet_and_readable(tmp_path: Path) -> None:
    """A real tiny run: no Lightning advert, no deprecation noise, the leak audit once (with --verbose), INFO only with --verbose."""
    data = make_images(tmp_path / "data", n_per_class=8)
    common = ["--model", "simple_cnn", "--image-size", "32", "--in-chans", "1", "--epochs", "1", "--batch-size", "8",
              "--data", str(data), "--quiet", "--set", f"workspace={tmp_path / 'ws'}", "--set", "train.num_workers=0",
              "--set", r"data.patient_regex=^(p[a-z]+\d+)_", "--set", "data.near_duplicates=false"]
    default = runner.invoke(app, ["train", *common, "--experiment", "a"])
    assert default.exit_code == 0, default.output
    assert "INFO" not in default.output and "results:" in default.output
    verbose = runner.invoke(app, ["--verbose", "train", *common, "--experiment", "b"])
    assert verbose.exit_code == 0, verbose.output
    assert verbose.output.count("Leak audit") == 1 and "INFO medclass.training.runner" in verbose.output
    for noise in ("litlogger", "LeafSpec", "weights_only", "limit_train_batches"):
        assert noise not in default.output + verbose.output, noise
    log = (tmp_path / "ws" / "default" / "b" / "train.log").read_text()
    assert "baseline (untrained model)" in log and "litlogger" not in log  # the run's log keeps INFO lines
