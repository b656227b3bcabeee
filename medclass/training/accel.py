"""Hardware-dependent choices of a run: where augmentation runs, pinned memory, channels-last, compile.

Each ``auto`` setting resolves from ``train.accelerator`` and what torch sees, so the same config
is right on a laptop and on a GPU node:

===================== ====================================== ===========================
setting               on a CUDA GPU (``auto``)               on the CPU (``auto``)
===================== ====================================== ===========================
``train.augment_on``  ``device``: uint8 batches, augmented   ``cpu``: per-image in the
                      and normalised on the GPU               DataLoader workers
pinned memory         on (with non-blocking copies, which    off
                      Lightning already makes)
``train.channels_last`` on (tensor cores prefer NHWC)        off
``train.precision``   bf16-mixed (16-mixed without bf16),    32
                      see :func:`.runner.make_trainer`
``train.compile``     off unless set: measure it first        off
===================== ====================================== ===========================

Example:
    >>> from medclass.config import TrainConfig
    >>> resolve_augment_on(TrainConfig(accelerator="cpu"))
    'cpu'
"""
from __future__ import annotations

import logging
from typing import Any

import torch

from .._formats import parse_switch
from ..config import AugmentOn, RunConfig, TrainConfig, choices
from ..data.batch_augment import BatchAugment
from ..data.transforms import PRESETS
from ..errors import check_choice

log = logging.getLogger(__name__)

AUGMENT_ON = choices(AugmentOn)


def on_gpu(t: TrainConfig) -> bool:
    """True when the run trains on a CUDA GPU (``train.accelerator`` auto/gpu/cuda and one is visible)."""
    return t.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def resolve_augment_on(t: TrainConfig) -> str:
    """``'cpu'`` or ``'device'``: where the training augmentation runs (``auto``: device on a GPU)."""
    check_choice("train.augment_on", t.augment_on, AUGMENT_ON)
    if t.augment_on == "auto":
        return "device" if on_gpu(t) else "cpu"
    return t.augment_on


def use_channels_last(t: TrainConfig) -> bool:
    """Whether model and batches use the channels-last memory format (``auto``: on a GPU)."""
    value = parse_switch(t.channels_last)
    return on_gpu(t) if value == "auto" else value == "true"


def pin_memory(t: TrainConfig) -> bool:
    """Pin DataLoader batches in page-locked memory: only useful (and only done) when a GPU trains."""
    return on_gpu(t)


def prepare_model(model: torch.nn.Module, t: TrainConfig) -> torch.nn.Module:
    """Apply channels-last and ``torch.compile`` to ``model`` in place (state-dict keys unchanged).

    ``nn.Module.compile`` compiles the forward in place, so checkpoints keep their plain keys.
    """
    if use_channels_last(t) and not any(p.dim() == 5 for p in model.parameters()):  # 3-D networks: no 2-D layout
        model.to(memory_format=torch.channels_last)
    if t.compile:
        log.info("compiling the model with torch.compile (the first steps are slow)")
        model.compile()
    return model


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """A 4-D batch in channels-last memory format (other tensors unchanged)."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


class DeviceFeed:
    """How a DataModule feeds the training device (see the module docstring for the ``auto`` rules).

    With augmentation on the device, the training dataset serves uint8 images with their
    parameters (:class:`~medclass.data.batch_augment.FeedDataset`) and
    :meth:`after_transfer` augments and normalises them once they are on the device; validation
    batches arrive normalised from the CPU transform. Channels-last applies to every batch.
    """

    def __init__(self, cfg: RunConfig, mean: list[float], std: list[float]) -> None:
        t = cfg.train
        self.pin_memory, self.channels_last = pin_memory(t), use_channels_last(t)
        self.batch_augment = (BatchAugment(PRESETS[t.augment], cfg.model.image_size, mean, std, t.seed)
                              if resolve_augment_on(t) == "device" else None)

    def after_transfer(self, batch: Any, training: bool) -> Any:
        """Augment (when ``training``) and normalise uint8 images on their device; channels-last if on."""
        if not isinstance(batch, dict) or "image" not in batch:
            return batch
        x = batch["image"]
        if x.dtype == torch.uint8:
            if self.batch_augment is None:
                raise ValueError("A uint8 batch reached the device but train.augment_on resolved to 'cpu'; "
                                 "serve float images or set train.augment_on=device.")
            x = self.batch_augment(x, batch.get("augment_params"), train=training)
        batch["image"] = to_channels_last(x) if self.channels_last else x
        return batch
