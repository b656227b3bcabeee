"""Batch inference over a Dataset: one loop shared by training (baseline, threshold), evaluation and predict.

Penultimate-layer features (what the classifier layer sees) come out of the same forward pass:
:func:`forward_with_features` hooks the input of ``model.get_classifier()``, which every registered
model has (timm's and our SimpleCNN), so OOD scores and shift measures cost no extra pass.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .config import TrainConfig


@dataclass
class Predictions:
    """Outputs of a model over a dataset, row-aligned (unreadable samples are left out and listed)."""

    logits: np.ndarray  # (n, num_outputs) raw model outputs
    probs: np.ndarray  # (n, n_classes) probabilities (binary: [1 - p, p])
    labels: np.ndarray  # (n,) class indices (-1 when unknown)
    paths: list[str] = field(default_factory=list)
    patients: list[str] = field(default_factory=list)
    indices: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # row index in the dataset's table
    skipped: list[str] = field(default_factory=list)
    features: np.ndarray | None = None  # (n, d) penultimate features when asked for (features=True)


def to_probs(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Probabilities ``(n, n_classes)``: sigmoid of one logit (as ``[1-p, p]``) or softmax, after temperature."""
    logits = logits.float() / temperature
    if logits.ndim == 2 and logits.shape[1] == 1:
        p = torch.sigmoid(logits[:, 0])
        return torch.stack([1 - p, p], dim=1)
    return torch.softmax(logits, dim=1)


@contextmanager
def _classifier_input(model: torch.nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collect the input of the model's classifier layer during the forward passes inside the block."""
    seen: list[torch.Tensor] = []
    handle = model.get_classifier().register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    try:
        yield seen
    finally:
        handle.remove()


def forward_with_features(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, penultimate features)`` of one batch in one forward pass.

    The features are the input of ``model.get_classifier()``, flattened to ``(n, d)``: for timm models
    ``forward_head(forward_features(x), pre_logits=True)`` (pooled backbone features), for SimpleCNN
    its hidden dense layer.

    >>> from medclass.models import create_model
    >>> logits, feats = forward_with_features(create_model("resnet18", 2, in_chans=1).eval(), torch.zeros(2, 1, 64, 64))
    >>> tuple(logits.shape), tuple(feats.shape)
    ((2, 1), (2, 512))
    """
    with _classifier_input(model) as seen:
        logits = model(x)
    return logits, seen[-1].flatten(1)


@torch.no_grad()
def predict_dataset(model: torch.nn.Module, dataset: Dataset, *, batch_size: int = 32, num_workers: int = 0,
                    temperature: float = 1.0, tta: bool = False, device: str | torch.device | None = None,
                    collate_fn=None, stall_timeout: float = TrainConfig.stall_timeout,
                    features: bool = False) -> Predictions:
    """Run ``model`` in eval mode over ``dataset`` (dict samples) and collect logits and probabilities.

    ``tta=True`` averages the logits (and features) of the image and its horizontal flip.
    ``features=True`` also collects the penultimate features (:func:`forward_with_features`). Batches whose samples
    were all unreadable are skipped; their paths are listed in ``Predictions.skipped``. With workers,
    a batch that takes longer than ``stall_timeout`` seconds (0 = no limit) stops with a DatasetError.
    """
    from .data._pool import loader_watchdog
    from .data.dataset import collate_skip

    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=collate_fn or collate_skip, timeout=stall_timeout if num_workers > 0 else 0)
    logits, labels, paths, patients, indices, skipped, feats = [], [], [], [], [], [], []
    with loader_watchdog("The prediction data loader", stall_timeout):
        for batch in loader:
            if batch is None:
                continue
            skipped.extend(batch.get("skipped", []))
            x = batch["image"].to(device)
            out, f = forward_with_features(model, x)
            if tta:
                out_flip, f_flip = forward_with_features(model, torch.flip(x, dims=[3]))
                out, f = (out.float() + out_flip.float()) / 2, (f.float() + f_flip.float()) / 2
            logits.append(out.float().cpu())
            if features:
                feats.append(f.float().cpu())
            labels.append(batch["label"].cpu())
            paths.extend(batch["path"])
            patients.extend(batch["patient"])
            indices.append(torch.as_tensor(batch["index"]).cpu())
    model.train(was_training)
    if not logits:
        n_out = 0
        return Predictions(np.zeros((0, n_out)), np.zeros((0, 0)), np.zeros(0, dtype=np.int64), skipped=skipped)
    lg = torch.cat(logits)
    return Predictions(lg.numpy(), to_probs(lg, temperature).numpy(), torch.cat(labels).numpy(), paths, patients,
                       torch.cat(indices).numpy(), skipped, torch.cat(feats).numpy() if features else None)
