"""Section ``shift``: every image's out-of-distribution score and the share flagged (``ood``), and for external
data the training-vs-external dataset shift (``shift``; :mod:`medclass.evaluation._shift`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._shift import shift_and_ood, shift_html
from .base import Context, ReportPart, Section


@dataclass
class ShiftResult:
    """``ood`` and ``shift`` of metrics.json (``shift`` is None unless external data of a run was evaluated)."""

    ood: dict[str, Any]
    shift: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {"ood": self.ood, "shift": self.shift}


class Shift(Section):
    """Out-of-distribution share and dataset shift; adds ``ood_score`` to predictions.csv."""

    name, title = "shift", "Dataset shift and out-of-distribution images"

    def compute(self, ctx: Context) -> ShiftResult:
        r, o = ctx.run, ctx.options
        ood, shift, ctx.frame["ood_score"] = shift_and_ood(r.model, r.meta, r.checkpoint, r.run_dir, ctx.table, ctx.pred,
                                                           o.external, batch_size=o.batch_size, num_workers=o.num_workers)
        return ShiftResult(ood, shift)

    def report(self, result, figures: dict[str, bytes]) -> list[ReportPart]:
        return [("shift", self.title, shift_html(result.metrics))]


__all__ = ["Shift", "ShiftResult"]
