"""Batch inference over a Dataset: one loop shared by training (baseline, threshold), evaluation and predict."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .config import TrainConfig


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


@torch.no_grad()
def predict_dataset(model: torch.nn.Module, dataset: Dataset, *, batch_size: int = 32, num_workers: int = 0,
                    temperature: float = 1.0, tta: bool = False, device: str | torch.device | None = None,
                    collate_fn=None, stall_timeout: float = TrainConfig.stall_timeout,
                    multi_label: bool | None = None) -> Predictions:
    """Run ``model`` in eval mode over ``dataset`` (dict samples) and collect logits and probabilities.

    ``tta=True`` averages the logits of the image and its horizontal flip. ``multi_label`` (default: the
    dataset's own ``multi_label``) gives one sigmoid per output. Batches whose samples
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
    logits, labels, paths, patients, indices, skipped = [], [], [], [], [], []
    with loader_watchdog("The prediction data loader", stall_timeout):
        for batch in loader:
            if batch is None:
                continue
            skipped.extend(batch.get("skipped", []))
            x = batch["image"].to(device)
            out = model(x).float()
            if tta:
                out = (out + model(torch.flip(x, dims=[3])).float()) / 2
            logits.append(out.cpu())
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
    return Predictions(lg.numpy(), to_probs(lg, temperature, multi_label).numpy(), torch.cat(labels).numpy(), paths, patients,
                       torch.cat(indices).numpy(), skipped)
