"""Section ``baselines`` (``--baselines view,sex,age``): the image model against a logistic regression on metadata
columns alone, fitted on the run's training rows, with paired patient-bootstrap CIs (:mod:`medclass.metrics.baselines`).

The training rows and their metadata come from the run's ``split.csv`` (its ``train`` rows), also when external
data is evaluated with ``--data``: the baseline is always fitted on what the image model was trained on. A
column named that exists in neither the evaluated rows nor the training rows is an error before any prediction
(a typo); a column that only one of them has makes the section not apply, with the columns each has.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ...data.splits import patient_groups
from ...data.table import DataTable
from ...errors import ConfigError, did_you_mean
from ...metrics.baselines import BaselinesReport, metadata_baselines
from ...metrics.html import Raw, esc, table
from ...metrics.metrics import UndefinedMetricWarning
from .._loading import LoadedRun
from .._render import ci_text
from .base import Context, ReportPart, Section

FLAG = "--baselines"
LIMITS = ("A baseline covers only the columns it is given: an image model that beats it can still read other "
          "shortcuts (hospital markers, scanner, other metadata the table does not hold). A logistic regression is "
          "linear in the columns: a stronger metadata model could do better than this baseline.")


def parse_baselines(text: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The column names of ``--baselines view,sex,age`` (blanks and repeats dropped, order kept).

    >>> parse_baselines(" view, sex,,view ")
    ('view', 'sex')
    """
    names = text.split(",") if isinstance(text, str) else list(text)
    return tuple(dict.fromkeys(n.strip() for n in names if n.strip()))


def training_rows(run: LoadedRun) -> DataTable | None:
    """The run's training rows (``split.csv``, split ``train``) with their metadata; ``None`` for a bare checkpoint."""
    if run.run_dir is None:
        return None
    return DataTable.from_csv(run.run_dir.split, list(run.meta.classes)).subset("train")


def check_baseline_columns(columns: tuple[str, ...], evaluated: list[str], training: list[str] | None) -> None:
    """Raise :class:`ConfigError` (one line, naming the available columns) for a column in neither set of rows."""
    known = list(dict.fromkeys([*evaluated, *(training or [])]))
    for column in columns:
        if column not in known:
            raise ConfigError(f"{FLAG} {','.join(columns)}: no column {column!r} in the evaluated data or the run's "
                              f"training rows; their metadata columns are {known or 'none'}.{did_you_mean(column, known)}")


def difference_text(c: dict) -> str:
    """A difference with its CI, signed: ``-0.024 (-0.055 to +0.009)`` (as :func:`ci_text` when there is no interval).

    >>> difference_text({"value": -0.024, "low": -0.055, "high": 0.009})
    '-0.024 (-0.055 to +0.009)'
    """
    if c.get("low") is None or c.get("high") is None:
        return ci_text(c)
    return f"{c['value']:+.3f} ({c['low']:+.3f} to {c['high']:+.3f})"


@dataclass
class BaselinesResult:
    """``baselines`` of metrics.json."""

    baselines: BaselinesReport

    def to_dict(self) -> dict[str, Any]:
        return {"baselines": self.baselines.to_dict()}


def _labels(train: DataTable, classes: list[str], multi_label: bool) -> tuple[pd.DataFrame, np.ndarray]:
    """Training rows with a known label and their labels (class indices, or ``(n, K)`` 1 / 0 / NaN)."""
    frame = train.frame
    if multi_label:
        return frame, frame[[f"label_{c}" for c in classes]].to_numpy(dtype=float)
    codes = pd.Categorical(frame["label"], categories=classes).codes
    return frame[codes >= 0], codes[codes >= 0]


class Baselines(Section):
    """The image model against metadata alone (``--baselines COLUMNS``), paired patient-bootstrap CIs."""

    name, title = "baselines", "Shortcuts: metadata baselines"

    def skip_reason(self, ctx: Context) -> str:
        columns = ctx.options.baselines
        if not columns:
            return f"not requested ({FLAG} COLUMNS, e.g. {FLAG} view,sex,age)"
        train = training_rows(ctx.run)
        if train is None:
            return f"no split.csv beside the checkpoint {ctx.run.checkpoint}, so its training rows are unknown"
        for where, have in (("the evaluated data", ctx.metadata), ("the run's training rows", train.metadata_columns())):
            missing = [c for c in columns if c not in have]
            if missing:
                return f"column(s) {missing} missing from {where}, whose metadata columns are {have or 'none'}"
        if not len(train.frame):
            return "the run has no training rows in split.csv"
        return ""

    def compute(self, ctx: Context) -> BaselinesResult:
        train = training_rows(ctx.run)
        frame, y_train = _labels(train, ctx.classes, ctx.multi_label)
        n_patients = int(patient_groups(frame).nunique())
        fitted_on = (f"the run's training split ({train.root}): {len(frame)} images of {n_patients} patients"
                     + ("; scored on the external data" if ctx.options.external else ""))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            report = metadata_baselines(frame, y_train, ctx.frame, ctx.pred.labels, ctx.pred.probs, ctx.groups,
                                        list(ctx.options.baselines), ctx.classes, ctx.multi_label,
                                        n_boot=ctx.options.n_boot, seed=ctx.options.seed, fitted_on=fitted_on)
        return BaselinesResult(report)

    def report(self, result, figures: dict[str, bytes]) -> list[ReportPart]:
        return [("metadata-baselines", self.title, baselines_html(result.metrics["baselines"]))]

    def card(self, metrics: dict) -> list[str]:
        b = metrics["baselines"]
        lines = [f"- **Metadata baseline ({', '.join(b['columns'])}):** {c['message']}" for c in b["comparisons"]]
        if b["warnings"]:
            lines.append("- **Warning:** the image model is not shown to know more than the metadata "
                         f"{', '.join(b['columns'])}; check for shortcuts before trusting its AUC.")
        return lines + [f"- {target}: no metadata baseline ({reason})." for target, reason in b["skipped"].items()]


def baselines_html(b: dict) -> str:
    """The comparison table, the verdicts (warnings in a red box), how it was done and what it cannot rule out."""
    kinds = ", ".join(f"{c} ({k})" for c, k in b["kinds"].items())
    body = ""
    if b["warnings"]:
        body += ('<div class="bad">The image model does not beat a baseline that sees only metadata:<ul>'
                 + "".join(f"<li>{esc(w)}</li>" for w in b["warnings"]) + "</ul></div>")
    rows = [(c["target"], c["n_test"], c["test_patients"], ci_text(c["baseline_auc"]), ci_text(c["image_auc"]),
             difference_text(c["difference"]), Raw(("<b>" + esc(c["verdict"]) + "</b>") if c["warning"] else esc(c["verdict"])))
            for c in b["comparisons"]]
    if rows:
        body += table(["target", "images", "patients", "baseline AUC", "image model AUC", "difference (image − baseline)",
                       "verdict"], rows)
    body += "".join(f"<p>{esc(c['message'])}</p>" for c in b["comparisons"] if not c["warning"])
    body += "".join(f"<p>{esc(t)}: no baseline ({esc(r)}).</p>" for t, r in b["skipped"].items())
    return body + (f"<p class='muted'>Baseline: {esc(b['model'])}; columns {esc(kinds)}; fitted on {esc(b['fitted_on'])}. "
                   f"CIs: {esc(b['ci_method'])}.</p><p class='muted'>What it cannot rule out: {esc(LIMITS)}</p>")


__all__ = ["Baselines", "BaselinesResult", "FLAG", "baselines_html", "check_baseline_columns", "difference_text",
           "parse_baselines", "training_rows"]
