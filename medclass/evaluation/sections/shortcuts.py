"""Section ``shortcuts``: is it the disease or a shortcut? Occlusion tests and where the model looks.

Two checks, both on the trained model as it is (no retraining), chosen with ``--shortcuts`` (default: both;
``none`` turns them off):

- ``occlusion``: the test AUC (multi-label: the macro AUC of the findings) with only the border band kept (``border_only``: the centre set to the
  normalisation mean, i.e. the training mean the model reads as neutral) and with only the centre kept
  (``centre_only``); with ``--mask-column`` also with only the masked region kept (``mask_only``) and with it
  removed (``mask_removed``). Two (four) more prediction passes over the evaluated images. A border-only AUC
  clearly above chance (:func:`~medclass.metrics.occlusion.above_chance`) means the model reads something
  outside the centre of the image: the verdict says so.
- ``cam``: over a seeded sample of ``--shortcut-images`` images, the share of the Grad-CAM mass (explaining the
  predicted class; multi-label: the most probable finding) in the border band and, with masks, inside the mask, and the hit rate (map's peak inside
  the mask), each a mean with a patient-bootstrap CI; the images whose maps lie most outside are shown.

The band is ``BORDER_FRACTION`` of each side (:mod:`medclass.metrics.cam_location`). Volumes: occlusion works
on 3-D inputs (the band runs along every axis); for volumes the Grad-CAM share inside lesion masks is the
``cam_location`` section's (masks resampled onto the model's voxels), not repeated here.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...choices import ShortcutCheck, choices
from ...errors import check_choice
from ...metrics import plots
from ...metrics.cam_location import BORDER_FRACTION, mean_ci
from ...metrics.html import esc, table
from ...metrics.occlusion import above_chance, occlusion_aucs
from .._occlusion import OCCLUSIONS, cam_locations, mask_source, occluded_probs
from .._render import ci_cell, ci_text, figures_html
from .._tiles import short_name
from .base import Context, ReportPart, Section
from .examples import summarised_cam_warnings

log = logging.getLogger(__name__)

SHORTCUT_CHECKS = choices(ShortcutCheck)  # what --shortcuts accepts (besides "none")
MOST_OUTSIDE = 8  # images whose Grad-CAM lies most outside, shown in the report

CANNOT_RULE_OUT = (
    "A shortcut inside the centre or the mask: a device, a marker over the body, the patient's position or size, "
    "or the overall brightness and noise of one scanner.",
    "Occluded inputs are unlike any training image: a low occluded AUC may mean the model fails on unusual inputs, "
    "not that the hidden part holds no signal; a high one is the stronger evidence.",
    "The band is a fixed geometric region: in tightly cropped images it holds anatomy (lung apices, ribs), so a "
    "high border-only AUC can also come from disease visible there.",
    "Grad-CAM shows where one layer's gradients point, at that layer's coarse resolution; it is not a proof of what "
    "the model uses.",
)


def parse_shortcuts(text: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``"occlusion,cam"`` -> ``("occlusion", "cam")``; ``"all"`` -> every check; ``"none"`` or ``""`` -> ``()``;
    unknown names are refused.

    >>> parse_shortcuts("cam, occlusion"), parse_shortcuts("none"), parse_shortcuts("all")
    (('cam', 'occlusion'), (), ('occlusion', 'cam'))
    """
    items = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    if items == ["none"]:
        return ()
    if items == ["all"]:
        return SHORTCUT_CHECKS
    return tuple(check_choice("shortcut check (--shortcuts; or 'all', 'none')", s, SHORTCUT_CHECKS) for s in items)


@dataclass
class ShortcutsResult:
    """The occlusion AUCs, the CAM location shares, the verdicts in words and what the checks cannot rule out."""

    checks: list[str]
    border_fraction: float
    occlusion: dict[str, Any] | None = None  # {"variants": {name: {value, low, high, n, difference, kept}}, ...}
    cam: dict[str, Any] | None = None  # {"n_images", "border_share", "band_area", "mask_share", "mask_hit_rate", ...}
    flagged: bool = False  # a check found the model reading outside the anatomy
    verdicts: list[str] = field(default_factory=list)
    cannot_rule_out: list[str] = field(default_factory=list)
    not_run: dict[str, str] = field(default_factory=dict)  # check -> why it did not run
    examples: dict[str, list] = field(default_factory=dict)  # {"cam_outside": [GridItem]} (report only)

    def to_dict(self) -> dict[str, Any]:
        return {"shortcuts": {"checks": self.checks, "border_fraction": self.border_fraction, "flagged": self.flagged,
                              "occlusion": self.occlusion, "cam": self.cam, "verdicts": self.verdicts,
                              "cannot_rule_out": self.cannot_rule_out, "not_run": self.not_run}}


def _pct(x: float) -> str:
    """A share as a percentage for people.

    >>> _pct(0.125), _pct(0.4375), _pct(0.2)
    ('12.5%', '43.8%', '20%')
    """
    return f"{100 * x:.3g}%"


def _occlusion_verdicts(variants: dict[str, dict], fraction: float) -> tuple[list[str], bool]:
    full, border, centre = variants["full"], variants["border_only"], variants["centre_only"]
    out, flagged, skilled = [], above_chance(border), above_chance(full)
    if not skilled:
        out.append(f"Full image: AUC {ci_text(full)}, not clearly above chance: the model has little skill to lose, so "
                   "a low occluded AUC says nothing about where it looks.")
    if flagged:
        out.append(f"Border only (the outer {_pct(fraction)} of each side): AUC {ci_text(border)}, clearly above chance. "
                   "The model still separates the classes when it sees only the image's border: it reads something "
                   "outside the centre (text markers, rulers, collimation edges, the patient's position, or anatomy "
                   "reaching the band). Look at where its Grad-CAM lies before trusting it.")
    else:
        out.append(f"Border only: AUC {ci_text(border)}, not clearly above chance: no sign that the border band alone "
                   "carries the model's decision.")
    if above_chance(centre):
        out.append(f"Centre only: AUC {ci_text(centre)} (full image minus centre only: "
                   f"{ci_text(_negated(centre['difference']))}): the centre carries the decision.")
    elif skilled:
        out.append(f"Centre only: AUC {ci_text(centre)}, not clearly above chance: with the border hidden the model "
                   "loses its skill, either because it depends on the border or because it fails on occluded inputs.")
    else:
        out.append(f"Centre only: AUC {ci_text(centre)}.")
    if "mask_removed" in variants:
        removed, only = variants["mask_removed"], variants["mask_only"]
        if above_chance(removed):
            flagged = True
            out.append(f"Mask removed: AUC {ci_text(removed)}, clearly above chance: the model reads something outside "
                       "the masked region.")
        else:
            out.append(f"Mask removed: AUC {ci_text(removed)}, not clearly above chance"
                       + (": without the masked region the model loses its skill." if skilled else "."))
        out.append(f"Mask only: AUC {ci_text(only)}.")
    return out, flagged


def _negated(c: dict) -> dict:
    low, high = c.get("low"), c.get("high")
    return {"value": -c["value"], "low": None if high is None else -high, "high": None if low is None else -low}


def _occlusion(ctx: Context, masks) -> dict[str, Any]:
    opts, meta = ctx.options, ctx.run.meta
    variants = ["border_only", "centre_only"] + (["mask_only", "mask_removed"] if masks is not None else [])
    probs = {"full": ctx.pred.probs}
    for keep in variants:
        probs[keep] = occluded_probs(ctx.run.model, ctx.dataset, keep, ctx.pred.indices, len(ctx.classes), masks=masks,
                                     batch_size=opts.batch_size, num_workers=opts.num_workers,
                                     temperature=meta.temperature, tta=opts.tta, multi_label=ctx.multi_label)
    # a variant with fewer than 2 scorable inputs (e.g. every mask missing or unreadable) is left out and said
    unusable = [k for k, p in probs.items() if int((~np.isnan(np.asarray(p, np.float64)).any(axis=1)).sum()) < 2]
    aucs = occlusion_aucs(ctx.pred.labels, {k: p for k, p in probs.items() if k not in unusable}, ctx.groups,
                          n_boot=opts.n_boot, seed=opts.seed)
    for name, entry in aucs.items():
        entry["kept"] = OCCLUSIONS.get(name, "the whole image")
    return {"variants": aucs, "fill": "the checkpoint's normalisation mean (0 after normalisation)",
            "unusable": unusable}


def _cam(ctx: Context, masks) -> tuple[dict[str, Any], list]:
    from ...explain.cam import overlay_cam

    opts, cfg = ctx.options, ctx.run.config
    n = len(ctx.pred.labels)
    rows = np.sort(np.random.default_rng(opts.seed).permutation(n)[:opts.shortcut_images])
    # the predicted class; multi-label: the most probable finding
    predicted = (ctx.pred.probs.argmax(axis=1) if ctx.multi_label
                 else ctx.frame["predicted"].map({c: i for i, c in enumerate(ctx.classes)}).to_numpy())
    with summarised_cam_warnings():
        locs = cam_locations(ctx.run.model, ctx.dataset, ctx.pred.indices[rows], predicted[rows],
                             method=cfg.eval.cam_method, target_layer=cfg.model.target_layer or None, masks=masks,
                             keep_worst=MOST_OUTSIDE)
    groups = ctx.groups[rows]
    explains = "the most probable finding" if ctx.multi_label else "the predicted class"
    out: dict[str, Any] = {"n_images": int(len(rows)), "method": cfg.eval.cam_method, "explains": explains,
                           "empty_maps": locs.empty, "band_area": locs.band_area,
                           "border_share": mean_ci(locs.border_share, groups, opts.n_boot, seed=opts.seed)}
    if locs.mask_share is not None and np.isfinite(np.asarray(locs.mask_share, np.float64)).any():
        out |= {"mask_area": locs.mask_area,
                "mask_share": mean_ci(locs.mask_share, groups, opts.n_boot, seed=opts.seed),
                "mask_hit_rate": mean_ci(locs.mask_hit, groups, opts.n_boot, seed=opts.seed)}
    what = "outside the mask" if masks is not None else "in the band"
    key = "share_outside_mask" if masks is not None else "share_in_band"
    out["most_outside"] = [{"path": str(ctx.frame["path"].iloc[rows[p]]), key: round(score, 4)}
                           for score, p, _, _ in locs.outside]
    items = [plots.GridItem(overlay_cam(view, cam), _caption(ctx, rows[p], predicted[rows[p]], f"{_pct(score)} {what}"),
                            None if ctx.multi_label else bool(ctx.frame["correct"].iloc[rows[p]]))
             for score, p, view, cam in locs.outside]
    return out, items


def _caption(ctx: Context, row: int, explained: int, share: str) -> str:
    name = short_name(Path(ctx.frame["path"].iloc[row]).name)
    if ctx.multi_label:
        return f"{share}\nCAM for {ctx.classes[explained]}\n{name}"
    return f"{share}\ntrue {ctx.frame['label'].iloc[row]}\npred {ctx.frame['predicted'].iloc[row]}\n{name}"


def _lean(share: dict, area: float) -> str:
    """Whether the mean share (its CI, else its value) lies above or below the band's area."""
    low, high = (share["value"], share["value"]) if share["low"] is None else (share["low"], share["high"])
    return ("; the maps lean towards the border." if low > area else "; the maps lean towards the centre." if high < area
            else ".")


def _cam_verdicts(cam: dict[str, Any]) -> list[str]:
    share, area = cam["border_share"], cam["band_area"]
    out = [f"Grad-CAM on {cam['n_images']} images: {ci_text(share)} of its mass lies in the border band, which covers "
           f"{_pct(area)} of the image (an evenly spread map would put {_pct(area)} there)"
           + _lean(share, area)]
    if "mask_share" in cam:
        out.append(f"Inside the mask (which covers {_pct(cam['mask_area'])} of the image on average): "
                   f"{ci_text(cam['mask_share'])} of the mass; the map's peak lies in the mask in "
                   f"{ci_text(cam['mask_hit_rate'])} of the images.")
    if cam["empty_maps"]:
        out.append(f"{cam['empty_maps']} map(s) were empty (no positive evidence) and are left out of the shares.")
    return out


class Shortcuts(Section):
    """Occlusion tests (border only, centre only, mask) and the share of Grad-CAM in the border band or mask."""

    name, title = "shortcuts", "Shortcuts: occlusion and where the model looks"

    def skip_reason(self, ctx: Context) -> str:
        if not ctx.options.shortcuts:
            return "turned off (--shortcuts none)"
        if not ctx.multi_label and len(np.unique(ctx.pred.labels)) < 2:
            return "the evaluated images hold one class only, so no AUC can be compared"
        return ""

    def compute(self, ctx: Context) -> ShortcutsResult:
        opts, volumes = ctx.options, ctx.table.spatial_dims == 3
        result = ShortcutsResult(list(opts.shortcuts), BORDER_FRACTION, cannot_rule_out=list(CANNOT_RULE_OUT))
        masks = None
        if opts.mask_column and volumes:
            result.not_run["mask"] = ("volumes: masks are used by the section 'Grad-CAM inside the lesion mask' "
                                      "(cam_location); mask occlusion is for 2-D images")
        elif opts.mask_column:
            masks = mask_source(ctx.table.frame, ctx.dataset, opts.mask_column, opts.mask_root)
        if "occlusion" in opts.shortcuts:
            result.occlusion = _occlusion(ctx, masks)
            if result.occlusion["unusable"]:
                result.not_run["mask"] = (f"{', '.join(result.occlusion['unusable'])}: no readable mask for the "
                                          f"evaluated images (column {opts.mask_column!r}; see the warning above)")
            verdicts, result.flagged = _occlusion_verdicts(result.occlusion["variants"], BORDER_FRACTION)
            result.verdicts += verdicts
        if "cam" in opts.shortcuts and volumes:
            result.not_run["cam"] = ("volumes: the Grad-CAM share inside the lesion masks is in the section "
                                     "'Grad-CAM inside the lesion mask' (cam_location, with --mask-column)")
        elif "cam" in opts.shortcuts and opts.shortcut_images < 1:
            result.not_run["cam"] = "--shortcut-images 0"
        elif "cam" in opts.shortcuts:
            result.cam, items = _cam(ctx, masks)
            result.examples["cam_outside"] = items
            result.verdicts += _cam_verdicts(result.cam)
        for check, reason in result.not_run.items():
            log.info("shortcut check %r not run: %s", check, reason)
        return result

    def figures(self, result) -> dict:
        items = result.examples.get("cam_outside")
        if not items:
            return {}
        return {"shortcuts_cam": plots.image_grid_figure(items, ncols=4, title="Grad-CAM most outside", tile=2.6)}

    def report(self, result, figures: dict[str, bytes]) -> list[ReportPart]:
        s = result.metrics["shortcuts"]
        body = (f"<p class='{'bad' if s['flagged'] else 'ok'}'>" + "<br>".join(esc(v) for v in s["verdicts"]) + "</p>")
        if s["occlusion"]:
            rows = [(name, v["kept"], v["n"], ci_cell(v), ci_cell(v.get("difference")) if "difference" in v else "–")
                    for name, v in s["occlusion"]["variants"].items()]
            body += ("<h3>Occlusion tests</h3>" + table(["input", "what the model sees", "images", "AUC (95% CI)",
                                                         "minus full image"], rows, numeric_from=2)
                     + f"<p class='muted'>Band: {_pct(s['border_fraction'])} of each side; hidden parts set to "
                       f"{esc(s['occlusion']['fill'])}. Patients resampled; differences paired.</p>")
        cam = s["cam"]
        if cam:
            rows = [("share in the border band", ci_cell(cam["border_share"]), _pct(cam["band_area"]))]
            if "mask_share" in cam:
                rows += [("share inside the mask", ci_cell(cam["mask_share"]), _pct(cam["mask_area"])),
                         ("peak inside the mask (hit rate)", ci_cell(cam["mask_hit_rate"]), "–")]
            body += (f"<h3>Where the model looks ({esc(cam['method'])}, {cam['n_images']} images, "
                     f"{esc(cam['explains'])})</h3>" + table(["measure", "mean (95% CI)", "area of the region"], rows)
                     + figures_html(figures, ["shortcuts_cam"], "The images whose maps lie most outside."))
        body += "<h3>What these checks cannot rule out</h3><ul>" + "".join(f"<li>{esc(c)}</li>"
                                                                          for c in s["cannot_rule_out"]) + "</ul>"
        if s["not_run"]:
            body += "<p class='muted'>" + "<br>".join(esc(f"{k}: not run ({v})") for k, v in s["not_run"].items()) + "</p>"
        return [("shortcuts", self.title, body)]

    def card(self, metrics: dict) -> list[str]:
        s = metrics.get("shortcuts") or {}
        lines = [f"- **Shortcuts{' (flagged)' if s.get('flagged') else ''}:** {v}" for v in s.get("verdicts", [])]
        return lines + ([f"- **Shortcut checks cannot rule out:** {' '.join(s['cannot_rule_out'])}"] if lines else [])


def console_lines(m: dict) -> list[tuple[str, str]]:
    """``(rich style, text)`` lines of the shortcut verdicts for ``medclass evaluate``'s console output."""
    s = m.get("shortcuts")
    if not s:
        return []
    style = "bold red" if s["flagged"] else "green"
    return [(style, f"Shortcuts: {v}") for v in s["verdicts"]]


__all__ = ["CANNOT_RULE_OUT", "MOST_OUTSIDE", "SHORTCUT_CHECKS", "Shortcuts", "ShortcutsResult", "console_lines",
           "parse_shortcuts"]
