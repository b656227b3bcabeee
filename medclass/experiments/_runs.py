"""Reading finished run folders: locate them, and summarise config, metrics, checkpoint and test results.

A run folder is ``workspace/<project>/<experiment>/`` (see docs/architecture.md). Everything here
only reads files; nothing is recomputed from images.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from ..artifacts import RunDir, read_meta
from ..artifacts.checkpoint import stored_parameters
from ..config import RunConfig, load_config
from ..data.multilabel import MULTI, resolve_task
from ..errors import CheckpointError, ConfigError, did_you_mean
from ..metrics.metrics import best_mode

TEST_METRICS = ("roc_auc", "accuracy", "sensitivity", "specificity", "balanced_accuracy", "f1")
TEST_FINDING_METRICS = ("macro_auc", "micro_auc")  # a multi-label evaluation's summary (metrics.json "findings")


def resolve_run(run: str | Path, workspace: str | Path = "workspace") -> Path:
    """The run folder named by a path or by ``project/experiment`` under ``workspace``.

    Raises:
        FileNotFoundError: neither is a folder with a ``config.yaml``; the message lists near names.

    Example:
        >>> resolve_run("chest/resnet18", workspace="workspace")  # doctest: +SKIP
        PosixPath('workspace/chest/resnet18')
    """
    for candidate in (RunDir(run), RunDir(Path(workspace) / str(run))):
        if candidate.is_run:
            return candidate.path
    name = candidate.config.name
    known = sorted(str(p.parent.relative_to(workspace)) for p in Path(workspace).glob(f"**/{name}")) \
        if Path(workspace).is_dir() else []
    raise FileNotFoundError(
        f"Run {str(run)!r} is not a run folder (no {name} at {run} nor at {Path(workspace) / str(run)}); "
        "pass a run path or project/experiment." + (did_you_mean(str(run), known) or
                                                     (f" Runs in {workspace}: {', '.join(known[:8])}" if known else ""))
    )


def read_config(run_dir: Path) -> RunConfig:
    """The run's ``config.yaml``, checked (:class:`ConfigError` naming the file when it is not a valid config)."""
    return load_config(RunDir(run_dir).config)


def read_history(run_dir: Path) -> pd.DataFrame:
    """``metrics.csv`` (one row per epoch); an empty frame when the run has none yet."""
    path = RunDir(run_dir).history
    return pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=["epoch"])


def best_epoch(history: pd.DataFrame, monitor: str) -> tuple[int | None, float]:
    """Epoch and value of the best ``monitor`` (min for losses, max otherwise); ``(None, nan)`` if absent."""
    if monitor not in history.columns or history[monitor].isna().all():
        return None, float("nan")
    values = history[monitor]
    i = values.idxmin() if best_mode(monitor) == "min" else values.idxmax()
    return int(history.loc[i, "epoch"]), float(values[i])


def _number(value: Any) -> float:
    return float("nan") if value is None else float(value)


def read_test_metrics(run_dir: Path) -> dict[str, tuple[float, float, float]]:
    """Test metrics of ``metrics.json`` (written by ``medclass evaluate``) as ``{name: (value, ci_low, ci_high)}``.

    Reads the point values of its ``metrics`` section and the bootstrap intervals of its ``ci``
    section (``{"roc_auc": {"value", "low", "high", "n_valid"}}``); NaN where there is no interval,
    and ``{}`` when the run was not evaluated. A multi-label evaluation gives :data:`TEST_FINDING_METRICS`
    (macro and micro AUC of its ``findings`` section).
    """
    path = RunDir(run_dir).evaluation().metrics
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    if data.get("task") == MULTI:
        findings = data["findings"]
        point, cis, names = findings["summary"], findings.get("ci") or {}, TEST_FINDING_METRICS
    else:
        point, cis, names = data.get("metrics", {}), data.get("ci") or {}, TEST_METRICS
    return {name: (_number(point[name]), _number(cis.get(name, {}).get("low")), _number(cis.get(name, {}).get("high")))
            for name in names if name in point}


def run_task(run_dir: Path) -> str:
    """``single_label`` or ``multi_label``: the checkpoint's task, else (no readable checkpoint) the config's
    ('' when neither can be read)."""
    best = RunDir(run_dir).best
    if best.is_file():
        try:
            return read_meta(best).task
        except CheckpointError:
            pass  # a bare or foreign file: the config says what the run was set up to learn
    try:
        return resolve_task(read_config(run_dir).data)
    except ConfigError:
        return ""  # a config this version no longer reads: task unknown


def run_summary(run_dir: Path) -> dict[str, Any]:
    """One row of the comparison table for a run folder (numbers only, no plots).

    Example:
        >>> run_summary(Path("workspace/chest/resnet18"))["model"]  # doctest: +SKIP
        'resnet18'
    """
    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    history = read_history(run_dir)
    monitor = cfg.train.monitor
    epoch, value = best_epoch(history, monitor)

    def column_max(name: str) -> float:
        return float(history[name].max()) if name in history.columns and history[name].notna().any() else float("nan")

    row: dict[str, Any] = {
        "run": str(run_dir),
        "model": cfg.model.name,
        "task": run_task(run_dir),
        "params": stored_parameters(RunDir(run_dir).best),
        "image_size": cfg.model.image_size,
        "epochs": int(len(history)),
        "train_time_s": float(history["epoch_time_s"].sum()) if "epoch_time_s" in history.columns else float("nan"),
        "peak_rss_mb": column_max("peak_rss_mb"),
        "gpu_max_mb": column_max("gpu_max_allocated_mb"),
        "monitor": monitor,
        "best_val": value,
        "best_epoch": epoch,
    }
    for name, (v, low, high) in read_test_metrics(run_dir).items():
        row[f"test_{name}"], row[f"test_{name}_low"], row[f"test_{name}_high"] = v, low, high
    return row


def read_predictions(run_dir: Path) -> pd.DataFrame | None:
    """``predictions.csv`` of a run (after ``medclass evaluate``), or None."""
    path = RunDir(run_dir).evaluation().predictions
    return pd.read_csv(path, dtype={"path": str, "patient": str, "label": str}, keep_default_na=False) if path.is_file() else None


def prob_columns(predictions: pd.DataFrame) -> list[str]:
    """The ``prob_<class>`` columns in file order (= class order)."""
    return [c for c in predictions.columns if c.startswith("prob_")]
