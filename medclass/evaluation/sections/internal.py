"""Section ``internal``: the metrics of the evaluated data with patient-bootstrap CIs, curves and calibration.

Single-label: ``metrics``, ``ci``, ``classification_report``, ``log_loss``, ``curves``, ``calibration`` and
(binary) ``operating_point``; multi-label: ``findings`` (one row per finding, macro and micro AUC, ROC
curves per finding, co-occurrence).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

from ...metrics import plots
from ...metrics.bootstrap import bootstrap_metrics
from ...metrics.calibration import reliability_curve
from ...metrics.curves import score_curves
from ...metrics.html import Raw, esc, fmt, img, table
from ...metrics.metrics import UndefinedMetricWarning, classification_report_dict, compute_metrics, predict_labels
from .._examples import per_image_loss
from .._multilabel import findings_metrics, findings_table_html
from .._render import METRIC_LABELS, figures_html
from .base import Context, ReportPart, Section


@dataclass
class InternalResult:
    """Single-label metrics of the evaluated data (the keys of metrics.json as before sections existed)."""

    metrics: dict[str, Any]  # compute_metrics at the stored threshold
    classification_report: dict[str, Any]
    log_loss: float
    curves: dict[str, Any]  # ROC / PR points per class
    calibration: dict[str, Any]  # reliability curve
    ci: dict[str, dict] | None = None  # {metric: {value, low, high, n_valid}} (n_boot > 0)
    ci_method: str | None = None
    operating_point: dict[str, float] | None = None  # binary: the stored threshold's rates

    def to_dict(self) -> dict[str, Any]:
        out = {"metrics": self.metrics, "classification_report": self.classification_report, "log_loss": self.log_loss,
               "curves": self.curves, "calibration": self.calibration}
        if self.ci is not None:
            out["ci"], out["ci_method"] = self.ci, self.ci_method
        if self.operating_point is not None:
            out["operating_point"] = self.operating_point
        return out


@dataclass
class FindingsResult:
    """Multi-label metrics of the evaluated data: ``findings`` of metrics.json."""

    findings: dict[str, Any] = field(default_factory=dict)  # per_finding, summary, ci, curves, cooccurrence, ci_method

    def to_dict(self) -> dict[str, Any]:
        return {"findings": self.findings}


def single_label_metrics(ctx: Context) -> InternalResult:
    pred, classes, threshold, n_boot = ctx.pred, ctx.classes, ctx.run.meta.threshold, ctx.options.n_boot
    y, P = pred.labels, pred.probs
    m = compute_metrics(y, P, threshold, classes)
    out = InternalResult(m, classification_report_dict(y, predict_labels(P, threshold), classes),
                         float(per_image_loss(P, y).mean()), score_curves(y, P, classes), reliability_curve(y, P))
    if n_boot > 0:
        out.ci = bootstrap_metrics(y, P, ctx.groups, threshold=threshold, n_boot=n_boot, seed=ctx.options.seed)
        out.ci_method = (f"95% percentile bootstrap, {n_boot} replicates resampling patients "
                         "(images without a patient id count as their own patient)")
    if len(classes) == 2:
        fpr, tpr = 1.0 - m["specificity"], m["sensitivity"]
        out.operating_point = {"threshold": threshold, "sensitivity": m["sensitivity"], "specificity": m["specificity"],
                               "ppv": m["ppv"], "npv": m["npv"], "fpr": fpr, "tpr": tpr, "recall": tpr, "precision": m["ppv"]}
    return out


def metrics_html(m: dict) -> str:
    """The single-label metrics table with CIs, the per-class table and the operating point."""
    ci = m.get("ci", {})
    rows = []
    for key, label in METRIC_LABELS.items():
        if key in m["metrics"]:
            c = ci.get(key, {})
            rows.append((label, m["metrics"][key], Raw(f"{fmt(c['low'])} – {fmt(c['high'])}" if c else "–")))
    body = table(["metric", "value", "95% CI"], rows)
    body += f"<p class='muted'>{esc(m.get('ci_method', 'No bootstrap CIs (n_boot = 0).'))}</p>"
    report = m["classification_report"]
    body += "<h3>Per class</h3>" + table(
        ["class", "precision", "recall (accuracy of the class)", "F1", "ROC AUC (one-vs-rest)", "support"],
        [(c, report[c]["precision"], report[c]["recall"], report[c]["f1-score"], m["metrics"]["per_class"][c]["roc_auc"],
          int(report[c]["support"])) for c in m["classes"]])
    op = m.get("operating_point")
    if op:
        val = m.get("threshold_on_validation") or {}
        body += "<h3>Operating point</h3>" + table(
            ["", "threshold", "sensitivity", "specificity", "PPV", "NPV"],
            [("this evaluation", op["threshold"], op["sensitivity"], op["specificity"], op["ppv"], op["npv"]),
             ("validation (where it was chosen)", val.get("threshold"), val.get("val_sensitivity"),
              val.get("val_specificity"), None, None)])
    return body


class InternalMetrics(Section):
    """Metrics of the evaluated data with patient-bootstrap CIs, curves and calibration."""

    name, title = "internal", "Metrics"

    def compute(self, ctx: Context) -> InternalResult | FindingsResult:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)  # NaN metrics are reported as null
            if ctx.multi_label:
                return FindingsResult(findings_metrics(ctx.pred, ctx.run.meta, ctx.groups, ctx.options.n_boot,
                                                       ctx.options.seed))
            return single_label_metrics(ctx)

    def figures(self, result) -> dict:
        m = result.metrics
        if "findings" in m:
            return {"roc": plots.roc_figure(m["findings"]["curves"]["roc"], title="ROC curve per finding"),
                    "cooccurrence": plots.cooccurrence_figure(m["findings"]["cooccurrence"], m["classes"],
                                                              "Co-occurrence of findings (evaluated labels)")}
        figs = {"confusion_matrix": plots.confusion_matrix_figure(m["metrics"]["confusion_matrix"], m["classes"])}
        curves, op = m["curves"], m.get("operating_point")
        points = [{**op, "label": f"threshold {op['threshold']:.3g}"}] if op else []
        if curves["roc"]:
            figs["roc"] = plots.roc_figure(curves["roc"], points)
            figs["pr"] = plots.pr_figure(curves["pr"], points, curves["prevalence"])
        figs["calibration"] = plots.reliability_figure(m["calibration"])
        return figs

    def report(self, result, figures: dict[str, bytes]) -> list[ReportPart]:
        m = result.metrics
        if "findings" in m:
            f = m["findings"]
            return [("findings", "Per finding", findings_table_html(f["per_finding"]) + "<p class=\"muted\">"
                     f"{esc(f['ci_method'] or 'no CIs (n_boot=0)')}; masked = labels left out (uncertain or missing).</p>"),
                    ("curves", "ROC curves per finding", img(figures["roc"], "ROC curves")),
                    ("cooccurrence", "Co-occurrence of findings", img(figures["cooccurrence"], "co-occurrence"))]
        return [("metrics", "Metrics", metrics_html(m)),
                ("confusion-matrix", "Confusion matrix", figures_html(figures, ["confusion_matrix"])),
                ("curves", "ROC and precision-recall curves",
                 figures_html(figures, ["roc", "pr"], "The circle marks the operating point at the stored threshold.")),
                ("calibration", "Calibration", figures_html(figures, ["calibration"], f"Brier {fmt(m['metrics']['brier'])}, "
                                                                                       f"ECE {fmt(m['metrics']['ece'])}."))]


__all__ = ["FindingsResult", "InternalMetrics", "InternalResult", "metrics_html", "single_label_metrics"]
