"""Section ``decision``: the stored decision rule (threshold(s), rule, temperature, what validation said) and
the rare-finding warnings of :mod:`medclass.metrics.rare`.

Nothing is re-tuned here: the threshold was chosen on validation. A multi-label finding whose threshold
fell back to the fixed value (too few positive validation patients) or whose CIs are not estimable on
the evaluated data (too few positive patients there) is listed in ``rare_findings`` with the reason.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...metrics.findings import rare_reasons
from ...metrics.html import esc, table
from ...metrics.rare import FALLBACK_THRESHOLD, MIN_POSITIVE_PATIENTS, positive_patients
from .._loading import run_files
from .base import Context, ReportPart, Section


@dataclass
class DecisionResult:
    """The decision rule of the checkpoint and the findings whose numbers rest on too few patients."""

    threshold_rule: str
    threshold_on_validation: dict | None  # threshold.json of the run
    threshold: float | None = None  # single-label
    temperature: float | None = None  # single-label
    thresholds: dict[str, float] | None = None  # multi-label: one per finding
    rare_findings: list[dict] = field(default_factory=list)  # multi-label: {finding, where, reason}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"threshold_rule": self.threshold_rule, "threshold_on_validation": self.threshold_on_validation}
        if self.thresholds is None:
            out |= {"threshold": self.threshold, "temperature": self.temperature}
        else:
            out |= {"thresholds": self.thresholds, "rare_findings": self.rare_findings}
        return out


def rare_findings(ctx: Context, chosen: dict | None) -> list[dict]:
    """Findings whose threshold fell back on validation, or whose evaluated positive patients are too few for a CI."""
    out = []
    per = (chosen or {}).get("thresholds") or {}
    for finding, info in per.items():
        if isinstance(info, dict) and info.get("fallback"):
            out.append({"finding": finding, "where": "validation", "reason": info.get("note", ""),
                        "threshold": info.get("threshold", FALLBACK_THRESHOLD)})
    for k, reason in enumerate(rare_reasons(ctx.pred.labels, ctx.groups)):
        if reason:
            out.append({"finding": ctx.classes[k], "where": "evaluated data",
                        "reason": f"{reason}: CIs not estimable, the point estimates rest on "
                                  f"{positive_patients(ctx.pred.labels[:, k], ctx.groups)[0]} positive patient(s)"})
    return out


class Decision(Section):
    """The decision threshold(s) chosen on validation, the temperature, and the rare-finding rule's warnings."""

    name, title = "decision", "Decision threshold and rare findings"

    def compute(self, ctx: Context) -> DecisionResult:
        meta = ctx.run.meta
        chosen = run_files(ctx.run.run_dir)[2]
        if not ctx.multi_label:
            return DecisionResult(meta.threshold_rule, chosen, threshold=meta.threshold, temperature=meta.temperature)
        return DecisionResult(meta.threshold_rule, chosen, thresholds=dict(zip(meta.classes, meta.finding_thresholds)),
                              rare_findings=rare_findings(ctx, chosen))

    def report(self, result, figures: dict[str, bytes]) -> list[ReportPart]:
        m = result.metrics
        if m.get("task") != "multi_label":
            return []  # the single-label threshold is in the summary and the metrics' operating point
        per = (m.get("threshold_on_validation") or {}).get("thresholds") or {}
        rows = [(f, t, (per.get(f) or {}).get("val_positive_patients", "–"),
                 "fallback" if (per.get(f) or {}).get("fallback") else m["threshold_rule"]) for f, t in m["thresholds"].items()]
        body = table(["finding", "threshold", "positive validation patients", "chosen by"], rows)
        rare = m.get("rare_findings") or []
        body += ("<p class='warn'>" + "<br>".join(esc(f"{r['finding']} ({r['where']}): {r['reason']}") for r in rare)
                 + "</p>" if rare else f"<p class='ok'>Every finding has at least {MIN_POSITIVE_PATIENTS} positive "
                                       "patients in validation and in the evaluated data.</p>")
        return [("decision", self.title, body)]

    def card(self, metrics: dict) -> list[str]:
        rare = metrics.get("rare_findings") or []
        return [f"- **Rare finding ({r['finding']}, {r['where']}):** {r['reason']}" for r in rare]


__all__ = ["Decision", "DecisionResult", "rare_findings"]
