"""Loading what an evaluation works on: the run (checkpoint, metadata, folder), the evaluated rows and the
reference rows of the leak check, the output folder, and the run's own files (baseline, history, threshold)."""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..artifacts import CheckpointMeta, EvalDir, RunDir, load_checkpoint
from ..config import DataConfig, RunConfig
from ..data.splits import patient_groups
from ..data.table import DataTable
from ..errors import DatasetError

log = logging.getLogger(__name__)


@dataclass
class LoadedRun:
    checkpoint: Path
    run_dir: RunDir | None  # folder with split.csv (None for a bare checkpoint)
    model: torch.nn.Module
    meta: CheckpointMeta

    @property
    def config(self) -> RunConfig:
        return self.meta.run_config


def load_run(run: str | Path, device: torch.device) -> LoadedRun:
    path = Path(run)
    checkpoint = RunDir(path).best_checkpoint() if path.is_dir() else path
    model, meta = load_checkpoint(checkpoint, device=device)
    folder = RunDir(checkpoint.parent)
    meta.run_config.validate(devices=False)  # a stored config that no longer validates is refused here
    return LoadedRun(checkpoint, folder if folder.split.is_file() else None, model, meta)


def _external_settings(run_data: DataConfig, data_settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """The data settings external data is read with: the run's (columns, image root, window...) without its
    label map and row filter, which describe the training source (the other data's are given as flags)."""
    return {**dataclasses.asdict(run_data), "label_map": {}, "where": "", **(data_settings or {})}


def _external_table(data: str | Path | DataConfig, r: LoadedRun, split: str,
                    data_settings: Mapping[str, Any] | None = None) -> DataTable:
    """Rows of an external data set, labelled with the checkpoint's classes."""
    from ..data.sources import load_source

    if isinstance(data, DataConfig):
        dcfg = data
    else:
        base = {**_external_settings(r.config.data, data_settings), "path": str(data), "source": "auto",
                "classes": [], "positive": "", "limit_per_class": 0, "keep_source_split": True}  # checkpoint's order
        dcfg = RunConfig.from_dict({"data": base}).data
    table = load_source(dcfg)
    classes = list(r.meta.classes)
    if table.multi_label != r.meta.multi_label or (table.multi_label and table.classes != classes):
        raise DatasetError(f"{dcfg.path} is read as {table.task} data with classes {table.classes}, but the checkpoint "
                           f"{r.checkpoint} is {r.meta.task} with {classes}; read it with the same findings "
                           "(data.labels_from / data.label_columns / data.classes).")
    counts = table.frame["label"].value_counts()
    unknown = [] if table.multi_label else sorted(set(counts.index) - set(classes))
    if unknown:
        listed = ", ".join(f"{u!r} ({counts[u]} image(s))" for u in unknown)
        example = ",".join(f"{u}={classes[min(i, len(classes) - 1)]}" for i, u in enumerate(unknown[:2]))
        raise DatasetError(f"{dcfg.path}: labels {listed} do not map onto the model's classes {classes} (checkpoint "
                           f"{r.checkpoint}). Map each of them with --label-map, e.g. --label-map {example} "
                           "(LABEL=drop drops a label's rows).")
    if len(counts) and len(set(counts.index) & set(classes)) < len(classes):
        log.warning("%s holds only the classes %s of the model's %s: AUC and calibration are undefined on it.",
                    dcfg.path, sorted(counts.index), classes)
    present = sorted(set(table.frame["split"]) - {""})
    if present:
        if split not in present:
            raise DatasetError(f"{dcfg.path} has splits {present} but no {split!r} rows; pass --split with one of them.")
        table = table.subset(split)
    return DataTable(table.frame, classes, table.skipped, table.source, table.root, table.task)


def load_tables(r: LoadedRun, data: str | Path | DataConfig | None, split: str,
            data_settings: Mapping[str, Any] | None = None) -> tuple[DataTable, DataTable | None, str]:
    """(evaluated rows, reference rows for the leak check or None, name of the reference splits)."""
    classes = list(r.meta.classes)
    full = DataTable.from_csv(r.run_dir.split, classes) if r.run_dir is not None else None
    if data is None:
        if full is None:
            raise FileNotFoundError(f"{r.checkpoint} has no split.csv beside it, so its test split is unknown; "
                                    "pass the images to evaluate with --data PATH.")
        evaluated = full.subset(split)
        if not len(evaluated):
            counts = full.frame["split"].value_counts().to_dict()
            raise DatasetError(f"{r.run_dir.split} has no rows in split {split!r} (splits: {counts}).")
    else:
        evaluated = _external_table(data, r, split, data_settings)
        if not len(evaluated):
            raise DatasetError(f"No images to evaluate in {data} (split {split!r}).")
    if full is None:
        return evaluated, None, "training or validation"
    ref_splits = [s for s in ("train", "val") if not (data is None and s == split)]
    if data is None and split != "test":
        log.warning("Evaluating the %r split: it was used during training (model selection/threshold), so these "
                    "metrics are not held-out estimates.", split)
    reference = full.subset(full.frame["split"].isin(ref_splits).to_numpy())
    return evaluated, reference, " or ".join({"train": "training", "val": "validation"}[s] for s in ref_splits)


def filters(run_data: DataConfig, data: str | Path | DataConfig | None,
             data_settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """The row filter and label map the evaluated rows were read with (the run's unless replaced)."""
    dcfg = data if isinstance(data, DataConfig) else run_data if data is None else RunConfig.from_dict(
        {"data": _external_settings(run_data, data_settings)}).data
    return {"where": dcfg.where, "label_map": dict(dcfg.label_map)}


def default_out(r: LoadedRun, data: str | Path | DataConfig | None, split: str) -> EvalDir:
    name = Path(data.path if isinstance(data, DataConfig) else data).stem if data is not None else None
    return (r.run_dir or RunDir(r.checkpoint.parent)).evaluation(name, split)


def groups_of(patients: list[str]) -> np.ndarray:
    return patient_groups(pd.DataFrame({"patient": patients})).to_numpy()


def run_files(run: RunDir | None) -> tuple[dict | None, pd.DataFrame | None, dict | None]:
    """The run's baseline, training history and threshold choice when present."""
    if run is None:
        return None, None, None
    history = pd.read_csv(run.history) if run.history.is_file() else None
    return run.read_json(run.baseline), history, run.read_json(run.threshold)


def fingerprint_cache(run: RunDir | None) -> Path | None:
    """The workspace fingerprint cache that training filled (``<workspace>/.cache``), when it exists."""
    if run is None:
        return None
    cache = run.path.resolve().parents[1] / ".cache"
    return cache if cache.is_dir() else None


__all__ = ["LoadedRun", "default_out", "filters", "fingerprint_cache", "groups_of", "load_run", "load_tables", "run_files"]
