"""The ``medclass`` command: a thin typer layer; each subcommand calls one public function.

Command groups live in their own modules (``medclass/cli/<group>.py``), each exposing
``register(app: typer.Typer) -> None`` that adds its commands or sub-apps.
"""
from __future__ import annotations

import importlib
from typing import Annotated

import typer

from ._common import configure_output

app = typer.Typer(
    name="medclass",
    help="Medical image classification: data checks, leak-free splits, training, evaluation, explanations, serving.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

# Each module registers its commands; listed here so the order of `medclass --help` is stable.
_GROUPS = ["data", "datasets", "models", "train", "tools", "evaluate", "explain", "predict", "export", "serve", "experiments"]


def _register_all() -> None:
    for name in _GROUPS:
        try:
            module = importlib.import_module(f"medclass.cli.{name}")
        except ModuleNotFoundError as e:  # a group not written yet, never a missing dependency of one
            if e.name == f"medclass.cli.{name}":
                continue
            raise
        module.register(app)


@app.callback()
def _global_options(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also print INFO log lines (a run's train.log always has them).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors (no progress bar, no results).")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of expected errors too.")] = False,
) -> None:
    """Medical image classification: data checks, leak-free splits, training, evaluation, explanations, serving."""
    configure_output(verbose=verbose, quiet=quiet, debug=debug)


def main() -> None:
    """Entry point of the ``medclass`` console script."""
    configure_output()
    _register_all()
    app()
