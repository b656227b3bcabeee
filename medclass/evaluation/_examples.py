"""Which images to show in the report (gallery, top losses, CAM cells) and loading them as the model saw them."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from ..data.dataset import ImageDataset
from ..data.transforms import prepare_image
from ..errors import ImageReadError

log = logging.getLogger(__name__)


@dataclass
class Example:
    """One evaluated image with its prediction, ready to draw."""

    path: str
    patient: str
    label: str  # true class
    predicted: str
    prob_predicted: float  # probability of the predicted class
    prob_true: float  # probability of the true class
    loss: float  # -log p(true class)
    image: np.ndarray  # what the model saw before normalisation: HxWxC float32 in [0, 1]
    overlay: np.ndarray | None = None  # CAM overlay, uint8 HxWx3
    cam_class: str = ""  # class the CAM explains

    @property
    def correct(self) -> bool:
        """Whether the prediction was right."""
        return self.label == self.predicted


def per_image_loss(probs: np.ndarray, labels: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Cross-entropy of every image, ``-log p(true class)`` (binary: the BCE of the positive-class probability).

    >>> per_image_loss(np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([0, 0])).round(3).tolist()
    [0.105, 1.609]
    """
    return -np.log(np.clip(probs[np.arange(len(labels)), labels], eps, 1.0))


def pick_gallery(correct: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Row indices of a seeded random gallery: half wrong predictions (as many as there are), the rest correct.

    >>> sorted(pick_gallery(np.array([True, True, False, True]), 2).tolist())
    [2, 3]
    """
    rng = np.random.default_rng(seed)
    wrong, right = np.flatnonzero(~correct), np.flatnonzero(correct)
    n_wrong = min(len(wrong), n // 2)
    n_right = min(len(right), n - n_wrong)
    n_wrong = min(len(wrong), n - n_right)
    picked = np.concatenate([rng.permutation(right)[:n_right], rng.permutation(wrong)[:n_wrong]])
    return picked[rng.permutation(len(picked))]


def pick_cells(labels: np.ndarray, correct: np.ndarray, n_classes: int, per_cell: int,
               seed: int = 0) -> list[tuple[int, bool, np.ndarray]]:
    """For every true class and outcome (correct, wrong): up to ``per_cell`` seeded random row indices.

    >>> [(c, ok, rows.tolist()) for c, ok, rows in pick_cells(np.array([0, 1]), np.array([True, False]), 2, 1)]
    [(0, True, [0]), (0, False, []), (1, True, []), (1, False, [1])]
    """
    rng = np.random.default_rng(seed)
    cells = []
    for c in range(n_classes):
        for ok in (True, False):
            rows = np.flatnonzero((labels == c) & (correct == ok))
            cells.append((c, ok, np.sort(rng.permutation(rows)[:per_cell])))
    return cells


def load_views(ds: ImageDataset, indices: np.ndarray) -> tuple[list[np.ndarray], torch.Tensor | None, list[int]]:
    """The model's view (HWC in [0, 1]) and normalised input of dataset rows; unreadable rows are left out.

    Returns ``(views, inputs (n, C, H, W) or None, kept positions in indices)``.
    """
    views, inputs, kept = [], [], []
    size, chans = ds.transform.image_size, ds.transform.in_chans
    for pos, index in enumerate(indices):
        try:
            raw = ds.load(int(index))
        except ImageReadError as e:
            log.warning("Example image %s left out of the report: %s", e.path, e.reason)
            continue
        views.append(prepare_image(raw, size, chans).permute(1, 2, 0).numpy())
        inputs.append(ds.transform(raw))
        kept.append(pos)
    return views, (torch.stack(inputs) if inputs else None), kept
