"""``medclass models [PATTERN]``: the registered architectures."""
from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ..errors import ConfigError
from ._common import console, friendly_errors


def models_table(pattern: str = "*") -> Table:
    """A rich table of the registered models matching ``pattern`` (parameters for a binary task)."""
    from ..models import count_parameters, list_models, model_info  # torch and timm: only when listing

    names = list_models(pattern)
    if not names:
        raise ConfigError(f"No registered model matches {pattern!r}; `medclass models` lists them all.")
    table = Table(title=f"Registered models ({len(names)})")
    table.add_column("name", no_wrap=True)
    table.add_column("family")
    table.add_column("params (M)", justify="right")
    table.add_column("size", justify="right")
    table.add_column("pretrained", overflow="fold")
    table.add_column("description")
    for name in names:
        info = model_info(name)
        table.add_row(name, info.family, f"{count_parameters(name) / 1e6:.1f}", str(info.default_image_size),
                      info.pretrained_source or "none", info.description)
    return table


def register(app: typer.Typer) -> None:
    """Add the ``models`` command to ``app``."""

    @app.command("models")
    def models(pattern: Annotated[str, typer.Argument(help="Shell-style name pattern, e.g. 'resnet*'.")] = "*") -> None:
        """List registered architectures: family, parameters, default input size, pretrained source."""
        with friendly_errors():
            console.print(models_table(pattern))
