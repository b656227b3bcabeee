"""Hyper-parameter search with Optuna: each trial is a ``train()`` run, pruned per epoch, stored in SQLite, resumable.

The data is prepared once for the whole study (same patient split for every trial, unless the
search space changes ``data.*`` settings). Trial ``n`` trains the run ``<study>-trial<nnn>``; a
:class:`PruningCallback` reports the monitored validation metric every epoch and stops trials that
the pruner finds hopeless. Studies live in an RDB storage (default
``sqlite:///workspace/<project>/tune.db``) and are loaded again by name, so a search that was
interrupted continues where it stopped:

- a trial stopped with Ctrl+C is marked FAIL and retried once, with the same parameters;
- a trial whose process was killed stays RUNNING until its heartbeat is stale (``grace_period``
  seconds), then it is marked FAIL and retried the same way;
- ``n_trials`` counts finished (complete or pruned) trials of the whole study, over all calls.

At the end ``workspace/<project>/<study>/`` holds ``best_config.yaml``, ``trials.csv`` and a
comparison of the best trials (:func:`~medclass.experiments.compare.compare_runs`).

Example:
    >>> result = tune(cfg, n_trials=20, study_name="chest-search")  # doctest: +SKIP
    >>> result.best_params                                          # doctest: +SKIP
    {'train.lr': 0.0012, 'model.name': 'resnet18', ...}
"""
from __future__ import annotations

import dataclasses
import logging
import math
import signal
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytorch_lightning as pl

from ..artifacts import RunDir, TuneDir
from ..config import RunConfig, save_config
from ..data.prepare import prepare_data
from ..data.table import DataTable
from ..metrics.metrics import best_mode
from ..training.runner import train
from ._search import DEFAULT_SPACE, apply_params, check_space, suggest
from .compare import Comparison, compare_runs

log = logging.getLogger(__name__)

HEARTBEAT_S = 60  # a running trial writes a heartbeat this often
GRACE_PERIOD_S = 180  # a RUNNING trial without a heartbeat for this long is stale: marked FAIL and retried
COMPARE_BEST = 5  # trials in the final comparison


class PruningCallback(pl.Callback):
    """Reports ``monitor`` to an Optuna trial after every validation and raises ``TrialPruned`` when told to.

    Example:
        >>> train(cfg, extra_callbacks=[PruningCallback(trial, "val_auc")])  # doctest: +SKIP
    """

    def __init__(self, trial: Any, monitor: str) -> None:
        self.trial = trial
        self.monitor = monitor

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:  # noqa: D102
        import optuna

        value = trainer.callback_metrics.get(self.monitor)
        if value is None or not math.isfinite(float(value)):
            return
        epoch = trainer.current_epoch
        self.trial.report(float(value), step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch}: {self.monitor} = {float(value):.4f}")


@dataclass
class TuneResult:
    """What a (possibly resumed) search has found so far."""

    study_name: str
    storage: str
    out_dir: Path  # workspace/<project>/<study>: best_config.yaml, trials.csv, comparison/
    trials: pd.DataFrame  # one row per trial (Optuna's trials_dataframe)
    best_params: dict[str, Any]
    best_value: float
    best_run_dir: Path | None
    best_config: RunConfig | None
    comparison: Comparison | None  # the best trials side by side

    @property
    def counts(self) -> dict[str, int]:
        """Trials per state (COMPLETE, PRUNED, FAIL, RUNNING, WAITING)."""
        return self.trials["state"].value_counts().to_dict() if len(self.trials) else {}


def storage_url(storage: str | Path | None, cfg: RunConfig) -> str:
    """An RDB URL: ``None`` -> ``sqlite:///<workspace>/<project>/tune.db``; a plain ``.db`` path -> SQLite.

    >>> storage_url("runs/tune.db", RunConfig())
    'sqlite:///runs/tune.db'
    """
    if storage is None:
        storage = Path(cfg.workspace) / cfg.project / "tune.db"
    text = str(storage)
    if "://" not in text:
        Path(text).parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{text}"
    return text


def _open_study(name: str, url: str, direction: str, seed: int) -> Any:
    import optuna
    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # heartbeats: experimental since Optuna 2.8, still there
        storage = RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_PERIOD_S,
                             heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1))
    study = optuna.create_study(study_name=name, storage=storage, direction=direction, load_if_exists=True,
                                sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1))
    if study.direction.name.lower() != direction:
        from ..errors import ConfigError

        raise ConfigError(f"Study {name!r} in {url} was created to {study.direction.name.lower()} its value, but "
                          f"train.monitor asks to {direction}; use another --study name or the same monitor.")
    return study


def _retry_interrupted(study: Any) -> int:
    """Enqueue once more the parameters of trials stopped by Ctrl+C (marked FAIL); returns how many.

    The same callback that retries trials with a stale heartbeat does it, so both kinds of
    interruption leave the same record (``retry_history`` in the new trial's system attributes).
    """
    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import RetryHeartbeatStaleTrialCallback as Retry
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        retried = {n for t in trials for n in Retry.retry_history(t)}
        todo = [t for t in trials if t.state == TrialState.FAIL and t.user_attrs.get("interrupted")
                and t.number not in retried and not Retry.retry_history(t)]
        for t in todo:
            Retry(max_retry=1)(study, t)
    if todo:
        log.info("retrying %d interrupted trial(s) with the same parameters: %s", len(todo), [t.number for t in todo])
    return len(todo)


def _objective(cfg: RunConfig, space: dict[str, Any], study_name: str, table: DataTable | None, progress: bool):
    """The Optuna objective: one ``train()`` run per trial, returning the best monitored value."""

    def objective(trial: Any) -> float:
        params = suggest(trial, space)
        tcfg = dataclasses.replace(apply_params(cfg, params), experiment=f"{study_name}-trial{trial.number:03d}")
        trial.set_user_attr("run_dir", str(tcfg.run_dir()))
        try:
            result = train(tcfg, table=table, progress=progress,
                           extra_callbacks=[PruningCallback(trial, cfg.train.monitor)])
        except (KeyboardInterrupt, SystemExit) as e:
            # Lightning answers Ctrl+C by ignoring SIGINT and calling sys.exit(1): restore Ctrl+C and make the
            # trial FAIL (Optuna records KeyboardInterrupt, not SystemExit) so that the next call retries it
            signal.signal(signal.SIGINT, signal.default_int_handler)
            trial.set_user_attr("interrupted", True)
            raise KeyboardInterrupt(f"trial {trial.number} interrupted") from e
        return result.best_score

    return objective


def _finish(study: Any, url: str, out_dir: Path, workspace: str) -> TuneResult:
    """Write trials.csv, best_config.yaml and the comparison of the best trials."""
    from optuna.trial import TrialState

    from ..config import load_config
    from ..utils import atomic_write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    trials = study.trials_dataframe(attrs=("number", "value", "state", "params", "user_attrs", "duration"))
    folder = TuneDir(out_dir)
    atomic_write_text(folder.trials, trials.to_csv(index=False))
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.value is not None and math.isfinite(t.value)]
    if not complete:
        log.warning("study %s has no complete trial yet", study.study_name)
        return TuneResult(study.study_name, url, out_dir, trials, {}, float("nan"), None, None, None)
    best = study.best_trial
    run_dir = Path(best.user_attrs["run_dir"])
    best_cfg = load_config(RunDir(run_dir).config)
    save_config(dataclasses.replace(best_cfg, experiment=""), folder.best_config)
    ranked = sorted(complete, key=lambda t: t.value, reverse=study.direction.name == "MAXIMIZE")[:COMPARE_BEST]
    runs = [t.user_attrs["run_dir"] for t in ranked if RunDir(t.user_attrs["run_dir"]).is_run]
    comparison = compare_runs(runs, folder.comparison, workspace=workspace)
    log.info("best trial %d: %s = %.4f with %s; config in %s", best.number, study.direction.name.lower(),
             best.value, best.params, folder.best_config)
    return TuneResult(study.study_name, url, out_dir, trials, dict(best.params), float(best.value), run_dir,
                      best_cfg, comparison)


def tune(cfg: RunConfig, n_trials: int, study_name: str = "", storage: str | Path | None = None,
         search_space: dict[str, Any] | None = None, timeout: float | None = None,
         progress: bool = True) -> TuneResult:
    """Search hyper-parameters for ``cfg`` until the study holds ``n_trials`` finished trials.

    Args:
        cfg: the base run settings; the search space overrides some of them per trial.
        n_trials: finished (complete or pruned) trials wanted in the study, counting earlier calls.
        study_name: Optuna study name (default: ``cfg.experiment`` or ``tune-<model>``).
        storage: RDB URL or a ``.db`` path (default ``sqlite:///<workspace>/<project>/tune.db``).
        search_space: config keys to lists or ranges (see :mod:`._search`); default :data:`DEFAULT_SPACE`.
        timeout: stop starting new trials after this many seconds.
        progress: progress bars while training.

    Raises:
        ConfigError: a bad search space, or a stored study with another optimisation direction.
        KeyboardInterrupt: the search was interrupted; call again with the same study to resume.

    Example:
        >>> space = {"train.lr": {"low": 1e-4, "high": 1e-2, "log": True}, "model.name": ["simple_cnn", "resnet18"]}
        >>> result = tune(cfg, n_trials=10, study_name="lr-and-model", search_space=space)  # doctest: +SKIP
        >>> result.best_config.train.lr                                                     # doctest: +SKIP
    """
    from optuna.trial import TrialState

    cfg.validate()
    space = check_space(dict(search_space or DEFAULT_SPACE), cfg)
    study_name = study_name or cfg.experiment or f"tune-{cfg.model.name}"
    url = storage_url(storage, cfg)
    direction = {"min": "minimize", "max": "maximize"}[best_mode(cfg.train.monitor)]
    study = _open_study(study_name, url, direction, cfg.train.seed)
    out_dir = Path(cfg.workspace) / cfg.project / study_name
    finished = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
    remaining = n_trials - finished
    if remaining > 0:
        _retry_interrupted(study)
        table = None
        if not any(key.startswith("data.") for key in space):  # one split for every trial
            out_dir.mkdir(parents=True, exist_ok=True)
            table = prepare_data(cfg.data, seed=cfg.split_seed, out_dir=out_dir, cache_dir=Path(cfg.workspace) / ".cache")
        log.info("study %s: %d finished trial(s), running %d more (storage %s)", study_name, finished, remaining, url)
        study.optimize(_objective(cfg, space, study_name, table, progress), n_trials=remaining, timeout=timeout,
                       catch=(RuntimeError,), gc_after_trial=True)
    else:
        log.info("study %s already holds %d finished trial(s) (asked for %d)", study_name, finished, n_trials)
    return _finish(study, url, out_dir, cfg.workspace)
