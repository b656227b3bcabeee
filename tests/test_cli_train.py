"""`medclass train`, `config`, `--resume` and `quickstart` through the CLI (typer's CliRunner)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml
from typer.testing import CliRunner

from medclass.cli import _register_all, app

from _helpers import make_images

_register_all()
runner = CliRunner()


def test_config_prints_every_section() -> None:
    out = runner.invoke(app, ["config"])
    assert out.exit_code == 0, out.output
    d = yaml.safe_load(out.output)
    assert set(d) >= {"data", "model", "train", "eval"} and d["model"]["name"] == "auto"
    assert "auto: resnet18 for 2-D images" in out.output  # what auto becomes is said beside it


def test_train_then_resume_from_the_cli(tmp_path: Path) -> None:
    data = make_images(tmp_path / "data", n_per_class=12)
    args = ["train", "--data", str(data), "--model", "simple_cnn", "--image-size", "32", "--in-chans", "1",
            "--epochs", "1", "--batch-size", "8", "--experiment", "cli", "--quiet",
            "--set", f"workspace={tmp_path / 'ws'}", "--set", r"data.patient_regex=^(p[a-z]+\d+)_",
            "--set", "train.num_workers=0", "--set", "data.near_duplicates=false"]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    run = tmp_path / "ws" / "default" / "cli"
    assert (run / "best.safetensors").is_file() and "results:" in out.output
    # a second run with the same name is refused with advice, not overwritten
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "--resume" in again.output
    # extend the run by one epoch and resume it
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["train"]["epochs"] = 2
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    out = runner.invoke(app, ["train", "--resume", str(run), "--quiet"])
    assert out.exit_code == 0, out.output
    assert list(pd.read_csv(run / "metrics.csv")["epoch"]) == [0, 1]


def test_images_without_a_model_name_train_the_2d_default_and_say_so(tmp_path: Path) -> None:
    data = make_images(tmp_path / "data", n_per_class=12)
    out = runner.invoke(app, ["train", "--data", str(data), "--image-size", "32", "--epochs", "1", "--batch-size", "8",
                              "--quiet", "--set", f"workspace={tmp_path / 'ws'}", "--set", r"data.patient_regex=^(p[a-z]+\d+)_",
                              "--set", "train.num_workers=0", "--set", "train.baseline=false"])
    assert out.exit_code == 0, out.output
    said = " ".join(out.output.split())
    assert "model: resnet18 (32 px): no model named, so the default for 2-D images" in said, said
    assert len(list((tmp_path / "ws" / "default").glob("resnet18-*"))) == 1


def test_unknown_model_gets_a_suggestion(tmp_path: Path) -> None:
    out = runner.invoke(app, ["train", "--data", str(tmp_path), "--model", "resnet5O", "--quiet"])
    assert out.exit_code == 2
    assert "resnet50" in out.output


def test_bad_override_is_explained() -> None:
    out = runner.invoke(app, ["train", "--set", "train.lr_rate=0.1"])
    assert out.exit_code == 2 and "train.lr_rate" in out.output and "Did you mean" in out.output


def test_cross_validation_gets_the_mlflow_uri(tmp_path: Path, monkeypatch) -> None:
    """`train --folds K --mlflow URI` used to return before reading --mlflow: the folds were silently not tracked."""
    import medclass.experiments.crossval as crossval
    from medclass.errors import ConfigError

    seen = {}

    def fake_cross_validate(cfg, folds, progress=True, mlflow=None, **kwargs):
        seen.update(folds=folds, mlflow=mlflow)
        raise ConfigError("stopped by the test")

    monkeypatch.setattr(crossval, "cross_validate", fake_cross_validate)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = runner.invoke(app, ["train", "--folds", "2", "--mlflow", uri, "--model", "simple_cnn", "--quiet"])
    assert out.exit_code == 2 and "stopped by the test" in out.output
    assert seen == {"folds": 2, "mlflow": uri}


def test_help_says_which_pretrained_weights_load_offline_and_names_the_positive_flag() -> None:
    """`--pretrained` said "needs internet" although the packaged Lite0 weights load offline; `--positive` is listed."""
    out = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200", "TERM": "dumb"})
    text = " ".join(out.output.replace("│", " ").split())
    assert out.exit_code == 0 and "needs internet" not in text
    assert "offline for models whose weights are installed (efficientnet_lite0" in text
    assert "--positive" in text and "second of the sorted class names" in text
    quick = runner.invoke(app, ["quickstart", "--help"], env={"COLUMNS": "200", "TERM": "dumb"})
    assert all(flag in quick.output for flag in ("--path-column", "--label-map", "--where", "--positive"))
