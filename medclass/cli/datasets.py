"""``medclass datasets [PATTERN]``: the data sets known by name (use them as ``--data NAME``)."""
from __future__ import annotations

import fnmatch
from typing import Annotated

import typer
from rich.table import Table

from ..data.catalog import NamedDataset, list_datasets
from ..data.download import ENV_VAR, cache_dir
from ..errors import DatasetError, did_you_mean
from ._common import console, friendly_errors


def datasets_table(found: list[NamedDataset]) -> Table:
    """A rich table of ``found``: name, images, size, licence, checksum and whether it is here already."""
    table = Table(title=f"Data sets by name ({len(found)}): use --data NAME")
    for column in ("name", "images", "size", "licence", "checksum", "task", "where"):
        table.add_column(column, justify="right" if column == "images" else "left", no_wrap=column == "name")
    for d in found:
        where = "in the package" if d.embedded else "cached" if (cache_dir() / d.name / d.file).is_file() \
            else "downloaded on first use"
        checksum = "- (shipped)" if d.embedded else d.known_hash.split(":")[0].upper() if d.known_hash else "none published"
        table.add_row(d.name, f"{d.images:,}", d.size, d.licence, checksum,
                      f"multi-label ({len(d.class_names)})" if d.multi_label else "single-label", where)
    return table


def register(app: typer.Typer) -> None:
    """Add the ``datasets`` command to ``app``."""

    @app.command("datasets")
    def datasets(pattern: Annotated[str, typer.Argument(help="Shell-style name pattern, e.g. 'pneumonia*'.")] = "*",
                 ) -> None:
        """List the data sets known by name, with size, licence and citation; `--data NAME` uses one anywhere."""
        with friendly_errors():
            everything = list_datasets()
            found = [d for d in everything if fnmatch.fnmatch(d.name, pattern)]
            if not found:
                raise DatasetError(f"No data set matches {pattern!r}; `medclass datasets` lists them all."
                                   + did_you_mean(pattern, [d.name for d in everything]))
            console.print(datasets_table(found))
            for citation in dict.fromkeys(d.citation for d in found):
                names = [d.name for d in found if d.citation == citation]
                shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
                console.print(f"[bold]{shown}[/]: {citation}")
            for d in found:
                if d.note:
                    console.print(f"[bold]{d.name}[/]: {d.note}.")
            console.print(f"Downloads go to {cache_dir()} (set {ENV_VAR} to change it).")
