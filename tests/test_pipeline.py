"""The main job (`medclass quickstart`) on the data every machine has: the chest X-ray sample inside the package."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from medclass.cli import _register_all, app
from medclass.config import RunConfig, apply_overrides
from medclass.pipeline import QUICKSTART, quickstart

_register_all()


def test_quickstart_without_data_runs_on_the_embedded_sample(tmp_path: Path) -> None:
    """No --data and no ../shared needed: check, split, train, evaluate and report on the shipped X-rays (reduced)."""
    out = CliRunner().invoke(app, [
        "quickstart", "--workspace", str(tmp_path), "--model", "simple_cnn", "--image-size", "32", "--epochs", "1",
        "--set", "data.limit_per_class=40", "--set", "train.num_workers=0", "--set", "data.near_duplicates=false",
    ])
    assert out.exit_code == 0, out.output
    run = tmp_path / "quickstart" / "chest_xray_sample-simple_cnn-32px"
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["path"] == "chest_xray_sample"
    assert (run / "report.html").is_file() and (run / "metrics.json").is_file()
    assert "data check: 80 images" in out.output and "roc_auc" in out.output
    args = ["quickstart", "--workspace", str(tmp_path), "--model", "simple_cnn", "--image-size", "32", "--epochs", "1",
            "--set", "train.num_workers=0", "--set", "data.near_duplicates=false"]
    # the same command again continues the same (finished) run: its stored config round-trips unchanged
    same = CliRunner().invoke(app, [*args, "--set", "data.limit_per_class=40"])
    assert same.exit_code == 0 and "roc_auc" in same.output, same.output
    # the same folder with other settings is refused, not silently resumed (it evaluated the old model before)
    again = CliRunner().invoke(app, [*args, "--set", "data.limit_per_class=30"])
    assert again.exit_code == 2 and "other settings (data.limit_per_class)" in again.output, again.output


def test_recipe_settings_depend_on_the_machine_and_validate(tmp_path: Path) -> None:
    """On the CPU the recipe trains without worker processes (measured faster, same results); on a GPU the workers
    feed it; either list is valid config, and a user's --set still wins (it comes after)."""
    cpu, gpu = QUICKSTART.overrides(on_gpu=False), QUICKSTART.overrides(on_gpu=True)
    assert "train.num_workers=0" in cpu and set(gpu) < set(cpu)
    assert not any(s.startswith("train.num_workers") for s in gpu)
    assert apply_overrides(RunConfig(), cpu).validate().train.num_workers == 0
    assert apply_overrides(RunConfig(), [*cpu, "train.num_workers=3"]).validate().train.num_workers == 3
    assert apply_overrides(RunConfig(), gpu).validate().train.num_workers == RunConfig().train.num_workers


@pytest.mark.slow
def test_default_recipe_on_the_sample_learns(tmp_path: Path) -> None:
    """The README's first command, unchanged recipe (pretrained EfficientNet-Lite0, 128 px, 3 epochs), on the sample."""
    out = quickstart(workspace=str(tmp_path), progress=False)
    auc = out["evaluation"].metrics["metrics"]["roc_auc"]
    assert out["report"].is_file()
    assert auc > max(0.85, out["baseline"]["val_auc"] + 0.2), (auc, out["baseline"])


def test_quickstart_on_an_outside_csv_with_data_flags_only(tmp_path: Path) -> None:
    """The main job's recipe on one's own CSV took copying nine settings out of config.yaml: now the data flags of
    `train` (image root, columns, label map, filter, --positive), and the positive class is said in the output,
    the saved config, the model card and the report."""
    import json

    from _helpers import covid_style_csv

    csv, flags = covid_style_csv(tmp_path / "covid", per_class=30)
    out = CliRunner().invoke(app, [
        "quickstart", "--data", str(csv), *flags, "--positive", "covid", "--workspace", str(tmp_path / "ws"),
        "--model", "simple_cnn", "--image-size", "32", "--epochs", "1",
        "--set", "train.num_workers=0", "--set", "data.near_duplicates=false",
    ])
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    assert "Positive class: covid" in text and "roc_auc" in text
    run = tmp_path / "ws" / "quickstart" / "metadata-simple_cnn-32px"
    data = yaml.safe_load((run / "config.yaml").read_text())["data"]
    assert (data["path_column"], data["label_column"], data["patient_column"], data["positive"], data["preset"]) == (
        "filename", "finding", "patient_id", "covid", "")
    assert data["label_map"] == {"unknown": "drop"} and data["where"] == "view == 'PA'"
    assert json.loads((run / "metrics.json").read_text())["classes"] == ["non_covid", "covid"]
    assert "**Positive class:** covid" in (run / "model_card.md").read_text()
    assert "Positive class:</strong> covid" in (run / "report.html").read_text()
