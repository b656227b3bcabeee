"""Optional MLflow tracking next to the run folders (which stay the record of every run).

Three ways in:

- :class:`MLflowCallback`: a Lightning callback that logs the config as params and every epoch's
  metrics live (``train(cfg, extra_callbacks=[MLflowCallback(uri, project, experiment)])``);
- :func:`log_run_folder`: log a finished run folder after the fact (params, per-epoch metrics from
  ``metrics.csv``, test metrics, artefacts and ``best.safetensors``);
- :func:`track_training`: both in one call (live metrics, then the artefacts into the same MLflow run).

``uri`` is a file store folder (``mlruns`` or ``file:///abs/mlruns``), ``sqlite:///path.db`` or a
tracking server ``http://127.0.0.1:5000``.

Example:
    >>> run_id = log_run_folder("workspace/chest/resnet18", "sqlite:///mlflow.db")  # doctest: +SKIP
    >>> result, run_id = track_training(cfg, "http://127.0.0.1:5000")             # doctest: +SKIP
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytorch_lightning as pl

from ..artifacts import CVDir, RunDir
from ._runs import read_config, read_history, read_test_metrics

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from ..config import RunConfig
    from ..training.runner import RunResult

log = logging.getLogger(__name__)

_BATCH = 100  # params / metrics per log_batch request (MLflow's limit on params is 100)


def tracking_uri(uri: str | Path) -> str:
    """Normalise ``uri``: a plain folder becomes an absolute ``file:`` URI; other schemes pass through.

    >>> tracking_uri("sqlite:///x.db"), tracking_uri("http://127.0.0.1:5000")
    ('sqlite:///x.db', 'http://127.0.0.1:5000')
    >>> tracking_uri("/tmp/mlruns")
    'file:///tmp/mlruns'
    """
    text = str(uri)
    if "://" in text or text.startswith("file:"):
        return text
    return Path(text).resolve().as_uri()


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config dict -> ``{"section.field": "value"}`` (lists comma-joined), as MLflow params.

    >>> flatten({"model": {"name": "resnet18", "size": 224}, "classes": ["a", "b"]})
    {'model.name': 'resnet18', 'model.size': '224', 'classes': 'a,b'}
    """
    out: dict[str, str] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        elif isinstance(value, list | tuple):
            out[name] = ",".join(map(str, value))
        else:
            out[name] = str(value)
    return out


def _client(uri: str) -> "MlflowClient":
    try:
        from mlflow.tracking import MlflowClient
    except ModuleNotFoundError:
        raise ModuleNotFoundError("MLflow tracking needs mlflow: pip install 'medclass[mlflow]'.", name="mlflow") from None
    return MlflowClient(tracking_uri=uri)


def _experiment_id(client: "MlflowClient", uri: str, name: str) -> str:
    """Id of experiment ``name``, created when missing; a SQLite store keeps artefacts in ``mlartifacts/`` beside the .db."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri[len("sqlite:///"):]).resolve().parent / "mlartifacts" / name).as_uri()
    return client.create_experiment(name, artifact_location=location)


def _log_params(client: "MlflowClient", run_id: str, params: dict[str, str]) -> None:
    from mlflow.entities import Param

    items = [Param(k, v) for k, v in params.items()]
    for i in range(0, len(items), _BATCH):
        client.log_batch(run_id, params=items[i:i + _BATCH], synchronous=True)


def _log_metrics(client: "MlflowClient", run_id: str, rows: Iterable[tuple[str, float, int]]) -> int:
    """Log ``(key, value, step)`` triples, skipping NaN/inf; returns how many were logged."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, int(s)) for k, v, s in rows if v is not None and math.isfinite(float(v))]
    for i in range(0, len(items), _BATCH):
        client.log_batch(run_id, metrics=items[i:i + _BATCH], synchronous=True)
    return len(items)


class MLflowCallback(pl.Callback):
    """Logs the run config as params and every epoch's metrics to MLflow while training runs.

    The MLflow run is created at fit start (``self.run_id``) and marked FINISHED, FAILED or KILLED
    at the end. Only the global-zero process logs.

    Example:
        >>> cb = MLflowCallback("sqlite:///mlflow.db", "chest", "resnet18")  # doctest: +SKIP
        >>> result = train(cfg, extra_callbacks=[cb]); cb.run_id             # doctest: +SKIP
    """

    def __init__(self, uri: str | Path, experiment_name: str, run_name: str | None = None) -> None:
        self.uri = tracking_uri(uri)
        self.experiment_name = experiment_name
        self.run_name = run_name
        self.run_id: str | None = None
        self._client: "MlflowClient | None" = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:  # noqa: D102
        if not trainer.is_global_zero:
            return
        self._client = _client(self.uri)
        cfg = getattr(pl_module, "cfg", None)
        tags = {"medclass.run_dir": str(cfg.run_dir())} if cfg is not None else {}
        run = self._client.create_run(_experiment_id(self._client, self.uri, self.experiment_name),
                                      run_name=self.run_name, tags=tags)
        self.run_id = run.info.run_id
        if cfg is not None:
            _log_params(self._client, self.run_id, flatten(cfg.to_dict()))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:  # noqa: D102
        if self._client is None or self.run_id is None:
            return
        epoch = trainer.current_epoch
        rows = [(k, float(v), epoch) for k, v in trainer.callback_metrics.items()
                if getattr(v, "numel", lambda: 1)() == 1 and not k.endswith("_step")]
        if trainer.optimizers:
            rows.append(("lr", float(trainer.optimizers[0].param_groups[-1]["lr"]), epoch))
        _log_metrics(self._client, self.run_id, rows)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:  # noqa: D102
        if self._client is not None and self.run_id is not None:
            self._client.set_terminated(self.run_id, "FINISHED")

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:  # noqa: D102
        if self._client is not None and self.run_id is not None:
            self._client.set_terminated(self.run_id, "KILLED" if isinstance(exception, KeyboardInterrupt) else "FAILED")


def log_run_folder(run_dir: str | Path, uri: str | Path, *, experiment_name: str | None = None,
                   run_name: str | None = None, run_id: str | None = None, metrics: bool = True) -> str:
    """Log a run folder to MLflow: params, per-epoch and test metrics, artefacts and the checkpoint.

    Args:
        run_dir: ``workspace/<project>/<experiment>``.
        uri: tracking URI (file store folder, ``sqlite:///...``, ``http://host:port``).
        experiment_name: MLflow experiment (default: the run's project).
        run_name: MLflow run name (default: the run's experiment).
        run_id: add to this existing MLflow run (e.g. ``MLflowCallback.run_id``) instead of a new one;
            params are then not logged again.
        metrics: log the per-epoch metrics of ``metrics.csv`` (off when a callback already logged them).

    Returns:
        The MLflow run id.

    Raises:
        FileNotFoundError: ``run_dir`` has no ``config.yaml``.

    Example:
        >>> log_run_folder("workspace/chest/resnet18", "mlruns")  # doctest: +SKIP
        '5f0c...'
    """
    run = RunDir(run_dir)
    run_dir = run.path
    if not run.is_run:
        raise FileNotFoundError(f"{run_dir} is not a run folder (no {run.config.name}); pass "
                                "workspace/<project>/<experiment>.")
    uri = tracking_uri(uri)
    client = _client(uri)
    cfg = read_config(run_dir)
    if run_id is None:
        exp = _experiment_id(client, uri, experiment_name or cfg.project)
        run_id = client.create_run(exp, run_name=run_name or cfg.experiment or run_dir.name,
                                   tags={"medclass.run_dir": str(run_dir)}).info.run_id
        _log_params(client, run_id, flatten(cfg.to_dict()))
    history = read_history(run_dir)
    if metrics:
        _log_metrics(client, run_id, ((col, v, int(e)) for col in history.columns if col != "epoch"
                                      for e, v in zip(history["epoch"], history[col])))
    test = read_test_metrics(run_dir)
    last_step = int(history["epoch"].max()) if len(history) else 0
    _log_metrics(client, run_id, ((f"test_{k}{suffix}", v, last_step) for k, values in test.items()
                                  for suffix, v in zip(("", "_ci_low", "_ci_high"), values)))
    for path in run.records():
        client.log_artifact(run_id, str(path))
    if run.best.is_file():
        client.log_artifact(run_id, str(run.best), artifact_path="model")
    client.set_terminated(run_id, "FINISHED")
    log.info("run %s logged to MLflow %s (run id %s)", run_dir, uri, run_id)
    return run_id


def track_training(cfg: "RunConfig | None", uri: str | Path, **train_kwargs: Any) -> tuple["RunResult", str]:
    """``train(cfg)`` (or ``train(resume=RUN)``) with live MLflow metrics, then the run folder's artefacts into the same MLflow run.

    The MLflow experiment is the run's project and the run name its experiment; ``train_kwargs``
    go to :func:`~medclass.training.train` (``resume``, ``table``, ``progress``...). A resumed run
    becomes a new MLflow run holding every epoch of ``metrics.csv``.

    Example:
        >>> result, run_id = track_training(cfg, "sqlite:///mlflow.db", progress=False)  # doctest: +SKIP
    """
    from ..training.runner import resolve_experiment, train

    if train_kwargs.get("resume") is not None:  # the epochs before the interruption are only in metrics.csv
        result = train(**train_kwargs)
        return result, log_run_folder(result.run_dir, uri)
    cfg = resolve_experiment(cfg)
    callback = MLflowCallback(uri, cfg.project, cfg.experiment)
    extra = [*(train_kwargs.pop("extra_callbacks", None) or []), callback]
    result = train(cfg, extra_callbacks=extra, **train_kwargs)
    run_id = log_run_folder(result.run_dir, uri, run_id=callback.run_id, metrics=False)
    return result, run_id


def log_cross_validation(cv_dir: str | Path, uri: str | Path, summary: dict, cfg: "RunConfig") -> str:
    """One MLflow run for a whole cross-validation (its folds are runs of their own): config, mean, sd and
    pooled metrics with their CIs, and the summary files of ``cv_dir``. Returns the MLflow run id.

    >>> run_id = log_cross_validation(cv.out_dir, "mlruns", cv.summary, cfg)  # doctest: +SKIP
    """
    uri = tracking_uri(uri)
    client = _client(uri)
    run_id = client.create_run(_experiment_id(client, uri, cfg.project), run_name=cfg.experiment,
                               tags={"medclass.cv_dir": str(cv_dir), "medclass.kind": "cross-validation"}).info.run_id
    _log_params(client, run_id, {**flatten(cfg.to_dict()), "cv.k": str(summary["k"])})
    rows = [(f"cv_{stat}_{name}", value, 0) for stat in ("mean", "sd") for name, value in summary[stat].items()]
    rows += [(f"cv_pooled_{name}{suffix}", ci[key], 0) for name, ci in summary["pooled"].items()
             for suffix, key in (("", "value"), ("_ci_low", "low"), ("_ci_high", "high"))]
    _log_metrics(client, run_id, rows)
    for path in CVDir(cv_dir).summary_files():
        client.log_artifact(run_id, str(path))
    client.set_terminated(run_id, "FINISHED")
    log.info("cross-validation %s logged to MLflow %s (run id %s)", cv_dir, uri, run_id)
    return run_id
