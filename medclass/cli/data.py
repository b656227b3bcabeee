"""``medclass data ...``: look at a data set before training on it."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ._common import CLUSTER_HELP, DataFlags, console, data_options, friendly_errors

data_app = typer.Typer(help="Inspect data sets: counts, patients, sizes, leaks, quality.", no_args_is_help=True)
_SHOW = 10  # groups / files listed per table (the JSON report has them all)


def _counts_table(report: dict[str, Any]) -> Table:
    counts = report["counts"]
    if "findings" in counts:
        return _findings_table(counts["findings"])
    classes = report["source"]["classes"]
    table = Table(title="Images (patients) per split and class")
    table.add_column("split")
    for c in classes:
        table.add_column(c, justify="right")
    for split, per_class in counts["images"].items():
        patients = counts["patients"].get(split, {})
        cells = [f"{per_class.get(c, 0)} ({patients.get(c, 0)})" for c in classes]
        table.add_row(split, *cells)
    return table


def _findings_table(rows: list[dict]) -> Table:
    """Multi-label: positive images (patients) per finding and split, masked labels in brackets."""
    splits = list(dict.fromkeys(r["split"] for r in rows))
    table = Table(title="Positive images (patients) per finding and split [masked labels]")
    table.add_column("finding")
    for s in splits:
        table.add_column(s or "unsplit", justify="right")
    for finding in dict.fromkeys(r["finding"] for r in rows):
        cells = {r["split"]: f"{r['positive_images']} ({r['positive_patients']})"
                 + (f" [{r['masked_images']}]" if r["masked_images"] else "") for r in rows if r["finding"] == finding}
        table.add_row(escape(finding), *(cells.get(s, "0 (0)") for s in splits))
    return table


def _groups_table(title: str, groups: list[dict], total: int) -> Table:
    table = Table(title=title)
    for col in ("images", "splits", "patients", "labels", "first paths"):
        table.add_column(col)
    leaking_first = sorted(groups, key=lambda g: (not g["cross_split"], not g["cross_patient"], not g["conflicting_labels"]))
    for g in leaking_first[:_SHOW]:
        table.add_row(
            str(len(g["rows"])), ", ".join(sorted(set(g["splits"]) - {""})) or "-",
            ", ".join(sorted(set(g["patients"]) - {""})) or "-", ", ".join(sorted(set(g["labels"]))),
            escape("\n".join(Path(p).name for p in g["paths"][:3])),
        )
    if total > _SHOW:
        table.caption = f"... and {total - _SHOW} more (see data_check.json)"
    return table


def _files_table(title: str, rows: list[dict], limit: int | None = _SHOW) -> Table:
    table = Table(title=title)
    table.add_column("file")
    table.add_column("reason")
    for row in rows[:limit]:
        frame = f" (frame {row['frame']})" if int(row.get("frame", -1)) >= 0 else ""
        table.add_row(escape(Path(row["path"]).name + frame), escape(str(row["reason"])))
    if limit is not None and len(rows) > limit:
        table.caption = f"... and {len(rows) - limit} more (see data_check.json)"
    return table


def positive_line(positive: str) -> str:
    """The positive class of a two-class task, said where a person reads the data and the results."""
    return (f"Positive class: [bold]{escape(positive)}[/] (decided by P({escape(positive)}) >= threshold; sensitivity "
            "is measured on it; change it with --positive CLASS)")


def print_report(report: dict[str, Any]) -> None:
    """Print a :func:`~medclass.data.check.check_data` report with rich tables."""
    src, sizes = report["source"], report["sizes"]
    console.print(f"[bold]{escape(str(src['path']))}[/]: {src['images']} images, source {src['type']}, classes {src['classes']}")
    if src.get("positive"):
        console.print(positive_line(src["positive"]))
    filters = {k: v for k, v in report.get("filters", {}).items() if v}
    if filters:
        console.print("Read with " + escape(", ".join(f"data.{k}={v!r}" for k, v in filters.items())))
    console.print(_counts_table(report))
    c = report["counts"]
    console.print(f"{c['patients_total']} patients; {c['images_without_patient']} images without a patient id. "
                  f"Patient ids from: {escape(report['patients']['how'])}.")
    if sizes.get("readable"):
        w, h = sizes["width"], sizes["height"]
        console.print(f"Sizes: width {w['min']}-{w['max']} (median {w['median']:g}), "
                      f"height {h['min']}-{h['max']} (median {h['median']:g}); modes {sizes['modes']}")
    if "volumes" in report:
        _print_volumes(report["volumes"])
    audit = report["audit"]
    console.print(f"[bold]Leak audit[/]\n{audit['summary']}")
    if audit["patient_overlap"]:
        console.print("Patients in several splits: " + ", ".join(
            f"{p['patient']} {p['splits']}" for p in audit["patient_overlap"][:_SHOW]))
    if audit["exact_groups"]:
        console.print(_groups_table("Byte-identical images", audit["exact_groups"], audit["counts"]["exact_groups"]))
    if audit["near_groups"]:
        console.print(_groups_table("Near-duplicate images", audit["near_groups"], audit["counts"]["near_groups"]))
    console.print(f"{sizes['readable']} of {src['images']} images readable.")
    if report["unreadable"]:
        console.print(_files_table(f"Unreadable ({report['listed']['unreadable']['total']})", report["unreadable"], limit=None))
    flags = [q for q in report["quality"] if not q["reason"].startswith("unreadable")]
    console.print(_files_table(f"Quality flags ({len(flags)})", flags) if flags else "Quality: nothing else flagged.")
    if report["skipped"]:
        console.print(_files_table(f"Skipped by the loader ({report['listed']['skipped']['total']})", report["skipped"],
                                   limit=None))
    for w in report["warnings"]:
        console.print(f"[bold yellow]warning ({w['kind']}):[/] {escape(w['message'])}")
    if not report["warnings"]:
        console.print("[green]No warnings: split sizes, labels per patient, balance and acquisitions look fine.[/]")


def _print_volumes(v: dict[str, Any]) -> None:
    """The volume part of a data check: shapes, spacings, slices, thin and inconsistent volumes."""
    if v.get("readable"):
        shape, mm = v["shape"], v["spacing_mm"]
        console.print("Volumes (x, y, z): " + ", ".join(f"{a} {shape[a]['min']:g}-{shape[a]['max']:g} (median "
                      f"{shape[a]['median']:g})" for a in "xyz") + "; spacing mm " + ", ".join(
                      f"{a} {mm[a]['min']:g}-{mm[a]['max']:g}" for a in "xyz"))
        console.print(f"Slices per volume: {v['slices']['counts']}")
    for note in v["notes"]:
        console.print(f"[yellow]note:[/] {escape(note)}")
    if v["thin"]:
        console.print(_files_table(f"Thin volumes ({len(v['thin'])})", v["thin"]))
    if v["inconsistent"]:
        console.print(_files_table(f"Inconsistent volumes ({len(v['inconsistent'])})", v["inconsistent"], limit=None))


@data_app.command("check")
@data_options
def check(
    path: Annotated[str, typer.Argument(help="Folder of class folders, CSV manifest, .npz or DICOM folder.")],
    out: Annotated[Path | None, typer.Option(help="Folder to write data_check.json into.")] = None,
    source: Annotated[str, typer.Option(help="auto | folders | csv | npz | dicom")] = "auto",
    preset: Annotated[str, typer.Option(help="Rules of a published data set, e.g. kermany_chest_xray ('' = none).")] = "",
    near_duplicates: Annotated[bool, typer.Option(help="Look for near-duplicates by perceptual hash.")] = True,
    workers: Annotated[int | None, typer.Option(help="Processes reading images (default: all cores).")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Fingerprint cache folder (fast re-checks).")] = None,
    cluster: Annotated[str, typer.Option(help=CLUSTER_HELP)] = "",
    *, data_flags: DataFlags,
) -> None:
    """Counts per class/split, patients, image sizes, leak audit, quality flags and unreadable files.

    Example: medclass data check ../shared/data/nih_cxr/labels.csv --path-column image --patient-column patient_id
    """
    from ..config import RunConfig
    from ..data.check import REPORT_FILE, check_data

    with friendly_errors():
        cfg = data_flags.apply(RunConfig.from_dict({"data": {"path": path, "source": source, "preset": preset}})).data
        report = check_data(cfg, out=out, near_duplicates=near_duplicates, workers=workers, cache_dir=cache_dir,
                            progress=True, log_warnings=False, cluster=cluster)
    print_report(report)
    if out is not None:
        console.print(f"Report written to {out / REPORT_FILE}")


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group to the main app."""
    app.add_typer(data_app, name="data")
