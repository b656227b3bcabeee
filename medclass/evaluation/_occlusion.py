"""The passes behind the ``shortcuts`` section: occluded predictions and where Grad-CAM puts its mass.

Occlusion happens inside the prediction pass, on the model-input tensor after the checkpoint's own
preprocessing (:class:`Occluded` wraps the evaluated dataset): the hidden part is set to 0, which after
``Normalize(mean, std)`` is the checkpoint's normalisation mean, the pixel the model reads as neutral. No
image file is written. The regions are the border band of :func:`~medclass.metrics.cam_location.border_band`
(any number of spatial dimensions, so volumes work too) or a per-row mask image (``--mask-column``).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from ..data._csv import resolve_masks
from ..data.dataset import ImageDataset
from ..data.transforms import prepare_image
from ..errors import ConfigError, ImageReadError
from ..inference import predict_dataset
from ..metrics.cam_location import BORDER_FRACTION, border_band, cam_peak_inside, cam_share_inside
from ._examples import load_views

log = logging.getLogger(__name__)

#: what each occlusion keeps of the model input (the rest is set to the normalisation mean)
OCCLUSIONS: dict[str, str] = {
    "border_only": "only the border band kept (centre set to the training mean)",
    "centre_only": "only the centre kept (border band set to the training mean)",
    "mask_only": "only the masked region kept (the rest set to the training mean)",
    "mask_removed": "the masked region set to the training mean (the rest kept)",
}
CAM_BATCH = 16  # images per Grad-CAM call


@dataclass
class MaskSource:
    """Per-row masks (``--mask-column``), read with the dataset's reader and resized as its images are."""

    paths: np.ndarray  # resolved path of every table row ('' = no mask)
    reader: Callable[..., np.ndarray]
    keep_aspect: bool = False

    def __call__(self, index: int, shape: tuple[int, ...]) -> np.ndarray:
        """Boolean ``shape`` mask of table row ``index`` (True inside); ImageReadError when it cannot be read."""
        path = str(self.paths[index])
        if not path:
            raise ImageReadError(path, "no mask given in this row")
        raw = self.reader(path, frame=-1, window="")
        x = prepare_image(raw, shape[-1], 1, self.keep_aspect)[0].numpy()
        top = float(x.max())
        return x > top / 2 if top > 0 else np.zeros(shape, dtype=bool)  # 0/1 and 0/255 masks alike


def mask_source(frame: pd.DataFrame, dataset: ImageDataset, column: str, root: str | Path) -> MaskSource:
    """The masks of ``column`` of the dataset's table ``frame``; relative paths are taken relative to ``root``."""
    if column not in frame.columns:
        raise ConfigError(f"--mask-column {column!r} is not a column of the evaluated data (columns: "
                          f"{[c for c in frame.columns if c not in ('path', 'label', 'split', 'frame')]}); name the "
                          "CSV column that holds each row's mask image.")
    return MaskSource(resolve_masks(frame[column], root), dataset.reader, getattr(dataset.transform, "keep_aspect", False))


class Occluded(Dataset):
    """``dataset`` with part of every model input set to 0 (the normalisation mean); ``keep`` names the part kept.

    >>> import torch
    >>> class Two(torch.utils.data.Dataset):
    ...     def __len__(self): return 1
    ...     def __getitem__(self, i): return {"image": torch.ones(1, 8, 8), "index": i}
    >>> x = Occluded(Two(), "centre_only", fraction=0.25)[0]["image"]
    >>> int(x.sum()), float(x[0, 4, 4])
    (16, 1.0)
    """

    def __init__(self, dataset: Dataset, keep: str, fraction: float = BORDER_FRACTION,
                 masks: MaskSource | None = None) -> None:
        if keep not in OCCLUSIONS:
            raise ValueError(f"unknown occlusion {keep!r}; one of {list(OCCLUSIONS)}")
        if keep.startswith("mask") and masks is None:
            raise ValueError(f"occlusion {keep!r} needs masks (--mask-column)")
        self.dataset, self.keep, self.fraction, self.masks = dataset, keep, fraction, masks
        self.transform = getattr(dataset, "transform", None)
        self._warned = False

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def region(self, index: int, shape: tuple[int, ...]) -> np.ndarray:
        """The kept part (True) of row ``index``'s input of spatial ``shape``."""
        if self.keep in ("border_only", "centre_only"):
            band = border_band(shape, self.fraction)
            return band if self.keep == "border_only" else ~band
        inside = self.masks(index, shape)  # type: ignore[misc]
        return inside if self.keep == "mask_only" else ~inside

    def __getitem__(self, key: Any) -> dict[str, Any] | None:
        sample = self.dataset[key]
        if sample is None:
            return None
        x = sample["image"]
        try:
            keep = self.region(int(sample["index"]), tuple(x.shape[1:]))
        except ImageReadError as e:
            if not self._warned:
                log.warning("Mask of %s not used (%s): its image is left out of the mask checks.", sample["path"], e.reason)
                self._warned = True
            return None
        sample["image"] = x * torch.from_numpy(keep).to(x.dtype)
        return sample


def occluded_probs(model: torch.nn.Module, dataset: ImageDataset, keep: str, indices: np.ndarray, n_classes: int, *,
                   masks: MaskSource | None = None, fraction: float = BORDER_FRACTION, batch_size: int = 64,
                   num_workers: int = 0, temperature: float = 1.0, tta: bool = False,
                   multi_label: bool = False) -> np.ndarray:
    """Probabilities ``(len(indices), n_classes)`` of the occluded inputs, row-aligned with ``indices`` (dataset rows
    of the reference prediction); NaN rows where an occluded input could not be built (e.g. no mask)."""
    pred = predict_dataset(model, Occluded(dataset, keep, fraction, masks), batch_size=batch_size,
                           num_workers=num_workers, temperature=temperature, tta=tta, multi_label=multi_label)
    out = np.full((len(indices), n_classes), np.nan)
    if not len(pred.indices):  # no input could be built (e.g. every mask missing)
        return out
    at = pd.Index(indices).get_indexer(pred.indices)
    out[at[at >= 0]] = pred.probs[at >= 0]
    return out


@dataclass
class CamLocations:
    """Per sampled image: share of the CAM in the border band (and in the mask, a peak-in-mask hit)."""

    border_share: np.ndarray  # NaN for an empty map
    mask_share: np.ndarray | None = None
    mask_hit: np.ndarray | None = None  # 1.0 / 0.0, NaN for an empty map or a missing mask
    band_area: float = float("nan")  # share of the input in the band (what an even map gives)
    mask_area: float = float("nan")  # mean share of the input inside the mask
    empty: int = 0  # maps with no positive evidence
    outside: list[tuple[float, int, np.ndarray, np.ndarray]] = field(default_factory=list)  # (score, position, view, cam)


def cam_locations(model: torch.nn.Module, dataset: ImageDataset, indices: np.ndarray, classes: np.ndarray, *,
                  method: str, target_layer: str | None, masks: MaskSource | None = None,
                  fraction: float = BORDER_FRACTION, keep_worst: int = 8) -> CamLocations:
    """Grad-CAM (explaining ``classes``, one per index) of the dataset rows ``indices``; shares and the worst maps.

    "Worst" means the most outside: the lowest mask share with masks, else the highest border share.
    """
    from ..explain.cam import compute_cam

    device = next(model.parameters()).device
    n = len(indices)
    border, inside, hit = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    areas: list[float] = []
    band_area, empty, worst = float("nan"), 0, []
    for start in range(0, n, CAM_BATCH):
        views, inputs, kept = load_views(dataset, indices[start:start + CAM_BATCH])
        if inputs is None:
            continue
        pos = start + np.asarray(kept)
        cams = compute_cam(model, inputs.to(device), target_class=[int(c) for c in classes[pos]], method=method,
                           target_layer=target_layer)
        band = border_band(cams.shape[1:], fraction)
        band_area = float(band.mean())
        for view, p, cam in zip(views, pos, cams):
            border[p] = cam_share_inside(cam, band)
            empty += int(np.isnan(border[p]))
            score = border[p]
            if masks is not None:
                try:
                    m = masks(int(indices[p]), cam.shape)
                except ImageReadError:
                    continue
                areas.append(float(m.mean()))
                inside[p] = cam_share_inside(cam, m)
                hit[p] = np.nan if np.isnan(inside[p]) else float(cam_peak_inside(cam, m))
                score = 1.0 - inside[p]
            if not np.isnan(score):
                worst.append((float(score), int(p), view, cam))
        worst = sorted(worst, key=lambda t: -t[0])[:keep_worst]
    return CamLocations(border, inside if masks is not None else None,
                        hit if masks is not None else None, band_area,
                        float(np.mean(areas)) if areas else float("nan"), empty, worst)


__all__ = ["CAM_BATCH", "CamLocations", "MaskSource", "OCCLUSIONS", "Occluded", "cam_locations",
           "mask_source", "occluded_probs"]
