"""Figures of an evaluation, drawn from results computed elsewhere (never a metric computed here).

Every function takes arrays or dicts that :mod:`medclass.evaluation.evaluate` already computed and
returns a matplotlib :class:`~matplotlib.figure.Figure` built without pyplot (no global state, no
GUI backend: safe in threads, servers and CI). :func:`figure_png` turns a figure into PNG bytes.

Example:
    >>> fig = confusion_matrix_figure([[50, 3], [7, 40]], ["normal", "pneumonia"])
    >>> figure_png(fig)[:8]
    b'\\x89PNG\\r\\n\\x1a\\n'
"""
from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..utils import epoch_number

WRONG_COLOR = "#c62828"  # frame and caption of a wrong prediction
RIGHT_COLOR = "#2e7d32"  # frame and caption of a correct prediction


@dataclass
class GridItem:
    """One tile of an image grid: the picture, a caption and whether the prediction was right."""

    image: np.ndarray  # HxW, HxWx1 or HxWx3; float in [0, 1] or uint8
    caption: str  # shown above the image (may hold newlines)
    correct: bool | None = None  # green/red frame; None = no frame


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """PNG bytes of ``fig``.

    >>> figure_png(Figure(figsize=(1, 1)))[:4]
    b'\\x89PNG'
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def confusion_matrix_figure(cm: Sequence[Sequence[float]], classes: Sequence[str],
                            title: str = "Confusion matrix") -> Figure:
    """Counts with the share of each true class (row) in every cell; rows = true, columns = predicted.

    >>> confusion_matrix_figure([[5, 1], [2, 8]], ["a", "b"]).axes[0].get_ylabel()
    'true class'
    """
    C = np.asarray(cm, dtype=float)
    rows = C.sum(1, keepdims=True)
    share = np.divide(C, rows, out=np.zeros_like(C), where=rows > 0)
    k = len(classes)
    side = max(3.5, 1.0 + 0.9 * k)
    fig = Figure(figsize=(side + 1.0, side))
    ax = fig.add_subplot()
    im = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{int(C[i, j])}\n{share[i, j]:.0%}", ha="center", va="center",
                    color="white" if share[i, j] > 0.6 else "black", fontsize=10)
    ax.set_xticks(range(k), classes, rotation=30, ha="right")
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    return fig


def cooccurrence_figure(counts: Sequence[Sequence[float]], findings: Sequence[str],
                        title: str = "Co-occurrence of findings") -> Figure:
    """Images positive for both findings (diagonal: positives of each finding), from a ``(K, K)`` count matrix.

    >>> cooccurrence_figure([[5, 2], [2, 4]], ["a", "b"]).axes[0].get_title()
    'Co-occurrence of findings'
    """
    C = np.asarray(counts, dtype=float)
    k = len(findings)
    side = max(3.5, 1.0 + 0.55 * k)
    fig = Figure(figsize=(side + 1.0, side))
    ax = fig.add_subplot()
    im = ax.imshow(C, cmap="Purples")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="images")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{int(C[i, j])}", ha="center", va="center", fontsize=8,
                    color="white" if C[i, j] > 0.6 * max(C.max(), 1) else "black")
    ax.set_xticks(range(k), findings, rotation=45, ha="right")
    ax.set_yticks(range(k), findings)
    ax.set_title(title)
    return fig


def _curve_figure(curves: Mapping[str, Mapping], points: Sequence[Mapping], x: str, y: str,
                  xlabel: str, ylabel: str, title: str, score: str, chance: Mapping[str, float] | None) -> Figure:
    fig = Figure(figsize=(5.2, 4.6))
    ax = fig.add_subplot()
    for i, (name, c) in enumerate(curves.items()):
        color = f"C{i}"
        label = f"{name} ({score} {c[score]:.3f})" if c.get(score) is not None and math.isfinite(c[score]) else name
        ax.plot(c[x], c[y], color=color, lw=1.8, label=label, drawstyle="steps-post" if x == "recall" else "default")
        if chance and name in chance:
            ax.axhline(chance[name], color=color, ls=":", lw=1,
                       label=f"chance: prevalence of {name} ({chance[name]:.3f})")
    if not chance:
        ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="chance")
    for p in points:
        ax.plot(p[x], p[y], "o", ms=9, mfc="none", mec="black", mew=2)
        ax.annotate(p["label"], (p[x], p[y]), textcoords="offset points", xytext=(8, -14), fontsize=8)
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.02), xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right" if x == "fpr" else "lower left", fontsize=8)
    return fig


def roc_figure(curves: Mapping[str, Mapping], operating_points: Sequence[Mapping] = (),
               title: str = "ROC curve") -> Figure:
    """ROC curves ``{name: {"fpr", "tpr", "auc"}}`` with operating points ``[{"fpr", "tpr", "label"}]`` circled.

    >>> roc_figure({"pneumonia": {"fpr": [0, 0.2, 1], "tpr": [0, 0.9, 1], "auc": 0.85}}).axes[0].get_xlabel()
    '1 - specificity (false positive rate)'
    """
    return _curve_figure(curves, operating_points, "fpr", "tpr", "1 - specificity (false positive rate)",
                         "sensitivity (true positive rate)", title, "auc", None)


def pr_figure(curves: Mapping[str, Mapping], operating_points: Sequence[Mapping] = (),
              prevalence: Mapping[str, float] | None = None, title: str = "Precision-recall curve") -> Figure:
    """PR curves ``{name: {"recall", "precision", "ap"}}``; dotted lines at each class's prevalence (chance).

    >>> ax = pr_figure({"p": {"recall": [0, 1], "precision": [1, 0.5], "ap": 0.7}}, prevalence={"p": 0.5}).axes[0]
    >>> ax.get_ylabel(), [t.get_text() for t in ax.get_legend().get_texts()]
    ('precision (PPV)', ['p (ap 0.700)', 'chance: prevalence of p (0.500)'])
    """
    return _curve_figure(curves, operating_points, "recall", "precision", "recall (sensitivity)",
                         "precision (PPV)", title, "ap", prevalence or {})


def reliability_figure(curve: Mapping, title: str = "Calibration (reliability) curve") -> Figure:
    """Observed rate vs mean confidence per bin (from ``reliability_curve``), with the image count per bin below.

    >>> c = {"bin_centers": [0.25, 0.75], "accuracy": [0.1, 0.9], "confidence": [0.2, 0.8], "counts": [5, 5],
    ...      "ece": 0.1, "kind": "positive", "bin_edges": [0, 0.5, 1]}
    >>> len(reliability_figure(c).axes)
    2
    """
    fig = Figure(figsize=(5.2, 5.4))
    ax, hist = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    conf = np.asarray(curve["confidence"], dtype=float)
    acc = np.asarray(curve["accuracy"], dtype=float)
    ok = ~np.isnan(conf) & ~np.isnan(acc)
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="perfect calibration")
    ax.plot(conf[ok], acc[ok], "o-", color="C0", label=f"model (ECE {curve['ece']:.3f})")
    positive = curve.get("kind") == "positive"
    ax.set(ylabel="observed share of positives" if positive else "observed accuracy", ylim=(-0.02, 1.02), title=title)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    edges = np.asarray(curve["bin_edges"], dtype=float)
    hist.bar(edges[:-1], curve["counts"], width=np.diff(edges), align="edge", color="C0", alpha=0.6, edgecolor="white")
    hist.set(xlabel="predicted probability of the positive class" if positive else "confidence (top probability)",
             ylabel="images", xlim=(0, 1))
    return fig


def training_curves_figure(history: Mapping[str, Sequence[float]], best_epoch: int | None = None) -> Figure:
    """Loss (left) and accuracy / AUC (right), train vs validation, per epoch (columns of ``metrics.csv``).

    >>> h = {"epoch": [0, 1], "train_loss": [0.7, 0.5], "val_loss": [0.6, 0.55], "val_auc": [0.8, 0.9]}
    >>> [a.get_title() for a in training_curves_figure(h).axes]
    ['Loss', 'Accuracy and AUC']
    """
    epochs = np.array([epoch_number(e) for e in history["epoch"]], dtype=float)
    fig = Figure(figsize=(10, 3.8))
    ax_loss, ax_score = fig.subplots(1, 2)
    panels = ((ax_loss, "Loss", ("loss",)), (ax_score, "Accuracy and AUC", ("acc", "auc")))
    for ax, title, metrics in panels:
        for i, metric in enumerate(metrics):
            for stage, style in (("train", "-"), ("val", "--")):
                key = f"{stage}_{metric}"
                values = np.asarray(history.get(key, []), dtype=float)
                if len(values) and not np.isnan(values).all():
                    ax.plot(epochs, values, style, marker="o", ms=3, color=f"C{i}", label=f"{stage} {metric}")
        if best_epoch is not None and best_epoch >= 0:
            ax.axvline(epoch_number(best_epoch), color="grey", ls=":", lw=1, label="best checkpoint")
        ax.set(title=title, xlabel="epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return fig


def runs_curves_figure(histories: Mapping[str, Mapping[str, Sequence[float]]],
                       panels: Sequence[tuple[str, str]]) -> Figure:
    """Several runs' training (dashed) and validation (solid) curves: one panel per ``(metric, title)``, one colour per run.

    >>> h = {"a": {"epoch": [0, 1], "train_loss": [0.7, 0.5], "val_loss": [0.6, 0.55]}}
    >>> [ax.get_title() for ax in runs_curves_figure(h, [("loss", "loss")]).axes]
    ['loss']
    """
    fig = Figure(figsize=(5.5 * len(panels), 4), layout="constrained")
    for ax, (metric, title) in zip(np.atleast_1d(fig.subplots(1, len(panels))), panels):
        for i, (name, history) in enumerate(histories.items()):
            for stage, style in (("train", "--"), ("val", "-")):
                values = np.asarray(history.get(f"{stage}_{metric}", []), dtype=float)
                if len(values) and not np.isnan(values).all():
                    ax.plot(np.asarray(history["epoch"], dtype=float), values, style, color=f"C{i % 10}", marker="o",
                            ms=3, label=f"{name} {stage}")
        ax.set(title=title, xlabel="epoch", ylabel=metric)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return fig


def bars_figure(names: Sequence[str], panels: Mapping[str, Sequence[float]]) -> Figure:
    """One bar chart per ``{title: value per name}`` (e.g. training time and peak memory per run); NaN as 0.

    >>> [ax.get_title() for ax in bars_figure(["a", "b"], {"time (s)": [3.0, float("nan")]}).axes]
    ['time (s)']
    """
    fig = Figure(figsize=(4.5 * len(panels), 4), layout="constrained")
    for ax, (title, values) in zip(np.atleast_1d(fig.subplots(1, len(panels))), panels.items()):
        values = np.nan_to_num(np.asarray(values, dtype=float))
        ax.bar(list(names), values, color=[f"C{i % 10}" for i in range(len(names))])
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=30, labelsize=8)
        for x, v in enumerate(values):
            ax.annotate(f"{v:.0f}", (x, v), ha="center", va="bottom", fontsize=8)
    return fig


def _as_display(image: np.ndarray) -> tuple[np.ndarray, str | None]:
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    return a, ("gray" if a.ndim == 2 else None)


def image_grid_figure(items: Sequence[GridItem], ncols: int = 6, title: str = "", tile: float = 2.0) -> Figure:
    """Images in a grid with captions; correct predictions framed green, wrong ones red.

    >>> fig = image_grid_figure([GridItem(np.zeros((8, 8)), "true a\\npred b", False)], ncols=4)
    >>> len(fig.axes)
    1
    """
    n = max(len(items), 1)
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    lines = max((item.caption.count("\n") + 1 for item in items), default=1)
    fig = Figure(figsize=(tile * ncols, (tile + 0.17 * lines) * nrows + (0.4 if title else 0)), layout="constrained")
    for i, item in enumerate(items):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        image, cmap = _as_display(item.image)
        ax.imshow(image, cmap=cmap, vmin=0, vmax=1 if image.dtype.kind == "f" else 255)
        ax.set_xticks([])
        ax.set_yticks([])
        color = None if item.correct is None else (RIGHT_COLOR if item.correct else WRONG_COLOR)
        ax.set_title(item.caption, fontsize=8, color=color or "black")
        for spine in ax.spines.values():
            spine.set_visible(color is not None)
            if color:
                spine.set_color(color)
                spine.set_linewidth(3)
    if title:
        fig.suptitle(title)
    return fig


__all__ = ["GridItem", "confusion_matrix_figure", "cooccurrence_figure", "figure_png", "image_grid_figure", "pr_figure",
           "reliability_figure", "roc_figure", "training_curves_figure"]
