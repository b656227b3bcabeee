"""One self-contained ``report.html`` of an evaluation: inline CSS, every figure embedded as a base64 PNG.

The header parts (``summary``, ``leak-check``, ``data``), then the parts of every evaluation section that ran
(:mod:`.sections`: e.g. ``metrics``, ``confusion-matrix``, ``curves``, ``calibration`` or ``findings``, ``curves``,
``cooccurrence``; ``patients``; ``decision``; ``external-validation``; ``subgroups``; ``shift``; ``gallery``,
``top-losses``, ``cam`` or ``most-wrong``), then ``training``, ``baseline``, ``not-applied`` (the sections that did
not apply and why), ``model-card`` and ``disclaimer``. Figures are drawn by :mod:`medclass.metrics.plots` from
the computed results.

Example:
    >>> result = evaluate("workspace/default/resnet18-1", report=False)  # doctest: +SKIP
    >>> write_report(result, "report.html", pdf=True)                    # doctest: +SKIP
    PosixPath('report.html')
"""
from __future__ import annotations

import time
from pathlib import Path

from matplotlib.figure import Figure

from ..metrics import plots
from ..metrics.external import evaluated_label
from ..metrics.html import Raw, esc, fmt, page, section, table
from ..utils import atomic_write_text, epoch_number
from ._multilabel import headline_html
from ._render import METRIC_LABELS, figures_html
from ._report_external import card_html, shift_box
from .result import EvaluationResult
from .sections import SECTIONS, Section
from .sections.examples import _caption  # noqa: F401  (tile captions, tested with the report of issue 12)

DISCLAIMER = ("This report describes a research model, for research and education only: it must not be used for "
              "diagnosis or treatment decisions. Performance on other hospitals, devices or populations may differ.")
HELD_OUT = {True: "The metrics come from held-out data that the model did not see during training or model selection "
                  "(checked: see the leak check section).",
            False: "The leak check found evaluated images or patients that were used in training or validation: these "
                   "metrics are NOT held-out estimates.",
            None: "Whether the evaluated data is held out could not be checked (no split.csv of the run)."}


def _applied(m: dict) -> list[Section]:
    """The sections that ran for this evaluation (from ``metrics["sections"]``; for a metrics.json written before
    sections existed: those whose keys it holds)."""
    status = m.get("sections")
    if status is None:
        return [s for s in SECTIONS if s.name not in ("external", "subgroups", "decision") or s.name in m]
    return [s for s in SECTIONS if (status.get(s.name) or {}).get("applied")]


def build_figures(result: EvaluationResult) -> dict[str, Figure]:
    """Every figure of the report by name (in report order); the same figures go into the optional PDF."""
    m = result.metrics
    figs: dict[str, Figure] = {}
    for s in _applied(m):
        figs.update(s.figures(result))
    history = m["training"]["history"]
    if history:
        figs["training"] = plots.training_curves_figure(history, m["training"].get("best_epoch"))
    return figs


def _decision_text(m: dict) -> str:
    if m.get("task") == "multi_label":
        return f"each finding at its own threshold ({m['threshold_rule'] or 'stored'} rule, chosen on validation)"
    if len(m["classes"]) == 2:
        return (f"p({m['classes'][-1]}) ≥ {m['threshold']:.4g} ({m['threshold_rule'] or 'stored'} rule, chosen on "
                "validation)")
    return "argmax of the class probabilities"


def _headline(m: dict) -> str:
    if m.get("task") == "multi_label":
        return headline_html(m)
    key = [k for k in ("roc_auc", "accuracy", "sensitivity", "specificity") if k in m["metrics"]]
    ci = m.get("ci", {})
    return "<p>" + " · ".join(f"<b>{esc(METRIC_LABELS[k])}</b> {fmt(m['metrics'][k])}"
                              + (f" <span class='muted'>({fmt(ci[k]['low'])}–{fmt(ci[k]['high'])})</span>" if k in ci else "")
                              for k in key) + "</p>"


def _summary(m: dict) -> str:
    d = m["data"]
    model = m["model"]
    temperature = f"{m['temperature']:.3g}" if m.get("temperature") is not None else "–"
    rows = [
        ("Model", f"{model['name']} ({model.get('in_chans')} channel(s), {m['preprocessing']['image_size']} px)"),
        ("Checkpoint", m["checkpoint"]),
        ("Classes" if m.get("task") != "multi_label" else "Findings", ", ".join(m["classes"])),
        ("Evaluated data", f"{d['path']} ({evaluated_label(d)})"),
        ("Images / patients", f"{d['n_predicted']} images predicted of {d['n_images']}; {d['n_patients']} patients"),
        ("Decision", _decision_text(m)),
        ("Temperature / TTA", f"{temperature} / {'on' if m['tta'] else 'off'}"),
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
    if (m.get("shift") or {}).get("large"):
        head.append(f'<p class="bad"><b>{esc(m["shift"]["warning"])}</b></p>')
    if m["contaminated"]:
        head.append('<p class="bad">The evaluated data overlaps the training data: these metrics are contaminated. '
                    'See <a href="#leak-check">the leak check</a>.</p>')
    ids_warning = (m["leak_check"].get("patient_ids") or {}).get("warning")
    if ids_warning:
        head.append(f'<p class="warn">{esc(ids_warning)} See <a href="#leak-check">the leak check</a>.</p>')
    head.append(_headline(m))
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
    body = table(["class" if m.get("task") != "multi_label" else "finding (positive)", "images", "patients"], rows)
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
    now = m["metrics"] if "metrics" in m else {"roc_auc": m["findings"]["summary"]["macro_auc"]}  # multi: macro AUC
    rows = [("loss", base.get("val_loss"), trained.get("val_loss"), m.get("log_loss")),
            ("accuracy", base.get("val_acc"), trained.get("val_acc"), now.get("accuracy")),
            ("ROC AUC" if "metrics" in m else "macro AUC", base.get("val_auc"), trained.get("val_auc"), now["roc_auc"])]
    shown = f"best epoch {epoch_number(best)}" if best is not None and best >= 0 else "trained model"
    return (table(["metric", "untrained model (validation)", f"{shown} (validation)", "this evaluation"], rows)
            + "<p class='muted'>The untrained model (before the first training step) and the trained model's "
              "validation columns were measured on the run's own validation split, not on the evaluated data; the "
              "untrained model shows what chance-level performance looks like there.</p>")


def _section_list(result: EvaluationResult, figs: dict[str, bytes]) -> list[tuple[str, str, str]]:
    m = result.metrics
    parts = [("summary", "Summary", _summary(m)), ("leak-check", "Leak check: is the evaluated data held out?", _leak(m)),
             ("data", "Evaluated data", _data(m))]
    for s in _applied(m):
        parts += s.report(result, figs)
    parts += [("training", "Training curves", figures_html(figs, ["training"], _training_note(m["training"]))),
              ("baseline", "Baseline vs trained", _baseline(m))]
    skipped = [f"{v['title']}: {v['reason']}" for v in (m.get("sections") or {}).values() if not v["applied"]]
    if skipped:
        parts.append(("not-applied", "Sections not applied",
                      "<ul>" + "".join(f"<li>{esc(t)}</li>" for t in skipped) + "</ul>"))
    if result.model_card:
        parts.append(("model-card", "Model card", card_html(result.model_card)))
    parts.append(("disclaimer", "Not a medical device",
                  f"<p>{esc(DISCLAIMER)} {esc(HELD_OUT[m['leak_check']['clean']])}</p>"))
    return parts


def write_report(result: EvaluationResult, out_path: str | Path, pdf: bool = False) -> Path:
    """Write ``report.html`` (self-contained) and, with ``pdf``, a multi-page ``report.pdf`` of the figures.

    Example:
        >>> write_report(evaluate("workspace/default/resnet18-1", report=False), "out/report.html")  # doctest: +SKIP
    """
    out_path = Path(out_path)
    figures = build_figures(result)
    pngs = {name: plots.figure_png(fig) for name, fig in figures.items()}
    sections = _section_list(result, pngs)
    body = "".join(section(sid, title, html) for sid, title, html in sections)
    m = result.metrics
    subtitle = f"{m['model']['name']} on {m['data']['path']} ({evaluated_label(m['data'])}) · {time.strftime('%Y-%m-%d %H:%M')}"
    atomic_write_text(out_path, page("medclass evaluation report" if m.get("task") != "multi_label" else "medclass multi-label evaluation report", subtitle, [(s[0], s[1].split(":")[0]) for s in sections], body))
    if pdf:
        from matplotlib.backends.backend_pdf import PdfPages

        with PdfPages(out_path.with_suffix(".pdf")) as doc:
            for fig in figures.values():
                doc.savefig(fig, bbox_inches="tight")
        result.files["pdf"] = out_path.with_suffix(".pdf")
    return out_path


__all__ = ["build_figures", "write_report"]
