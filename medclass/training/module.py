"""The LightningModule: loss, epoch metrics, optimiser, LR schedule and the freeze / fine-tune schedule.

Everything that changes from epoch to epoch is a pure function of the epoch number and of state
that lives in the checkpoint (weights, optimiser, scheduler), so a resumed run continues exactly
where an uninterrupted one would be:

- the dropout RNG is re-seeded from ``(seed, epoch, batch)`` before every training batch;
- whether the backbone is frozen depends only on the epoch;
- the LR scheduler is stepped here (not by Lightning) and its state is saved with the checkpoint;
  the one-cycle schedule follows the optimiser step count, which the checkpoint restores too.
"""
from __future__ import annotations

import math
import time
import warnings
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from ..config import Monitor, Optimizer, RunConfig, Scheduler, choices
from ..data.dataset import sample_seed
from ..data.io import mark_reported
from ..errors import CheckpointError, check_choice
from ..metrics.metrics import accuracy, best_mode, predict_labels, roc_auc
from ..metrics.multilabel import multilabel_summary
from ..inference import to_probs
from ..models import set_backbone_trainable, split_parameters


OPTIMIZERS = choices(Optimizer)
SCHEDULERS = choices(Scheduler)
MONITORS = choices(Monitor)


class ClassifierModule(pl.LightningModule):
    """Wraps a registry model for training with the settings of a :class:`RunConfig`."""

    def __init__(self, model: torch.nn.Module, classes: list[str], cfg: RunConfig,
                 class_weights: torch.Tensor | None = None, multi_label: bool = False) -> None:
        """``multi_label``: ``classes`` are findings, one logit each; ``class_weights`` are then BCE positive weights."""
        super().__init__()
        self.model = model
        self.classes = list(classes)
        self.cfg = cfg
        self.multi_label = multi_label
        self.binary = len(classes) == 2 and not multi_label
        self.register_buffer("class_weights", class_weights if class_weights is not None else torch.ones(len(classes)))
        check_choice("train.optimizer", cfg.train.optimizer, OPTIMIZERS)
        check_choice("train.scheduler", cfg.train.scheduler, SCHEDULERS)
        check_choice("train.monitor", cfg.train.monitor, MONITORS)
        self._outputs: dict[str, list] = {"train": [], "val": []}
        self._epoch_start = 0.0
        self._sched: Any = None
        self.skipped_files: set[str] = set()

    # ----------------------------------------------------------------- forward and loss
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.model(x)

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean class-weighted loss of a batch (binary: BCE on the single logit; else cross-entropy)."""
        return self.per_sample_loss(logits, y).mean()

    def per_sample_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Class-weighted loss of every sample, ``w[y] * loss``, shape ``(batch,)``.

        Multi-label: ``y`` is ``(batch, K)`` of 1 / 0 / NaN; the loss of a sample is the mean BCE
        (positive weights ``class_weights``) over its unmasked findings: NaN entries take no part."""
        if self.multi_label:
            return self._multilabel_loss(logits, y)
        w = self.class_weights[y]
        if self.binary:
            target = y.float()
            if self.cfg.train.label_smoothing:
                target = target * (1 - self.cfg.train.label_smoothing) + 0.5 * self.cfg.train.label_smoothing
            per = F.binary_cross_entropy_with_logits(logits[:, 0].float(), target, reduction="none")
        else:
            per = F.cross_entropy(logits.float(), y, reduction="none", label_smoothing=self.cfg.train.label_smoothing)
        return per * w

    def _multilabel_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        known = ~torch.isnan(y)
        target = torch.where(known, y, torch.zeros_like(y)).float()
        if self.cfg.train.label_smoothing:
            target = target * (1 - self.cfg.train.label_smoothing) + 0.5 * self.cfg.train.label_smoothing
        per = F.binary_cross_entropy_with_logits(logits.float(), target, pos_weight=self.class_weights.float(),
                                                 reduction="none")
        per = torch.where(known, per, torch.zeros_like(per))
        return per.sum(dim=1) / known.sum(dim=1).clamp_min(1)

    def _step(self, batch: dict | None, stage: str) -> torch.Tensor | None:
        if batch is None:  # every sample of the batch was unreadable (reported by the dataset)
            if stage == "train" and self.trainer.world_size > 1:
                # under DDP every rank must run backward: a zero loss that touches every parameter
                return sum(p.sum() for p in self.model.parameters() if p.requires_grad) * 0.0
            return None
        self.skipped_files.update(batch.get("skipped", []))
        mark_reported(batch.get("skipped", []))
        logits = self(batch["image"])
        per = self.per_sample_loss(logits, batch["label"])
        index = batch.get("index")
        index = torch.as_tensor(index) if index is not None else torch.full((len(per),), -1)
        # kept on the device until the epoch ends: a .cpu() here would wait for the GPU at every step
        probs = to_probs(logits.detach(), multi_label=self.multi_label).float()
        self._outputs[stage].append((per.detach().float(), probs, batch["label"], index))
        return per.mean()

    def training_step(self, batch: dict | None, batch_idx: int) -> torch.Tensor | None:  # noqa: D102
        loss = self._step(batch, "train")
        if loss is not None:
            self.log("train_loss_step", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=len(batch["label"]))
        return loss

    def on_train_batch_end(self, outputs: Any, batch: dict | None, batch_idx: int) -> None:
        """Step the one-cycle schedule once per optimiser step (its length counts optimiser steps, which
        gradient accumulation makes fewer than batches; a skipped batch makes none). After the last
        step the LR stays at the last one used (the cycle has no value beyond its end)."""
        sched = self._sched
        if sched is not None and self.cfg.train.scheduler == "onecycle" and \
                sched.last_epoch < min(self.trainer.global_step, sched.total_steps - 1):
            sched.step()

    def validation_step(self, batch: dict | None, batch_idx: int) -> None:  # noqa: D102
        self._step(batch, "val")

    # ----------------------------------------------------------------- epoch hooks
    def on_train_epoch_start(self) -> None:  # noqa: D102
        epoch = self.current_epoch
        frozen = self.cfg.train.freeze_backbone or epoch < self.cfg.train.freeze_epochs
        set_backbone_trainable(self.model, not frozen)
        self._outputs["train"] = []
        self._epoch_start = time.perf_counter()

    def on_train_batch_start(self, batch: dict | None, batch_idx: int) -> None:
        """Seed the RNG (dropout, stochastic depth) from (seed, epoch, batch): identical after a resume."""
        seed = sample_seed(self.cfg.train.seed, self.current_epoch, batch_idx)
        torch.default_generator.manual_seed(seed)  # torch.manual_seed would also seed every idle backend
        if self.device.type == "cuda":
            torch.cuda.manual_seed(seed)

    def on_validation_epoch_start(self) -> None:  # noqa: D102
        self._outputs["val"] = []

    def epoch_metrics(self, stage: str) -> dict[str, float]:
        """Loss, accuracy and AUC over the outputs collected in this epoch for ``stage``.

        Under DDP every rank gathers the outputs of all ranks first, so the metrics are those of the
        whole split (not a mean of per-shard AUCs), and validation images that the distributed
        sampler repeated to even out the shards are counted once (by dataset index).
        """
        n_label = len(self.classes) if self.multi_label else 1
        rows = _output_matrix(self._outputs[stage], n_label + len(self.classes))
        world = self._trainer.world_size if self._trainer is not None else 1
        if world > 1:
            rows = self._gather_rows(rows)
            if stage == "val":
                rows = _unique_by_index(rows)
        if not len(rows):
            return {}
        loss = float(rows[:, 1].mean())
        return self.summarize(rows[:, 2:2 + n_label].numpy(), rows[:, 2 + n_label:].numpy(), loss, stage)

    def summarize(self, y: np.ndarray, probs: np.ndarray, loss: float, stage: str) -> dict[str, float]:
        """``{stage}_loss/acc/auc`` of labels ``y`` and probabilities; multi-label: label accuracy and macro AUC."""
        if self.multi_label:
            return multilabel_summary(y.reshape(len(y), -1), probs, loss, stage)
        return summary_metrics(y.reshape(-1).astype(np.int64), probs, loss, stage)

    def _gather_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Rows of every rank (all ranks must call this), padded to the longest for ``all_gather``."""
        sizes = self.all_gather(torch.tensor([len(rows)], device=self.device)).reshape(-1).cpu()
        longest = int(sizes.max())
        padded = torch.cat([rows, rows.new_full((longest - len(rows), rows.shape[1]), -1.0)])
        gathered = self.all_gather(padded.to(self.device)).cpu().reshape(len(sizes), longest, rows.shape[1])
        return torch.cat([gathered[r, : int(n)] for r, n in enumerate(sizes)])

    def on_validation_epoch_end(self) -> None:  # noqa: D102
        metrics = self.epoch_metrics("val")
        if not self.trainer.sanity_checking and self.trainer.state.fn == "fit":
            metrics.update(self.epoch_metrics("train"))
            metrics["epoch_time_s"] = time.perf_counter() - self._epoch_start
        for k, v in metrics.items():
            self.log(k, v if math.isfinite(v) else float("nan"), prog_bar=k in ("val_loss", "val_auc", "train_loss"), sync_dist=True)

    def on_train_epoch_end(self) -> None:
        """Step epoch-level schedulers here so the saved state already includes this epoch's step."""
        if self._sched is None or self.cfg.train.scheduler == "onecycle":
            return
        if self.cfg.train.scheduler == "plateau":
            value = self.trainer.callback_metrics.get(self.cfg.train.monitor)
            if value is not None and math.isfinite(float(value)):
                self._sched.step(float(value))
        else:
            self._sched.step()

    # ----------------------------------------------------------------- optimisation
    def configure_optimizers(self) -> torch.optim.Optimizer:
        """AdamW or SGD with a lower LR on the backbone when a fine-tune schedule is used."""
        t = self.cfg.train
        backbone, head = split_parameters(self.model)
        backbone_lr = t.lr * t.finetune_lr_factor if t.freeze_epochs > 0 else t.lr
        groups = [{"params": backbone, "lr": backbone_lr, "name": "backbone"}, {"params": head, "lr": t.lr, "name": "head"}]
        if t.optimizer == "adamw":
            opt = torch.optim.AdamW(groups, lr=t.lr, weight_decay=t.weight_decay)
        else:
            opt = torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
        self._sched = self._make_scheduler(opt)
        return opt

    def _make_scheduler(self, opt: torch.optim.Optimizer) -> Any:
        t = self.cfg.train
        if t.scheduler == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode=best_mode(t.monitor), factor=t.plateau_factor, patience=t.plateau_patience)
        if t.scheduler == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(t.epochs, 1))
        if t.scheduler == "onecycle":
            total = int(self.trainer.estimated_stepping_batches)
            return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=max(total, 1))
        return None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:  # noqa: D102
        if self._sched is not None:
            checkpoint["medclass_scheduler"] = self._sched.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:  # noqa: D102
        self._check_fits(checkpoint.get("state_dict", {}))
        self._pending_sched_state = checkpoint.get("medclass_scheduler")

    def _check_fits(self, saved: dict[str, torch.Tensor]) -> None:
        """Refuse a training state whose tensors do not fit this model (config.yaml edited before a resume)."""
        own = self.state_dict()
        problems = [f"{k} missing" for k in sorted(set(own) - set(saved))]
        problems += [f"{k} not in this model" for k in sorted(set(saved) - set(own))]
        problems += [f"{k} has shape {tuple(saved[k].shape)}, this model {tuple(own[k].shape)}"
                     for k in sorted(set(own) & set(saved)) if tuple(saved[k].shape) != tuple(own[k].shape)]
        if problems:
            more = f" (and {len(problems) - 2} more)" if len(problems) > 2 else ""
            raise CheckpointError(
                f"The saved training state does not fit the model that config.yaml describes ({'; '.join(problems[:2])}"
                f"{more}); was config.yaml edited since the run started? Only settings that keep the model as it was "
                "(such as train.epochs) may change before --resume: restore config.yaml or start a new run.")

    def on_train_start(self) -> None:  # noqa: D102
        state = getattr(self, "_pending_sched_state", None)
        if state is not None and self._sched is not None:
            self._sched.load_state_dict(state)
            self._pending_sched_state = None

    def current_lr(self) -> float:
        """The head's learning rate (the configured peak LR, after schedules)."""
        opt = self.trainer.optimizers[0]
        return float(opt.param_groups[-1]["lr"])


def summary_metrics(y, probs, loss: float, stage: str) -> dict[str, float]:
    """``{stage}_loss``, ``{stage}_acc`` (decisions at 0.5 / argmax) and ``{stage}_auc`` (NaN, silently, for one class)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        auc = roc_auc(y, probs)
    return {f"{stage}_loss": float(loss), f"{stage}_acc": float(accuracy(y, predict_labels(probs))), f"{stage}_auc": float(auc)}


def _output_matrix(outputs: list, n_values: int) -> torch.Tensor:
    """The collected ``(loss, probs, label, index)`` batches as one float64 matrix ``[index, loss, label(s), probs...]``
    (``n_values`` label and probability columns; a multi-label row has K labels)."""
    if not outputs:
        return torch.zeros((0, 2 + n_values), dtype=torch.float64)
    loss, probs, labels, index = (torch.cat([o[i].cpu() for o in outputs]) for i in range(4))
    labels = labels.reshape(len(labels), -1)
    return torch.cat([index[:, None].double(), loss[:, None].double(), labels.double(), probs.double()], dim=1)


def _unique_by_index(rows: torch.Tensor) -> torch.Tensor:
    """Drop repeated dataset indices (the distributed sampler's padding); rows without an index (-1) are kept."""
    index = rows[:, 0].long().numpy()
    known = index >= 0
    _, first = np.unique(index[known], return_index=True)
    keep = np.concatenate([np.flatnonzero(known)[first], np.flatnonzero(~known)])
    return rows[np.sort(keep)]
