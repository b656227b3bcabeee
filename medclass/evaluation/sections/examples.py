"""Section ``examples``: images to look at. Single-label: a prediction gallery, the top losses and Grad-CAM
overlays per (class, correct/wrong) cell; multi-label: the most wrong images of every finding, with that
finding's Grad-CAM. Repeated Grad-CAM warnings (empty maps) are summarised in one line."""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...metrics import plots
from ...metrics.html import esc, img
from .._examples import Example, load_views, pick_cells, pick_gallery
from .._multilabel import wrong_examples
from .._render import figures_html
from .base import Context, ReportPart, Section

log = logging.getLogger(__name__)

GALLERY_SIZE = 16  # images in the prediction gallery
TOP_LOSSES = 12  # images in the top-losses grid


@dataclass
class ExamplesResult:
    """The picked images (drawn in the report, not written to metrics.json) and the top-losses rows."""

    examples: dict[str, list] = field(default_factory=dict)  # gallery / top_losses / cam, or most_wrong:<finding>
    top_losses: list[dict] | None = None  # single-label: rows of predictions.csv, highest loss first
    cam_note: str | None = None  # multi-label: what the CAMs explain

    def to_dict(self) -> dict[str, Any]:
        return {"top_losses": self.top_losses} if self.cam_note is None else {"cam_note": self.cam_note}


@contextlib.contextmanager
def summarised_cam_warnings() -> Iterator[None]:
    """Collect Grad-CAM's per-call "maps are empty" warnings and log one line with the totals instead."""
    cam_log = logging.getLogger("medclass.explain.cam")
    empty: list[tuple[int, int]] = []

    def keep(record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and "maps are empty" in record.msg and len(record.args or ()) == 3:
            empty.append((int(record.args[1]), int(record.args[2])))
            return False
        return True

    cam_log.addFilter(keep)
    try:
        yield
    finally:
        cam_log.removeFilter(keep)
        if empty:
            log.warning("Grad-CAM: %d of %d maps in %d call(s) are empty (no positive evidence at the target layer; "
                        "common for an untrained model or a class it does not predict for the image): their overlays "
                        "show no heat.", sum(e for e, _ in empty), sum(n for _, n in empty), len(empty))


def _examples(ctx: Context, rows: np.ndarray) -> tuple[list[Example], Any]:
    views, inputs, kept = load_views(ctx.dataset, ctx.pred.indices[rows])
    df, classes, probs = ctx.frame, ctx.classes, ctx.pred.probs
    out = []
    for view, pos in zip(views, kept):
        row, p = df.iloc[int(rows[pos])], probs[int(rows[pos])]
        out.append(Example(row["path"], row["patient"], row["label"], row["predicted"],
                           float(p[classes.index(row["predicted"])]), float(p[classes.index(row["label"])]),
                           float(row["loss"]), view))
    return out, inputs


def _cam_examples(ctx: Context) -> list[Example]:
    """Grad-CAM overlays (explaining the predicted class) for sampled correct and wrong images of each class."""
    from ...explain.cam import compute_cam, overlay_cam

    model, cfg = ctx.run.model, ctx.run.config
    device = next(model.parameters()).device
    out = []
    for _, _, rows in pick_cells(ctx.pred.labels, ctx.frame["correct"].to_numpy(), len(ctx.classes), ctx.options.cam_samples):
        if not len(rows):
            continue
        examples, inputs = _examples(ctx, rows)
        if inputs is None:
            continue
        cams = compute_cam(model, inputs.to(device), target_class=[ctx.classes.index(ex.predicted) for ex in examples],
                           method=cfg.eval.cam_method, target_layer=cfg.model.target_layer or None)
        for ex, cam in zip(examples, cams):
            ex.overlay, ex.cam_class = overlay_cam(ex.image, cam), ex.predicted
        out.extend(examples)
    return out


def short_name(path: str) -> str:
    """The file name of ``path``, cut in the middle to fit under an image tile.

    >>> short_name("/data/person1324_virus_2284_long_name.jpeg")
    'person1324…ng_name.jpeg'
    """
    from pathlib import Path

    name = Path(path).name
    return name if len(name) <= 24 else name[:10] + "…" + name[-12:]


def _caption(ex: Example, kind: str) -> str:
    """Tile caption; every probability says which class it is for (p(true) or p(pred))."""
    name = short_name(ex.path)
    if kind == "top_losses":
        return f"true {ex.label}, p(true)={ex.prob_true:.2f}\npred {ex.predicted}\nloss {ex.loss:.2f}\n{name}"
    if kind == "cam":
        return f"true {ex.label}\npred {ex.predicted}, p(pred)={ex.prob_predicted:.2f}\nCAM for {ex.cam_class}"
    return f"true {ex.label}\npred {ex.predicted}, p(pred)={ex.prob_predicted:.2f}\n{name}"


def _grid(examples: list[Example], kind: str, title: str = ""):
    items = [plots.GridItem(ex.overlay if kind == "cam" and ex.overlay is not None else ex.image, _caption(ex, kind),
                            ex.correct) for ex in examples]
    return plots.image_grid_figure(items, ncols=8 if kind == "cam" else 6, title=title)


class Examples(Section):
    """Images to look at: gallery, top losses and Grad-CAM (single-label); most wrong per finding (multi-label)."""

    name, title = "examples", "Examples and Grad-CAM"

    def skip_reason(self, ctx: Context) -> str:
        if ctx.table.spatial_dims == 3:
            return "galleries and Grad-CAM overlays are 2-D only so far (slice montages of volumes are not built yet)"
        return ""

    def compute(self, ctx: Context) -> ExamplesResult:
        cfg, cam = ctx.run.config, ctx.options.cam_samples > 0
        with summarised_cam_warnings():
            if ctx.multi_label:
                wrong = wrong_examples(ctx.run.model, ctx.run.meta, cfg.eval.cam_method, cfg.model.target_layer,
                                       ctx.dataset, ctx.pred, cam)
                note = (f"{cfg.eval.cam_method} for the finding of each row (target = its logit)" if cam
                        else "no Grad-CAM (cam_samples=0)")
                return ExamplesResult({f"most_wrong:{f}": items for f, items in wrong.items()}, cam_note=note)
            order = np.argsort(-ctx.frame["loss"].to_numpy(), kind="stable")[:TOP_LOSSES]
            gallery, _ = _examples(ctx, pick_gallery(ctx.frame["correct"].to_numpy(), GALLERY_SIZE))
            top, _ = _examples(ctx, order)
            cams = _cam_examples(ctx) if cam else []
        return ExamplesResult({"gallery": gallery, "top_losses": top, "cam": cams},
                              top_losses=ctx.frame.iloc[order].to_dict(orient="records"))

    def figures(self, result) -> dict:
        ex, figs = result.examples, {}
        for kind, title in (("gallery", "Predictions (green = correct, red = wrong)"),
                            ("top_losses", "Highest losses (most confidently wrong first)")):
            if ex.get(kind):
                figs[kind] = _grid(ex[kind], kind, title)
        for i, cls in enumerate(result.metrics["classes"]):
            cams = [e for e in ex.get("cam", []) if isinstance(e, Example) and e.label == cls]
            if cams:
                figs[f"cam_{i}"] = _grid(cams, "cam", f"True class {cls}: correct (green) and wrong (red)")
        for key, items in ex.items():
            if key.startswith("most_wrong:") and items:
                figs[key] = plots.image_grid_figure(items, ncols=4)
        return figs

    def report(self, result, figures: dict[str, bytes]) -> list[ReportPart]:
        m = result.metrics
        if m.get("task") == "multi_label":
            html = "".join(f"<h3>{esc(k.split(':', 1)[1])}</h3>" + img(png, k) for k, png in figures.items()
                           if k.startswith("most_wrong:"))
            return [("most-wrong", "Most wrong images per finding", f"<p class=\"muted\">{esc(m['cam_note'])}</p>" + html)]
        cams = sorted(n for n in figures if n.startswith("cam_"))
        note = f"{m['cam_method']} explaining the predicted class; a sample of correct and wrong images of each class."
        return [("gallery", "Prediction gallery", figures_html(figures, ["gallery"])),
                ("top-losses", "Top losses", figures_html(figures, ["top_losses"])),
                ("cam", "Grad-CAM overlays", figures_html(figures, cams, note))]


__all__ = ["Examples", "ExamplesResult", "GALLERY_SIZE", "TOP_LOSSES", "short_name", "summarised_cam_warnings"]
