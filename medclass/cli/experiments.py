"""``medclass compare`` and ``medclass tune``: experiments over runs (``train --folds K`` is in train.py)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from ._common import DataFlags, console, data_options, err_console, friendly_errors, show_progress


def compare_command(
    runs: Annotated[list[str], typer.Argument(help="Run folders or project/experiment names (two or more to compare).")],
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default: <workspace>/comparisons/<a>-vs-<b>...).")] = None,
    workspace: Annotated[str, typer.Option(help="Workspace where project/experiment names are looked up.")] = "workspace",
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples of the paired AUC test.")] = 2000,
) -> None:
    """Compare runs: size, cost, curves, test metrics with CIs, and paired AUC tests on shared test images."""
    from ..experiments.compare import compare_runs

    with friendly_errors():
        if out is None:
            out = Path(workspace) / "comparisons" / "-vs-".join(Path(r).name for r in runs)[:120]
        cmp = compare_runs(runs, out, workspace=workspace, n_boot=n_boot)
    console.print(cmp.rich_table())
    for sentence in cmp.sentences:
        console.print(f"• {escape(sentence)}")
    for note in cmp.notes:
        console.print(f"[yellow]• {escape(note)}[/]")
    if not cmp.sentences and not cmp.notes and len(runs) > 1:
        console.print("No paired test: the runs were not evaluated on the same images (see `medclass evaluate`).")
    console.print(f"[bold]comparison:[/] {cmp.files.get('html', cmp.files['csv'])}")


def _trials_table(trials, limit: int = 15) -> Table:
    t = Table(title="Trials (best first)")
    params = [c for c in trials.columns if c.startswith("params_")]
    for col in ("trial", "state", "value", *(p[len("params_"):] for p in params)):
        t.add_column(col, justify="right")
    for _, row in trials.head(limit).iterrows():
        value = row["value"]
        t.add_row(str(row["number"]), row["state"], "-" if value is None or math.isnan(value) else f"{value:.4f}",
                  *(f"{row[p]:.3g}" if isinstance(row[p], float) else str(row[p]) for p in params))
    return t


@data_options
def tune_command(
    config: Annotated[Optional[Path], typer.Argument(help="YAML config of the base run (see `medclass config`).")] = None,
    data: Annotated[Optional[str], typer.Option(help="Data: class folders, CSV manifest, .npz or DICOM folder.")] = None,
    trials: Annotated[int, typer.Option(help="Finished trials wanted in the study (counting earlier calls).")] = 20,
    study: Annotated[str, typer.Option(help="Study name (default: the experiment name or tune-<model>).")] = "",
    storage: Annotated[Optional[str], typer.Option(help="Optuna RDB URL or .db path (default: sqlite:///<workspace>/<project>/tune.db).")] = None,
    space: Annotated[Optional[Path], typer.Option(help="YAML search space: each config key maps to a list of choices or to {low, high, log}.")] = None,
    timeout: Annotated[Optional[float], typer.Option(help="Start no new trial after this many seconds.")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override any field: section.field=value (repeatable).")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
    *, data_flags: DataFlags,
) -> None:
    """Search hyper-parameters with Optuna (pruned per epoch, resumable: rerun the same command to continue)."""
    from ..config import RunConfig, apply_overrides, load_config

    with friendly_errors():
        cfg = load_config(config) if config else RunConfig()
        cfg = data_flags.apply(apply_overrides(cfg, ([f"data.path={data}"] if data else []) + list(set_ or []))).validate()
        from ..experiments._search import load_space
        from ..experiments.tune import tune  # after the config check; a missing optuna is a one-line error

        search_space = load_space(space) if space else None
        try:
            result = tune(cfg, trials, study_name=study, storage=storage, search_space=search_space, timeout=timeout,
                          progress=show_progress(quiet))
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted:[/] the study is saved; run the same command again to resume.")
            raise typer.Exit(code=130) from None
    ranked = result.trials.sort_values("value", ascending=cfg.train.monitor.endswith("loss"), na_position="last")
    console.print(_trials_table(ranked))
    console.print(f"trials: {result.counts}; storage {result.storage}")
    if result.best_config is None:
        console.print("[yellow]No complete trial yet.[/]")
        return
    console.print(f"[bold green]best[/] {cfg.train.monitor} = {result.best_value:.4f} with {result.best_params}")
    from ..artifacts import TuneDir

    best = TuneDir(result.out_dir).best_config
    console.print(f"[bold]best config:[/] {best}  (train it: medclass train {best})")
    if result.comparison is not None:
        console.print(f"[bold]comparison of the best trials:[/] {result.comparison.files.get('html')}")


def register(app: typer.Typer) -> None:
    """Add `compare` and `tune`."""
    app.command("compare")(compare_command)
    app.command("tune")(tune_command)
