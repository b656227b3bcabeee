"""Report parts "External validation", "Subgroups" (single- and multi-label) and the model card (HTML from
``metrics.json``)."""
from __future__ import annotations

from ..metrics.html import Raw, esc, fmt, table
from ._render import ci_cell

_NAMES = {"roc_auc": "ROC AUC", "sensitivity": "Sensitivity", "specificity": "Specificity", "accuracy": "Accuracy",
          "ppv": "PPV", "npv": "NPV"}


def shift_box(m: dict) -> str:
    """The warning box of a shift (empty when there is none): shown in the summary and the section."""
    warnings = (m.get("external") or {}).get("warnings") or []
    if not warnings:
        return ""
    items = "".join(f"<li>{esc(w)}</li>" for w in warnings)
    return (f'<div class="bad">Dataset shift: this model performs worse on the evaluated data than on its own test set.'
            f'<ul>{items}</ul>Do not use it on this population without retraining or local validation. '
            'See <a href="#external-validation">External validation</a>.</div>')


def _comparison(title: str, head: list[str], rows: list, ext: dict, decided: str) -> list[str]:
    """The internal-vs-external table, how its CIs were made, and the all-clear when nothing fell below."""
    parts = [f"<h3>{esc(title)}</h3>" + table([*head, "internal test", "external", "difference (external − internal)"], rows),
             f"<p class='muted'>{esc(ext['ci_method'])}; {esc(decided)}. Internal figures from "
             f"{esc(ext['internal_source'])}.</p>"]
    if not ext["warnings"]:
        parts.append("<p class='ok'>No external CI lies entirely below the internal estimate.</p>")
    return parts


def external_html(m: dict) -> str:
    """Internal vs external with differences, prevalence, calibration, operating points, recalibration."""
    ext, classes = m["external"], m["classes"]
    parts = [shift_box(m)]
    if "comparison" in ext:
        rows = [(_NAMES.get(k, k), ci_cell(c["internal"]), ci_cell(c["external"]), ci_cell(c["difference"]))
                for k, c in ext["comparison"].items()]
        parts += _comparison("Internal test vs external data", ["metric"], rows, ext,
                             f"at the stored threshold {fmt(m['threshold'], 4)}")
    else:
        parts.append(f"<p class='warn'>No internal comparison: {esc(ext['internal_missing'])}.</p>")
    prev = ext["prevalence"]
    parts.append("<h3>Prevalence</h3>" + table(["class", *prev], [
        (c, *(prev[k][c] for k in prev)) for c in classes]))
    if "calibration" in ext:
        cal = ext["calibration"]
        parts.append("<h3>Calibration on the external data</h3>" + table(None, [
            ("Calibration-in-the-large (0 = ideal; < 0: over-predicts " + classes[1] + ")", cal["intercept_in_the_large"]),
            ("Calibration slope (1 = ideal; < 1: too extreme)", cal["slope"]),
            ("Observed / mean predicted rate of " + classes[1], Raw(f"{fmt(cal['observed_rate'])} / {fmt(cal['mean_predicted'])}")),
        ]))
    if "operating_points" in ext:
        ops = ext["operating_points"]
        rows = [(name, Raw(esc(op.get("declared", ""))), *(op.get(k) for k in ("threshold", "sensitivity", "specificity", "ppv", "npv")))
                for name, op in (("stored threshold", ops["stored"]), ("re-chosen on these labels", ops["rechosen"]))]
        parts.append("<h3>Operating points</h3>" + table(
            ["operating point", "chosen", "threshold", "sensitivity", "specificity", "PPV", "NPV"], rows, numeric_from=2))
    if "recalibration" in ext:
        rec = ext["recalibration"]
        ev, fit = rec["evaluated"], rec["fit"]
        rows = [(label, ev[k]["threshold"], *(ci_cell(ev[k][n]) for n in ("roc_auc", "sensitivity", "specificity")), ev[k]["ece"])
                for label, k in (("as shipped", "stored"), ("recalibrated", "recalibrated"))]
        parts.append(f"<h3>Declared recalibration</h3><p class='warn'>{esc(rec['declared'])}: fitted on {fit['n_images']} "
                     f"images of {fit['n_patients']} patients (temperature × {fmt(fit['temperature_factor'])}, threshold "
                     f"by {esc(fit['rule'])}), evaluated on {ev['n_images']} images of {ev['n_patients']} patients.</p>"
                     + table(["model", "threshold", "ROC AUC", "sensitivity", "specificity", "ECE"], rows))
    return "".join(parts)


def subgroups_html(m: dict) -> str:
    """One row per subgroup: sizes, prevalence, metrics with CIs; flagged cells marked."""
    sub, positive = m["subgroups"], m["classes"][-1]
    names = sub["metrics"]
    rows = []
    for g in sub["groups"]:
        cells = []
        for n in names:
            text = ci_cell(g["metrics"][n])
            cells.append(Raw(f"<b style='color:#c62828'>⚠ {text}</b>") if n in g["flagged"] else text)
        rows.append((g["column"], g["subgroup"], g["n_images"], g["n_patients"], g["prevalence"].get(positive), *cells))
    overall = ", ".join(f"{_NAMES.get(n, n)} {fmt(v)}" for n, v in sub["overall"].items())
    n_flagged = sum(bool(g["flagged"]) for g in sub["groups"])
    note = (f"<p class='bad'>{n_flagged} subgroup(s) flagged ({esc(sub['flag_rule'])}).</p>" if n_flagged else
            f"<p class='muted'>None flagged ({esc(sub['flag_rule'])}).</p>")
    return (f"<p>Overall: {esc(overall)}. 95% CIs resample patients within each subgroup.</p>" + note
            + table(["column", "subgroup", "images", "patients", f"prevalence {positive}",
                     *(_NAMES.get(n, n) for n in names)], rows, numeric_from=2))


def external_findings_html(m: dict) -> str:
    """Multi-label: macro AUC and every finding internal vs external with differences, prevalence, calibration."""
    ext, findings = m["external"], m["classes"]
    parts = [shift_box(m)]
    if "comparison" in ext:
        macro = ext["comparison"]["macro_auc"]
        rows = [("macro AUC", "", ci_cell(macro["internal"]), ci_cell(macro["external"]), ci_cell(macro["difference"]))]
        rows += [(f, _NAMES.get(n, n), ci_cell(c["internal"]), ci_cell(c["external"]), ci_cell(c["difference"]))
                 for f, per in ext["per_finding"].items() for n, c in per.items()]
        parts += _comparison("Internal test vs external data, per finding", ["finding", "metric"], rows, ext,
                             "each finding at its stored threshold")
    else:
        parts.append(f"<p class='warn'>No internal comparison: {esc(ext['internal_missing'])}.</p>")
    prev, cal = ext["prevalence"], ext.get("calibration_per_finding") or {}
    parts.append("<h3>Prevalence and calibration per finding</h3>" + table(
        ["finding", *(f"prevalence {k}" for k in prev), "calibration-in-the-large (0 = ideal)", "slope (1 = ideal)"],
        [(f, *(prev[k].get(f) for k in prev), (cal.get(f) or {}).get("intercept_in_the_large"),
          (cal.get(f) or {}).get("slope")) for f in findings], numeric_from=1))
    return "".join(parts)


def subgroup_findings_html(m: dict) -> str:
    """Multi-label: one row per subgroup with the macro AUC and every finding's AUC (CIs; n/e when not estimable)."""
    sub, findings = m["subgroups"], m["classes"]
    rows = []
    for g in sub["groups"]:
        macro = ci_cell(g["metrics"]["macro_auc"])
        cells = [Raw(f"<b style='color:#c62828'>⚠ {macro}</b>") if g["flagged"] else macro]
        for f in findings:
            text = ci_cell(g["per_finding"][f]["roc_auc"])
            cells.append(Raw(f"<b style='color:#c62828'>⚠ {text}</b>") if f in g["flagged_findings"] else text)
        rows.append((g["column"], g["subgroup"], g["n_images"], g["n_patients"], *cells))
    n_flagged = sum(bool(g["flagged"] or g["flagged_findings"]) for g in sub["groups"])
    note = (f"<p class='bad'>{n_flagged} subgroup(s) flagged ({esc(sub['flag_rule'])}).</p>" if n_flagged else
            f"<p class='muted'>None flagged ({esc(sub['flag_rule'])}).</p>")
    return (f"<p>Overall macro AUC {fmt(sub['overall']['macro_auc'])}. AUC per finding; 95% CIs resample patients "
            "within each subgroup; n/e = not estimable (too few positive patients).</p>" + note
            + table(["column", "subgroup", "images", "patients", "macro AUC", *(f"{f} AUC" for f in findings)],
                    rows, numeric_from=2))


def card_html(markdown_text: str) -> str:
    """The model card's Markdown as HTML inside the report (raw HTML in it is escaped, not rendered).

    Its headings are set two levels down (the card's title becomes an ``h3`` under the report's "Model card"
    section, never larger than the report's own title), and its "Not a medical device" lines are left out:
    the report ends with its own disclaimer, so the statement appears once.

    >>> card_html("# Model card: x\\n\\n## Limitations\\n\\nSome.")
    '<h3>Model card: x</h3>\\n<h4>Limitations</h4>\\n<p>Some.</p>\\n'
    """
    import re

    from markdown_it import MarkdownIt

    from ..serving._card import DISCLAIMER

    text = markdown_text.replace(f"**{DISCLAIMER}**", "")
    text = re.sub(r"^## Not a medical device\s*\n(?:(?!#).*\n?)*", "", text, flags=re.M)
    html = MarkdownIt("commonmark", {"html": False}).enable("table").render(text)
    return re.sub(r"<(/?)h([1-6])>", lambda m: f"<{m[1]}h{min(int(m[2]) + 2, 6)}>", html)


__all__ = ["card_html", "external_findings_html", "external_html", "shift_box", "subgroup_findings_html", "subgroups_html"]
