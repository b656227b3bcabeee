"""``medclass explain``: predicted class and a CAM overlay PNG for each image."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from ..config import CamMethod, choices
from ._common import console, friendly_errors


def explain_command(
    run: Annotated[Path, typer.Argument(help="Run folder or checkpoint (.safetensors).")],
    images: Annotated[list[Path], typer.Argument(help="Image, DICOM or npz files to explain; for a CT/MRI volume model "
                                                     "NIfTI files or DICOM series folders.")],
    out: Annotated[Path, typer.Option(help="Folder for the overlay PNGs.")] = Path("explanations"),
    method: Annotated[Optional[str], typer.Option(help=f"{' | '.join(choices(CamMethod))} (default: the run's).")] = None,
    target_class: Annotated[Optional[str], typer.Option(help="Class to explain (default: the predicted class).")] = None,
    layer: Annotated[Optional[str], typer.Option(help="Target layer name (default: the run's or found automatically).")] = None,
) -> None:
    """Predict each image and write a CAM overlay showing what drove the prediction."""
    from ..evaluation.explain_images import explain_images

    with friendly_errors():
        rows = explain_images(run, [str(p) for p in images], out, method=method, target_class=target_class, layer=layer)
    table = Table(title="Predictions and explanations",
                  caption=f"overlays written to {escape(str(out))}/ (volumes: orthogonal views through the CAM peak, and "
                          "<name>_montage.png with axial slices). predicted: the checkpoint's decision rule (for two "
                          "classes its stored threshold, chosen on validation), so p(predicted) can be below 0.5")
    table.add_column("image", min_width=16, overflow="fold")  # file names only: full paths folded into slivers
    for col in ("predicted", "p(predicted)", "explained class"):
        table.add_column(col, no_wrap=True)
    table.add_column("overlay", min_width=16, overflow="fold")
    for r in rows:
        name = escape(Path(r["path"]).name)
        if "error" in r:
            table.add_row(name, f"[red]unreadable: {escape(r['error'])}[/]", "", "", "")
        else:
            table.add_row(name, r["predicted"], f"{r['probability']:.3f}", r["explained_class"],
                          escape(Path(r["overlay"]).name))
    console.print(table)
    if any("error" in r for r in rows):
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    """Add `explain`."""
    app.command("explain")(explain_command)
