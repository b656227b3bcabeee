"""Optuna tuning: search-space checks, the pruning callback, and interrupted searches that resume from SQLite."""
from __future__ import annotations

import signal
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

optuna = pytest.importorskip("optuna")

from medclass.config import RunConfig, load_config, save_config  # noqa: E402
from medclass.errors import ConfigError  # noqa: E402
from medclass.experiments import tune as tune_module  # noqa: E402
from medclass.experiments._search import check_space, suggest  # noqa: E402
from medclass.experiments.tune import PruningCallback, storage_url, tune  # noqa: E402
from medclass.training.runner import RunResult  # noqa: E402

SPACE = {"train.lr": {"low": 1e-4, "high": 1e-1, "log": True}, "train.batch_size": [8, 16],
         "train.freeze_epochs": {"low": 0, "high": 2}}


def test_check_space_rejects_bad_entries() -> None:
    cfg = RunConfig()
    assert check_space(SPACE, cfg) is SPACE
    with pytest.raises(ConfigError, match="Did you mean 'train.lr'|Did you mean 'lr'"):
        check_space({"train.lrr": [0.1]}, cfg)
    with pytest.raises(ConfigError, match="resnet18"):
        check_space({"model.name": ["resnet81"]}, cfg)
    with pytest.raises(ConfigError, match="empty"):
        check_space({"train.lr": []}, cfg)
    with pytest.raises(ConfigError, match="low < high"):
        check_space({"train.lr": {"low": 0.0, "high": 1e-2, "log": True}}, cfg)
    with pytest.raises(ConfigError, match="not a valid int"):
        check_space({"train.batch_size": ["big"]}, cfg)


def test_suggest_stays_in_the_space() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        params = suggest(study.ask(), SPACE)
        assert 1e-4 <= params["train.lr"] <= 1e-1 and params["train.batch_size"] in (8, 16)
        assert isinstance(params["train.freeze_epochs"], int) and 0 <= params["train.freeze_epochs"] <= 2
    fixed = suggest(optuna.trial.FixedTrial({"train.lr": 0.01, "train.batch_size": 8, "train.freeze_epochs": 1}), SPACE)
    assert fixed == {"train.lr": 0.01, "train.batch_size": 8, "train.freeze_epochs": 1}


def test_pruning_callback_reports_and_prunes() -> None:
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=0.7))
    trial = study.ask()
    cb = PruningCallback(trial, "val_auc")
    trainer = SimpleNamespace(current_epoch=0, callback_metrics={"val_auc": torch.tensor(0.8)})
    cb.on_train_epoch_end(trainer, None)  # above the threshold: goes on
    trainer.current_epoch, trainer.callback_metrics = 1, {"val_auc": torch.tensor(float("nan"))}
    cb.on_train_epoch_end(trainer, None)  # NaN is not reported
    trainer.current_epoch, trainer.callback_metrics = 2, {"val_auc": torch.tensor(0.6)}
    with pytest.raises(optuna.TrialPruned, match="epoch 2"):
        cb.on_train_epoch_end(trainer, None)
    assert study._storage.get_trial(trial._trial_id).intermediate_values == {0: pytest.approx(0.8), 2: pytest.approx(0.6)}


def test_storage_url() -> None:
    cfg = RunConfig(project="p", workspace="/tmp/ws-x")
    assert storage_url("sqlite:///a.db", cfg) == "sqlite:///a.db"
    assert storage_url(None, cfg) == "sqlite:////tmp/ws-x/p/tune.db"


class _FakeTrain:
    """Stands in for train(): writes a run folder; the call numbered ``interrupt_at`` exits as Lightning does on Ctrl+C."""

    def __init__(self, interrupt_at: int | None = None) -> None:
        self.calls: list[RunConfig] = []
        self.interrupt_at = interrupt_at

    def __call__(self, cfg: RunConfig, *, table=None, progress=True, extra_callbacks=None) -> RunResult:
        assert isinstance(extra_callbacks[0], PruningCallback) and table == "prepared once"
        self.calls.append(cfg)
        run = cfg.run_dir()
        run.mkdir(parents=True)
        save_config(cfg, run / "config.yaml")
        if len(self.calls) == self.interrupt_at:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # what Lightning does before sys.exit(1)
            raise SystemExit(1)
        score = -abs(np.log10(cfg.train.lr) + 2)  # best at lr = 0.01
        history = pd.DataFrame({"epoch": [0], "val_loss": [-score], "val_auc": [score], "epoch_time_s": [1.0]})
        history.to_csv(run / "metrics.csv", index=False)
        return RunResult(run, run / "best.safetensors", history, {}, 0, score, 1.0)


def test_interrupted_search_resumes_from_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tune_module, "prepare_data", lambda *a, **k: "prepared once")
    cfg = RunConfig(project="p", workspace=str(tmp_path / "ws"))
    cfg.train.monitor = "val_auc"
    db = tmp_path / "tune.db"
    first = _FakeTrain(interrupt_at=2)
    monkeypatch.setattr(tune_module, "train", first)
    with pytest.raises(KeyboardInterrupt):
        tune(cfg, n_trials=2, study_name="s", storage=db, search_space=SPACE, progress=False)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl+C works again
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{db}")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL"]
    assert study.trials[1].user_attrs["interrupted"] is True

    second = _FakeTrain()
    monkeypatch.setattr(tune_module, "train", second)
    result = tune(cfg, n_trials=2, study_name="s", storage=db, search_space=SPACE, progress=False)
    assert len(second.calls) == 1  # only the missing trial ran
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{db}")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert study.trials[2].params == study.trials[1].params  # the interrupted trial, retried as it was
    assert second.calls[0].experiment == "s-trial002" and second.calls[0].train.lr == study.trials[1].params["train.lr"]
    assert result.counts == {"COMPLETE": 2, "FAIL": 1}
    best = max((t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: t.value)
    assert result.best_params == best.params and result.best_value == pytest.approx(best.value)
    saved = load_config(tmp_path / "ws" / "p" / "s" / "best_config.yaml")
    assert saved.train.lr == pytest.approx(best.params["train.lr"]) and saved.train.batch_size == best.params["train.batch_size"]
    assert len(result.comparison.table) == 2 and (result.out_dir / "comparison" / "comparison.html").is_file()
    assert len(pd.read_csv(result.out_dir / "trials.csv")) == 3

    third = _FakeTrain()
    monkeypatch.setattr(tune_module, "train", third)
    tune(cfg, n_trials=2, study_name="s", storage=db, search_space=SPACE, progress=False)
    assert third.calls == []  # the study is complete: nothing more to run


def _tiny_images(root: Path) -> Path:
    rng = np.random.default_rng(0)
    from PIL import Image

    for label in ("neg", "pos"):
        (root / label).mkdir(parents=True)
        for i in range(16):
            a = rng.integers(0, 120, (40, 40), dtype=np.uint8)
            if label == "pos":
                a[10:30, 10:30] += 120
            Image.fromarray(a).save(root / label / f"{label}{i}.png")
    return root


@pytest.mark.slow
def test_real_search_interrupted_by_ctrl_c_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two real trials; the second is stopped by KeyboardInterrupt inside Lightning, then resumed."""
    cfg = RunConfig(project="p", workspace=str(tmp_path / "ws"))
    cfg.data.path, cfg.data.patient_regex, cfg.data.near_duplicates = str(_tiny_images(tmp_path / "data")), "none", False
    cfg.data.split_by = "image"  # one image per (synthetic) patient
    cfg.model.name, cfg.model.image_size, cfg.model.in_chans = "simple_cnn", 32, 1
    cfg.train.epochs, cfg.train.num_workers, cfg.train.baseline, cfg.train.batch_size = 1, 0, False, 8
    space = {"train.lr": {"low": 1e-3, "high": 1e-2, "log": True}}
    report = PruningCallback.on_train_epoch_end

    def interrupt_second(self, trainer, module):
        if self.trial.number == 1:
            raise KeyboardInterrupt
        report(self, trainer, module)

    monkeypatch.setattr(PruningCallback, "on_train_epoch_end", interrupt_second)
    with pytest.raises(KeyboardInterrupt):
        tune(cfg, n_trials=2, study_name="real", search_space=space, progress=False)
    monkeypatch.setattr(PruningCallback, "on_train_epoch_end", report)
    result = tune(cfg, n_trials=2, study_name="real", search_space=space, progress=False)
    study = optuna.load_study(study_name="real", storage=storage_url(None, cfg))
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert study.trials[2].params == study.trials[1].params
    assert result.best_run_dir is not None and (result.best_run_dir / "best.safetensors").is_file()
    assert result.best_value == pytest.approx(min(t.value for t in study.trials if t.value is not None))  # val_loss
    assert (result.out_dir / "best_config.yaml").is_file() and len(result.comparison.table) == 2
    assert (Path(cfg.workspace) / "p" / "tune.db").is_file()


def test_cli_tune_runs_and_reports_best(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from medclass.cli import app, _register_all

    _register_all()
    monkeypatch.setattr(tune_module, "prepare_data", lambda *a, **k: "prepared once")
    fake = _FakeTrain()
    monkeypatch.setattr(tune_module, "train", fake)
    (tmp_path / "space.yaml").write_text("train.lr: {low: 0.001, high: 0.1, log: true}\ntrain.batch_size: [8]\n")
    args = ["tune", "--trials", "2", "--study", "cli", "--space", str(tmp_path / "space.yaml"), "--quiet",
            "--set", f"workspace={tmp_path / 'ws'}", "--set", "project=p"]
    result = CliRunner().invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    text = result.output.replace("\n", "")
    assert len(fake.calls) == 2 and "best val_loss" in text and "best_config.yaml" in text
    assert (tmp_path / "ws" / "p" / "tune.db").is_file()
    bad = CliRunner().invoke(app, ["tune", "--trials", "1", "--set", "train.lrr=1"])
    assert bad.exit_code == 2 and "train.lr" in bad.output
