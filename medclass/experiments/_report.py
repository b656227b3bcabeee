"""The self-contained ``comparison.html`` of a run comparison and its PNGs (numbers come computed; nothing is recomputed).

Drawn with the same figure and HTML helpers as the evaluation report (:mod:`medclass.metrics.plots`,
:mod:`medclass.metrics.html`), so both reports look and read alike.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..artifacts import CompareDir
from ..metrics.html import esc, img, page, section, table
from ..metrics.plots import bars_figure, figure_png, runs_curves_figure
from ..utils import atomic_write_bytes, atomic_write_text, epoch_number

NO_PAIRS = ("No pair of runs was tested on the same images (run <code>medclass evaluate</code> on the same "
            "test set).")


def _cost_panels(runs: pd.DataFrame) -> dict[str, list[float]]:
    """Training time and peak memory per run (GPU memory only where some run recorded it)."""
    panels = {"training time (s)": runs["train_time_s"].tolist(), "peak RSS (MiB)": runs["peak_rss_mb"].tolist()}
    if runs["gpu_max_mb"].notna().any():
        panels["peak GPU memory (MiB)"] = runs["gpu_max_mb"].tolist()
    return panels


def _epochs_from_one(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs table as people read it: ``best_epoch`` counted from 1 (comparison.csv keeps metrics.csv's index)."""
    if "best_epoch" not in runs:
        return runs
    return runs.assign(best_epoch=[None if pd.isna(e) else epoch_number(e) for e in runs["best_epoch"]])


def _frame_table(frame: pd.DataFrame) -> str:
    return table(list(frame.columns), frame.astype(object).where(frame.notna(), None).itertuples(index=False))


def write_report(out: Path, runs: pd.DataFrame, pairs: pd.DataFrame, sentences: Sequence[str],
                 histories: dict[str, pd.DataFrame], notes: Sequence[str] = ()) -> dict[str, Path]:
    """Write ``loss.png``, ``accuracy_auc.png``, ``cost.png`` and ``comparison.html`` into ``out``."""
    curves = {name: h.to_dict(orient="list") for name, h in histories.items()}
    folder = CompareDir(out)
    figures = {"loss_png": runs_curves_figure(curves, [("loss", "loss")]),
               "accuracy_auc_png": runs_curves_figure(curves, [("acc", "accuracy"), ("auc", "AUC")]),
               "cost_png": bars_figure(runs["name"].tolist(), _cost_panels(runs))}
    files, pngs = {}, {}
    for key, fig in figures.items():
        pngs[key] = figure_png(fig, dpi=110)
        files[key] = getattr(folder, key)
        atomic_write_bytes(files[key], pngs[key])
    tested = "".join(f"<li>{esc(s)}</li>" for s in (*sentences, *notes)) or f"<li>{NO_PAIRS}</li>"
    pairs = pairs.drop(columns=["sentence", "bootstrap_sentence"], errors="ignore")
    sections = [
        ("runs", "Runs", _frame_table(_epochs_from_one(runs))),
        ("paired-tests", "Paired tests of the test AUC", f"<ul>{tested}</ul>" + (_frame_table(pairs) if len(pairs) else "")),
        ("curves", "Learning curves", '<p class="muted">Dashed: training; solid: validation.</p>'
         + img(pngs["loss_png"], "loss") + img(pngs["accuracy_auc_png"], "accuracy and AUC")),
        ("cost", "Cost", img(pngs["cost_png"], "training time and memory")),
    ]
    body = "".join(section(sid, title, html) for sid, title, html in sections)
    files["html"] = folder.html
    atomic_write_text(files["html"], page("Run comparison", f"{len(runs)} runs", [(s[0], s[1]) for s in sections], body))
    return files
