"""``model_card.md``: the full model card as Markdown, written by ``evaluate`` beside the checkpoint it evaluated.

Built from :func:`medclass.serving._card.model_card` (the same card ``GET /model`` returns), with the
evaluation and training-data parts filled. The sections follow the items of the reporting checklists
that a tool can fill from its own records (the rest, e.g. clinical context, ethics or funding,
needs the authors):

* TRIPOD+AI (Collins et al., BMJ 2024): title/intended use and target population, data sources,
  participants (counts, demographics), outcome (classes and label definition), predictors (input
  and preprocessing), sample size, model type and training, performance measures with CIs,
  internal and external validation, calibration, heterogeneity across subgroups (fairness), model
  updating (declared recalibration), limitations.
* CLAIM 2024 (Tejani et al., Radiology: AI): data sources, data partitions and patient-level
  separation, ground-truth labels, model and preprocessing, decision threshold, performance metrics
  with CIs, external testing, failure analysis (subgroups, out-of-distribution behaviour).
"""
from __future__ import annotations

from typing import Any

from ..metrics.external import evaluated_label
from ..metrics.ood import false_alarm_sentence, threshold_text
from ._card import _number, input_text

_NAMES = {"roc_auc": "ROC AUC", "sensitivity": "Sensitivity", "specificity": "Specificity", "accuracy": "Accuracy",
          "macro_auc": "Macro AUC", "micro_auc": "Micro AUC"}


def _ci(c: dict[str, Any] | None) -> str:
    if not c:
        return "n/a"
    text = _number(c.get("value"))
    if c.get("not_estimable"):
        return f"{text} (CI not estimable: {c['not_estimable']})"
    return text + (f" ({_number(c['low'])}–{_number(c['high'])})" if c.get("low") is not None else "")


def _training(td: dict[str, Any]) -> list[str]:
    lines = ["## Training data", "", f"- **Source:** {td['source']}", f"- **Patient separation:** {td['patient_rule']}"]
    lines += ["", "| split | images | patients | " + " | ".join(f"prevalence {c}" for c in td["classes"]) + " |",
              "|---|---|---|" + "---|" * len(td["classes"])]
    for split, s in td["splits"].items():
        lines.append(f"| {split} | {s['n_images']} | {s['n_patients']} | "
                     + " | ".join(_number(s["prevalence"][c]) for c in td["classes"]) + " |")
    if td.get("demographics"):
        lines += ["", "Demographics and acquisition (training split):", ""]
        for column, d in td["demographics"].items():
            if "median" in d:
                lines.append(f"- **{column}:** median {_number(d['median'])} (IQR {_number(d['q1'])}–{_number(d['q3'])}, "
                             f"range {_number(d['min'])}–{_number(d['max'])}), missing {d['missing']}")
            else:
                lines.append(f"- **{column}:** " + ", ".join(f"{k} {v}" for k, v in d["counts"].items()))
    else:
        lines += ["", "No demographic columns (sex, age, view...) were recorded with the training images."]
    return lines


def _results(ev: dict[str, Any]) -> list[str]:
    d = ev["data"]
    kind = "External validation" if "external" in ev else "Internal validation (held-out test split)"
    held = {True: "checked held out", False: "OVERLAPS the training data", None: "not checked"}[ev["held_out"]]
    lines = [f"## {kind}", "", f"Evaluated on `{d['path']}` ({evaluated_label(d)}): {d['n_images']} images, "
             f"{d['n_patients']} patients ({held}). 95% CIs from a bootstrap resampling patients.", ""]
    if ev.get("patient_ids_warning"):
        lines += [f"> **Warning: patients.** {ev['patient_ids_warning']}", ""]
    pat = ev.get("patients")
    if pat:
        lines += [f"Per patient (patient label = {pat['label_rule']}): {pat['n_patients']} patients, "
                  + ", ".join(f"{c} {n}" for c, n in pat["patients_per_class"].items()) + ".", ""]
        if pat.get("warning"):
            lines += [f"> **Warning: few patients.** {pat['warning']}", ""]
    ext = ev.get("external") or {}
    if "comparison" in ext:
        lines += ["| metric | internal test | external | difference |", "|---|---|---|---|"]
        lines += [f"| {_NAMES.get(k, k)} | {_ci(c['internal'])} | {_ci(c['external'])} | {_ci(c['difference'])} |"
                  for k, c in ext["comparison"].items()]
    else:
        lines += ["| metric | value (95% CI) |", "|---|---|"]
        lines += [f"| {_NAMES.get(k, k)} | {_ci(c)} |" for k, c in ev["results"].items()]
        if ext.get("internal_missing"):
            lines += ["", f"No internal comparison: {ext['internal_missing']}."]
    for w in ext.get("warnings", []):
        lines += ["", f"> **Warning: dataset shift.** {w}"]
    if "prevalence" in ext:
        lines += ["", "Prevalence: " + "; ".join(
            f"{where} " + ", ".join(f"{c} {_number(v)}" for c, v in p.items()) for where, p in ext["prevalence"].items())]
    if "calibration" in ext:
        cal = ext["calibration"]
        lines.append(f"Calibration on these data: calibration-in-the-large {_number(cal['intercept_in_the_large'])} "
                     f"(0 = ideal), slope {_number(cal['slope'])} (1 = ideal).")
    return lines


def _subgroups(sub: dict[str, Any]) -> list[str]:
    names = list(sub["groups"][0]["metrics"]) if sub["groups"] else []
    lines = ["## Subgroups", "", f"`{sub['spec']}`; flagged (⚠): {sub['flag_rule']}.", "",
             "| column | subgroup | images | patients | " + " | ".join(_NAMES.get(n, n) for n in names) + " |",
             "|---|---|---|---|" + "---|" * len(names)]
    for g in sub["groups"]:
        cells = [("⚠ " if n in g["flagged"] else "") + _ci(g["metrics"][n]) for n in names]
        per_class = g.get("patients_per_class")  # absent in evaluations before the per-class flag rule
        patients = f"{g['n_patients']}" + (" (" + ", ".join(f"{c} {n}" for c, n in per_class.items()) + ")"
                                           if per_class else "")
        lines.append(f"| {g['column']} | {g['subgroup']} | {g['n_images']} | {patients} | " + " | ".join(cells) + " |")
    return lines


def _ood(ev: dict[str, Any]) -> list[str]:
    ood = ev.get("ood")
    if ood is None:
        return ["## Out-of-distribution behaviour", "",
                "Not measured in this evaluation: the model returns a score for any image, including images unlike "
                "its training data (other body parts, modalities or photographs)."]
    head = ["## Out-of-distribution behaviour", ""]
    if not ood.get("available"):
        return [*head, ood.get("note") or "No out-of-distribution scores in this evaluation.",
                "The model returns a score for any image, including images unlike its training data."]
    text = (f"{ood['n_flagged']} of {ood['n_scored']} evaluated images ({100 * ood['share_flagged']:.1f} %) are flagged "
            f"out-of-distribution: their {ood['method']} feature score is above {threshold_text(ood)}. `predict`, "
            "the web app and the REST API flag such inputs (their predictions are unreliable).")
    if false_alarm_sentence(ood):
        text += " " + false_alarm_sentence(ood)
    return [*head, text]


def card_document(card: dict[str, Any]) -> str:
    """The whole card as a Markdown document (``model_card.md``).

    >>> "Not a medical device" in card_document(model_card(meta))  # doctest: +SKIP
    True
    """
    pre, classes = card["preprocessing"], card["classes"]
    lines = [f"# Model card: {card['model']['name']} ({' / '.join(classes)})", "", f"**{card['disclaimer']}**", "",
             "## Intended use", "", card["intended_use"], "",
             "## Model", "",
             f"- **Architecture:** {card['model']['name']}, {card['model'].get('in_chans')} input channel(s)",
             f"- **Input:** {input_text(pre)}, normalised with mean {pre['mean']} / std {pre['std']}",
             f"- **Output:** {', '.join(classes)}; decision: {card['decision_rule']}"
             + (f" at threshold {_number(card['threshold'])} ({card['threshold_rule'] or 'fixed'} rule, chosen on validation)"
                if card["threshold"] is not None else ""),
             *([f"- **Positive class:** {card['positive']} (sensitivity and the threshold are about it; set with "
                 "--positive / data.positive)"] if card.get("positive") else []),
             f"- **Temperature:** {_number(card['temperature'])}",
             f"- **Versions:** " + ", ".join(f"{k} {v}" for k, v in card["versions"].items()), ""]
    if "training_data" in card:
        lines += [*_training(card["training_data"]), ""]
    ev = card.get("evaluation")
    if ev:
        lines += [*_results(ev), ""]
        if "subgroups" in ev:
            lines += [*_subgroups(ev["subgroups"]), ""]
        lines += [*_ood(ev), ""]
    lines += ["## Limitations", "", card["limitations"], "",
              "## Not a medical device", "", card["disclaimer"], ""]
    return "\n".join(lines)


__all__ = ["card_document"]
