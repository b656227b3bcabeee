"""``train(cfg)``: data check and split, baseline, the Lightning loop, best/last checkpoints, resume.

Example:
    >>> from medclass import RunConfig, train
    >>> cfg = RunConfig()                       # the embedded chest X-ray sample, resnet18
    >>> cfg.model.image_size, cfg.train.epochs = 64, 2
    >>> result = train(cfg)                     # doctest: +SKIP
    >>> result.run_dir                          # doctest: +SKIP
    PosixPath('workspace/default/resnet18-20261123-1301')
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import logging
import os
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch

from ..artifacts import RunDir, build_meta
from ..config import AUTO, RunConfig, choose_model, load_config, parse_class_weights, parse_devices, save_config
from ..data._pool import loader_watchdog
from ..data.prepare import prepare_data
from ..data.table import DataTable
from ..errors import ConfigError, DatasetError, DiskFullError, TrainingInterrupted
from ..inference import predict_dataset
from ..metrics.metrics import best_mode
from ..models import create_model, model_info
from ..utils import epoch_number, exclusive_lock, leftover_writes, peak_rss_mb, write_json
from ._noise import filter_third_party_noise
from .accel import prepare_model, resolve_augment_on
from .callbacks import EMAWeights, EpochBar, ExportCheckpoints, MetricsCSV, ResumeState
from .datamodule import SplitDataModule, volume_cache_dir, volume_prep
from .module import ClassifierModule

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What a finished (or resumed) run produced."""

    run_dir: Path  # workspace/<project>/<experiment>
    best_checkpoint: Path  # best.safetensors (monitored validation metric)
    metrics: pd.DataFrame  # metrics.csv: one row per epoch
    baseline: dict  # validation metrics of the untrained model
    best_epoch: int  # epoch of the best checkpoint
    best_score: float  # monitored value at the best epoch
    wall_time_s: float  # wall time of this call
    early_stop: str = ""  # how early stopping ended the run before train.epochs ('' = it did not)


def resolve_model(cfg: RunConfig, table: DataTable | None = None) -> tuple[RunConfig, str]:
    """``model.name=auto`` and ``volume.input=auto`` made concrete (:func:`~medclass.config.choose_model`) for the
    run's data: ``table``, else the source that ``cfg.data`` names (read only when the model is auto).

    Returns the config and the line saying which model was chosen and why ('' when the model was named).
    """
    if cfg.model.name != AUTO and cfg.volume.input != AUTO:
        return cfg, ""
    if cfg.model.name == AUTO and table is None:
        from ..data.sources import load_source

        with _below_warnings():  # the listing only (no pixel read); its warnings come when the run reads the data
            table = load_source(cfg.data, seed=cfg.split_seed)
    return choose_model(cfg, table.spatial_dims if table is not None else 2)


@contextlib.contextmanager
def _below_warnings() -> Iterator[None]:
    """medclass's log records below errors left out (a first look at data that is read again right after)."""
    logger = logging.getLogger("medclass")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def resolve_experiment(cfg: RunConfig, table: DataTable | None = None) -> RunConfig:
    """Choose the model if it is ``auto`` (:func:`resolve_model`), then name the run (``<model>-<timestamp>``) when
    ``cfg.experiment`` is empty."""
    cfg, why = resolve_model(cfg, table)
    if why:
        log.info("%s", why)
    if cfg.experiment:
        return cfg
    return dataclasses.replace(cfg, experiment=f"{cfg.model.name}-{time.strftime('%Y%m%d-%H%M%S')}")


def class_weight_vector(spec: str, labels: np.ndarray, n_classes: int) -> torch.Tensor | None:
    """Loss weights per class: 'none', 'balanced' (n / (k * count)) or comma-separated numbers.

    Multi-label ``labels`` ``(n, K)``: BCE positive weights per finding; 'balanced' = negatives / positives
    of each finding among its unmasked labels."""
    values = parse_class_weights(spec)
    if values is None:
        return None
    if values == "balanced" and labels.ndim == 2:
        pos, neg = np.nansum(labels == 1, axis=0), np.nansum(labels == 0, axis=0)
        return torch.tensor(neg / np.maximum(pos, 1.0), dtype=torch.float32)
    if values == "balanced":
        counts = np.bincount(labels, minlength=n_classes).astype(float)
        return torch.tensor(len(labels) / (n_classes * np.maximum(counts, 1.0)), dtype=torch.float32)
    if len(values) != n_classes:
        raise ConfigError(f"train.class_weights gives {len(values)} weights for {n_classes} "
                          f"{'findings' if labels.ndim == 2 else 'classes'}; give one per {'finding' if labels.ndim == 2 else 'class'}.")
    return torch.tensor(values, dtype=torch.float32)


def _precision(spec: str, accelerator: str) -> str:
    if spec != "auto":
        return spec
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def make_trainer(cfg: RunConfig, callbacks: list, progress: bool = True) -> pl.Trainer:
    """The Lightning Trainer for ``cfg`` (precision, devices/nodes/strategy, determinism)."""
    filter_third_party_noise()
    t = cfg.train
    if progress:
        callbacks = [*callbacks, EpochBar(leave=True)]
    return pl.Trainer(
        max_epochs=t.epochs,
        accelerator=t.accelerator,
        devices=parse_devices(t.devices),
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=_precision(t.precision, t.accelerator),
        accumulate_grad_batches=t.accumulate,
        deterministic="warn" if t.deterministic else False,
        callbacks=callbacks,
        logger=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        limit_train_batches=t.max_steps_per_epoch or None,  # None: all batches (1.0 made Lightning log a line)
        default_root_dir=str(cfg.run_dir()),
    )


def train(cfg: RunConfig | None = None, *, resume: str | Path | None = None, table: DataTable | None = None,
          progress: bool = True, extra_callbacks: list | None = None) -> RunResult:
    """Train one run described by ``cfg``, or continue the run folder ``resume`` where it stopped.

    Steps: load and check the data, patient-level split and leak audit (``split.csv``,
    ``audit.json``), baseline of the untrained model on validation (``baseline.json``), training with
    per-epoch ``metrics.csv``, ``best``/``last`` checkpoints, then the decision threshold chosen on
    validation and stored in ``best.safetensors``.

    ``table`` skips data preparation and trains on a table whose ``split`` column is already set
    (cross-validation folds do this); ``extra_callbacks`` are added to the Lightning trainer (e.g. an
    Optuna pruning callback).
    """
    start = time.perf_counter()
    why = ""
    if resume is not None:
        run = RunDir(resume)
        if not run.is_run:
            raise FileNotFoundError(f"{run.path} is not a run folder (no {run.config.name}); pass "
                                    "workspace/<project>/<experiment>.")
        cfg = load_config(run.config).validate()
        if run.resume_state.exists():
            ResumeState.check(run.resume_state)
    else:
        cfg, why = resolve_model(cfg or RunConfig(), table)
        cfg = resolve_experiment(cfg).validate()
        run = RunDir(cfg.run_dir())
        run.path.mkdir(parents=True, exist_ok=True)
    with _run_lock(run) as previous, run_log(run.log), _interrupts_name(run.path):
        if resume is None:
            if run.is_resumable:  # checked under the lock: two new runs of one name cannot both pass
                raise ConfigError(f"Run folder {run.path} already holds a run; resume it with `medclass train --resume "
                                  f"{run.path}` or choose another experiment name.")
            save_config(cfg, run.config)
        if why:
            log.info("%s", why)
        _report_faults(run, previous)
        prepared = _prepared_table(run) if resume is not None else None
        if prepared is not None:
            log.info("resuming %s", run.path)
            table = prepared
        elif table is None:  # a new run, or one stopped while its data were prepared (the seed gives the same split)
            table = prepare_data(cfg.data, seed=cfg.split_seed, out_dir=run.path, cache_dir=Path(cfg.workspace) / ".cache")
        else:
            table.to_csv(run.split)
        run.write_classes(table.classes)
        try:
            return _fit(cfg, run, table, resumed=resume is not None, progress=progress,
                        extra_callbacks=extra_callbacks, start=start)
        finally:
            # The trainer, module and loaders form reference cycles that the cyclic collector may not
            # reach for a long time; without this, a process training many runs (cross-validation
            # folds, tuning trials) grew by ~250 MB per run (measured, inception_v3 at 80 px).
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


@contextlib.contextmanager
def _run_lock(run: RunDir) -> Iterator[str]:
    """One ``train`` per run folder at a time (a second one is refused with a BusyError); yields the previous
    holder when it ended without releasing the folder (killed). DDP ranks other than 0 take no lock."""
    if os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("NODE_RANK", "0") != "0":
        yield ""
        return
    busy = (f"Run folder {run.path} is being trained by another process; wait for it to end (or stop it), "
            "or train into another experiment name")
    with exclusive_lock(run.lock, "medclass train", busy) as previous:
        yield previous


def _report_faults(run: RunDir, previous: str) -> None:
    """Say what an earlier process left unfinished: killed while training, or while writing a file."""
    if previous:
        log.warning("The previous training of %s (%s) ended without finishing cleanly (killed, or the machine "
                    "stopped); it continues from its last saved epoch.", run.path, previous)
    for tmp in leftover_writes(run.path):
        log.warning("Found %s, left by a write that was interrupted (killed or out of disk space); the file it was "
                    "to replace kept its previous content. Removed it.", tmp)
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _interrupts_name(run_dir: Path) -> Iterator[None]:
    """Ctrl-C anywhere in the run raises :class:`TrainingInterrupted` naming the run folder to resume (and
    restores the SIGINT handler: Lightning ignores further SIGINTs once it handled one); a full disk names it too."""
    main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGINT) if main else None
    try:
        yield
    except TrainingInterrupted:
        raise
    except KeyboardInterrupt:
        log.info("interrupted; resume with `medclass train --resume %s`", run_dir)
        raise TrainingInterrupted(run_dir) from None
    except DiskFullError as e:
        log.error("%s", e)
        full = DiskFullError(f"{e} This run continues from its last saved epoch: `medclass train --resume {run_dir}`.")
        full.errno = e.errno
        raise full from None
    finally:
        if main and handler is not None:
            signal.signal(signal.SIGINT, handler)


def _prepared_table(run: RunDir) -> DataTable | None:
    """The split table of a run folder; None when the run stopped before its data were ready."""
    if run.split.is_file() and run.classes.is_file():
        try:
            names = run.read_classes()
        except json.JSONDecodeError as e:
            raise DatasetError(f"{run.classes} is not valid JSON ({e}); it holds the run's class names in order, "
                               'e.g. ["NORMAL", "PNEUMONIA"].') from None
        return DataTable.from_csv(run.split, names)
    if run.resume_state.exists():
        missing = run.split if not run.split.is_file() else run.classes
        raise DatasetError(f"{run.path} holds a training state but no {missing.name}; the run folder is incomplete. "
                           "Start a new run (another experiment name).")
    return None


@contextlib.contextmanager
def run_log(path: Path) -> Iterator[None]:
    """Append every medclass and Lightning log record of this run to ``path`` (``train.log``)."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    loggers = [logging.getLogger("medclass"), logging.getLogger("pytorch_lightning")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        if lg.getEffectiveLevel() > logging.INFO:
            lg.setLevel(logging.INFO)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.removeHandler(handler)
            lg.setLevel(level)
        handler.close()


def _fit(cfg: RunConfig, run: RunDir, table: DataTable, *, resumed: bool, progress: bool,
         extra_callbacks: list | None, start: float) -> RunResult:
    """Build model, data and trainer for a prepared run folder and fit (or continue) it."""
    _setup_determinism(cfg)
    pl.seed_everything(cfg.train.seed, workers=False, verbose=False)

    m = cfg.model
    info = model_info(m.name)
    check_spatial_dims(cfg, info.spatial_dims, table.spatial_dims)
    mean, std = info.mean_std(m.in_chans)
    model = create_model(m.name, num_classes=len(table.classes), in_chans=m.in_chans, pretrained=m.pretrained,
                         weights=m.weights, dropout=m.dropout, pool=m.pool, multi_label=table.multi_label)
    prepare_model(model, cfg.train)  # channels-last and torch.compile when configured
    train_labels = table.subset("train").targets
    weights = class_weight_vector(cfg.train.class_weights, train_labels, len(table.classes))
    module = ClassifierModule(model, table.classes, cfg, class_weights=weights, multi_label=table.multi_label)
    dm = SplitDataModule(table, cfg, mean, std, caches=build_caches(table, cfg))

    meta = build_meta(classes=table.classes, model_name=m.name, in_chans=m.in_chans, image_size=m.image_size,
                      mean=mean, std=std, window=cfg.data.window, dropout=m.dropout, pool=m.pool, config=cfg.to_dict(),
                      task=table.task, volume=dm.volume_prep.to_dict() if dm.volume_prep is not None else None)

    if cfg.train.baseline and not run.baseline.exists():
        baseline = baseline_metrics(module, dm)
        write_json(run.baseline, baseline)
        log.info("baseline (untrained model) on validation: %s", _fmt(baseline))
    baseline = run.read_json(run.baseline) or {}

    ema = EMAWeights(cfg.train.ema) if cfg.train.ema > 0 else None
    export = ExportCheckpoints(run, cfg.train.monitor, meta, ema)
    callbacks = [*(extra_callbacks or []), *([ema] if ema else []), MetricsCSV(run.history), export, ResumeState(run)]
    if cfg.train.early_stopping > 0:
        from pytorch_lightning.callbacks import EarlyStopping

        callbacks.insert(0, EarlyStopping(cfg.train.monitor, patience=cfg.train.early_stopping,
                                          mode=best_mode(cfg.train.monitor), check_finite=False))
    run.checkpoints.mkdir(exist_ok=True)
    trainer = make_trainer(cfg, callbacks, progress=progress)
    ckpt = run.resume_state
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        with loader_watchdog("The training data loader", cfg.train.stall_timeout):
            try:
                trainer.fit(module, datamodule=dm, ckpt_path=str(ckpt) if resumed and ckpt.exists() else None,
                            weights_only=True if resumed and ckpt.exists() else None)
            except SystemExit:
                if trainer.interrupted:  # Lightning handled a Ctrl-C (teardown) and called sys.exit(1)
                    raise KeyboardInterrupt from None
                raise
    if module.skipped_files:
        write_json(run.skipped, sorted(module.skipped_files))
        log.warning("%d unreadable files were skipped during training (listed in %s)", len(module.skipped_files),
                    run.skipped)
    if trainer.is_global_zero:
        from .finalize import finalize_run

        finalize_run(run, dm, cfg)
    metrics = pd.read_csv(run.history) if run.history.exists() else pd.DataFrame()
    stopped = max((getattr(c, "stopped_epoch", 0) for c in callbacks), default=0)  # Lightning's EarlyStopping
    early_stop = (f"{cfg.train.monitor} did not improve for {cfg.train.early_stopping} epochs: stopped after epoch "
                  f"{epoch_number(stopped)} of {cfg.train.epochs}") if stopped > 0 else ""
    if early_stop:
        log.warning("early stopping: %s", early_stop)
    result = RunResult(run.path, run.best, metrics, baseline, export.best_epoch,
                       float(export.best) if export.best is not None else float("nan"), time.perf_counter() - start,
                       early_stop)
    log.info("run finished in %.1f s (peak RSS %.0f MiB); results in %s", result.wall_time_s, peak_rss_mb(), run.path)
    return result


def check_spatial_dims(cfg: RunConfig, model_dims: int, data_dims: int) -> None:
    """Refuse a 2-D network on volumes with ``volume.input=3d`` (and a 3-D one on images or 2.5-D slices)."""
    want = 3 if data_dims == 3 and cfg.volume.input == "3d" else 2
    if model_dims == want:
        return
    from ..models import list_models, model_info

    names = [n for n in list_models() if model_info(n).spatial_dims == want]
    what = {3: "CT/MRI volumes with volume.input=3d", 2: "2.5-D slices (volume.input=2.5d)" if data_dims == 3 else "2-D images"}
    fix = " or set volume.input=2.5d (neighbouring slices as the channels of a 2-D network)" if data_dims == 3 else ""
    raise ConfigError(f"model.name={cfg.model.name} is a {model_dims}-D network but the data are {what[want]}; choose a "
                      f"{want}-D model ({', '.join(names[:6])}){fix}.")


def baseline_metrics(module: ClassifierModule, dm: SplitDataModule) -> dict:
    """Validation loss/accuracy/AUC of the model before any training step."""
    pred = predict_dataset(module.model, dm.dataset("val", train=False), batch_size=dm.cfg.train.batch_size,
                           num_workers=dm.cfg.train.num_workers, stall_timeout=dm.cfg.train.stall_timeout)
    with torch.no_grad():
        loss = float(module.loss(torch.from_numpy(pred.logits), torch.from_numpy(pred.labels)))
    return {**module.summarize(pred.labels, pred.probs, loss, "val"), "n_images": int(len(pred.labels))}


def build_caches(table: DataTable, cfg: RunConfig) -> dict:
    """Memory-mapped uint8 image caches per split when ``data.cache`` names a folder (else none).

    With augmentation on the device (a GPU), an empty ``data.cache`` means ``<workspace>/.cache``:
    images are decoded once, so the workers only copy uint8 pixels.
    """
    if table.spatial_dims == 3:  # volumes have their own per-file cache (volume.cache, data.volumes.VolumeCache) ...
        folder = volume_cache_dir(cfg)
        if folder is not None and cfg.data.cluster:  # ... filled on the cluster before training, else in the 1st epoch
            from ..data.volumes.prepare import prepare_volumes

            prep = volume_prep(cfg, *model_info(cfg.model.name).mean_std(cfg.model.in_chans))
            prepare_volumes(table.subset(table.frame["split"].isin(["train", "val"]).to_numpy()), prep, folder,
                            stall_timeout=cfg.train.stall_timeout, cluster=cfg.data.cluster)
        return {}
    folder = cfg.data.cache or (str(Path(cfg.workspace) / ".cache") if resolve_augment_on(cfg.train) == "device" else "")
    if not folder:
        return {}
    from ..data.cache import build_cache

    return {split: build_cache(table.subset(split), cfg.model.image_size, cfg.model.in_chans, cfg.data.window,
                               folder, workers=cfg.train.num_workers or None,
                               stall_timeout=cfg.train.stall_timeout, cluster=cfg.data.cluster)
            for split in ("train", "val") if (table.frame["split"] == split).any()}


def _setup_determinism(cfg: RunConfig) -> None:
    if cfg.train.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def _fmt(d: dict) -> str:
    return ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in d.items())
