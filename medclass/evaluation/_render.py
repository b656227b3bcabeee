"""HTML helpers shared by the report's header parts and the evaluation sections (no computation here)."""
from __future__ import annotations

from ..metrics.html import Raw, esc, fmt, img

METRIC_LABELS = {
    "accuracy": "Accuracy", "balanced_accuracy": "Balanced accuracy", "roc_auc": "ROC AUC", "pr_auc": "PR AUC (average precision)",
    "sensitivity": "Sensitivity (recall)", "specificity": "Specificity", "ppv": "PPV (precision)", "npv": "NPV",
    "f1": "F1", "macro_precision": "Macro precision", "macro_recall": "Macro recall", "macro_f1": "Macro F1",
    "brier": "Brier score (lower is better)", "ece": "ECE (lower is better)",
    "macro_auc": "Macro AUC", "micro_auc": "Micro AUC",
}


def figures_html(figs: dict[str, bytes], names: list[str], note: str = "") -> str:
    """The named PNGs side by side (``Not available.`` when none was drawn), with a muted note above."""
    shown = [img(figs[n], n.replace("_", " ")) for n in names if n in figs]
    return (f"<p class='muted'>{esc(note)}</p>" if note else "") + ('<div class="figs">' + "".join(shown) + "</div>"
                                                                    if shown else "<p>Not available.</p>")


def ci_cell(c: dict | None) -> Raw:
    """``value (low–high)`` of a ``{"value", "low", "high"}`` dict; ``n/e`` with the reason when not estimable."""
    if not c:
        return Raw("–")
    if c.get("not_estimable"):
        return Raw(f"{fmt(c.get('value'))} <span class='muted' title='{esc(c['not_estimable'])}'>(CI n/e: "
                   f"{esc(c['not_estimable'])})</span>")
    if c.get("low") is None:
        return Raw(fmt(c.get("value")))
    return Raw(f"{fmt(c['value'])} <span class='muted'>({fmt(c['low'])}–{fmt(c['high'])})</span>")


def ci_text(c: dict | None) -> str:
    """Plain ``value (low–high)`` for the console; ``value (CI n/e)`` when not estimable (too few patients).

    >>> ci_text({"value": 0.9, "low": 0.8, "high": 0.95}), ci_text({"value": 0.9, "low": None, "not_estimable": "1"})
    ('0.900 (0.800–0.950)', '0.900 (CI n/e)')
    """
    if not c:
        return "–"
    value = c.get("value")
    text = "–" if value is None or value != value else f"{value:.3f}"
    if c.get("not_estimable"):
        return f"{text} (CI n/e)"
    if c.get("low") is None or c["low"] != c["low"]:
        return text
    return f"{text} ({c['low']:.3f}–{c['high']:.3f})"


__all__ = ["METRIC_LABELS", "ci_cell", "ci_text", "figures_html"]
