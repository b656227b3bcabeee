"""``medclass export CKPT --format onnx``: a deployable file with the preprocessing and classes inside."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import console, friendly_errors


def export_command(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint (.safetensors) or run folder.")],
    format: Annotated[str, typer.Option("--format", "-f", help="onnx or torchscript.")] = "onnx",
    out: Annotated[Optional[Path], typer.Option(help="Output file (default: next to the checkpoint).")] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset version.")] = 17,
) -> None:
    """Export a checkpoint to ONNX (dynamic batch, metadata in metadata_props) or TorchScript."""
    from ..serving.export import export_model

    with friendly_errors():
        path = export_model(checkpoint, format=format, out=out, opset=opset)
    console.print(f"[bold green]exported[/] {format}: {path} ({path.stat().st_size / 2**20:.1f} MiB)")


def register(app: typer.Typer) -> None:
    """Add `export`."""
    app.command("export")(export_command)
