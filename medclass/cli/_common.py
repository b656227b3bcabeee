"""Helpers shared by CLI modules: console, error reporting, the held-out metrics table, the shared data flags."""
from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..config import RunConfig
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


# -- the data flags shared by every command that reads data -----------------------------------------
_DATA_PANEL = "Data (CSV columns, filters, label maps)"


@dataclass(frozen=True)
class DataFlags:
    """The shared data flags of one command call; ``None`` = not given (the config's value stays)."""

    image_root: str | None = None
    path_column: str | None = None
    label_column: str | None = None
    patient_column: str | None = None
    patient_regex: str | None = None
    label_map: str | None = None
    where: tuple[str, ...] = ()

    def values(self) -> dict[str, Any]:
        """The ``data.*`` fields these flags set (several ``--where`` are joined with ``and``)."""
        from ..data.filters import join_where

        given = {k: v for k, v in asdict(self).items() if k != "where" and v is not None}
        if self.where:
            given["where"] = join_where(list(self.where))
        return given

    def apply(self, cfg: RunConfig) -> RunConfig:
        """``cfg`` with these flags applied to its data section (checked like any config value)."""
        d = cfg.to_dict()
        d["data"].update(self.values())
        return RunConfig.from_dict(d)


_DATA_OPTIONS: dict[str, Any] = {
    "image_root": Annotated[Optional[str], typer.Option(
        help="Folder the CSV's image paths are relative to (default: the CSV's own folder).", rich_help_panel=_DATA_PANEL)],
    "path_column": Annotated[Optional[str], typer.Option(
        help="CSV column with the image path or id (default: path).", rich_help_panel=_DATA_PANEL)],
    "label_column": Annotated[Optional[str], typer.Option(
        help="CSV column with the class (default: label).", rich_help_panel=_DATA_PANEL)],
    "patient_column": Annotated[Optional[str], typer.Option(
        help="CSV column with the patient id (keeps a patient's images on one side of every split).",
        rich_help_panel=_DATA_PANEL)],
    "patient_regex": Annotated[Optional[str], typer.Option(
        help="Patient id from the file name: a regex with one group, e.g. '^(\\d+)_', or 'chest_xray'.",
        rich_help_panel=_DATA_PANEL)],
    "label_map": Annotated[Optional[str], typer.Option(
        help="Rename, merge or drop labels: covid=pneumonia,other_pneumonia=pneumonia,unknown=drop.",
        rich_help_panel=_DATA_PANEL)],
    "where": Annotated[Optional[list[str]], typer.Option(
        help="Keep rows matching a pandas query on the CSV's columns, e.g. \"view in ['PA', 'AP']\" or \"age >= 18\" "
             "(repeatable: all must hold).", rich_help_panel=_DATA_PANEL)],
}


def data_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give a typer command the shared data flags; it receives them as one ``data_flags: DataFlags`` argument.

    One definition of ``--image-root``, ``--path-column``, ``--label-column``, ``--patient-column``,
    ``--patient-regex``, ``--label-map`` and ``--where`` for data check, train, evaluate, predict and tune.
    """
    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "data_flags"]
    shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=None)
              for name, annotation in _DATA_OPTIONS.items()]

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        given = {name: kwargs.pop(name, None) for name in _DATA_OPTIONS}
        given["where"] = tuple(given["where"] or ())
        return command(*args, data_flags=DataFlags(**given), **kwargs)

    wrapper.__signature__ = signature.replace(parameters=own + shared)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in own + shared}
    return wrapper
