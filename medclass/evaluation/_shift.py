"""Dataset shift and out-of-distribution share of an evaluation: the ``shift`` and ``ood`` sections of metrics.json.

``ood``: every evaluated image's OOD score (the checkpoint's statistics, :mod:`medclass.metrics.ood`)
and the share flagged; on the run's own test split that share is the false-alarm rate.

``shift`` (external data only): a seeded sample of at most :data:`MAX_SAMPLE` training images of the
run beside at most as many evaluated images: header and intensity statistics side by side,
metadata columns (view, sex...) side by side, a domain classifier's cross-validated AUC on the
model's penultimate features with a bootstrap CI, and the Fréchet distance between the two feature
sets (beside the distance between two random halves of the training sample, as a scale; both with
the same number of images on each side). The shift is
called large by :func:`medclass.metrics.shift.shift_is_large`.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..artifacts import CheckpointMeta, RunDir, load_ood
from ..data.dataset import ImageDataset
from ..data.io import image_info, read_image, report_skip
from ..data.table import DataTable
from ..data.transforms import inference_transform
from ..errors import ImageReadError
from ..inference import Predictions, predict_dataset
from ..metrics.html import esc, fmt, table
from ..metrics.ood import MahalanobisOOD, false_alarm_sentence, threshold_text
from ..metrics.shift import (LARGE_DOMAIN_AUC, LARGE_OOD_SHARE, STAT_ROWS, category_shares, domain_auc,
                             frechet_distance, image_statistics, pixel_summary, shift_is_large)
from ..metrics.stats import wilson_interval

log = logging.getLogger(__name__)

MAX_SAMPLE = 300  # images of each side read for the shift statistics and features
FLAGGED_LISTED = 50  # flagged paths listed in metrics.json


def ood_section(pred: Predictions, ood: MahalanobisOOD | None, in_distribution: bool = False) -> tuple[dict, np.ndarray]:
    """The ``ood`` section and the per-image scores (NaN without statistics).

    ``share_flagged_ci`` is a Wilson interval over images. ``in_distribution`` (the run's own held-out rows,
    not external data) adds ``false_alarm_rate``: every flag there is a false alarm, to compare with the
    rate the threshold was set for (``1 - quantile``)."""
    if ood is None or pred.stage_features is None:
        return ({"available": False, "note": "This checkpoint has no OOD statistics (trained before they existed)."},
                np.full(len(pred.labels), np.nan))
    scores = ood.scores(pred.stage_features)
    flagged = scores > ood.threshold
    low, high = wilson_interval(int(flagged.sum()), len(scores))
    out = {"available": True, "method": "mahalanobis", "threshold": ood.threshold, "quantile": ood.quantile,
           "n_val": ood.n_val, "n_calibration": ood.n_calibration, "lowpass": ood.lowpass,
           "n_scored": int(len(scores)), "n_flagged": int(flagged.sum()), "share_flagged": float(flagged.mean()),
           "share_flagged_ci": [low, high], "ci_method": "95% Wilson interval over images",
           "median_score": float(np.median(scores)),
           "flagged": [pred.paths[i] for i in np.flatnonzero(flagged)[:FLAGGED_LISTED]]}
    if in_distribution:
        out["false_alarm_rate"] = {"value": float(flagged.mean()), "low": low, "high": high,
                                   "expected": 1.0 - float(ood.quantile)}
    return out, scores


def _sample(table: DataTable, seed: int) -> DataTable:
    rows = np.random.default_rng(seed).permutation(len(table))[:MAX_SAMPLE]
    mask = np.zeros(len(table), bool)
    mask[rows] = True
    return table.subset(mask)


def _image_rows(table: DataTable, window: str) -> list[dict]:
    """Size, mode and intensity statistics per row, through the guarded readers (a CT/MRI volume: its voxel
    grid as width/height, mode ``volume``, intensities after the run's HU window)."""
    from ..data.volumes.fingerprint import unit_window
    from ..data.volumes.read import read_volume

    rows = []
    volumes = table.spatial_dims == 3
    for path, frame in zip(table.frame["path"], table.frame["frame"] if "frame" in table.frame else [-1] * len(table)):
        try:
            if volumes:
                volume = read_volume(path, frame=int(frame))
                rows.append({"width": volume.shape[0], "height": volume.shape[1], "mode": "volume", "channels": 1,
                             **pixel_summary(unit_window(volume.array, window))})
                continue
            info = image_info(path)
            rows.append({**info, **pixel_summary(read_image(path, frame=int(frame), window=window, size_hint=256))})
        except ImageReadError as e:
            report_skip(path, e.reason)
    return rows


def _metadata(train: DataTable, evaluated: DataTable) -> dict:
    out = {}
    for column in dict.fromkeys(evaluated.metadata_columns() + train.metadata_columns()):
        sides = {}
        for name, t in (("training", train), ("external", evaluated)):
            values = t.frame[column] if column in t.frame else pd.Series([""] * len(t))
            numeric = pd.to_numeric(values, errors="coerce")
            if numeric.notna().mean() > 0.9 and numeric.nunique() > 10:  # age, ...: a range, not shares
                q1, med, q3 = np.nanpercentile(numeric, [25, 50, 75])
                sides[name] = {"median": float(med), "q1": float(q1), "q3": float(q3)}
            else:
                sides[name] = category_shares(values.tolist())
        out[column] = sides
    return out


def shift_section(model: torch.nn.Module, meta: CheckpointMeta, train: DataTable, evaluated: DataTable,
                  pred: Predictions, ood_share: float | None, *, batch_size: int, num_workers: int,
                  seed: int = 0) -> dict:
    """Training (a sample of ``train``) vs the evaluated external images (their features in ``pred``)."""
    pre = meta.preprocessing
    ref_table, ext_table = _sample(train, seed), _sample(evaluated, seed)
    ds = ImageDataset(ref_table, classes=list(meta.classes), transform=inference_transform(pre), window=pre.window)
    ref = predict_dataset(model, ds, batch_size=batch_size, num_workers=num_workers, features=True)
    ext_rows = np.random.default_rng(seed).permutation(len(pred.labels))[:MAX_SAMPLE]
    ext_features = pred.features[ext_rows]
    out: dict = {"reference": f"a sample of {len(ref.labels)} training images of the run",
                 "n_reference": int(len(ref.labels)), "n_external": int(len(ext_rows)),
                 "image_statistics": {"training": image_statistics(_image_rows(ref_table, pre.window)),
                                      "external": image_statistics(_image_rows(ext_table, pre.window))},
                 "metadata": _metadata(ref_table, ext_table)}
    domain = None
    if min(len(ref.labels), len(ext_rows)) >= 10:
        domain = domain_auc(ref.features, ext_features, seed=seed)
        half = len(ref.features) // 2
        out["domain_classifier"] = {**domain.to_dict(), "features": "penultimate layer",
                                    "method": "standardised logistic regression, stratified 5-fold out-of-fold AUC, "
                                              "95% bootstrap CI of the out-of-fold predictions"}
        # equal sample sizes on both sides (the distance's bias depends on them): training half A vs
        # external images, and training half A vs half B as the scale of no shift
        rows = np.random.default_rng(seed).permutation(len(ref.features))
        a, b = ref.features[rows[:half]], ref.features[rows[half:2 * half]]
        out["frechet_distance"] = frechet_distance(a, ext_features[:half])
        out["frechet_within_training"] = frechet_distance(a, b)
        out["frechet_n"] = int(half)
    out["large"] = shift_is_large(domain, ood_share)
    out["warning"] = shift_warning(out, ood_share) if out["large"] else ""
    return out


def shift_and_ood(model: torch.nn.Module, meta: CheckpointMeta, checkpoint: Path, run: RunDir | None,
                  evaluated: DataTable, pred: Predictions, external: bool, *, batch_size: int,
                  num_workers: int) -> tuple[dict, dict | None, np.ndarray]:
    """``(ood section, shift section or None, per-image OOD scores)`` of one evaluation.

    The shift is measured for external data of a run whose ``split.csv`` has training rows.
    """
    ood, scores = ood_section(pred, load_ood(checkpoint), in_distribution=not external)
    train = DataTable.from_csv(run.split, list(meta.classes)).subset("train") if external and run is not None else None
    if train is None or not len(train) or pred.features is None:
        return ood, None, scores
    shift = shift_section(model, meta, train, evaluated, pred, ood.get("share_flagged"), batch_size=batch_size,
                          num_workers=num_workers)
    return ood, shift, scores  # a large shift's warning is shown once: by the CLI and the report, from metrics.json


def _digits(value: float) -> str:
    """Three decimals, four where three would round a value below 1 up to 1.000 (0.9996 is not 1).

    >>> _digits(0.998), _digits(0.99962), _digits(1.0)
    ('0.998', '0.9996', '1.000')
    """
    text = f"{value:.3f}"
    return f"{value:.4f}" if text == "1.000" and value < 1 else text


def shift_warning(shift: dict, ood_share: float | None) -> str:
    """One sentence for the CLI and the report when the shift is large."""
    parts = []
    d = shift.get("domain_classifier")
    if d and d["auc"] > LARGE_DOMAIN_AUC:
        parts.append(f"a classifier tells training from external images apart with AUC {_digits(d['auc'])} "
                     f"({_digits(d['low'])}-{_digits(d['high'])})")
    if ood_share is not None and ood_share >= LARGE_OOD_SHARE:
        parts.append(f"{100 * ood_share:.0f}% of the external images are flagged out-of-distribution")
    return ("Large dataset shift: " + " and ".join(parts) + ". The model's internal results may not carry over to "
            "this data; check the external metrics and the images before use.")


def shift_html(m: dict) -> str:
    """The report's "Dataset shift" section (the side-by-side table and a warning box when the shift is large)."""
    ood, shift = m.get("ood") or {}, m.get("shift")
    body = ""
    if ood.get("available"):
        body += (f"<p>{ood['n_flagged']} of {ood['n_scored']} evaluated images ({100 * ood['share_flagged']:.1f}%) are "
                 f"flagged out-of-distribution (Mahalanobis score above {esc(threshold_text(ood))}). "
                 f"{esc(false_alarm_sentence(ood))}</p>")
    else:
        body += f"<p class='muted'>{esc(ood.get('note', 'No OOD scores.'))}</p>"
    if not shift:
        return body + "<p class='muted'>Training-vs-external shift is measured when external data is evaluated (--data).</p>"
    if shift["large"]:
        body = f'<p class="bad"><b>{esc(shift["warning"])}</b></p>' + body
    d = shift.get("domain_classifier")
    if d:
        body += (f"<p><b>Domain classifier AUC</b> {fmt(d['auc'])} ({fmt(d['low'])}–{fmt(d['high'])}): 0.5 = the "
                 f"two sets look alike to the model, 1 = perfectly separable ({esc(d['method'])}). <b>Fréchet distance</b> "
                 f"of the feature sets {fmt(shift['frechet_distance'])} (two random halves of the training sample: "
                 f"{fmt(shift['frechet_within_training'])}; {shift['frechet_n']} images on each side).</p>")
    stats = shift["image_statistics"]
    tr, ex = stats["training"], stats["external"]

    def iqr(s: dict, k: str) -> str:
        return f"{fmt(s[k]['median'])} ({fmt(s[k]['q1'])}–{fmt(s[k]['q3'])})"

    rows = [("images sampled", tr["n"], ex["n"]),
            ("mode", ", ".join(f"{k} {100 * v:.0f}%" for k, v in tr["modes"].items()),
             ", ".join(f"{k} {100 * v:.0f}%" for k, v in ex["modes"].items()))]
    rows += [(f"{k} (median, IQR)", iqr(tr, k), iqr(ex, k)) for k in STAT_ROWS if k in tr]
    for column, sides in shift["metadata"].items():
        rows.append((column, *(", ".join(f"{k} {fmt(v)}" for k, v in sides[s].items()) for s in ("training", "external"))))
    return body + table(["", "training", "external"], rows) + (
        "<p class='muted'>Intensities are of the unit image (0-1) as the model reads it; mean, sd and percentiles "
        "per image, summarised over the sample.</p>")


__all__ = ["ood_section", "shift_and_ood", "shift_html", "shift_section", "shift_warning"]
