"""Sections ``external`` (internal test vs external data) and ``subgroups`` (``--subgroups``), for every task.

``external`` (data given with ``--data``): the run's own test evaluation beside the external figures,
differences with CIs from independent patient bootstraps, prevalence, calibration and warnings;
multi-label per finding and for the macro AUC. ``subgroups``: metrics per subgroup of metadata columns
with CIs and flags; multi-label the macro AUC and every finding per subgroup.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from ...metrics.metrics import UndefinedMetricWarning
from .._external import external_findings_section, external_section, subgroup_findings_section, subgroups_section
from .._report_external import external_findings_html, external_html, subgroup_findings_html, subgroups_html
from .base import Context, ReportPart, Section


@dataclass
class ExternalResult:
    """``external`` of metrics.json (see :func:`~medclass.evaluation._external.external_section`)."""

    external: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"external": self.external}


@dataclass
class SubgroupsResult:
    """``subgroups`` of metrics.json."""

    subgroups: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"subgroups": self.subgroups}


class ExternalComparison(Section):
    """Internal test vs external data (``--data``), differences with CIs, calibration, warnings."""

    name, title = "external", "External validation"

    def skip_reason(self, ctx: Context) -> str:
        return "" if ctx.options.external else "the run's own split was evaluated (external data is given with --data)"

    def compute(self, ctx: Context) -> ExternalResult:
        o, meta = ctx.options, ctx.run.meta
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            if ctx.multi_label:
                return ExternalResult(external_findings_section(ctx.pred.labels, ctx.pred.probs, ctx.groups, ctx.classes,
                                                                list(meta.finding_thresholds), ctx.run.run_dir,
                                                                o.n_boot, o.seed))
            return ExternalResult(external_section(ctx.pred.labels, ctx.pred.probs, ctx.groups, ctx.classes,
                                                   meta.threshold, meta.threshold_rule, ctx.run.run_dir, o.n_boot,
                                                   o.recalibrate, o.seed))

    def report(self, result, figures: dict[str, bytes]) -> list[ReportPart]:
        m = result.metrics
        html = external_findings_html(m) if m.get("task") == "multi_label" else external_html(m)
        return [("external-validation", self.title, html)]


class Subgroups(Section):
    """Metrics per subgroup of metadata columns (``--subgroups sex,age:18:65,view``) with CIs and flags."""

    name, title = "subgroups", "Subgroups"

    def skip_reason(self, ctx: Context) -> str:
        return "" if ctx.options.subgroups else "not requested (--subgroups COLUMNS)"

    def compute(self, ctx: Context) -> SubgroupsResult:
        o, meta, specs = ctx.options, ctx.run.meta, list(ctx.options.subgroups)
        metadata = ctx.frame[ctx.metadata]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            if ctx.multi_label:
                return SubgroupsResult(subgroup_findings_section(specs, ctx.pred.labels, ctx.pred.probs, ctx.groups, metadata,
                                                                 ctx.classes, list(meta.finding_thresholds), o.n_boot, o.seed))
            return SubgroupsResult(subgroups_section(specs, ctx.pred.labels, ctx.pred.probs, ctx.groups, metadata,
                                                     ctx.classes, meta.threshold, o.n_boot, o.seed))

    def report(self, result, figures: dict[str, bytes]) -> list[ReportPart]:
        m = result.metrics
        return [("subgroups", self.title, subgroup_findings_html(m) if m.get("task") == "multi_label" else subgroups_html(m))]


__all__ = ["ExternalComparison", "ExternalResult", "Subgroups", "SubgroupsResult"]
