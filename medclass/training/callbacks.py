"""Callbacks of the training loop: the per-epoch ``metrics.csv``, best/last exports, the resume state, EMA weights.

All three run after the LightningModule's own ``on_train_epoch_end`` (they subclass Lightning's
``Checkpoint``, which Lightning calls last), so they see the epoch's validation metrics and the
scheduler already stepped.
"""
from __future__ import annotations

import logging
import math
import os
import pickle
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Checkpoint, EMAWeightAveraging, RichProgressBar

from ..artifacts import CheckpointMeta, RunDir, save_checkpoint
from ..errors import CheckpointError
from ..metrics.metrics import best_mode
from ..utils import TMP_SUFFIX, atomic_write_text, epoch_number, peak_rss_mb, raise_if_disk_full

log = logging.getLogger(__name__)

CSV_COLUMNS = ["epoch", "train_loss", "train_acc", "train_auc", "val_loss", "val_acc", "val_auc", "lr",
               "epoch_time_s", "peak_rss_mb", "gpu_max_allocated_mb"]


def _metric(trainer: pl.Trainer, key: str) -> float:
    v = trainer.callback_metrics.get(key)
    return float(v) if v is not None else float("nan")


class MetricsCSV(Checkpoint):
    """Writes one row per epoch to ``metrics.csv`` (rewritten atomically; a resumed run keeps earlier rows)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:  # noqa: D102
        if not trainer.is_global_zero:
            return
        epoch = trainer.current_epoch
        row: dict[str, Any] = {"epoch": epoch}
        for key in CSV_COLUMNS[1:7] + ["epoch_time_s"]:
            row[key] = _metric(trainer, key)
        row["lr"] = module.current_lr()
        row["peak_rss_mb"] = round(peak_rss_mb(), 1)
        row["gpu_max_allocated_mb"] = (round(torch.cuda.max_memory_allocated() / 2**20, 1)
                                       if torch.cuda.is_available() else float("nan"))
        old = pd.read_csv(self.path) if self.path.is_file() else pd.DataFrame(columns=CSV_COLUMNS)
        old = old[old["epoch"] < epoch] if len(old) else old
        frame = pd.concat([old, pd.DataFrame([row])], ignore_index=True) if len(old) else pd.DataFrame([row])
        atomic_write_text(self.path, frame[CSV_COLUMNS].to_csv(index=False))


class EpochBar(RichProgressBar):
    """Lightning's rich progress bar, counting epochs from 1 as metrics files, reports and the CLI do ("Epoch 1/3").

    Lightning's own bar prints the 0-based index over the last index ("Epoch 0/2"); only its
    description is changed here (``_get_train_description`` of the pinned Lightning version).
    """

    def _get_train_description(self, current_epoch: int) -> str:
        total = self.trainer.max_epochs
        text = f"Epoch {epoch_number(current_epoch)}" + (f"/{total}" if total is not None and total > 0 else "")
        return f"{text:{len(self.validation_description)}}"


class EMAWeights(EMAWeightAveraging):
    """Lightning's EMA callback (torch's ``AveragedModel``, parameters and BatchNorm buffers, updated every step).

    Lightning validates the averaged weights and keeps both sets in the resume state; this subclass
    only hands the averaged network to :class:`ExportCheckpoints`, so the exported ``best`` and
    ``last`` files hold the weights that were validated.
    """

    def __init__(self, decay: float) -> None:
        super().__init__(decay=decay, use_buffers=True)

    def exported(self, module: pl.LightningModule) -> torch.nn.Module:
        """The network to export: the averaged copy once training has begun, else the module's own."""
        average = getattr(self, "_average_model", None)
        return average.module.model if average is not None else module.model


class ExportCheckpoints(Checkpoint):
    """Writes ``last.safetensors`` every epoch and ``best.safetensors`` when the monitored metric improves.

    ``meta`` is the checkpoint metadata (classes, preprocessing, config...); each save adds the
    epoch's metrics. The best score is saved in the Lightning checkpoint, so a resumed run compares
    with the right one. ``ema`` (when the run averages its weights) supplies the network to save.
    """

    def __init__(self, run: RunDir, monitor: str, meta: CheckpointMeta, ema: EMAWeights | None = None) -> None:
        self.run = run
        self.monitor = monitor
        self.mode = best_mode(monitor)
        self.meta = meta
        self.ema = ema
        self.best: float | None = None
        self.best_epoch: int = -1

    def _improved(self, value: float) -> bool:
        if not math.isfinite(value):
            return self.best is None
        if self.best is None or not math.isfinite(self.best):
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:  # noqa: D102
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        metrics["epoch"] = trainer.current_epoch
        value = metrics.get(self.monitor, float("nan"))
        improved = self._improved(value)
        if improved:
            self.best, self.best_epoch = value, trainer.current_epoch
        if not trainer.is_global_zero:
            return
        meta = self.meta.with_metrics(metrics)
        network = self.ema.exported(module) if self.ema is not None else module.model
        save_checkpoint(self.run.last, network, meta)
        if improved:
            save_checkpoint(self.run.best, network, meta)
            log.info("epoch %d: %s=%.4f, new best written", epoch_number(trainer.current_epoch), self.monitor, value)

    def state_dict(self) -> dict[str, Any]:  # noqa: D102
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # noqa: D102
        self.best = state_dict.get("best")
        self.best_epoch = state_dict.get("best_epoch", -1)


class ResumeState(Checkpoint):
    """Saves Lightning's full training state to ``checkpoints/last.ckpt`` at every epoch end.

    The new state is written beside the file, flushed to disk, and moved into place; the state
    it replaces stays as ``checkpoints/previous.ckpt`` (a hard link, or a copy where links are not
    supported), so a damaged ``last.ckpt`` can be swapped for the epoch before it. The state also
    records whether the run had decided to stop (early stopping): Lightning does not restore
    ``trainer.should_stop``, so a run killed after it stopped early would otherwise train on.
    """

    def __init__(self, run: RunDir) -> None:
        self.path = run.resume_state
        self.previous = run.previous_state  # the state of the epoch before last.ckpt
        self.stopped = False

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:  # noqa: D102
        self.stopped = bool(trainer.should_stop)
        tmp = self.path.with_name(self.path.name + TMP_SUFFIX)
        try:
            trainer.save_checkpoint(tmp, weights_only=False)  # the full state: optimiser, scheduler, loops
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise_if_disk_full(e, self.path)
            raise
        if not trainer.is_global_zero:
            return
        with open(tmp, "rb") as file:
            os.fsync(file.fileno())
        if self.path.exists():
            _link_or_copy(self.path, self.previous)
        tmp.replace(self.path)

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:  # noqa: D102
        if self.stopped:  # restored from a state saved after the run had stopped early
            trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:  # noqa: D102
        return {"stopped": self.stopped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # noqa: D102
        self.stopped = bool(state_dict.get("stopped", False))

    @staticmethod
    def check(path: Path) -> None:
        """Raise :class:`CheckpointError` unless ``path`` is a complete, readable training state.

        Every byte is checked against the archive's CRC-32 sums (a truncated or damaged file is
        found without unpickling anything), then the state is opened with ``weights_only=True``.
        """
        path = Path(path)
        try:
            with zipfile.ZipFile(path) as archive:
                damaged = archive.testzip()
            if damaged is not None:
                raise ValueError(f"its entry {damaged} fails its CRC-32 check")
            torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except (OSError, ValueError, RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError) as e:
            run = RunDir(path.parent.parent)
            previous = run.previous_state
            if previous.is_file():
                fix = (f"The state of the epoch before it is kept in {previous}: to restart from there (that epoch is "
                       f"trained again, with the same result), run `mv {previous} {path}` and resume again.")
            else:
                fix = (f"No earlier state is kept; to train the run again from its first epoch, remove {path} "
                       f"and resume again (`medclass train --resume {run.path}`).")
            raise CheckpointError(f"{path} is not a readable training state (truncated or corrupt: {e}). "
                                  f"{fix}") from None


def _link_or_copy(source: Path, target: Path) -> None:
    """Make ``target`` a hard link of ``source`` (a copy where links fail), replacing it atomically."""
    tmp = target.with_name(target.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copy2(source, tmp)
    tmp.replace(target)
