"""One self-contained ``report.html`` of an evaluation: inline CSS, every figure embedded as a base64 PNG.

Sections (each an element with an ``id``): ``summary``, ``leak-check``, ``data``, ``metrics``,
``shift`` (dataset shift and out-of-distribution images), ``confusion-matrix``, ``curves`` (ROC and PR
with the operating point), ``calibration``,
``training`` (loss and accuracy/AUC curves), ``baseline``, ``gallery``, ``top-losses``, ``cam``,
``patients``, ``external-validation`` (external data), ``subgroups`` (``--subgroups``), ``model-card`` and
``disclaimer``. Figures are drawn by :mod:`.plots` from the computed results.

Example:
    >>> result = evaluate("workspace/default/resnet18-1", report=False)  # doctest: +SKIP
    >>> write_report(result, "report.html", pdf=True)                    # doctest: +SKIP
    PosixPath('report.html')
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from matplotlib.figure import Figure

from ..metrics import plots
from ..utils import atomic_write_text, epoch_number
from ._examples import Example
from ..metrics.html import Raw, esc, fmt, img, page, section, table
from ._report_external import card_html, external_html, shift_box, subgroups_html
from ._shift import shift_html
from .result import EvaluationResult

METRIC_LABELS = {
    "accuracy": "Accuracy", "balanced_accuracy": "Balanced accuracy", "roc_auc": "ROC AUC", "pr_auc": "PR AUC (average precision)",
    "sensitivity": "Sensitivity (recall)", "specificity": "Specificity", "ppv": "PPV (precision)", "npv": "NPV",
    "f1": "F1", "macro_precision": "Macro precision", "macro_recall": "Macro recall", "macro_f1": "Macro F1",
    "brier": "Brier score (lower is better)", "ece": "ECE (lower is better)",
}
DISCLAIMER = ("This report describes a research model. It is not a medical device and must not be used for diagnosis "
              "or treatment decisions. Performance on other hospitals, devices or populations may differ.")
HELD_OUT = {True: "The metrics come from held-out data that the model did not see during training or model selection "
                  "(checked: see the leak check section).",
            False: "The leak check found evaluated images or patients that were used in training or validation: these "
                   "metrics are NOT held-out estimates.",
            None: "Whether the evaluated data is held out could not be checked (no split.csv of the run)."}


def _caption(ex: Example, kind: str) -> str:
    """Tile caption; every probability says which class it is for (p(true) or p(pred))."""
    name = Path(ex.path).name
    name = name if len(name) <= 24 else name[:10] + "…" + name[-12:]
    if kind == "top_losses":
        return f"true {ex.label}, p(true)={ex.prob_true:.2f}\npred {ex.predicted}\nloss {ex.loss:.2f}\n{name}"
    if kind == "cam":
        return f"true {ex.label}\npred {ex.predicted}, p(pred)={ex.prob_predicted:.2f}\nCAM for {ex.cam_class}"
    return f"true {ex.label}\npred {ex.predicted}, p(pred)={ex.prob_predicted:.2f}\n{name}"


def _grid(examples: list[Example], kind: str, title: str = "") -> Figure:
    items = [plots.GridItem(ex.overlay if kind == "cam" and ex.overlay is not None else ex.image, _caption(ex, kind), ex.correct)
             for ex in examples]
    return plots.image_grid_figure(items, ncols=8 if kind == "cam" else 6, title=title)


def build_figures(result: EvaluationResult) -> dict[str, Figure]:
    """Every figure of the report by name (in report order); the same figures go into the optional PDF."""
    m = result.metrics
    classes = m["classes"]
    figs: dict[str, Figure] = {"confusion_matrix": plots.confusion_matrix_figure(m["metrics"]["confusion_matrix"], classes)}
    curves = m["curves"]
    op = m.get("operating_point")
    points = [{**op, "label": f"threshold {op['threshold']:.3g}"}] if op else []
    if curves["roc"]:
        figs["roc"] = plots.roc_figure(curves["roc"], points)
        figs["pr"] = plots.pr_figure(curves["pr"], points, curves["prevalence"])
    figs["calibration"] = plots.reliability_figure(m["calibration"])
    history = m["training"]["history"]
    if history:
        figs["training"] = plots.training_curves_figure(history, m["training"].get("best_epoch"))
    for kind, title in (("gallery", "Predictions (green = correct, red = wrong)"),
                        ("top_losses", "Highest losses (most confidently wrong first)")):
        if result.examples.get(kind):
            figs[kind] = _grid(result.examples[kind], kind, title)
    for i, cls in enumerate(classes):
        cams = [ex for ex in result.examples.get("cam", []) if ex.label == cls]
        if cams:
            figs[f"cam_{i}"] = _grid(cams, "cam", f"True class {cls}: correct (green) and wrong (red)")
    return figs


def _summary(m: dict) -> str:
    d = m["data"]
    model = m["model"]
    rows = [
        ("Model", f"{model['name']} ({model.get('in_chans')} channel(s), {m['preprocessing']['image_size']} px)"),
        ("Checkpoint", m["checkpoint"]),
        ("Classes", ", ".join(m["classes"])),
        ("Evaluated data", f"{d['path']} (split {d['split']!r}, {d['source']})"),
        ("Images / patients", f"{d['n_predicted']} images predicted of {d['n_images']}; {d['n_patients']} patients"),
        ("Decision", f"p({m['classes'][-1]}) ≥ {m['threshold']:.4g} ({m['threshold_rule'] or 'stored'} rule, chosen on "
                     "validation)" if len(m["classes"]) == 2 else "argmax of the class probabilities"),
        ("Temperature / TTA", f"{m['temperature']:.3g} / {'on' if m['tta'] else 'off'}"),
        ("Wall time", f"{m.get('wall_time_s', float('nan')):.1f} s"),
        ("Versions", ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items())),
    ]
    filters = m.get("filters") or {}
    if filters.get("where") or filters.get("label_map"):
        rows.insert(4, ("Data filters", "; ".join(
            ([f"rows where {filters['where']}"] if filters.get("where") else [])
            + ([f"labels mapped {filters['label_map']}"] if filters.get("label_map") else []))))
    if filters.get("metadata"):
        rows.insert(4, ("Metadata columns", ", ".join(filters["metadata"]) + " (in predictions.csv)"))
    head = [shift_box(m)]
    if m["contaminated"]:
        head.append('<p class="bad">The evaluated data overlaps the training data: these metrics are contaminated. '
                    'See <a href="#leak-check">the leak check</a>.</p>')
    ids_warning = (m["leak_check"].get("patient_ids") or {}).get("warning")
    if ids_warning:
        head.append(f'<p class="warn">{esc(ids_warning)} See <a href="#leak-check">the leak check</a>.</p>')
    key = [k for k in ("roc_auc", "accuracy", "sensitivity", "specificity") if k in m["metrics"]]
    ci = m.get("ci", {})
    head.append("<p>" + " · ".join(f"<b>{esc(METRIC_LABELS[k])}</b> {fmt(m['metrics'][k])}"
                                   + (f" <span class='muted'>({fmt(ci[k]['low'])}–{fmt(ci[k]['high'])})</span>" if k in ci else "")
                                   for k in key) + "</p>")
    return "".join(head) + table(None, [(k, Raw(esc(v))) for k, v in rows])


def _overlap_row(item: str | dict) -> tuple[str, str]:
    if isinstance(item, str):
        return item, "same path"
    if "patient" in item:
        return f"patient {item['patient']}", ", ".join(f"{n} image(s) in {s}" for s, n in item["splits"].items())
    return "; ".join(item["evaluated"]), "; ".join(item["reference"])


def _leak(m: dict) -> str:
    lc = m["leak_check"]
    ids_warning = (lc.get("patient_ids") or {}).get("warning")
    cls = "warn" if not lc["checked"] or (lc["clean"] and ids_warning) else ("ok" if lc["clean"] else "bad")
    body = f'<p class="{cls}">{esc(lc["statement"])}</p>'
    if lc["checked"]:
        body += table(["check", "evaluated images affected"], [(k.replace("_", " "), v) for k, v in lc["counts"].items()])
        for key, title in (("same_path", "Same path"), ("same_file_hash", "Byte-identical files"),
                           ("near_duplicates", "Near-duplicates"), ("same_patient", "Shared patients")):
            items = lc.get(key) or []
            if items:
                body += f"<h3>{esc(title)}</h3>" + table(["evaluated", "training / validation"],
                                                         [_overlap_row(i) for i in items], 9)
    return body


def _data(m: dict) -> str:
    d = m["data"]
    rows = [(c, d["per_class"][c], d["patients_per_class"][c]) for c in m["classes"]]
    body = table(["class", "images", "patients"], rows)
    sizes = d.get("image_sizes_min_median_max") or {}
    if sizes:
        body += (f"<p>Image sizes (min / median / max): width {sizes['width']}, height {sizes['height']}; channels "
                 f"{sizes['channels']}. {d['images_without_patient']} image(s) without a patient id.</p>")
    body += f"<h3>Leak audit within the evaluated data</h3><pre>{esc(d['audit']['summary'])}</pre>"
    bad = d["unreadable"] + [{"path": p, "reason": "unreadable at prediction"} for p in d["unreadable_at_prediction"]]
    bad += d["skipped_by_source"]
    if bad:
        body += f"<h3>Left out ({len(bad)})</h3>" + table(["file", "reason"], [(b["path"], b["reason"]) for b in bad[:100]], 9)
    return body


def _metrics(m: dict) -> str:
    ci = m.get("ci", {})
    rows = []
    for key, label in METRIC_LABELS.items():
        if key in m["metrics"]:
            c = ci.get(key, {})
            interval = f"{fmt(c['low'])} – {fmt(c['high'])}" if c else "–"
            rows.append((label, m["metrics"][key], Raw(interval)))
    body = table(["metric", "value", "95% CI"], rows)
    body += f"<p class='muted'>{esc(m.get('ci_method', 'No bootstrap CIs (n_boot = 0).'))}</p>"
    report = m["classification_report"]
    body += "<h3>Per class</h3>" + table(
        ["class", "precision", "recall (accuracy of the class)", "F1", "ROC AUC (one-vs-rest)", "support"],
        [(c, report[c]["precision"], report[c]["recall"], report[c]["f1-score"], m["metrics"]["per_class"][c]["roc_auc"],
          int(report[c]["support"])) for c in m["classes"]])
    op = m.get("operating_point")
    if op:
        val = m.get("threshold_on_validation") or {}
        body += "<h3>Operating point</h3>" + table(
            ["", "threshold", "sensitivity", "specificity", "PPV", "NPV"],
            [("this evaluation", op["threshold"], op["sensitivity"], op["specificity"], op["ppv"], op["npv"]),
             ("validation (where it was chosen)", val.get("threshold"), val.get("val_sensitivity"),
              val.get("val_specificity"), None, None)])
    return body


def _figures(figs: dict[str, bytes], names: list[str], note: str = "") -> str:
    shown = [img(figs[n], n.replace("_", " ")) for n in names if n in figs]
    return (f"<p class='muted'>{esc(note)}</p>" if note else "") + ('<div class="figs">' + "".join(shown) + "</div>"
                                                                    if shown else "<p>Not available.</p>")


def _training_note(t: dict) -> str:
    """How training ended, with epochs counted from 1 as in the plot."""
    history, best = t.get("history"), t.get("best_epoch")
    if not history:
        return ""
    ran = len(history["epoch"])
    note = f"Trained {ran} of at most {t.get('max_epochs', ran)} epochs"
    if t.get("early_stopping") and ran < t.get("max_epochs", ran):
        note += (f"; early stopping ended the run after {t['early_stopping']} epochs without improvement of "
                 f"{t.get('monitor', 'the monitored metric')}")
    return note + (f". Best checkpoint: epoch {epoch_number(best)}." if best is not None and best >= 0 else ".")


def _baseline(m: dict) -> str:
    base, history, best = m.get("baseline"), m["training"]["history"], m["training"].get("best_epoch")
    if not base:
        return "<p>No baseline.json in the run folder.</p>"
    trained = {}
    if history and best is not None and best in history["epoch"]:
        i = history["epoch"].index(best)
        trained = {k: history[k][i] for k in ("val_loss", "val_acc", "val_auc") if k in history}
    rows = [("loss", base.get("val_loss"), trained.get("val_loss"), m.get("log_loss")),
            ("accuracy", base.get("val_acc"), trained.get("val_acc"), m["metrics"]["accuracy"]),
            ("ROC AUC", base.get("val_auc"), trained.get("val_auc"), m["metrics"]["roc_auc"])]
    shown = f"best epoch {epoch_number(best)}" if best is not None and best >= 0 else "trained model"
    return (table(["metric", "untrained model (validation)", f"{shown} (validation)", "this evaluation"], rows)
            + "<p class='muted'>The untrained model shows what chance-level performance looks like on this data.</p>")


def _patients(m: dict) -> str:
    p = m["patients"]
    keys = [k for k in ("accuracy", "roc_auc", "sensitivity", "specificity", "balanced_accuracy") if k in p["mean"]]
    body = (f"<p>{p['n_patients']} patients; patient label = {esc(p['label_rule'])}; images without a patient id "
            "count as their own patient. Patient probability = mean or maximum of the image probabilities.</p>")
    ci = p.get("ci", {})

    def cell(how: str, k: str) -> Raw:
        c = ci.get(how, {}).get(k)
        interval = f" <span class='muted'>({fmt(c['low'])}–{fmt(c['high'])})</span>" if c else ""
        return Raw(fmt(p[how][k]) + interval)

    body += table(["aggregation", *(METRIC_LABELS[k] for k in keys)],
                  [(how, *(cell(how, k) for k in keys)) for how in ("mean", "max")])
    if ci:
        body += "<p class='muted'>In brackets: 95% percentile bootstrap CIs resampling patients.</p>"
    errors = p["errors"]
    if not errors:
        return body + "<p>Every image of every patient was classified correctly.</p>"
    rows = [(e["patient"], e["n_images"], e["n_wrong"], Raw(esc(", ".join(map(str, e["wrong_positions"])))),
             Raw("<br>".join(esc(f"#{w['position']} {Path(w['path']).name}: true {w['true']}, pred {w['pred']} "
                                 f"(p={w['p_pred']:.2f})") for w in e["wrong"][:10])))
            for e in errors[:50]]
    more = f" (first 50 of {len(errors)})" if len(errors) > 50 else ""
    return body + f"<h3>Patients with wrong images{more}, wrong images in series order</h3>" + table(
        ["patient", "images", "wrong", "positions in series", "wrong images"], rows)


def _section_list(result: EvaluationResult, figs: dict[str, bytes]) -> list[tuple[str, str, Callable[[], str]]]:
    m = result.metrics
    cams = sorted(n for n in figs if n.startswith("cam_"))
    cam_note = f"{m['cam_method']} explaining the predicted class; a sample of correct and wrong images of each class."
    return [
        ("summary", "Summary", lambda: _summary(m)),
        ("leak-check", "Leak check: is the evaluated data held out?", lambda: _leak(m)),
        ("data", "Evaluated data", lambda: _data(m)),
        ("metrics", "Metrics", lambda: _metrics(m)),
        ("shift", "Dataset shift and out-of-distribution images", lambda: shift_html(m)),
        ("confusion-matrix", "Confusion matrix", lambda: _figures(figs, ["confusion_matrix"])),
        ("curves", "ROC and precision-recall curves", lambda: _figures(figs, ["roc", "pr"], "The circle marks the operating point at the stored threshold.")),
        ("calibration", "Calibration", lambda: _figures(figs, ["calibration"], f"Brier {fmt(m['metrics']['brier'])}, ECE {fmt(m['metrics']['ece'])}.")),
        ("training", "Training curves", lambda: _figures(figs, ["training"], _training_note(m["training"]))),
        ("baseline", "Baseline vs trained", lambda: _baseline(m)),
        ("gallery", "Prediction gallery", lambda: _figures(figs, ["gallery"])),
        ("top-losses", "Top losses", lambda: _figures(figs, ["top_losses"])),
        ("cam", "Grad-CAM overlays", lambda: _figures(figs, cams, cam_note)),
        ("patients", "Per-patient results", lambda: _patients(m)),
        *([("external-validation", "External validation", lambda: external_html(m))] if "external" in m else []),
        *([("subgroups", "Subgroups", lambda: subgroups_html(m))] if "subgroups" in m else []),
        *([("model-card", "Model card", lambda: card_html(result.model_card))] if result.model_card else []),
        ("disclaimer", "Not a medical device", lambda: f"<p>{esc(DISCLAIMER)} {esc(HELD_OUT[m['leak_check']['clean']])}</p>"),
    ]


def write_report(result: EvaluationResult, out_path: str | Path, pdf: bool = False) -> Path:
    """Write ``report.html`` (self-contained) and, with ``pdf``, a multi-page ``report.pdf`` of the figures.

    Example:
        >>> write_report(evaluate("workspace/default/resnet18-1", report=False), "out/report.html")  # doctest: +SKIP
    """
    out_path = Path(out_path)
    figures = build_figures(result)
    pngs = {name: plots.figure_png(fig) for name, fig in figures.items()}
    sections = _section_list(result, pngs)
    body = "".join(section(sid, title, render()) for sid, title, render in sections)
    m = result.metrics
    subtitle = f"{m['model']['name']} on {m['data']['path']} ({m['data']['split']}) · {time.strftime('%Y-%m-%d %H:%M')}"
    atomic_write_text(out_path, page("medclass evaluation report", subtitle, [(s[0], s[1].split(":")[0]) for s in sections], body))
    if pdf:
        from matplotlib.backends.backend_pdf import PdfPages

        with PdfPages(out_path.with_suffix(".pdf")) as doc:
            for fig in figures.values():
                doc.savefig(fig, bbox_inches="tight")
        result.files["pdf"] = out_path.with_suffix(".pdf")
    return out_path


__all__ = ["build_figures", "write_report"]
