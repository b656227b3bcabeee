"""Plots and the self-contained HTML page of a run comparison (numbers come computed; nothing is recomputed)."""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..utils import atomic_write_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .compare import Comparison


def _figure(ncols: int, width: float = 5.5) -> tuple["Figure", np.ndarray]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, 4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, ncols))
    return fig, axes


def curves_figure(histories: dict[str, pd.DataFrame], metric: str, title: str, ax=None) -> "Figure | None":
    """Train (dashed) and validation (solid) ``metric`` per epoch, one colour per run."""
    fig = None
    if ax is None:
        fig, axes = _figure(1)
        ax = axes[0]
    for i, (name, h) in enumerate(histories.items()):
        color = f"C{i % 10}"
        for stage, style in (("train", "--"), ("val", "-")):
            col = f"{stage}_{metric}"
            if col in h.columns and h[col].notna().any():
                ax.plot(h["epoch"], h[col], style, color=color, marker="o", ms=3, label=f"{name} {stage}")
    ax.set(title=title, xlabel="epoch", ylabel=metric)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return fig


def bars_figure(table: pd.DataFrame) -> "Figure":
    """Bar charts of training time and peak memory (RSS, and GPU where recorded) per run."""
    panels = [("train_time_s", "training time (s)"), ("peak_rss_mb", "peak RSS (MiB)")]
    if table["gpu_max_mb"].notna().any():
        panels.append(("gpu_max_mb", "peak GPU memory (MiB)"))
    fig, axes = _figure(len(panels), width=4.5)
    for ax, (col, title) in zip(axes, panels):
        values = table[col].astype(float).fillna(0.0)
        ax.bar(table["name"], values, color=[f"C{i % 10}" for i in range(len(table))])
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=30, labelsize=8)
        for x, v in enumerate(values):
            ax.annotate(f"{v:.0f}", (x, v), ha="center", va="bottom", fontsize=8)
    return fig


def _save(fig: "Figure", path: Path) -> Path:
    fig.savefig(path, dpi=110)
    return path


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def write_report(cmp: "Comparison") -> dict[str, Path]:
    """Write ``loss.png``, ``accuracy_auc.png``, ``cost.png`` and ``comparison.html`` into ``cmp.out_dir``."""
    out = cmp.out_dir
    files = {"loss_png": _save(curves_figure(cmp.histories, "loss", "loss"), out / "loss.png")}
    fig, axes = _figure(2)
    curves_figure(cmp.histories, "acc", "accuracy", ax=axes[0])
    curves_figure(cmp.histories, "auc", "AUC", ax=axes[1])
    files["accuracy_auc_png"] = _save(fig, out / "accuracy_auc.png")
    files["cost_png"] = _save(bars_figure(cmp.table), out / "cost.png")
    sentences = "".join(f"<li>{html.escape(s)}</li>" for s in cmp.sentences) or \
        "<li>No pair of runs was tested on the same images (run <code>medclass evaluate</code> on the same test set).</li>"
    pairs = cmp.pairs.drop(columns=["sentence", "bootstrap_sentence"], errors="ignore")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Run comparison</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px}} img{{max-width:100%}}</style></head><body>
<h1>Run comparison</h1>
<h2>Runs</h2>{cmp.table.to_html(index=False, na_rep="-", float_format=lambda v: f"{v:.4g}")}
<h2>Paired tests of the test AUC</h2><ul>{sentences}</ul>
{pairs.to_html(index=False, float_format=lambda v: f"{v:.4g}") if len(pairs) else ""}
<h2>Learning curves</h2><p>Dashed: training; solid: validation.</p>
{_img(files["loss_png"])}{_img(files["accuracy_auc_png"])}
<h2>Cost</h2>{_img(files["cost_png"])}
</body></html>"""
    atomic_write_text(out / "comparison.html", page)
    files["html"] = out / "comparison.html"
    return files
