"""What ``medclass evaluate --baselines COLUMNS`` prints, read from ``metrics.json["baselines"]``: one row per target
(the baseline's AUC, the image model's, their paired difference, each with its 95% CI) and the warnings in red."""
from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..evaluation._render import ci_text
from ..evaluation.sections.baselines import difference_text


def print_baselines(console: Console, m: dict) -> None:
    """The metadata-baseline table and, in red, every comparison where the image model does not beat the baseline."""
    b = m.get("baselines")
    if not b:
        return
    table = Table(title=f"Shortcuts: metadata baseline on {', '.join(b['columns'])} (95% CIs, patients resampled, paired)")
    for column in ("target", "baseline AUC", "image model AUC", "difference", "verdict"):
        table.add_column(column, justify="left" if column in ("target", "verdict") else "right")
    for c in b["comparisons"]:
        verdict = f"[bold red]{c['verdict']}[/]" if c["warning"] else c["verdict"]
        table.add_row(escape(c["target"]), ci_text(c["baseline_auc"]), ci_text(c["image_auc"]), difference_text(c["difference"]),
                      verdict)
    console.print(table)
    for warning in b["warnings"]:
        console.print(f"[bold red]Shortcut warning: {escape(warning)}[/]")
    for target, reason in b["skipped"].items():
        console.print(f"[yellow]{escape(target)}: no metadata baseline ({escape(reason)})[/]")
