"""Learning-rate range test: ``find_lr(cfg)`` runs Lightning's LR finder on the real module and data.

The LR grows exponentially from ``min_lr`` to ``max_lr`` over ``num_steps`` training batches while
the (smoothed) training loss is recorded; the suggestion is the LR of the steepest loss descent.
Lightning saves the model and optimiser before the search and restores them afterwards, so the
weights handed in come back unchanged. Results are computed first and drawn second:
``lr_find.csv`` (lr, loss) and ``lr_find.png`` in the output folder, next to the prepared data
(``split.csv``, ``audit.json``...) the search ran on.

The search uses the run's optimiser, loss, batch size and augmentation, with every parameter group
at the same LR and no LR schedule (the schedule is what a peak LR is chosen for).

Example:
    >>> from medclass.config import RunConfig
    >>> cfg = RunConfig()                                   # chest X-rays, resnet18
    >>> result = find_lr(cfg, num_steps=50)                 # doctest: +SKIP
    >>> f"{result.suggestion:.1e}", result.plot_path.name   # doctest: +SKIP
    ('2.1e-03', 'lr_find.png')
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytorch_lightning as pl
from matplotlib.figure import Figure
from pytorch_lightning.tuner import Tuner

from ..config import RunConfig
from ..data.prepare import prepare_data
from ..errors import ConfigError
from ..metrics.plots import figure_png
from ..models import create_model, model_info
from ..utils import atomic_write_bytes, atomic_write_text
from .datamodule import SplitDataModule
from .module import ClassifierModule
from .runner import build_caches, class_weight_vector, make_trainer, resolve_model

log = logging.getLogger(__name__)


@dataclass
class LRFindResult:
    """What the LR range test measured and suggests."""

    lrs: list[float]  # learning rate of each step
    losses: list[float]  # smoothed training loss after each step (NaN for a skipped batch)
    suggestion: float  # LR at the steepest descent of the loss; NaN when too few finite points
    plot_path: Path  # lr_find.png (lr_find.csv lies beside it)


def find_lr(cfg: RunConfig, min_lr: float = 1e-6, max_lr: float = 1.0, num_steps: int = 100,
            out: Path | None = None) -> LRFindResult:
    """Run the LR range test for the run ``cfg`` describes and write ``lr_find.csv`` / ``lr_find.png``.

    Args:
        cfg: the run (data, model, optimiser, batch size, augmentation, hardware).
        min_lr, max_lr: the LR range, ``0 < min_lr < max_lr``.
        num_steps: training batches of the search (it stops earlier when the loss diverges).
        out: folder for the prepared data and the results; default
            ``<workspace>/<project>/lr_find/<model>-<timestamp>``.

    >>> result = find_lr(cfg, min_lr=1e-5, max_lr=1.0, num_steps=30, out=Path("lr"))  # doctest: +SKIP
    >>> min_lr <= result.suggestion <= max_lr                                           # doctest: +SKIP
    True
    """
    if not 0 < min_lr < max_lr:
        raise ConfigError(f"The LR range needs 0 < min_lr < max_lr, got min_lr={min_lr}, max_lr={max_lr}.")
    if num_steps < 4:
        raise ConfigError(f"num_steps={num_steps} is too few for a suggestion; use at least 4 (about 100 is usual).")
    cfg = resolve_model(cfg)[0].validate()  # model.name=auto: the default for the data
    out = Path(out) if out is not None else (Path(cfg.workspace) / cfg.project / "lr_find"
                                             / f"{cfg.model.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    search_cfg = _search_config(cfg, out, num_steps)
    table = prepare_data(search_cfg.data, seed=cfg.split_seed, out_dir=out, cache_dir=Path(cfg.workspace) / ".cache")
    pl.seed_everything(cfg.train.seed, workers=False, verbose=False)
    m = search_cfg.model
    mean, std = model_info(m.name).mean_std(m.in_chans)
    model = create_model(m.name, num_classes=len(table.classes), in_chans=m.in_chans, pretrained=m.pretrained,
                         weights=m.weights, dropout=m.dropout, pool=m.pool, multi_label=table.multi_label)
    weights = class_weight_vector(cfg.train.class_weights, table.subset("train").targets, len(table.classes))
    module = ClassifierModule(model, table.classes, search_cfg, class_weights=weights, multi_label=table.multi_label)
    dm = SplitDataModule(table, search_cfg, mean, std, caches=build_caches(table, search_cfg))
    lrs, losses, suggestion = _range_test(module, dm, search_cfg, min_lr, max_lr, num_steps)
    return _write_results(LRFindResult(lrs, losses, suggestion, out / "lr_find.png"))


def _range_test(module: ClassifierModule, dm: SplitDataModule, cfg: RunConfig, min_lr: float, max_lr: float,
                num_steps: int) -> tuple[list[float], list[float], float]:
    """LRs, smoothed losses and the suggestion (NaN if none); Lightning restores the weights afterwards."""
    trainer = make_trainer(cfg, callbacks=[], progress=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        # the training loader alone: the search never looks at validation, so none is run
        finder = Tuner(trainer).lr_find(module, train_dataloaders=dm.train_dataloader(), min_lr=min_lr, max_lr=max_lr,
                                        num_training=num_steps, mode="exponential", update_attr=False)
    lrs = [float(v) for v in finder.results["lr"]]
    losses = [float(v) for v in finder.results["loss"]]
    # Lightning skips the first 10 points (a smoothed loss that is still warming up); fewer for short searches
    suggestion = finder.suggestion(skip_begin=min(10, num_steps // 5), skip_end=1)
    if suggestion is None:
        log.warning("The LR search stopped after %d steps: too few finite losses for a suggestion; "
                    "raise num_steps or lower max_lr.", len(losses))
    return lrs, losses, float(suggestion) if suggestion is not None else math.nan


def lr_find_figure(lrs: list[float], losses: list[float], suggestion: float) -> Figure:
    """Smoothed loss against LR (log scale) with the suggested LR marked.

    >>> fig = lr_find_figure([1e-4, 1e-3, 1e-2], [0.7, 0.5, 0.9], 1e-3)
    >>> fig.axes[0].get_xscale()
    'log'
    """
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.plot(lrs, losses, color="C0")
    if math.isfinite(suggestion):
        ax.axvline(suggestion, color="C3", ls="--", lw=1, label=f"suggested lr {suggestion:.2e}")
        ax.legend()
    ax.set(xscale="log", xlabel="learning rate", ylabel="training loss (smoothed)", title="LR range test")
    ax.grid(alpha=0.3, which="both")
    return fig


def _search_config(cfg: RunConfig, out: Path, num_steps: int) -> RunConfig:
    """``cfg`` for the search: no schedule, no early stop, enough epochs for ``num_steps`` batches, files in ``out``."""
    train = dataclasses.replace(cfg.train, scheduler="none", early_stopping=0, epochs=max(cfg.train.epochs, num_steps),
                                baseline=False)
    return dataclasses.replace(cfg, train=train, workspace=str(out.parent), project="", experiment=out.name)


def _write_results(result: LRFindResult) -> LRFindResult:
    """``lr_find.csv`` (lr, loss, suggested) beside ``result.plot_path``, then the plot."""
    frame = pd.DataFrame({"lr": result.lrs, "loss": result.losses})
    frame["suggested"] = frame["lr"] == result.suggestion
    atomic_write_text(result.plot_path.with_name("lr_find.csv"), frame.to_csv(index=False))
    atomic_write_bytes(result.plot_path, figure_png(lr_find_figure(result.lrs, result.losses, result.suggestion)))
    log.info("LR range test: suggested lr %.3g; plot %s", result.suggestion, result.plot_path)
    return result
