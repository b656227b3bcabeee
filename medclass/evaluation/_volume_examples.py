"""The ``examples`` section for CT/MRI volumes: a gallery of centre slices, and slice montages with Grad-CAM
(:func:`medclass.explain.volume.slice_montage`) of the highest-loss volumes and of each (class, outcome) cell.

A montage is wide (k axial slices, the CAM under them, a colour scale), so each is drawn on a row of
its own by :func:`montage_figure` instead of the square tiles of the 2-D grids.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from ..data.dataset import ImageDataset
from ..errors import ImageReadError
from ..metrics import plots
from ._examples import Example, pick_cells, pick_gallery

log = logging.getLogger(__name__)

TOP_VOLUMES = 4  # montages of the highest-loss volumes
CAM_BATCH = 4  # volumes per Grad-CAM call (bounds memory: a 3-D backward pass holds every activation)


@dataclass
class VolumeExample(Example):
    """An evaluated volume: ``image`` is its centre axial slice, ``montage`` its slice montage (with the CAM)."""

    montage: np.ndarray | None = None  # uint8 RGB, medclass.explain.volume.slice_montage


def is_volume_examples(examples: dict[str, list]) -> bool:
    """Whether the ``examples`` section's picks are volumes (drawn as montages)."""
    return any(isinstance(ex, VolumeExample) for items in examples.values() for ex in items)


def load_volumes(ds: ImageDataset, indices: np.ndarray) -> Iterator[tuple[int, np.ndarray, torch.Tensor]]:
    """``(position in indices, prepared volume (X, Y, Z) in [0, 1], model input)`` of dataset rows, one at a time;
    unreadable volumes are left out with a warning."""
    for pos, index in enumerate(indices):
        try:
            raw = np.asarray(ds.load(int(index)), dtype=np.float32)
        except ImageReadError as e:
            log.warning("Volume %s left out of the report: %s", e.path, e.reason)
            continue
        yield pos, raw[0], ds.transform(raw)


def batched(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    """Lists of up to ``size`` consecutive items."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _centre(volume: np.ndarray) -> np.ndarray:
    """The centre axial slice as displayed (``H x W x 1``)."""
    from ..explain.volume import display_plane

    return display_plane(volume[:, :, volume.shape[2] // 2])[..., None]


def _example(ctx, row: int, image: np.ndarray) -> VolumeExample:
    r, p, classes = ctx.frame.iloc[row], ctx.pred.probs[row], ctx.classes
    return VolumeExample(r["path"], r["patient"], r["label"], r["predicted"], float(p[classes.index(r["predicted"])]),
                   float(p[classes.index(r["label"])]), float(r["loss"]), image)


def _montages(ctx, rows: np.ndarray, cam: bool) -> list[VolumeExample]:
    """Examples of ``rows`` (positions in ``ctx.frame``) with their slice montage, with the CAM of
    the predicted class when ``cam``."""
    from ..explain.volume import slice_montage, volume_cams

    model, cfg, prep = ctx.run.model, ctx.run.config, ctx.dataset.transform.prep
    device = next(model.parameters()).device
    out = []
    for batch in batched(load_volumes(ctx.dataset, ctx.pred.indices[rows]), CAM_BATCH):
        examples = [_example(ctx, int(rows[pos]), _centre(volume)) for pos, volume, _ in batch]
        maps = [None] * len(batch)
        if cam:
            maps = volume_cams(model, torch.stack([x for _, _, x in batch]).to(device), prep,
                               target_class=[ctx.classes.index(ex.predicted) for ex in examples],
                               method=cfg.eval.cam_method, target_layer=cfg.model.target_layer or None)
        for ex, (_, volume, _), m in zip(examples, batch, maps):
            ex.montage, ex.cam_class = slice_montage(volume, m), ex.predicted if cam else ""
        out.extend(examples)
    return out


def volume_examples(ctx, gallery_size: int, top_losses: int = TOP_VOLUMES) -> tuple[dict[str, list[Example]], np.ndarray]:
    """``({"gallery", "top_losses", "cam"}: examples, top-loss row order)`` for a volume evaluation."""
    cam = ctx.options.cam_samples > 0
    order = np.argsort(-ctx.frame["loss"].to_numpy(), kind="stable")[:top_losses]
    picked = pick_gallery(ctx.frame["correct"].to_numpy(), gallery_size)
    gallery = [_example(ctx, int(picked[pos]), _centre(volume))
               for pos, volume, _ in load_volumes(ctx.dataset, ctx.pred.indices[picked])]
    cells = []
    if cam:
        for _, _, rows in pick_cells(ctx.pred.labels, ctx.frame["correct"].to_numpy(), len(ctx.classes),
                                     ctx.options.cam_samples):
            cells.extend(_montages(ctx, rows, True) if len(rows) else [])
    return {"gallery": gallery, "top_losses": _montages(ctx, order, cam), "cam": cells}, order


def _caption(ex: Example, kind: str) -> str:
    name = Path(ex.path).name
    probs = f"true {ex.label}, p(true)={ex.prob_true:.2f}; pred {ex.predicted}, p(pred)={ex.prob_predicted:.2f}"
    extra = f"; loss {ex.loss:.2f}" if kind == "top_losses" else ""
    return f"{name}: {probs}{extra}" + (f"; CAM for {ex.cam_class}" if ex.cam_class else "")


def montage_figure(examples: list[VolumeExample], kind: str, title: str = "", width: float = 10.0) -> Figure:
    """One montage per row, captioned (file, true/predicted class and probabilities), framed green (correct) or red."""
    heights = [width * ex.montage.shape[0] / ex.montage.shape[1] + 0.35 for ex in examples]
    fig = Figure(figsize=(width, sum(heights) + (0.4 if title else 0)), layout="constrained")
    grid = fig.add_gridspec(len(examples), 1, height_ratios=heights)
    for i, ex in enumerate(examples):
        ax = fig.add_subplot(grid[i])
        ax.imshow(ex.montage)
        ax.set_xticks([])
        ax.set_yticks([])
        color = plots.RIGHT_COLOR if ex.correct else plots.WRONG_COLOR
        ax.set_title(_caption(ex, kind), fontsize=8, color=color)
        for spine in ax.spines.values():
            spine.set_color(color)
            spine.set_linewidth(3)
    if title:
        fig.suptitle(title)
    return fig


def volume_figures(examples: dict[str, list], classes: list[str]) -> dict[str, Figure]:
    """The section's figures for volumes: the centre-slice gallery, the top-loss montages, the CAM montages per class."""
    figs: dict[str, Figure] = {}
    if examples.get("gallery"):
        items = [plots.GridItem(ex.image, f"true {ex.label}\npred {ex.predicted}, p={ex.prob_predicted:.2f}\n"
                                f"{Path(ex.path).name[:24]}", ex.correct) for ex in examples["gallery"]]
        figs["gallery"] = plots.image_grid_figure(items, ncols=6, title="Centre axial slices (green = correct, red = wrong)")
    if examples.get("top_losses"):
        figs["top_losses"] = montage_figure(examples["top_losses"], "top_losses", "Highest losses (most confidently "
                                            "wrong first): axial slices and the Grad-CAM of the predicted class")
    for i, cls in enumerate(classes):
        cams = [ex for ex in examples.get("cam", []) if ex.label == cls]
        if cams:
            figs[f"cam_{i}"] = montage_figure(cams, "cam", f"True class {cls}: correct (green) and wrong (red)")
    return figs


__all__ = ["TOP_VOLUMES", "VolumeExample", "batched", "is_volume_examples", "load_volumes", "montage_figure",
           "volume_examples", "volume_figures"]
