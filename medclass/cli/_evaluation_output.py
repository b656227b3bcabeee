"""What ``medclass evaluate`` prints, read from ``metrics.json``: the headline table (metrics with CIs, or one row
per finding with its positives and macro/micro AUC with CIs), the out-of-distribution share, internal vs external,
the subgroup table, rare-finding warnings, and one line per section that did not apply."""
from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..evaluation._render import ci_text
from ..evaluation.sections.shortcuts import console_lines as shortcut_lines
from ..metrics.external import evaluated_label
from ..metrics.ood import false_alarm_sentence, threshold_text
from ._baselines_output import print_baselines
from ._common import _num, metrics_table


def findings_table(m: dict, title: str) -> Table:
    """A multi-label evaluation: one row per finding (positives, AUC with its CI, sensitivity, specificity), macro and
    micro AUC with their CIs in the caption."""
    f = m["findings"]
    s, ci = f["summary"], f.get("ci") or {}
    caption = ", ".join(f"{name.replace('_auc', '')} AUC {ci_text(ci.get(name) or {'value': s[name]})}"
                        for name in ("macro_auc", "micro_auc")) + "; patients resampled for the CIs; n/e = not estimable"
    table = Table(title=title, caption=caption)
    for column in ("finding", "positives / n", "positive patients", "AUC", "95% CI", "sensitivity", "specificity",
                   "threshold"):
        table.add_column(column, justify="left" if column == "finding" else "right")
    for r in f["per_finding"]:
        interval = "n/e" if r.get("ci_note") else (f"{_num(r.get('roc_auc_low'))} – {_num(r.get('roc_auc_high'))}"
                                                    if "roc_auc_low" in r else "")
        table.add_row(r["finding"], f"{r['positives']} / {r['n']}", str(r.get("positive_patients", "–")),
                      _num(r["roc_auc"]), interval, _num(r["sensitivity"]), _num(r["specificity"]), _num(r["threshold"]))
    return table


def external_table(m: dict) -> Table | None:
    """Internal test vs external data with the differences (macro and per finding for multi-label)."""
    ext = m.get("external") or {}
    if "comparison" not in ext:
        return None
    table = Table(title="Internal test vs external data (95% CIs, patients resampled)")
    for column in ("metric", "internal test", "external", "difference"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    rows = list(ext["comparison"].items())
    rows += [(f"{f} {n}", c) for f, per in (ext.get("per_finding") or {}).items() for n, c in per.items() if n == "roc_auc"]
    for name, c in rows:
        table.add_row(name, ci_text(c["internal"]), ci_text(c["external"]), ci_text(c["difference"]))
    return table


def subgroups_table(m: dict) -> Table | None:
    """One row per subgroup: images, patients and the metrics with CIs (multi-label: macro AUC and every finding's AUC);
    flagged cells marked with !."""
    sub = m.get("subgroups")
    if not sub:
        return None
    findings = m["classes"] if m.get("task") == "multi_label" else []
    table = Table(title=f"Subgroups ({sub['spec']}); ! = {sub['flag_rule']}")
    for column in ("subgroup", "images", "patients", *sub["metrics"], *(f"{f} AUC" for f in findings)):
        table.add_column(column, justify="left" if column == "subgroup" else "right")
    for g in sub["groups"]:
        cells = [("! " if n in g["flagged"] else "") + ci_text(g["metrics"][n]) for n in sub["metrics"]]
        cells += [("! " if f in g.get("flagged_findings", []) else "") + ci_text(g["per_finding"][f]["roc_auc"]) for f in findings]
        table.add_row(f"{g['column']}={g['subgroup']}", str(g["n_images"]), str(g["n_patients"]), *cells)
    return table


def print_evaluation(console: Console, m: dict) -> None:
    """Everything a user needs from one evaluation without opening metrics.json."""
    leak = m["leak_check"]
    ids_warning = (leak.get("patient_ids") or {}).get("warning")  # a run split by image, or data without ids
    style = "yellow" if not leak["checked"] or (leak["clean"] and ids_warning) else ("green" if leak["clean"] else "bold red")
    console.print(f"[{style}]{escape(leak['statement'])}[/]")
    if (m.get("shift") or {}).get("large"):
        console.print(f"[bold red]{escape(m['shift']['warning'])}[/]")
    title = f"{m['model']['name']} on {m['data']['n_predicted']} images ({evaluated_label(m['data'])})"
    console.print(findings_table(m, title) if m.get("task") == "multi_label" else metrics_table(m, title))
    pat = m.get("patients") or {}
    if pat.get("patients_per_class"):
        console.print(f"Per patient: {pat['n_patients']} patients ("
                      + ", ".join(f"{escape(c)} {n}" for c, n in pat["patients_per_class"].items())
                      + f"; patient label = {escape(pat['label_rule'])}).")
    if pat.get("warning"):
        console.print(f"[yellow]{escape(pat['warning'])}[/]")
    ood = m.get("ood") or {}
    if ood.get("available"):
        console.print(f"{ood['n_flagged']} of {ood['n_scored']} images ({100 * ood['share_flagged']:.1f}%) flagged "
                      f"out-of-distribution (score above {threshold_text(ood)}). "
                      + false_alarm_sentence(ood))
    for table in (external_table(m), subgroups_table(m)):
        if table is not None:
            console.print(table)
    ext = m.get("external") or {}
    for warning in ext.get("warnings", []):
        console.print(f"[bold red]Dataset shift: {escape(warning)}[/]")
    if ext.get("internal_missing"):
        console.print(f"[yellow]No internal comparison: {escape(ext['internal_missing'])}.[/]")
    sub = m.get("subgroups") or {}
    flagged = [f"{g['column']}={g['subgroup']}" for g in sub.get("groups", []) if g["flagged"] or g.get("flagged_findings")]
    if flagged:
        console.print(f"[bold red]Subgroups below the overall estimate: {', '.join(flagged)}[/]")
    print_baselines(console, m)
    rare = m.get("rare_findings") or []
    for r in rare:
        console.print(f"[yellow]Rare finding {escape(r['finding'])} ({r['where']}): {escape(r['reason'])}[/]")
    for style, line in shortcut_lines(m):
        console.print(f"[{style}]{escape(line)}[/]")
    for name, status in (m.get("sections") or {}).items():
        if not status["applied"]:
            console.print(f"[dim]{status['title']}: not applied ({escape(status['reason'])})[/]")


__all__ = ["external_table", "findings_table", "print_evaluation", "subgroups_table"]
