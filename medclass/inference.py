"""Batch inference over a Dataset: one loop shared by training (baseline, threshold), evaluation and predict.

Features come out of the same forward pass (:func:`forward_with_features`), so OOD scores and
shift measures cost no extra pass:

- penultimate features: the input of ``model.get_classifier()`` (every registered model has one);
  the domain classifier and the Fréchet distance of the dataset-shift measures use them;
- stage statistics: per channel mean and standard deviation of the output of every stage named in
  the model's ``feature_info`` (timm's; SimpleCNN has its blocks), the channels of a stage averaged
  in at most :data:`STAGE_GROUPS` contiguous groups so that the vector stays short (<= 5 x 2 x 64).
  The out-of-distribution score uses them: low-level statistics (intensity, texture) catch a CT
  slice or a photograph that the classifier's last layer, trained only to separate the classes,
  maps among the training images (measured in bench/README_ood.md).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

import torch.nn.functional as F

from .config import TrainConfig

STAGE_GROUPS = 64  # channel groups per stage in the stage statistics


@dataclass
class Predictions:
    """Outputs of a model over a dataset, row-aligned (unreadable samples are left out and listed)."""

    logits: np.ndarray  # (n, num_outputs) raw model outputs
    probs: np.ndarray  # (n, n_classes) probabilities (binary: [1 - p, p]; multi-label: one sigmoid per finding)
    labels: np.ndarray  # (n,) class indices (-1 when unknown); multi-label: (n, K) 1 / 0 / NaN (masked)
    paths: list[str] = field(default_factory=list)
    patients: list[str] = field(default_factory=list)
    indices: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # row index in the dataset's table
    skipped: list[str] = field(default_factory=list)
    features: np.ndarray | None = None  # (n, d) penultimate features when asked for (features=True)
    stage_features: np.ndarray | None = None  # (n, d') stage statistics when asked for (features=True)


def to_probs(logits: torch.Tensor, temperature: float = 1.0, multi_label: bool = False) -> torch.Tensor:
    """Probabilities ``(n, n_classes)``: sigmoid of one logit (as ``[1-p, p]``) or softmax, after temperature;
    multi-label: the sigmoid of every logit (one independent probability per finding)."""
    logits = logits.float() / temperature
    if multi_label:
        return torch.sigmoid(logits)
    if logits.ndim == 2 and logits.shape[1] == 1:
        p = torch.sigmoid(logits[:, 0])
        return torch.stack([1 - p, p], dim=1)
    return torch.softmax(logits, dim=1)


def stage_statistics(feature_map: torch.Tensor, groups: int = STAGE_GROUPS) -> torch.Tensor:
    """``(n, 2 g)``: per channel spatial mean and sd of an ``(n, c, h, w)`` (or ``(n, c, x, y, z)``) map, averaged in ``g = min(c, groups)`` groups."""
    flat = feature_map.float().flatten(2)
    stats = [flat.mean(2), flat.std(2, unbiased=False)]
    g = min(flat.shape[1], groups)
    return torch.cat([F.adaptive_avg_pool1d(s[:, None, :], g)[:, 0] for s in stats], dim=1)


def stage_names(model: torch.nn.Module) -> list[str]:
    """Module names of the model's stages (``feature_info``; maps of 4 or 5 dimensions are used)."""
    return [d["module"] for d in getattr(model, "feature_info", None) or []]


@contextmanager
def _captured(model: torch.nn.Module, stage_rows: slice = slice(None)) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Collect the classifier's input and every stage's statistics (of the batch rows ``stage_rows`` only) during the
    forward passes inside the block."""
    seen: dict[str, list[torch.Tensor]] = {"classifier": [], "stages": []}

    def stage_hook(module: torch.nn.Module, args: tuple, out: torch.Tensor) -> None:
        if isinstance(out, torch.Tensor) and out.ndim in (4, 5):  # 2-D maps, or 3-D maps of a volume network  # computed now: an in-place op may change `out` later
            seen["stages"].append(stage_statistics(out[stage_rows]))

    handles = [model.get_classifier().register_forward_pre_hook(lambda module, args: seen["classifier"].append(args[0]))]
    handles += [model.get_submodule(name).register_forward_hook(stage_hook) for name in stage_names(model)]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def band_limited(x: torch.Tensor, lowpass: float) -> torch.Tensor:
    """A 2-D input batch resampled to ``lowpass`` of its side (antialiased) and back: the detail that an image stored at
    another resolution has or lacks is gone. ``lowpass >= 1`` or a volume batch (5-D): ``x`` as is.

    >>> band_limited(torch.rand(1, 1, 64, 64), 0.5).shape
    torch.Size([1, 1, 64, 64])
    """
    if lowpass >= 1.0 or x.ndim != 4:
        return x
    h, w = x.shape[-2:]
    small = F.interpolate(x.float(), size=(max(1, round(h * lowpass)), max(1, round(w * lowpass))), mode="bilinear",
                          antialias=True, align_corners=False)
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False).to(x.dtype)


def forward_with_features(model: torch.nn.Module, x: torch.Tensor,
                          lowpass: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(logits, penultimate features, stage statistics)`` of one batch.

    The penultimate features are the input of ``model.get_classifier()``, flattened to ``(n, d)``: for
    timm models ``forward_head(forward_features(x), pre_logits=True)`` (pooled backbone features), for
    SimpleCNN its hidden dense layer. The stage statistics are :func:`stage_statistics` of every stage
    (:func:`stage_names`), concatenated: of the same forward pass, or with ``lowpass < 1`` of the
    :func:`band_limited` input (the out-of-distribution features, :data:`medclass.metrics.ood.LOWPASS`;
    the logits and penultimate features always come from ``x`` as is). Then ``x`` and its band-limited copy
    go through the model as one batch of ``2 n`` (one call instead of two, bench/bench_ood_cost.py); the model
    must be in eval mode (batch norm with running statistics, rows do not mix), as in every caller.

    >>> from medclass.models import create_model
    >>> logits, feats, stages = forward_with_features(create_model("resnet18", 2, in_chans=1).eval(),
    ...                                               torch.zeros(2, 1, 64, 64))
    >>> tuple(logits.shape), tuple(feats.shape), tuple(stages.shape)
    ((2, 1), (2, 512), (2, 640))
    """
    n = len(x)
    if lowpass < 1.0 and x.ndim == 4:
        with _captured(model, stage_rows=slice(n, None)) as seen:
            logits = model(torch.cat([x, band_limited(x, lowpass)]))[:n]
    else:
        with _captured(model) as seen:
            logits = model(x)
    penultimate = seen["classifier"][-1][:n].flatten(1)
    stages = torch.cat(seen["stages"], dim=1) if seen["stages"] else torch.zeros(n, 0)
    return logits, penultimate, stages


def _forward(model: torch.nn.Module, x: torch.Tensor, features: bool, lowpass: float = 1.0) -> tuple[torch.Tensor, ...]:
    """``(logits,)``, or with ``features`` the three outputs of :func:`forward_with_features` (no hooks without)."""
    return forward_with_features(model, x, lowpass) if features else (model(x),)


@torch.no_grad()
def predict_dataset(model: torch.nn.Module, dataset: Dataset, *, batch_size: int = 32, num_workers: int = 0,
                    temperature: float = 1.0, tta: bool = False, device: str | torch.device | None = None,
                    collate_fn=None, stall_timeout: float = TrainConfig.stall_timeout,
                    features: bool = False, multi_label: bool | None = None, lowpass: float = 1.0) -> Predictions:
    """Run ``model`` in eval mode over ``dataset`` (dict samples) and collect logits and probabilities.

    ``tta=True`` averages the logits (and features) of the image and its horizontal flip. ``multi_label``
    (default: the dataset's own ``multi_label``) gives one sigmoid per output.
    ``features=True`` also collects the penultimate features and the stage statistics (:func:`forward_with_features`,
    the latter band-limited by ``lowpass``: pass the checkpoint's ``ood.lowpass``). Batches whose samples
    were all unreadable are skipped; their paths are listed in ``Predictions.skipped``. With workers,
    a batch that takes longer than ``stall_timeout`` seconds (0 = no limit) stops with a DatasetError.
    """
    from .data._pool import loader_watchdog
    from .data.dataset import collate_skip
    from .data.io import mark_reported

    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=collate_fn or collate_skip, timeout=stall_timeout if num_workers > 0 else 0)
    logits, labels, paths, patients, indices, skipped, feats, stages = [], [], [], [], [], [], [], []
    with loader_watchdog("The prediction data loader", stall_timeout):
        for batch in loader:
            if batch is None:
                continue
            skipped.extend(batch.get("skipped", []))
            mark_reported(batch.get("skipped", []))
            x = batch["image"].to(device)
            outputs = _forward(model, x, features, lowpass)
            if tta:
                flipped = _forward(model, torch.flip(x, dims=[3]), features, lowpass)
                outputs = tuple((a.float() + b.float()) / 2 for a, b in zip(outputs, flipped))
            logits.append(outputs[0].float().cpu())
            if features:
                feats.append(outputs[1].float().cpu())
                stages.append(outputs[2].float().cpu())
            labels.append(batch["label"].cpu())
            paths.extend(batch["path"])
            patients.extend(batch["patient"])
            indices.append(torch.as_tensor(batch["index"]).cpu())
    model.train(was_training)
    if not logits:
        n_out = 0
        return Predictions(np.zeros((0, n_out)), np.zeros((0, 0)), np.zeros(0, dtype=np.int64), skipped=skipped)
    lg = torch.cat(logits)
    multi_label = getattr(dataset, "multi_label", False) if multi_label is None else multi_label
    return Predictions(lg.numpy(), to_probs(lg, temperature, multi_label).numpy(), torch.cat(labels).numpy(), paths,
                       patients, torch.cat(indices).numpy(), skipped, torch.cat(feats).numpy() if features else None,
                       torch.cat(stages).numpy() if features else None)
