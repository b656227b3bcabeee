"""Section ``cam_location``: does the Grad-CAM of a volume lie on the lesion? (``--mask-column``, CT/MRI volumes)

For every evaluated volume with a mask file: the Grad-CAM of the predicted class
(:func:`medclass.explain.volume.volume_cams`), the mask brought onto the prepared volume's voxels
exactly as the image was (orientation, resampling with nearest neighbour, crop/pad:
:func:`medclass.data.volumes.prepare.prepare_mask`), then the share of CAM mass inside the mask and
whether the CAM's peak lies inside (:mod:`medclass.metrics.cam_location`). Their means over volumes
get patient-bootstrap CIs, beside the share an evenly spread CAM would have (the mask's share of the
voxels the model saw: all of them for ``volume.input=3d``, the stacked slices for ``2.5d``).
Volumes are read and explained a few at a time; only four numbers per volume are kept.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ...artifacts import EvalDir
from ...data._csv import resolve_masks
from ...data.volumes.prepare import VolumePrep, prepare_mask, stack_slices
from ...data.volumes.read import read_volume
from ...errors import ImageReadError
from ...metrics.cam_location import cam_peak_inside, cam_share_inside, mask_fraction, summarise_cam_location
from ...metrics.html import esc, table
from ...utils import atomic_write_text
from .._render import ci_cell
from .._volume_examples import CAM_BATCH, batched, load_volumes
from .base import Context, ReportPart, Section
from .examples import summarised_cam_warnings

log = logging.getLogger(__name__)


@dataclass
class CamLocationResult:
    """Per-volume rows (``cam_location.csv``) and their summary (``metrics.json["cam_location"]``)."""

    summary: dict[str, Any]
    rows: pd.DataFrame

    def to_dict(self) -> dict[str, Any]:
        return {"cam_location": self.summary}


def _seen(prep: VolumePrep, depth: int) -> slice:
    """The axial slices the model sees: all for a 3-D input, the stacked ones for 2.5-D."""
    return stack_slices(depth, prep.in_chans) if prep.input == "2.5d" else slice(None)


class CamLocation(Section):
    """Share of the Grad-CAM inside the lesion masks of ``--mask-column`` (volumes), with patient-bootstrap CIs."""

    name, title, tasks = "cam_location", "Grad-CAM inside the lesion mask", ("single_label",)

    def skip_reason(self, ctx: Context) -> str:
        column = ctx.options.mask_column
        if ctx.table.spatial_dims != 3:
            return "CT/MRI volumes with --mask-column only; 2-D images are not measured here"
        if not column:
            return "no lesion masks (give --mask-column COLUMN: a CSV column with a mask file per image)"
        if column not in ctx.table.frame.columns:
            return f"the evaluated rows have no column {column!r} (columns: {', '.join(ctx.table.frame.columns)})"
        if ctx.options.cam_samples <= 0:
            return "Grad-CAM is off (--cam-samples 0)"
        return ""

    def compute(self, ctx: Context) -> CamLocationResult:
        with summarised_cam_warnings():  # one line for all the empty maps, not one per batch
            return self._compute(ctx)

    def _compute(self, ctx: Context) -> CamLocationResult:
        from ...explain.volume import volume_cams

        model, cfg, prep = ctx.run.model, ctx.run.config, ctx.dataset.transform.prep
        device = next(model.parameters()).device
        masks = resolve_masks(ctx.table.frame[ctx.options.mask_column].to_numpy()[ctx.pred.indices],
                              ctx.options.mask_root)
        rows = np.flatnonzero(masks != "")
        out: list[dict[str, Any]] = []
        for batch in batched(load_volumes(ctx.dataset, ctx.pred.indices[rows]), CAM_BATCH):
            positions = [int(rows[pos]) for pos, _, _ in batch]
            predicted = [ctx.classes.index(p) for p in ctx.frame["predicted"].to_numpy()[positions]]
            maps = volume_cams(model, torch.stack([x for _, _, x in batch]).to(device), prep, target_class=predicted,
                               method=cfg.eval.cam_method, target_layer=cfg.model.target_layer or None)
            for row, cam in zip(positions, maps):
                path = masks[row]
                try:
                    mask = prepare_mask(read_volume(path), prep)
                except (ImageReadError, OSError, ValueError) as e:
                    log.warning("Mask %s left out of the CAM location: %s", path, getattr(e, "reason", e))
                    continue
                seen = _seen(prep, mask.shape[2])
                out.append({"path": ctx.frame["path"].iloc[row], "patient": ctx.frame["patient"].iloc[row],
                            "mask": path, "share_inside": cam_share_inside(cam, mask),
                            "peak_inside": cam_peak_inside(cam, mask), "chance_share": mask_fraction(mask[..., seen]),
                            "mask_voxels": int(mask.sum())})
        frame = pd.DataFrame(out, columns=["path", "patient", "mask", "share_inside", "peak_inside", "chance_share",
                                           "mask_voxels"])
        groups = None if frame.empty else frame["patient"].astype(str).to_numpy()
        summary = summarise_cam_location(frame["share_inside"].to_numpy(float), frame["peak_inside"].to_numpy(float),
                                         frame["chance_share"].to_numpy(float), groups, n_boot=ctx.options.n_boot,
                                         seed=ctx.options.seed)
        summary |= {"n_masks_listed": int(len(rows)), "n_empty_mask": int((frame["mask_voxels"] == 0).sum()),
                    "cam_method": cfg.eval.cam_method, "explained": "predicted class",
                    "mask_column": ctx.options.mask_column, "input": prep.input}
        return CamLocationResult(summary, frame)

    def write(self, result: CamLocationResult, ev: EvalDir) -> dict[str, Path]:
        atomic_write_text(ev.cam_location, result.rows.to_csv(index=False))
        return {"cam_location": ev.cam_location}

    def report(self, result, figures: dict[str, bytes]) -> list[ReportPart]:
        s = result.metrics["cam_location"]
        if not s.get("n"):
            body = f"<p>No volume with a readable mask and a non-empty Grad-CAM ({s.get('n_masks_listed', 0)} listed).</p>"
            return [("cam-location", self.title, body)]
        rows = [["Share of CAM mass inside the mask", ci_cell(s["share_inside"])],
                ["Share expected from an evenly spread CAM (mask's share of the voxels seen)", ci_cell(s["chance_share"])],
                ["Share inside minus expected", ci_cell(s["excess"])],
                ["CAM peak inside the mask", ci_cell(s["peak_inside"])]]
        note = (f"{esc(s['cam_method'])} of the predicted class on {s['n']} test volumes with a mask (column "
                f"{esc(s['mask_column'])}; masks resampled like the images); means over volumes, 95% CIs resampling "
                f"patients. {s['n_empty_cam']} volume(s) with an all-zero CAM left out; {s['n_empty_mask']} mask(s) "
                "empty after cropping. Per-volume values: cam_location.csv.")
        return [("cam-location", self.title, f"<p class='muted'>{note}</p>" + table(["", "value (95% CI)"], rows))]

    def card(self, metrics: dict) -> list[str]:
        s = metrics.get("cam_location", {})
        if not s.get("n"):
            return []
        share, chance, peak = s["share_inside"], s["chance_share"], s["peak_inside"]

        def ci(c: dict, form: str) -> str:
            return f" (95% CI {c['low']:{form}}-{c['high']:{form}})" if c.get("low") is not None else ""

        return [f"- Grad-CAM location ({s['n']} test volumes with lesion masks): {share['value']:.2f} of the CAM mass "
                f"inside the lesion{ci(share, '.2f')}, {chance['value']:.2f} expected from an evenly spread map; peak "
                f"inside the lesion for {peak['value']:.0%}{ci(peak, '.0%')}."]


__all__ = ["CamLocation", "CamLocationResult"]
