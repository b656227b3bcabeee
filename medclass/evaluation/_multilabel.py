"""The evaluation of a multi-label checkpoint: one row per finding, curves per finding, co-occurrence,
the most wrong images and Grad-CAM per finding (target = that finding's logit), and the same
out-of-distribution share and dataset-shift section as a single-label evaluation (:mod:`._shift`).

Called by :func:`~medclass.evaluation.evaluate.evaluate` once the evaluated rows are chosen and their
leak check is done; the files are the same (``metrics.json``, ``predictions.csv``, ``report.html``).
Every number comes from :mod:`medclass.metrics.multilabel` (masked labels take no part); each
finding is decided at its own threshold, chosen on validation and stored in the checkpoint.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..artifacts import CheckpointMeta, EvalDir, RunDir
from ..data.dataset import ImageDataset
from ..data.splits import patient_groups
from ..data.table import DataTable
from ..data.transforms import inference_transform
from ..errors import DatasetError
from ..inference import Predictions, predict_dataset
from ..metrics import plots
from ..metrics.bootstrap import bootstrap_ci
from ..metrics.curves import score_curves
from ..metrics.html import esc, fmt, img, page, section, table
from ..metrics.metrics import UndefinedMetricWarning
from ..metrics.multilabel import (FINDING_METRICS, aggregate_findings, cooccurrence, finding_errors, macro_auc,
                                  micro_auc, per_finding_metrics)
from ..utils import atomic_write_text, write_json
from ._examples import load_views
from ._shift import shift_and_ood, shift_html
from .result import EvaluationResult

FORMAT = "medclass-evaluation/1"
WRONG_PER_FINDING = 4  # most wrong images shown per finding


@dataclass
class FindingsRun:
    """What the multi-label evaluation needs of the loaded run."""

    model: Any  # torch.nn.Module on the evaluation device
    meta: CheckpointMeta
    checkpoint: str
    cam_method: str
    target_layer: str
    run_dir: RunDir | None = None  # the run folder (its split.csv: the training images of the shift section)
    external: bool = False  # the evaluated data is external (--data): the shift section is measured


def _groups(patients: list[str]) -> np.ndarray:
    return patient_groups(pd.DataFrame({"patient": patients})).to_numpy()


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


def findings_metrics(pred: Predictions, meta: CheckpointMeta, n_boot: int, seed: int = 0) -> dict:
    """Per-finding rows (with patient-bootstrap CIs), macro and micro AUC, ROC curves per finding, co-occurrence."""
    y, p, findings = pred.labels, pred.probs, list(meta.classes)
    groups = _groups(pred.patients)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        rows = per_finding_metrics(y, p, findings, meta.finding_thresholds, groups, n_boot=n_boot, seed=seed)
        summary = {"macro_auc": macro_auc(y, p), "micro_auc": micro_auc(y, p)}
        ids, y_pat, p_pat = aggregate_findings(y, p, groups)  # one row per patient: resampling rows = patients
        patients = {"n_patients": int(len(ids)), "rule": "positive if any image is; probability = max over the images",
                    "macro_auc": macro_auc(y_pat, p_pat),
                    "per_finding": per_finding_metrics(y_pat, p_pat, findings, meta.finding_thresholds, None,
                                                       n_boot=n_boot, seed=seed)}
        ci = {}
        if n_boot > 0:
            for name, fn in (("macro_auc", macro_auc), ("micro_auc", micro_auc)):
                point, low, high = bootstrap_ci(fn, y, p, groups, n_boot=n_boot, seed=seed)
                ci[name] = {"value": point, "low": low, "high": high}
        curves: dict = {"roc": {}, "pr": {}, "prevalence": {}}
        for k, f in enumerate(findings):
            known = ~np.isnan(y[:, k])
            pk = p[known, k]
            one = score_curves(y[known, k].astype(np.int64), np.stack([1 - pk, pk], axis=1), ["not " + f, f])
            for key in curves:
                curves[key].update(one[key])
    return {"per_finding": rows, "summary": summary, "ci": ci, "curves": curves, "patients": patients,
            "cooccurrence": cooccurrence(y).tolist(),
            "ci_method": (f"95% percentile bootstrap, {n_boot} replicates resampling patients" if n_boot > 0 else None)}


def _wrong_examples(run: FindingsRun, ds: ImageDataset, pred: Predictions, cam: bool) -> dict[str, list[plots.GridItem]]:
    """The most wrong images of every finding (``|label - p|``), with that finding's Grad-CAM when ``cam``."""
    from ..explain.cam import compute_cam, overlay_cam

    device = next(run.model.parameters()).device
    out: dict[str, list[plots.GridItem]] = {}
    for k, finding in enumerate(run.meta.classes):
        rows = finding_errors(pred.labels, pred.probs, k, WRONG_PER_FINDING)
        views, inputs, kept = load_views(ds, pred.indices[rows])
        if inputs is None:
            continue
        maps = (compute_cam(run.model, inputs.to(device), target_class=k, method=run.cam_method,
                            target_layer=run.target_layer or None) if cam else [None] * len(views))
        items = []
        for view, pos, cam_map in zip(views, kept, maps):
            r = int(rows[pos])
            truth, prob = int(pred.labels[r, k]), float(pred.probs[r, k])
            decided = int(prob >= run.meta.finding_thresholds[k])
            picture = overlay_cam(view, cam_map) if cam_map is not None else view
            caption = f"{finding}: true {truth}\np={prob:.2f}, decided {decided}" + ("\nCAM: this finding" if cam else "")
            items.append(plots.GridItem(picture, caption, decided == truth))
        out[finding] = items
    return out


def _report(m: dict, wrong: dict[str, list[plots.GridItem]]) -> str:
    from .report import DISCLAIMER, HELD_OUT, _leak

    f = m["findings"]
    s, ci = f["summary"], f["ci"]
    headline = " · ".join(f"{name.replace('_', ' ')} {fmt(s[name])}" + (
        f" ({fmt(ci[name]['low'])}–{fmt(ci[name]['high'])})" if name in ci else "") for name in ("macro_auc", "micro_auc"))
    summary = (f"<p><b>{esc(headline)}</b> on {m['data']['n_predicted']} images, {len(m['classes'])} findings; "
               f"each finding decided at its own threshold chosen on validation ({esc(m['threshold_rule'])}); "
               f"uncertain/missing labels: {esc(m['uncertain'])}.</p>")
    if (m.get("shift") or {}).get("large"):
        summary = f'<p class="bad"><b>{esc(m["shift"]["warning"])}</b></p>' + summary
    cols = ["finding", "threshold", "n", "positives", "masked"] + [c for m_ in FINDING_METRICS
                                                                    for c in (m_, f"{m_} 95% CI")]

    def ci_text(row: dict, name: str) -> str:
        return f"{fmt(row.get(name + '_low'))}–{fmt(row.get(name + '_high'))}" if name + "_low" in row else "–"

    def finding_rows(per: list[dict]) -> list[list]:
        return [[r["finding"], r["threshold"], r["n"], r["positives"], r["masked"]]
                + [v for name in FINDING_METRICS for v in (r[name], ci_text(r, name))] for r in per]

    pat = f["patients"]
    figs = {"roc": plots.roc_figure(f["curves"]["roc"], title="ROC curve per finding"),
            "cooccurrence": plots.cooccurrence_figure(f["cooccurrence"], m["classes"], "Co-occurrence of findings (evaluated labels)")}
    pngs = {k: plots.figure_png(v) for k, v in figs.items()}
    wrong_html = "".join(f"<h3>{esc(name)}</h3>" + img(plots.figure_png(plots.image_grid_figure(items, ncols=4)), name)
                         for name, items in wrong.items() if items)
    sections = [
        ("summary", "Summary", summary),
        ("leak-check", "Leak check: is the evaluated data held out?", _leak(m)),
        ("findings", "Per finding", table(cols, finding_rows(f["per_finding"])) + f"<p class=\"muted\">"
         f"{esc(f['ci_method'] or 'no CIs (n_boot=0)')}; masked = labels left out (uncertain or missing).</p>"),
        ("patients", "Per patient", f"<p>{pat['n_patients']} patients; {esc(pat['rule'])}; macro AUC "
         f"{fmt(pat['macro_auc'])}.</p>" + table(cols, finding_rows(pat["per_finding"]))),
        ("curves", "ROC curves per finding", img(pngs["roc"], "ROC curves")),
        ("cooccurrence", "Co-occurrence of findings", img(pngs["cooccurrence"], "co-occurrence")),
        ("most-wrong", "Most wrong images per finding", f"<p class=\"muted\">{esc(m['cam_note'])}</p>" + wrong_html),
        ("shift", "Dataset shift and out-of-distribution images", shift_html(m)),
        ("disclaimer", "Not a medical device", f"<p>{esc(DISCLAIMER)} {esc(HELD_OUT[m['leak_check']['clean']])}</p>"),
    ]
    body = "".join(section(sid, title, html) for sid, title, html in sections)
    subtitle = f"{m['model']['name']} on {m['data']['path']} ({m['data']['split']}) · {time.strftime('%Y-%m-%d %H:%M')}"
    return page("medclass multi-label evaluation report", subtitle, [(s[0], s[1].split(":")[0]) for s in sections], body)


def evaluate_findings(run: FindingsRun, evaluated: DataTable, ev: EvalDir, *, base: dict, n_boot: int,
                      cam_samples: int, tta: bool, batch_size: int, num_workers: int, report: bool,
                      start: float) -> EvaluationResult:
    """Predict, score every finding, write ``metrics.json``, ``predictions.csv`` and ``report.html``.

    ``base`` holds the entries shared with single-label evaluations (checkpoint, data, leak check...).
    """
    meta = run.meta
    ds = ImageDataset(evaluated, classes=list(meta.classes), transform=inference_transform(meta.preprocessing),
                      window=meta.preprocessing.window)
    pred = predict_dataset(run.model, ds, batch_size=batch_size, num_workers=num_workers, tta=tta, multi_label=True,
                           features=True)
    if not len(pred.labels):
        raise DatasetError(f"None of the {len(evaluated)} images to evaluate could be read; see the warnings above.")
    df = prediction_frame(pred, evaluated, meta)
    ood, shift, df["ood_score"] = shift_and_ood(run.model, meta, Path(run.checkpoint), run.run_dir, evaluated, pred,
                                                run.external, batch_size=batch_size, num_workers=num_workers)
    wrong = _wrong_examples(run, ds, pred, cam_samples > 0)
    metrics = {**base, "format": FORMAT, "task": "multi_label", "thresholds": dict(zip(meta.classes, meta.finding_thresholds)),
               "uncertain": meta.run_config.data.uncertain, "findings": findings_metrics(pred, meta, n_boot),
               "ood": ood, "shift": shift,
               "cam_note": (f"{run.cam_method} for the finding of each row (target = its logit)" if cam_samples > 0
                            else "no Grad-CAM (cam_samples=0)")}
    metrics["data"] = {**metrics["data"], "n_predicted": int(len(pred.labels)), "unreadable_at_prediction": list(pred.skipped)}
    ev.path.mkdir(parents=True, exist_ok=True)
    result = EvaluationResult(metrics, ev.path, predictions=df)
    atomic_write_text(ev.predictions, df.to_csv(index=False))
    result.files["predictions"] = ev.predictions
    metrics["wall_time_s"] = round(time.perf_counter() - start, 2)
    write_json(ev.metrics, metrics)
    result.files["metrics"] = ev.metrics
    if report:
        atomic_write_text(ev.report, _report(metrics, wrong))
        result.files["report"] = ev.report
    return result


__all__ = ["FindingsRun", "evaluate_findings", "findings_metrics", "prediction_frame"]
