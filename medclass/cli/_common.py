"""Helpers shared by CLI modules: console, error reporting, the held-out metrics table."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer
from rich.console import Console
from rich.table import Table

from ..errors import MedclassError

console = Console()
err_console = Console(stderr=True)


@contextlib.contextmanager
def friendly_errors() -> Iterator[None]:
    """Turn medclass errors and missing files into one red line and exit code 2 (no traceback)."""
    try:
        yield
    except (MedclassError, FileNotFoundError, NotADirectoryError) as e:
        err_console.print(f"[bold red]error:[/] {e}")
        raise typer.Exit(code=2) from None


SHOWN_METRICS = ("roc_auc", "pr_auc", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "ppv", "npv", "f1",
                 "macro_f1", "brier", "ece")


def metrics_table(metrics: dict, title: str) -> Table:
    """The headline metrics of an evaluation's ``metrics.json`` with their patient-bootstrap CIs."""
    ci = metrics.get("ci", {})
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("95% CI (patients resampled)", justify="right")
    for key in SHOWN_METRICS:
        if key in metrics["metrics"]:
            c = ci.get(key)
            table.add_row(key, _num(metrics["metrics"][key]), f"{_num(c['low'])} – {_num(c['high'])}" if c else "")
    return table


def _num(value: float | None) -> str:
    return "–" if value is None or value != value else f"{value:.3f}"
