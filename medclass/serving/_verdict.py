"""What the web app shows of one prediction, decision first: a one-line decision (class, probability,
threshold), probability bars that mark the threshold the decision used, and the out-of-distribution
banner. Pure functions of the probabilities and the checkpoint's decision rule (HTML strings).

A probability is never rounded to a certainty ("0.996", "> 0.999", never "100 %"), and where the
rounded probability would equal the threshold more digits are shown, so the text always says on
which side of the threshold the image fell.
"""
from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..metrics.ood import score_text

OOD_COLOUR, OOD_TEXT = "#b3261e", "#ffffff"
_BAR, _MARK = "#3b6fb6", "#111111"


@dataclass(frozen=True)
class DecisionRule:
    """The checkpoint's decision rule as the display needs it: classes, task and threshold(s)."""

    classes: tuple[str, ...]
    task: str  # "binary" | "multi_class" | "multi_label"
    thresholds: tuple[float, ...] = ()  # binary: (threshold,); multi-label: one per finding; multi-class: ()


def probability_text(p: float, threshold: float | None = None) -> str:
    """A probability with 3 decimals, never shown as a certainty, and with the digits needed to tell it
    from ``threshold``.

    >>> probability_text(0.996), probability_text(0.99996), probability_text(0.00001)
    ('0.996', '> 0.999', '< 0.001')
    >>> probability_text(0.39996, threshold=0.4)
    '0.39996'
    """
    p = float(p)
    if p >= 0.9995 and (threshold is None or threshold <= 0.999):
        return "> 0.999"
    if p < 0.0005 and (threshold is None or threshold >= 0.001):
        return "< 0.001"
    digits = 3
    while threshold is not None and digits < 8 and f"{p:.{digits}f}" == f"{threshold:.{digits}f}" and p != threshold:
        digits += 1
    return f"{p:.{digits}f}"


def decision_line(rule: DecisionRule, probs: Sequence[float]) -> str:
    """The decision in one line of plain text: class, probability, threshold.

    >>> rule = DecisionRule(("NORMAL", "PNEUMONIA"), "binary", (0.4,))
    >>> decision_line(rule, [0.46, 0.54])
    'PNEUMONIA: P(PNEUMONIA) = 0.540 ≥ threshold 0.400'
    >>> decision_line(rule, [0.7, 0.3])
    'NORMAL: P(PNEUMONIA) = 0.300 < threshold 0.400'
    """
    probs = np.asarray(probs, np.float64)
    if rule.task == "binary":
        positive, t = rule.classes[1], rule.thresholds[0]
        above = probs[1] >= t
        return (f"{positive if above else rule.classes[0]}: P({positive}) = {probability_text(probs[1], t)} "
                f"{'≥' if above else '<'} threshold {t:.3f}")
    if rule.task == "multi_label":
        present = [c for c, p, t in zip(rule.classes, probs, rule.thresholds) if p >= t]
        return (f"Findings present: {', '.join(present) or 'none'} (each finding at or above its own threshold; "
                f"{len(rule.classes)} findings checked)")
    k = int(probs.argmax())
    return f"{rule.classes[k]}: P = {probability_text(probs[k])}, the highest of {len(rule.classes)} classes (no threshold)"


def probability_bars(rule: DecisionRule, probs: Sequence[float]) -> str:
    """HTML bars of the probabilities with the decision threshold marked on each bar that has one.

    A binary model shows one bar, P(positive class), with its threshold: two bars (one per class)
    ordered by size would put the class below the threshold on top. A multi-class model shows the
    classes from the most to the least probable (the decision is the highest); a multi-label model
    one bar per finding, each with its own threshold.
    """
    probs = np.asarray(probs, np.float64)
    if rule.task == "binary":
        positive, t = rule.classes[1], rule.thresholds[0]
        rows = [_bar(f"P({positive})", probs[1], t)]
        note = (f"{positive} when P({positive}) ≥ {t:.3f} (the marked threshold, chosen on validation), "
                f"else {rule.classes[0]}; P({rule.classes[0]}) = 1 − P({positive}).")
    elif rule.task == "multi_label":
        rows = [_bar(c, p, t) for c, p, t in zip(rule.classes, probs, rule.thresholds)]
        note = "Each finding is present when its probability reaches its own marked threshold."
    else:
        order = np.argsort(-probs, kind="stable")
        rows = [_bar(rule.classes[k], probs[k], None) for k in order]
        note = "The decision is the class with the highest probability."
    return (f'<div class="medclass-bars">{"".join(rows)}'
            f'<p style="font-size:0.85em;margin:4px 0 0 0">{html.escape(note)}</p></div>')


def _bar(name: str, p: float, threshold: float | None) -> str:
    width = f"{100 * min(max(float(p), 0.0), 1.0):.1f}%"
    mark = ""
    if threshold is not None:
        left = f"{100 * threshold:.1f}%"
        mark = (f'<div class="medclass-threshold" title="threshold {threshold:.3f}" style="position:absolute;'
                f'left:{left};top:-3px;bottom:-3px;width:2px;background:{_MARK}"></div>')
    value = probability_text(p, threshold)
    label = f"{value}" + (f" (threshold {threshold:.3f})" if threshold is not None else "")
    return (f'<div class="medclass-bar" style="margin:6px 0"><div style="display:flex;justify-content:space-between">'
            f'<span>{html.escape(name)}</span><span>{html.escape(label)}</span></div>'
            f'<div style="position:relative;height:14px;background:#e6e6e6;border-radius:3px">'
            f'<div style="width:{width};height:100%;background:{_BAR};border-radius:3px"></div>{mark}</div></div>')


def ood_banner(score: float, threshold: float) -> str:
    """The coloured banner shown above everything for an out-of-distribution image."""
    return (f'<div class="medclass-ood" role="alert" style="background:{OOD_COLOUR};color:{OOD_TEXT};padding:12px 16px;'
            f'border-radius:6px;font-size:1.1em"><strong style="color:inherit">Out-of-distribution: do not trust this prediction.</strong> '
            f"This image looks unlike the images the model was trained on (score {score_text(score)} above the threshold "
            f"{score_text(threshold)}): another body part, modality or kind of picture? The probabilities and the Grad-CAM "
            "are hidden; show them only to inspect the model.</div>")


__all__ = ["DecisionRule", "decision_line", "ood_banner", "probability_bars", "probability_text"]
