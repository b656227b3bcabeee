"""Helpers shared by CLI modules: console, error reporting."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer
from rich.console import Console

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
