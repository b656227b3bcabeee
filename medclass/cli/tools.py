"""``medclass lr-find``: the learning-rate range test for a run's config."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import console, friendly_errors


def lr_find_command(
    config: Annotated[Optional[Path], typer.Argument(help="YAML config (any subset of fields; see `medclass config`).")] = None,
    data: Annotated[Optional[str], typer.Option(help="Data: class folders, CSV manifest, .npz, DICOM folder or a `medclass datasets` name.")] = None,
    model: Annotated[Optional[str], typer.Option(help="Registered model name (see `medclass models`).")] = None,
    image_size: Annotated[Optional[int], typer.Option(help="Square input size in pixels.")] = None,
    min_lr: Annotated[float, typer.Option(help="Smallest learning rate tried.")] = 1e-6,
    max_lr: Annotated[float, typer.Option(help="Largest learning rate tried.")] = 1.0,
    num_steps: Annotated[int, typer.Option(help="Training batches of the search (stops early if the loss diverges).")] = 100,
    out: Annotated[Optional[Path], typer.Option(help="Folder for lr_find.csv/.png and the prepared data "
                                                     "(default: <workspace>/<project>/lr_find/<model>-<time>).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override any field: section.field=value (repeatable).")] = None,
) -> None:
    """Find a learning rate: train briefly with a growing LR and suggest the one where the loss falls fastest."""
    from ..config import RunConfig, apply_overrides, load_config

    with friendly_errors():
        cfg = load_config(config) if config else RunConfig()
        flags = {"data.path": data, "model.name": model, "model.image_size": image_size}
        cfg = apply_overrides(cfg, [f"{k}={v}" for k, v in flags.items() if v is not None] + list(set_ or [])).validate()
        from ..training import lr_find  # after the config check: torch and Lightning take seconds to import

        result = lr_find.find_lr(cfg, min_lr=min_lr, max_lr=max_lr, num_steps=num_steps, out=out)
    console.print(f"[bold]suggested learning rate:[/] {result.suggestion:.2e} "
                  f"(searched {len(result.lrs)} steps from {min_lr:.0e} to {max_lr:.0e})")
    console.print(f"[bold]plot:[/] {result.plot_path}")


def register(app: typer.Typer) -> None:
    """Add the ``lr-find`` command to ``app``."""
    app.command("lr-find")(lr_find_command)
