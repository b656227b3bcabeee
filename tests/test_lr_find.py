"""LR range test: a real search on tiny generated images, files written, weights restored, CLI."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from medclass.errors import ConfigError
from medclass.training import lr_find as lr_find_module
from medclass.training.lr_find import find_lr, lr_find_figure
from _helpers import make_images, tiny_config


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_images(tmp_path_factory.mktemp("lrdata"))


def test_search_suggests_an_lr_in_range_writes_files_and_restores_weights(
        tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, dict[str, torch.Tensor]] = {}
    real_range_test = lr_find_module._range_test

    def spy(module, dm, cfg, min_lr, max_lr, num_steps):  # the module's weights before and after the search
        seen["before"] = {k: v.clone() for k, v in module.model.state_dict().items()}
        found = real_range_test(module, dm, cfg, min_lr, max_lr, num_steps)
        seen["after"] = {k: v.clone() for k, v in module.model.state_dict().items()}
        return found

    monkeypatch.setattr(lr_find_module, "_range_test", spy)
    cfg = tiny_config(tiny_data, tmp_path / "ws")
    result = find_lr(cfg, min_lr=1e-5, max_lr=1.0, num_steps=20, out=tmp_path / "lr")

    assert math.isfinite(result.suggestion) and 1e-5 <= result.suggestion <= 1.0
    assert result.suggestion in result.lrs
    assert 8 <= len(result.lrs) == len(result.losses) <= 20
    # exponential schedule from min_lr towards max_lr (Lightning's: constant ratio after the first step)
    assert result.lrs[0] == pytest.approx(1e-5) and result.lrs[-1] <= 1.0
    ratios = [b / a for a, b in zip(result.lrs[1:], result.lrs[2:])]
    assert ratios == pytest.approx([(1.0 / 1e-5) ** (1 / 20)] * len(ratios))

    assert result.plot_path == tmp_path / "lr" / "lr_find.png"
    assert result.plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    csv = pd.read_csv(tmp_path / "lr" / "lr_find.csv")
    assert csv["lr"].tolist() == pytest.approx(result.lrs)
    assert csv["loss"].tolist() == pytest.approx(result.losses, nan_ok=True)
    assert csv.loc[csv["suggested"], "lr"].tolist() == pytest.approx([result.suggestion])
    assert (tmp_path / "lr" / "split.csv").is_file()
    assert not list((tmp_path / "lr").glob(".lr_find_*.ckpt")), "Lightning's temporary checkpoint was left behind"

    assert seen["before"].keys() == seen["after"].keys()
    changed = [k for k in seen["before"] if not torch.equal(seen["before"][k], seen["after"][k])]
    assert not changed, f"weights changed by the search: {changed}"


def test_bad_range_is_refused(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, tmp_path)
    with pytest.raises(ConfigError, match="min_lr < max_lr"):
        find_lr(cfg, min_lr=1.0, max_lr=1e-3)
    with pytest.raises(ConfigError, match="num_steps"):
        find_lr(cfg, num_steps=2)


def test_figure_marks_the_suggestion() -> None:
    fig = lr_find_figure([1e-4, 1e-3, 1e-2], [0.7, 0.5, 0.9], 1e-3)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert [line.get_xdata()[0] for line in ax.get_lines()[1:]] == [1e-3]
    assert len(lr_find_figure([1e-4, 1e-3], [0.7, 0.5], math.nan).axes[0].get_lines()) == 1


def test_cli_prints_the_suggestion_and_plot(tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import typer

    from medclass.cli import tools

    calls = {}

    def fake_find_lr(cfg, min_lr, max_lr, num_steps, out):
        calls.update(cfg=cfg, min_lr=min_lr, max_lr=max_lr, num_steps=num_steps, out=out)
        return lr_find_module.LRFindResult([1e-4, 1e-3], [0.7, 0.5], 1e-3, tmp_path / "lr_find.png")

    monkeypatch.setattr(lr_find_module, "find_lr", fake_find_lr)
    app = typer.Typer()
    tools.register(app)
    app.command("noop", hidden=True)(lambda: None)  # two commands: typer keeps the subcommand name
    res = CliRunner().invoke(app, ["lr-find", "--data", str(tiny_data), "--model", "simple_cnn", "--image-size", "32",
                                   "--set", "train.batch_size=8", "--num-steps", "30", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert "1.00e-03" in res.output and "lr_find.png" in res.output
    cfg = calls["cfg"]
    assert (cfg.data.path, cfg.model.name, cfg.model.image_size, cfg.train.batch_size) == (str(tiny_data), "simple_cnn", 32, 8)
    assert calls["num_steps"] == 30 and calls["out"] == tmp_path / "o"

    bad = CliRunner().invoke(app, ["lr-find", "--set", "train.nope=1"])
    assert bad.exit_code == 2 and "train.nope" in bad.output
