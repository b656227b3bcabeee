"""The model card shown by ``GET /model`` and the web app: the checkpoint metadata, and the saved evaluation
(``metrics.json`` beside the checkpoint) when ``medclass evaluate`` wrote one."""
from __future__ import annotations

import json
import math
import dataclasses
from pathlib import Path, PurePath
from typing import Any

from ..artifacts import CheckpointMeta, EvalDir
from ..data.presets import patient_rule_summary
from ..utils import epoch_number

DISCLAIMER = (
    "Not a medical device. This model is for research and education only; it must not be used for "
    "diagnosis, triage or any clinical decision."
)
LIMITATIONS = (
    "Trained and validated on one retrospective data set; performance on other hospitals, scanners, "
    "populations or image types is unknown. Probabilities reflect that data set's class balance."
)
EVALUATION_PREFIXES = ("val_", "test_")  # the figures of a checkpoint's metrics that a card shows
_CI_KEYS = (("ci_low", "ci_high"), ("lower", "upper"), ("low", "high"))
_VALUE_KEYS = ("value", "estimate", "mean", "point")


def model_card(meta: CheckpointMeta, evaluation: dict[str, Any] | None = None,
               training_data: dict[str, Any] | None = None) -> dict[str, Any]:
    """A JSON-friendly card: model, classes, data, preprocessing, decision rule, metrics, intended use.

    With an evaluation's ``metrics.json`` (``evaluation``) and the run's training data summary
    (``training_data``: sources, counts, prevalence, demographics) the card also holds
    ``"evaluation"`` (:func:`evaluation_summary`) and ``"training_data"``; ``model_card.md``
    (:func:`medclass.serving._card_markdown.card_document`) is written from it.

    >>> model_card(meta)["medical_device"]  # doctest: +SKIP
    False
    """
    data = meta.run_config.data
    classes = list(meta.classes)
    extra = {k: v for k, v in (("training_data", training_data),
                               ("evaluation", evaluation_summary(evaluation) if evaluation else None)) if v}
    return {
        "model": dataclasses.asdict(meta.model),
        "classes": classes,
        "data": {
            "name": PurePath(data.path).name if data.path else "",
            "source": data.source,
            "label_from_name": data.label_from_name,
            "patient_rule": patient_rule_summary(data),  # the rule actually used
        },
        "preprocessing": meta.preprocessing.to_dict(),
        "threshold": meta.threshold if meta.binary else None,
        "positive": classes[1] if meta.binary else None,  # data.positive (--positive), else the second sorted name
        "threshold_rule": meta.threshold_rule,
        "temperature": meta.temperature,
        "decision_rule": _decision_rule(meta),
        "task": meta.task,
        "thresholds": dict(zip(classes, meta.finding_thresholds)) if meta.multi_label else None,
        "uncertain_labels": data.uncertain if meta.multi_label else None,
        # validation figures of the saved epoch (no training losses, learning rates or timings); its epoch counted
        # from 1 as `medclass train` prints it (the checkpoint keeps Lightning's 0-based index)
        "metrics": {k: v for k, v in meta.metrics.items() if k.startswith(EVALUATION_PREFIXES)},
        "best_epoch": epoch_number(meta.epoch) if meta.epoch is not None else None,
        "intended_use": meta.intended_use or (
            f"Research and teaching demonstrations of image classification into {', '.join(classes)}."),
        "limitations": LIMITATIONS,
        "medical_device": False,
        "disclaimer": DISCLAIMER,
        "versions": dict(meta.versions),
        **extra,
    }


HEADLINE = ("roc_auc", "sensitivity", "specificity", "accuracy")  # the card's results, with CIs where computed


def evaluation_summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """The card's view of one evaluation's ``metrics.json``: evaluated data, headline results with CIs,
    the internal vs external comparison, calibration, subgroups and the out-of-distribution section."""
    if metrics.get("task") == "multi_label":  # macro and micro AUC over the findings
        findings = metrics["findings"]
        ci, point, headline = findings.get("ci") or {}, findings["summary"], ("macro_auc", "micro_auc")
    else:
        ci, point, headline = metrics.get("ci") or {}, metrics["metrics"], HEADLINE
    data = metrics["data"]
    out: dict[str, Any] = {
        "data": {"path": data["path"], "source": data["source"], "split": data["split"],
                 "n_images": data["n_predicted"], "n_patients": data.get("n_patients")},
        "results": {k: ci.get(k) or {"value": point[k]} for k in headline if k in point},
        "held_out": metrics["leak_check"].get("clean"),
        "patient_ids_warning": (metrics["leak_check"].get("patient_ids") or {}).get("warning", ""),
    }
    external = metrics.get("external")
    if external:
        out["external"] = {k: external[k] for k in ("comparison", "prevalence", "calibration", "warnings",
                                                     "internal_missing", "operating_points") if k in external}
    if metrics.get("subgroups"):
        sub = metrics["subgroups"]
        out["subgroups"] = {"spec": sub["spec"], "flag_rule": sub["flag_rule"], "groups": [
            {k: g[k] for k in ("column", "subgroup", "n_images", "n_patients", "flagged", "patients_per_class",
                               "not_flaggable") if k in g}  # the last two: evaluations since the per-class rule
            | {"metrics": {n: g["metrics"][n] for n in sub["metrics"]}} for g in sub["groups"]]}
    pat = metrics.get("patients") or {}
    if pat.get("patients_per_class"):
        out["patients"] = {k: pat[k] for k in ("n_patients", "patients_per_class", "label_rule", "warning")}
    if metrics.get("ood") is not None:
        out["ood"] = metrics["ood"]
    return out


def saved_card(checkpoint: object) -> str | None:
    """The ``model_card.md`` that ``medclass evaluate`` wrote beside a checkpoint file (or into a run folder);
    None when there is none or ``checkpoint`` is not a path (e.g. a loaded Predictor).

    >>> saved_card(object()) is None
    True
    """
    if not isinstance(checkpoint, (str, PurePath)):
        return None
    path = Path(checkpoint)
    card = EvalDir(path if path.is_dir() else path.parent).model_card
    return card.read_text(encoding="utf-8") if card.is_file() else None


def saved_evaluation(checkpoint: object) -> dict[str, Any] | None:
    """The ``metrics.json`` that ``medclass evaluate`` wrote for this checkpoint (beside the file, or in a run
    folder), for :func:`model_card`'s ``evaluation``; None when there is none, it is of another checkpoint,
    or it cannot be read (the card then holds the checkpoint's own figures only).

    >>> saved_evaluation(object()) is None
    True
    """
    if not isinstance(checkpoint, (str, PurePath)):
        return None
    path = Path(checkpoint)
    metrics_file = EvalDir(path if path.is_dir() else path.parent).metrics
    try:
        metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
        if not path.is_dir() and PurePath(metrics["checkpoint"]).name != path.name:
            return None  # an evaluation of another checkpoint in the same folder (it may have been saved relative)
        evaluation_summary(metrics)  # the fields the card reads are there
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return metrics


def metric_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """``(name, "value [ci_low, ci_high]")`` pairs for display; CIs come from ``<name>_ci`` lists or
    ``{"value", "ci_low", "ci_high"}``-style dicts, nested dicts are flattened with dots.

    >>> metric_rows({"auc": 0.91, "auc_ci": [0.88, 0.94], "epoch": 3})
    [('auc', '0.91 [0.88, 0.94]'), ('epoch', '3')]
    """
    rows: list[tuple[str, str]] = []
    for name, value in metrics.items():
        if name.endswith("_ci") and name[:-3] in metrics:
            continue
        ci = metrics.get(f"{name}_ci")
        if isinstance(value, dict):
            point = next((value[k] for k in _VALUE_KEYS if k in value), None)
            bounds = value.get("ci") or next(([value[a], value[b]] for a, b in _CI_KEYS if a in value and b in value), None)
            if point is None:
                rows += [(f"{name}.{k}", text) for k, text in metric_rows(value)]
                continue
            value, ci = point, bounds
        text = _number(value)
        if isinstance(ci, (list, tuple)) and len(ci) == 2:
            text += f" [{_number(ci[0])}, {_number(ci[1])}]"
        rows.append((name, text))
    return rows


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    return f"{value:.4g}"


def input_text(pre: dict[str, Any]) -> str:
    """What the model takes, in words: ``128 x 128 px``, or for a CT/MRI volume model its voxel grid, spacing and
    whether the slices are channels (2.5-D).

    >>> input_text({"image_size": 128})
    '128 x 128 px'
    >>> input_text({"image_size": 32, "volume": {"size": [32, 32, 16], "spacing": [1.0, 1.0, 1.0], "input": "2.5d",
    ...                                          "orientation": "RAS", "in_chans": 3}})
    'CT/MRI volume: 32 x 32 x 16 voxels at 1 x 1 x 1 mm (RAS), 2.5-D (3 neighbouring slices as channels)'
    """
    v = pre.get("volume")
    if not v:
        return f"{pre['image_size']} x {pre['image_size']} px"
    spacing = " x ".join(f"{float(s):g}" for s in v.get("spacing") or ()) or "the stored spacing"
    grid = " x ".join(str(int(n)) for n in v["size"])
    how = (f"2.5-D ({v.get('in_chans')} neighbouring slices as channels)" if v.get("input") == "2.5d" else "3-D")
    return f"CT/MRI volume: {grid} voxels at {spacing}{' mm' if v.get('spacing') else ''} ({v.get('orientation') or 'as stored'}), {how}"


def card_markdown(card: dict[str, Any]) -> str:
    """The card as Markdown (for the web app when ``medclass evaluate`` saved no ``model_card.md``).

    Without a saved evaluation there are no held-out results: the page says so and how to get them,
    and shows only the validation figures of the chosen epoch (never training losses or timings).

    >>> "Not a medical device" in card_markdown(model_card(meta))  # doctest: +SKIP
    True
    """
    pre = card["preprocessing"]
    lines = [
        f"### Model card: {card['model']['name']}",
        f"**{card['disclaimer']}**",
        "",
        f"- **Classes:** {', '.join(card['classes'])}"
        + (f"; positive class **{card['positive']}**" if card.get("positive") else ""),
        f"- **Decision:** {card['decision_rule']}"
        + (f" (threshold {card['threshold']:.3g}, rule {card['threshold_rule'] or 'fixed'})" if card["threshold"] is not None else ""),
        f"- **Data:** {card['data']['name'] or 'not recorded'}"
        + (f" ({card['data']['label_from_name']})" if card["data"]["label_from_name"] else ""),
        f"- **Input:** {input_text(pre)}, {pre['in_chans']} channel(s), "
        f"{'HU' if pre.get('volume') else 'DICOM'} window {pre.get('window') or 'from the file'}",
        f"- **Intended use:** {card['intended_use']}",
        f"- **Limitations:** {card['limitations']}",
        "",
        "**No held-out evaluation is saved beside this checkpoint.** Run `medclass evaluate CHECKPOINT` to "
        "measure it on the test split (results with 95% CIs, test size, out-of-distribution rate); this page "
        "then shows them.",
    ]
    rows = metric_rows(card["metrics"])  # validation figures only (model_card)
    if rows:
        epoch = f" at the chosen epoch {card['best_epoch']}" if card.get("best_epoch") else ""
        ci = any("[" in v for _, v in rows)
        lines += ["", f"Validation figures{epoch} (the images that chose the epoch and threshold: optimistic, "
                  "not a held-out test):", "", f"| metric | {'value [95% CI]' if ci else 'value'} |", "|---|---|",
                  *(f"| {n} | {v} |" for n, v in rows)]
    return "\n".join(lines)


def _decision_rule(meta: CheckpointMeta) -> str:
    """The decision rule in words: binary threshold, argmax, or one threshold per finding."""
    classes = meta.classes
    if meta.multi_label:
        return "each finding independently: present when its probability >= its own threshold (chosen on validation)"
    if meta.binary:
        return f"{classes[1]} when P({classes[1]}) >= threshold, else {classes[0]}"
    return "the class with the highest probability"
