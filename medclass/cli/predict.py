"""``medclass predict CKPT PATH...``: class probabilities for files, folders, CSV manifests and DICOM."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import pandas as pd
import typer
from rich.markup import escape
from rich.table import Table

from ._common import DataFlags, console, data_options, friendly_errors, show_progress

_SHOW = 20  # rows printed when no --out is given


@data_options
def predict_command(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint (.safetensors) or run folder.")],
    paths: Annotated[list[Path], typer.Argument(help="Images, DICOM files, folders or CSV manifests (path column: --path-column, else path/file/filename/image).")],
    out: Annotated[Optional[Path], typer.Option(
        help="Write all rows to a .csv (written as it goes) or .json file.")] = None,
    resume: Annotated[bool, typer.Option(
        help="Keep the rows already in --out (a .csv of a killed run); predict the rest.")] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 32,
    onnx: Annotated[Optional[Path], typer.Option(help="Run this exported ONNX file instead of PyTorch.")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1...")] = "cpu",
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
    *, data_flags: DataFlags,
) -> None:
    """Predict every image; unreadable files get a row with the reason and the run goes on.

    A CSV manifest is read with the data flags (image root, columns, --where, --label-map) as in
    training; its other columns (sex, age, view...) are kept in the output.
    """
    from ..serving.predictor import Predictor
    from ..utils import atomic_write_text

    with friendly_errors():
        if out is not None and out.suffix.lower() not in (".csv", ".json"):
            raise typer.BadParameter(f"--out {out} must end in .csv or .json.")
        predictor = Predictor.from_checkpoint(checkpoint, device=device, onnx=onnx)
        from ..config import RunConfig

        manifest = data_flags.apply(RunConfig()).data
        if out is not None and out.suffix.lower() == ".csv":
            df = _stream_csv(predictor, paths, out, resume, batch_size=batch_size, progress=show_progress(quiet),
                             manifest=manifest)
        else:
            df = predictor.predict_files(paths, batch_size=batch_size, progress=show_progress(quiet), manifest=manifest)
            if out is not None:
                atomic_write_text(out, df.to_json(orient="records", indent=2))
        _print_summary(df, out)
        _print_ood(df, predictor.ood is not None)


def _stream_csv(predictor, paths: list[Path], out: Path, resume: bool, **options) -> pd.DataFrame:
    """Append each part of ``iter_predict_files`` to ``out`` as it comes (flushed to disk); with ``resume``,
    first keep the complete rows a killed run left there and skip them. Returns the columns the summary
    needs (path, frame, predicted, ood, error) of every row of ``out``, read back column by column."""
    done: set[tuple[str, int]] = set()
    if resume and out.is_file() and out.stat().st_size:
        with open(out, "rb+") as f:  # a kill can leave half a line: cut back to the last complete one
            data = f.read()
            f.truncate(data.rfind(b"\n") + 1)
        previous = pd.read_csv(out, usecols=["path", "frame"], dtype={"path": str})
        done = set(zip(previous["path"], previous["frame"].astype(int)))
        console.print(f"Resuming {out}: {len(done)} row(s) already written.")
    header = not done
    with open(out, "a" if done else "w", newline="", encoding="utf-8") as f:
        for part in predictor.iter_predict_files(paths, skip=done, **options):
            part.to_csv(f, header=header, index=False)
            header = False
            f.flush()
            os.fsync(f.fileno())
    text = {"path": str, "predicted": str, "error": str, "ood": str}
    df = pd.read_csv(out, usecols=["frame", *text], dtype=text, keep_default_na=False)
    return df.assign(ood=df["ood"].map({"True": True, "False": False}))


def _print_summary(df, out: Path | None) -> None:
    failed = df[df["error"] != ""]
    counts = df.loc[df["error"] == "", "predicted"].value_counts().to_dict()
    if out is None:
        table = Table(title=f"Predictions (first {min(_SHOW, len(df))} of {len(df)} rows; --out FILE for all)")
        table.add_column("file", min_width=16, overflow="fold")  # never folded into 13-character slivers
        for col in (*[c for c in df.columns if c.startswith("prob_")], "predicted"):
            table.add_column(col, no_wrap=True)
        table.add_column("error", overflow="fold")
        for row in df.head(_SHOW).to_dict("records"):
            frame = f" [{row['frame']}]" if row["frame"] >= 0 else ""
            probs = [f"{row[c]:.3f}" if row[c] == row[c] else "-" for c in df.columns if c.startswith("prob_")]
            table.add_row(escape(Path(row["path"]).name + frame), *probs, row["predicted"], escape(row["error"]))
        console.print(table)
    summary = ", ".join(f"{k}: {v}" for k, v in counts.items()) or "none"
    console.print(f"[bold]{len(df) - len(failed)} predicted[/] ({summary}); [bold]{len(failed)} unreadable[/]"
                  + (f"; written to {out}" if out else ""))


def _print_ood(df, has_stats: bool) -> None:
    """The out-of-distribution warning line (files whose features look unlike the training images)."""
    if not has_stats:
        console.print("[dim]This checkpoint has no OOD statistics (trained before they existed): inputs unlike the "
                      "training data are not flagged.[/]")
        return
    flagged = df.loc[df["ood"].fillna(False).astype(bool)]
    if len(flagged):
        names = ", ".join(escape(Path(p).name) for p in flagged["path"].head(_SHOW))
        more = f" and {len(flagged) - _SHOW} more" if len(flagged) > _SHOW else ""
        console.print(f"[bold yellow]Warning: {len(flagged)} image(s) look unlike the training data "
                      f"(out-of-distribution; their predictions are unreliable): {names}{more}[/]")


def register(app: typer.Typer) -> None:
    """Add `predict`."""
    app.command("predict")(predict_command)
