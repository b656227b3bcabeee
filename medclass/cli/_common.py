"""Helpers shared by CLI modules: console, output level, error reporting, the held-out metrics table, the shared data flags."""
from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Annotated, Any, Optional, TextIO

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..config import RunConfig, with_data_settings
from ..errors import MedclassError

def _width(stream: TextIO) -> int | None:
    """Rich cuts tables at 80 columns when the output is not a terminal: piped output gets :data:`PIPED_WIDTH`
    (a COLUMNS setting or a terminal keeps Rich's own width)."""
    return None if os.environ.get("COLUMNS") or stream.isatty() else PIPED_WIDTH


PIPED_WIDTH = 200  # columns of tables when the output goes to a file or a pipe
console = Console(width=_width(sys.stdout))
err_console = Console(stderr=True, width=_width(sys.stderr))

#: optional packages and the extra of pyproject.toml that installs them
OPTIONAL_EXTRAS = {"mlflow": "mlflow", "optuna": "tune", "gradio": "web", "fastapi": "api", "uvicorn": "api",
                   "onnx": "onnx", "onnxruntime": "onnx", "pylibjpeg": "dicom-codecs", "distributed": "cluster",
                   "dask": "cluster", "pyarrow": "parquet"}
CLUSTER_HELP = ("Run on a Dask cluster: tcp://HOST:8786 (a running `dask scheduler`) or local:N (N local worker "
                "processes); needs pip install \"medclass[cluster]\" and paths the workers see.")
#: errors a user can cause and fix (bad input, missing file...): one line, exit code 2, no traceback
EXPECTED_ERRORS = (MedclassError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


@dataclass
class Output:
    """How much the CLI prints, set by the global options ``--verbose``, ``--quiet`` and ``--debug``."""

    verbose: bool = False  # INFO log lines too (they always go to a run's train.log)
    quiet: bool = False  # nothing but errors: no progress bar, no results, no warnings
    debug: bool = False  # tracebacks for expected errors as well


OUTPUT = Output()


class _StderrHandler(logging.StreamHandler):
    """Writes to the current ``sys.stderr`` (which test runners replace) instead of the one at creation."""

    @property
    def stream(self) -> TextIO:  # noqa: D102
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # StreamHandler.__init__ sets it; the current sys.stderr is always used


#: libraries that log a traceback for a file medclass already reports on one line (pydicom's decoders)
LIBRARY_LOGGERS = ("pydicom",)


def _not_library_noise(record: logging.LogRecord) -> bool:
    """Console filter: a library's own log records (with their tracebacks) are shown only with ``--debug``;
    without it, the file's failure is reported once, with its reason, by medclass's reader."""
    return OUTPUT.debug or record.name.split(".")[0] not in LIBRARY_LOGGERS


def configure_output(verbose: bool = False, quiet: bool = False, debug: bool = False) -> None:
    """Console logging: warnings by default, INFO with ``verbose``, errors only with ``quiet``; warnings go through logging.

    Library log records (:data:`LIBRARY_LOGGERS`) reach the console only with ``debug``.
    """
    OUTPUT.verbose, OUTPUT.quiet, OUTPUT.debug = verbose, quiet, debug
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler()
        handler.addFilter(_not_library_noise)
        root.addHandler(handler)
    handler.setLevel(logging.ERROR if quiet else logging.INFO if verbose or debug else logging.WARNING)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s" if verbose or debug
                                           else "%(levelname)s: %(message)s"))
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    console.quiet = quiet


def show_progress(quiet: bool = False) -> bool:
    """Progress bars unless the command's ``--quiet`` or the global ``--quiet`` is given."""
    return not (quiet or OUTPUT.quiet)


def _missing_extra(e: ModuleNotFoundError) -> str:
    top = (e.name or "").split(".")[0]
    return f"this command needs the optional package {top!r}: pip install 'medclass[{OPTIONAL_EXTRAS[top]}]'" \
        if top in OPTIONAL_EXTRAS else ""


@contextlib.contextmanager
def friendly_errors() -> Iterator[None]:
    """Turn expected errors (bad input, missing files, optional packages) into one red line and exit code 2.

    The traceback is kept with the global ``--debug``, and always for unexpected exceptions (bugs).
    Ctrl-C ends with exit code 130 and one line.
    """
    try:
        yield
    except EXPECTED_ERRORS as e:
        if OUTPUT.debug:
            raise
        err_console.print(f"[bold red]error:[/] {escape(str(e))}", soft_wrap=True)
        raise typer.Exit(code=2) from None
    except ModuleNotFoundError as e:
        if OUTPUT.debug or not _missing_extra(e):
            raise
        err_console.print(f"[bold red]error:[/] {escape(_missing_extra(e))}", soft_wrap=True)
        raise typer.Exit(code=2) from None
    except KeyboardInterrupt as e:
        if OUTPUT.debug:
            raise
        err_console.print(f"[yellow]{escape(str(e) or 'interrupted')}[/]", soft_wrap=True)
        raise typer.Exit(code=130) from None


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
    mask_column: str | None = None
    patient_regex: str | None = None
    split_by: str | None = None
    label_map: str | None = None
    labels_from: str | None = None
    label_sep: str | None = None
    no_finding: str | None = None
    label_columns: str | None = None
    uncertain: str | None = None
    task: str | None = None
    positive: str | None = None
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
        return with_data_settings(cfg, self.values())


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
    "mask_column": Annotated[Optional[str], typer.Option(
        help="CSV column with a lesion mask file per image (relative like the images), e.g. mask: evaluate reports "
             "the share of the Grad-CAM inside the mask and how often its peak lies inside.", rich_help_panel=_DATA_PANEL)],
    "patient_regex": Annotated[Optional[str], typer.Option(
        help="Patient id from the file name: a regex with one group, e.g. '^(\\d+)_', or 'chest_xray'.",
        rich_help_panel=_DATA_PANEL)],
    "split_by": Annotated[Optional[str], typer.Option(
        help="patient (default): keep each patient's images on one side; data with no patient id is refused unless "
             "its file names follow a known public scheme. image: each image is its own patient; say so only when "
             "every image is a different patient (every report then warns).", rich_help_panel=_DATA_PANEL)],
    "label_map": Annotated[Optional[str], typer.Option(
        help="Rename, merge or drop labels: covid=pneumonia,other_pneumonia=pneumonia,unknown=drop (multi-label: "
             "findings; a merged finding is 1 if any source is, else masked if any is; drop removes the finding, "
             "not the rows).",
        rich_help_panel=_DATA_PANEL)],
    "labels_from": Annotated[Optional[str], typer.Option(
        help="Multi-label: CSV column listing each image's findings, e.g. finding_labels (see --label-sep, --no-finding).",
        rich_help_panel=_DATA_PANEL)],
    "label_sep": Annotated[Optional[str], typer.Option(
        help="Multi-label: separator of the findings in --labels-from (default: |).", rich_help_panel=_DATA_PANEL)],
    "no_finding": Annotated[Optional[str], typer.Option(
        help="Multi-label: the --labels-from value meaning no finding at all (default: 'No Finding').",
        rich_help_panel=_DATA_PANEL)],
    "label_columns": Annotated[Optional[str], typer.Option(
        help="Multi-label: one CSV column per finding holding 1/0/-1/blank, e.g. Atelectasis,Cardiomegaly.",
        rich_help_panel=_DATA_PANEL)],
    "uncertain": Annotated[Optional[str], typer.Option(
        help="Multi-label: uncertain (-1) and blank labels: ignore (masked out) | ones | zeros.", rich_help_panel=_DATA_PANEL)],
    "task": Annotated[Optional[str], typer.Option(
        help="auto | single_label | multi_label (auto: multi_label when --labels-from or --label-columns is given).",
        rich_help_panel=_DATA_PANEL)],
    "positive": Annotated[Optional[str], typer.Option(
        help="Two classes: the positive one, e.g. covid (decided by P(positive) >= threshold; sensitivity is measured "
             "on it). Default: the second of the sorted class names.", rich_help_panel=_DATA_PANEL)],
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
