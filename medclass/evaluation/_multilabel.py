"""The multi-label pieces of the evaluation sections: per-finding rows (with the rare-finding rule), per-patient
findings, the most wrong images per finding, and their HTML.

Every number comes from :mod:`medclass.metrics.multilabel` and :mod:`medclass.metrics.findings` (masked
labels take no part); each finding is decided at its own threshold, chosen on validation and stored in
the checkpoint.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from ..artifacts import CheckpointMeta
from ..data.dataset import ImageDataset
from ..data.table import DataTable
from ..inference import Predictions
from ..metrics import plots
from ..metrics.bootstrap import bootstrap_ci
from ..metrics.curves import score_curves
from ..metrics.findings import findings_cis, rare_reasons
from ..metrics.html import esc, fmt, table
from ..metrics.metrics import UndefinedMetricWarning
from ..metrics.multilabel import (FINDING_METRICS, aggregate_findings, cooccurrence, finding_errors, micro_auc,
                                  per_finding_metrics)
from ..metrics.rare import MIN_POSITIVE_PATIENTS, positive_patients
from ._examples import load_views

WRONG_PER_FINDING = 4  # most wrong images shown per finding
CI_METHOD = "95% percentile bootstrap, {n} replicates resampling patients; no interval below {m} positive patients"


def prediction_frame(pred: Predictions, table: DataTable, meta: CheckpointMeta) -> pd.DataFrame:
    """``predictions.csv``: per image the labels (blank = masked), every finding's probability and decision."""
    findings, thresholds = list(meta.classes), meta.finding_thresholds
    df = pd.DataFrame({"path": pred.paths, "frame": table.frame["frame"].to_numpy()[pred.indices],
                       "patient": pred.patients, "label": table.frame["label"].to_numpy()[pred.indices]})
    for column in table.metadata_columns():
        df[column] = table.frame[column].to_numpy()[pred.indices]
    for k, f in enumerate(findings):
        df[f"label_{f}"] = pred.labels[:, k]
        df[f"prob_{f}"] = pred.probs[:, k]
        df[f"pred_{f}"] = (pred.probs[:, k] >= thresholds[k]).astype(int)
    df["predicted"] = ["|".join(f for f, d in zip(findings, row) if d) or "none"
                       for row in pred.probs >= np.asarray(thresholds)]
    return df


def finding_rows(y: np.ndarray, p: np.ndarray, groups: np.ndarray, findings: list[str], thresholds: list[float],
                 n_boot: int, seed: int = 0) -> tuple[list[dict], dict]:
    """``(rows, macro AUC CI)``: one row per finding (counts, positive patients, metrics and their CIs from shared
    patient resamples; ``ci_note`` and null bounds below the rare-finding rule) and the macro AUC's interval."""
    rows = per_finding_metrics(y, p, findings, thresholds, None, n_boot=0)
    cis = findings_cis(y, p, groups, findings, thresholds, n_boot=max(n_boot, 1), seed=seed, names=FINDING_METRICS)
    reasons = rare_reasons(y, groups)
    for k, row in enumerate(rows):
        row["positive_patients"] = positive_patients(y[:, k], groups)[0]
        if reasons[k]:
            row["ci_note"] = f"CI not estimable: {reasons[k]}"
        if n_boot > 0:
            for m in FINDING_METRICS:
                row[f"{m}_low"], row[f"{m}_high"] = cis["per_finding"][findings[k]][m]["low"], cis["per_finding"][findings[k]][m]["high"]
    return rows, cis["macro_auc"]


def findings_metrics(pred: Predictions, meta: CheckpointMeta, groups: np.ndarray, n_boot: int, seed: int = 0) -> dict:
    """Per-finding rows with CIs, macro and micro AUC with CIs, ROC curves per finding, co-occurrence."""
    y, p, findings = pred.labels, pred.probs, list(meta.classes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        rows, macro = finding_rows(y, p, groups, findings, list(meta.finding_thresholds), n_boot, seed)
        summary = {"macro_auc": macro["value"], "micro_auc": micro_auc(y, p)}
        ci = {}
        if n_boot > 0:
            ci["macro_auc"] = macro
            point, low, high = bootstrap_ci(micro_auc, y, p, groups, n_boot=n_boot, seed=seed)
            ci["micro_auc"] = {"value": point, "low": low, "high": high}
        curves: dict = {"roc": {}, "pr": {}, "prevalence": {}}
        for k, f in enumerate(findings):
            known = ~np.isnan(y[:, k])
            pk = p[known, k]
            one = score_curves(y[known, k].astype(np.int64), np.stack([1 - pk, pk], axis=1), ["not " + f, f])
            for key in curves:
                curves[key].update(one[key])
    return {"per_finding": rows, "summary": summary, "ci": ci, "curves": curves, "cooccurrence": cooccurrence(y).tolist(),
            "ci_method": CI_METHOD.format(n=n_boot, m=MIN_POSITIVE_PATIENTS) if n_boot > 0 else None}


def patient_findings(pred: Predictions, meta: CheckpointMeta, groups: np.ndarray, n_boot: int,
                     seed: int = 0) -> tuple[dict, pd.DataFrame]:
    """Per patient (positive if any image is; probability = max): rows per finding and the macro AUC with CIs,
    and the ``patients.csv`` table."""
    findings, thresholds = list(meta.classes), list(meta.finding_thresholds)
    ids, y_pat, p_pat = aggregate_findings(pred.labels, pred.probs, groups)  # one row per patient
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        rows, macro = finding_rows(y_pat, p_pat, ids, findings, thresholds, n_boot, seed)
    table = pd.DataFrame({"patient": ids, "n_images": pd.Series(groups).value_counts().reindex(ids).to_numpy()})
    for k, f in enumerate(findings):
        table[f"label_{f}"], table[f"max_prob_{f}"] = y_pat[:, k], p_pat[:, k]
        table[f"pred_{f}"] = (p_pat[:, k] >= thresholds[k]).astype(int)
    out = {"n_patients": int(len(ids)), "rule": "positive if any image is; probability = max over the images",
           "label_rule": "a finding is positive when any image is", "images_without_patient_count_as_own_patient": True,
           "macro_auc": macro["value"], "per_finding": rows}
    if n_boot > 0:
        out["ci"] = {"macro_auc": macro}
    return out, table


def wrong_examples(model: Any, meta: CheckpointMeta, cam_method: str, target_layer: str, ds: ImageDataset,
                   pred: Predictions, cam: bool) -> dict[str, list[plots.GridItem]]:
    """The most wrong images of every finding (``|label - p|``), with that finding's Grad-CAM when ``cam``."""
    from ..explain.cam import compute_cam, overlay_cam

    device = next(model.parameters()).device
    out: dict[str, list[plots.GridItem]] = {}
    for k, finding in enumerate(meta.classes):
        rows = finding_errors(pred.labels, pred.probs, k, WRONG_PER_FINDING)
        views, inputs, kept = load_views(ds, pred.indices[rows])
        if inputs is None:
            continue
        maps = (compute_cam(model, inputs.to(device), target_class=k, method=cam_method,
                            target_layer=target_layer or None) if cam else [None] * len(views))
        items = []
        for view, pos, cam_map in zip(views, kept, maps):
            r = int(rows[pos])
            truth, prob = int(pred.labels[r, k]), float(pred.probs[r, k])
            decided = int(prob >= meta.finding_thresholds[k])
            picture = overlay_cam(view, cam_map) if cam_map is not None else view
            caption = f"{finding}: true {truth}\np={prob:.2f}, decided {decided}" + ("\nCAM: this finding" if cam else "")
            items.append(plots.GridItem(picture, caption, decided == truth))
        out[finding] = items
    return out


FINDING_COLUMNS = ["finding", "threshold", "n", "positives", "positive patients", "masked"] + [
    c for m_ in FINDING_METRICS for c in (m_, f"{m_} 95% CI")]


def _ci_text(row: dict, name: str) -> str:
    if row.get("ci_note"):
        return "n/e"
    return f"{fmt(row.get(name + '_low'))}–{fmt(row.get(name + '_high'))}" if name + "_low" in row else "–"


def findings_table_html(per: list[dict]) -> str:
    """The per-finding table (n/e = not estimable, with the reason under the table)."""
    rows = [[r["finding"], r["threshold"], r["n"], r["positives"], r.get("positive_patients", "–"), r["masked"]]
            + [v for name in FINDING_METRICS for v in (r[name], _ci_text(r, name))] for r in per]
    notes = [f"{r['finding']}: {r['ci_note']}" for r in per if r.get("ci_note")]
    return table(FINDING_COLUMNS, rows) + (f"<p class='warn'>{esc('; '.join(notes))}.</p>" if notes else "")


def headline_html(m: dict) -> str:
    """Macro and micro AUC with their CIs, on how many images and findings."""
    f = m["findings"]
    s, ci = f["summary"], f["ci"]
    head = " · ".join(f"{name.replace('_', ' ')} {fmt(s[name])}" + (
        f" ({fmt(ci[name]['low'])}–{fmt(ci[name]['high'])})" if ci.get(name, {}).get("low") is not None else "")
        for name in ("macro_auc", "micro_auc"))
    return (f"<p><b>{esc(head)}</b> on {m['data']['n_predicted']} images, {len(m['classes'])} findings; "
            f"each finding decided at its own threshold chosen on validation ({esc(m['threshold_rule'])}); "
            f"uncertain/missing labels: {esc(m.get('uncertain', ''))}.</p>")


__all__ = ["finding_rows", "findings_metrics", "findings_table_html", "headline_html", "patient_findings",
           "prediction_frame", "wrong_examples"]
