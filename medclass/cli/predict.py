"""``medclass predict CKPT PATH...``: class probabilities for files, folders, CSV manifests and DICOM.

Files are found one at a time and the rows are written part by part (``--out`` .csv, .jsonl, .json or .parquet:
:mod:`medclass.serving.prediction_file`), so a million files keep memory flat; ``--resume`` skips the rows a
killed run wrote; ``--cluster`` predicts the parts on a Dask cluster (:mod:`medclass.data.cluster`).
"""
from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Optional

import pandas as pd
import typer
from rich.markup import escape
from rich.table import Table

from ._common import CLUSTER_HELP, DataFlags, console, data_options, friendly_errors, show_progress

_SHOW = 20  # rows printed when no --out is given; out-of-distribution files named


@data_options
def predict_command(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint (.safetensors) or run folder.")],
    paths: Annotated[list[Path], typer.Argument(help="Images, DICOM files, folders or CSV manifests (path column: --path-column, else path/file/filename/image).")],
    out: Annotated[Optional[Path], typer.Option("--out", "--output", help=(
        "Write all rows to .csv or .jsonl (appended as they come), .json, or .parquet (needs pyarrow: "
        "pip install \"medclass[parquet]\").")) ] = None,
    resume: Annotated[bool, typer.Option(
        help="Keep the rows already in --out (left by a killed run); predict the rest.")] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 32,
    onnx: Annotated[Optional[Path], typer.Option(help="Run this exported ONNX file instead of PyTorch.")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1...")] = "cpu",
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
    cluster: Annotated[str, typer.Option(help=CLUSTER_HELP)] = "",
    *, data_flags: DataFlags,
) -> None:
    """Predict every image; unreadable files get a row with the reason and the run goes on.

    A CSV manifest is read with the data flags (image root, columns, --where, --label-map) as in
    training; its other columns (sex, age, view...) are kept in the output.
    """
    from ..config import RunConfig
    from ..serving.prediction_file import PredictionFile
    from ..serving.predictor import Predictor

    with friendly_errors():
        if resume and out is None:
            raise typer.BadParameter("--resume needs --out, the file a killed run was writing.")
        if out is not None and any(out.resolve() == Path(p).resolve() for p in paths):
            raise typer.BadParameter(f"--out {out} is also an input; write the predictions to another file.")
        predictor = Predictor.from_checkpoint(checkpoint, device=device, onnx=onnx)
        manifest = data_flags.apply(RunConfig()).data
        tally = Tally()
        target = PredictionFile(out, resume, seen=tally.add) if out is not None else None
        if target is not None and target.resumed:
            console.print(f"Resuming {out}: {target.resumed} row(s) already written.")
        with _cluster(cluster) as client:
            for part in predictor.iter_predict_files(paths, batch_size=batch_size, progress=show_progress(quiet),
                                                     manifest=manifest, skip=target.done if target else None,
                                                     cluster=client):
                if target is not None:
                    target.write(part)
                tally.add(part, keep_head=out is None)
        if target is not None:
            target.close()
        tally.print(out, predictor.ood is not None)


@contextlib.contextmanager
def _cluster(spec: str):
    if not spec:
        yield None
        return
    from ..data.cluster import open_cluster

    with open_cluster(spec) as client:
        console.print(f"Predicting on the cluster {escape(spec)} ({len(client.nthreads())} worker(s)).")
        yield client


@dataclass
class Tally:
    """What the summary says, counted part by part (never the whole table in memory)."""

    rows: int = 0
    failed: int = 0
    counts: Counter = field(default_factory=Counter)
    ood: int = 0
    ood_paths: list[str] = field(default_factory=list)
    head: list[pd.DataFrame] = field(default_factory=list)

    def add(self, part: pd.DataFrame, keep_head: bool = False) -> None:
        """Count one part (also the rows a resumed run kept); ``keep_head``: keep its first rows for the table."""
        failed = part["error"].fillna("").astype(str) != ""
        self.rows += len(part)
        self.failed += int(failed.sum())
        self.counts.update(part.loc[~failed, "predicted"].value_counts().to_dict())
        flagged = part["ood"].astype("boolean").fillna(False).to_numpy(bool)
        self.ood += int(flagged.sum())
        self.ood_paths += part.loc[flagged, "path"].head(_SHOW - len(self.ood_paths)).tolist()
        shown = sum(len(h) for h in self.head)
        if keep_head and shown < _SHOW:
            self.head.append(part.head(_SHOW - shown))

    def print(self, out: Path | None, has_ood_stats: bool) -> None:
        """The table of the first rows (without --out), the counts, and the out-of-distribution warning."""
        if out is None and self.head:
            _print_table(pd.concat(self.head, ignore_index=True), self.rows)
        summary = ", ".join(f"{k}: {v}" for k, v in self.counts.items()) or "none"
        console.print(f"[bold]{self.rows - self.failed} predicted[/] ({summary}); [bold]{self.failed} unreadable[/]"
                      + (f"; written to {out}" if out else ""))
        if not has_ood_stats:
            console.print("[dim]This checkpoint has no OOD statistics (trained before they existed): inputs unlike the "
                          "training data are not flagged.[/]")
        elif self.ood:
            names = ", ".join(escape(Path(p).name) for p in self.ood_paths)
            more = f" and {self.ood - len(self.ood_paths)} more" if self.ood > len(self.ood_paths) else ""
            console.print(f"[bold yellow]Warning: {self.ood} image(s) look unlike the training data "
                          f"(out-of-distribution; their predictions are unreliable): {names}{more}[/]")


def _print_table(df: pd.DataFrame, total: int) -> None:
    table = Table(title=f"Predictions (first {len(df)} of {total} rows; --out FILE for all)")
    table.add_column("file", min_width=16, overflow="fold")  # never folded into 13-character slivers
    for col in (*[c for c in df.columns if c.startswith("prob_")], "predicted"):
        table.add_column(col, no_wrap=True)
    table.add_column("error", overflow="fold")
    for row in df.to_dict("records"):
        frame = f" [{row['frame']}]" if row["frame"] >= 0 else ""
        probs = [f"{row[c]:.3f}" if row[c] == row[c] else "-" for c in df.columns if c.startswith("prob_")]
        table.add_row(escape(Path(row["path"]).name + frame), *probs, row["predicted"], escape(row["error"]))
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add `predict`."""
    app.command("predict")(predict_command)
