"""Section ``patients``: per-patient results with patient-bootstrap CIs, and ``patients.csv``.

Single-label: mean and max aggregation of the image probabilities, each with its metrics and CIs, and
the patients with wrong images (in series order). Multi-label: a finding is positive for a patient
when any image is, its probability the maximum; one row per finding with CIs and the macro AUC.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ...artifacts import EvalDir
from ...metrics.bootstrap import bootstrap_metrics
from ...metrics.html import Raw, esc, fmt, table
from ...metrics.metrics import UndefinedMetricWarning, compute_metrics, predict_labels
from ...metrics.patients import aggregate_by_patient, patient_errors
from ...metrics.subgroups import few_patients_warning, patients_per_class
from ...utils import atomic_write_text
from .._multilabel import findings_table_html, patient_findings
from .._render import METRIC_LABELS
from .base import Context, ReportPart, Section


@dataclass
class PatientsResult:
    """``patients`` of metrics.json and the per-patient table (``patients.csv``)."""

    patients: dict[str, Any]
    table: pd.DataFrame

    def to_dict(self) -> dict[str, Any]:
        return {"patients": self.patients}


def single_label_patients(ctx: Context) -> PatientsResult:
    """Patient-level metrics (CIs over patients) for mean and max aggregation, wrong images, a per-patient table."""
    pred, classes, threshold, n_boot = ctx.pred, ctx.classes, ctx.run.meta.threshold, ctx.options.n_boot
    groups = ctx.groups
    out: dict = {"label_rule": "any positive image" if len(classes) == 2 else "most frequent image label",
                 "images_without_patient_count_as_own_patient": True}
    table_ = pd.DataFrame()
    for how in ("mean", "max"):
        ids, y_pat, P_pat = aggregate_by_patient(pred.labels, pred.probs, groups, how=how)
        full = compute_metrics(y_pat, P_pat, threshold, classes)
        out[how] = {k: v for k, v in full.items() if k != "per_class"}
        if n_boot > 0:  # one row per patient: resampling rows resamples patients
            out.setdefault("ci", {})[how] = bootstrap_metrics(y_pat, P_pat, None, threshold=threshold, n_boot=n_boot,
                                                              seed=ctx.options.seed)
        table_["patient"], table_["label"] = ids, [classes[i] for i in y_pat]
        for j, c in enumerate(classes):
            table_[f"{how}_prob_{c}"] = P_pat[:, j]
        table_[f"{how}_predicted"] = [classes[i] for i in predict_labels(P_pat, threshold)]
    table_.insert(2, "n_images", pd.Series(groups).value_counts().reindex(table_["patient"]).to_numpy())
    out["n_patients"] = int(len(table_))
    out["patients_per_class"] = patients_per_class(y_pat, ids, classes)  # by the patient label rule above
    out["warning"] = few_patients_warning(out["patients_per_class"])
    out["errors"] = patient_errors(pred.paths, groups, pred.labels, predict_labels(pred.probs, threshold), pred.probs,
                                   order=ctx.frame["frame"].to_numpy(), class_names=classes)
    return PatientsResult(out, table_)


def patients_html(m: dict) -> str:
    """Single-label: both aggregations with CIs, then the patients with wrong images."""
    p = m["patients"]
    keys = [k for k in ("accuracy", "roc_auc", "sensitivity", "specificity", "balanced_accuracy") if k in p["mean"]]
    per_class = p.get("patients_per_class")  # absent in evaluations written before the per-class counts
    counts = f" ({', '.join(f'{esc(c)} {n}' for c, n in per_class.items())})" if per_class else ""
    body = (f"<p>{p['n_patients']} patients{counts}; patient label = {esc(p['label_rule'])}; images without a patient "
            "id count as their own patient. Patient probability = mean or maximum of the image probabilities.</p>")
    if p.get("warning"):
        body += f"<p class='warn'>{esc(p['warning'])}</p>"
    ci = p.get("ci", {})

    def cell(how: str, k: str) -> Raw:
        c = ci.get(how, {}).get(k)
        interval = f" <span class='muted'>({fmt(c['low'])}–{fmt(c['high'])})</span>" if c else ""
        return Raw(fmt(p[how][k]) + interval)

    body += table(["aggregation", *(METRIC_LABELS[k] for k in keys)],
                  [(how, *(cell(how, k) for k in keys)) for how in ("mean", "max")])
    if ci:
        body += "<p class='muted'>In brackets: 95% percentile bootstrap CIs resampling patients.</p>"
    errors = p["errors"]
    if not errors:
        return body + "<p>Every image of every patient was classified correctly.</p>"
    rows = [(e["patient"], e["n_images"], e["n_wrong"], Raw(esc(", ".join(map(str, e["wrong_positions"])))),
             Raw("<br>".join(esc(f"#{w['position']} {Path(w['path']).name}: true {w['true']}, pred {w['pred']} "
                                 f"(p={w['p_pred']:.2f})") for w in e["wrong"][:10])))
            for e in errors[:50]]
    more = f" (first 50 of {len(errors)})" if len(errors) > 50 else ""
    return body + f"<h3>Patients with wrong images{more}, wrong images in series order</h3>" + table(
        ["patient", "images", "wrong", "positions in series", "wrong images"], rows)


class Patients(Section):
    """Per-patient results with CIs resampling patients."""

    name, title = "patients", "Per-patient results"

    def compute(self, ctx: Context) -> PatientsResult:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            if ctx.multi_label:
                return PatientsResult(*patient_findings(ctx.pred, ctx.run.meta, ctx.groups, ctx.options.n_boot,
                                                        ctx.options.seed))
            return single_label_patients(ctx)

    def write(self, result: PatientsResult, ev: EvalDir) -> dict[str, Path]:
        atomic_write_text(ev.patients, result.table.to_csv(index=False))
        return {"patients": ev.patients}

    def report(self, result, figures: dict[str, bytes]) -> list[ReportPart]:
        m = result.metrics
        if m.get("task") != "multi_label":
            return [("patients", self.title, patients_html(m))]
        pat = m["patients"]
        macro = (pat.get("ci") or {}).get("macro_auc") or {"value": pat["macro_auc"]}
        interval = f" ({fmt(macro['low'])}–{fmt(macro['high'])})" if macro.get("low") is not None else ""
        return [("patients", self.title, f"<p>{pat['n_patients']} patients; {esc(pat['rule'])}; macro AUC "
                 f"{fmt(pat['macro_auc'])}{interval}.</p>" + findings_table_html(pat["per_finding"]))]


__all__ = ["Patients", "PatientsResult", "patients_html", "single_label_patients"]
