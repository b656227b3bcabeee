"""``medclass evaluate``: held-out metrics with CIs, a checked leak statement and a self-contained report."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from ._common import DataFlags, console, data_options, friendly_errors
from ._evaluation_output import findings_table, print_evaluation  # noqa: F401  (findings_table: tests)


@data_options
def evaluate_command(
    run: Annotated[Path, typer.Argument(help="Run folder (workspace/<project>/<experiment>) or checkpoint file.")],
    data: Annotated[Optional[str], typer.Option(help="External data to evaluate instead of the run's own split.")] = None,
    split: Annotated[str, typer.Option(help="Split to evaluate: test (held out), or val/train of the run.")] = "test",
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default: the run folder).")] = None,
    n_boot: Annotated[int, typer.Option(help="Bootstrap replicates for the 95% CIs (0 = none).")] = 1000,
    tta: Annotated[Optional[bool], typer.Option("--tta/--no-tta", help="Flip test-time augmentation (default: the run's setting).")] = None,
    cam_samples: Annotated[int, typer.Option(help="Grad-CAM images per class and outcome in the report.")] = 4,
    batch_size: Annotated[int, typer.Option(help="Images per inference batch.")] = 64,
    num_workers: Annotated[int, typer.Option(help="DataLoader worker processes.")] = 2,
    pdf: Annotated[bool, typer.Option(help="Also write report.pdf with the figures.")] = False,
    subgroups: Annotated[str, typer.Option(help="Metrics per subgroup of metadata columns, numeric ones binned at "
                                                "cut points: sex,age:18:65,view (age bins <18, 18-65, >=65).")] = "",
    baselines: Annotated[str, typer.Option(help="Metadata baselines: a logistic regression on these columns alone "
                                                "(view,sex,age), fitted on the run's training rows, against the image "
                                                "model, with a warning when the model does not beat it.")] = "",
    recalibrate: Annotated[bool, typer.Option(help="External data: also fit a threshold and temperature on a "
                                                   "patient-disjoint half and evaluate them on the other half (declared).")] = False,
    shortcuts: Annotated[str, typer.Option(help="Shortcut checks: occlusion (border-only / centre-only AUC), cam (Grad-CAM "
                                                "share in the border band or mask), all, or none.")] = "all",
    shortcut_images: Annotated[int, typer.Option(help="Images (a seeded sample) whose Grad-CAM the cam check measures.")] = 200,
    *, data_flags: DataFlags,
) -> None:
    """Evaluate a trained model on held-out data: metrics.json, predictions.csv and report.html."""
    from ..artifacts import EvalDir
    from ..evaluation.evaluate import evaluate

    with friendly_errors():
        result = evaluate(run, data=data, split=split, out=out, n_boot=n_boot, cam_samples=cam_samples, tta=tta,
                          batch_size=batch_size, num_workers=num_workers, report=not pdf,
                          data_settings=data_flags.values(), subgroups=subgroups, recalibrate=recalibrate,
                          baselines=baselines, shortcuts=shortcuts, shortcut_images=shortcut_images)
        if pdf:
            from ..evaluation.report import write_report

            result.files["report"] = write_report(result, EvalDir(result.out_dir).report, pdf=True)
    print_evaluation(console, result.metrics)
    for name, path in result.files.items():
        console.print(f"[bold]{name}:[/] {path}")


def ood_fit_command(
    run: Annotated[Path, typer.Argument(help="Finished run folder (best.safetensors and split.csv).")],
    num_workers: Annotated[int, typer.Option(help="DataLoader worker processes.")] = 0,
) -> None:
    """Add out-of-distribution statistics to a run trained before they existed (training and validation images)."""
    from ..metrics.ood import threshold_text
    from ..training.finalize import add_ood

    with friendly_errors():
        ood = add_ood(run, num_workers=num_workers)
    if ood is None:
        console.print("[yellow]Too few readable training/validation images: no OOD statistics stored.[/]")
    else:
        console.print(f"OOD statistics stored in {run}: fitted on {ood.n_train} training images, threshold "
                      + threshold_text({"threshold": ood.threshold, "quantile": ood.quantile,
                                        "n_calibration": ood.n_calibration, "n_val": ood.n_val}) + ".")


def register(app: typer.Typer) -> None:
    """Add `evaluate` and `ood-fit`."""
    app.command("evaluate")(evaluate_command)
    app.command("ood-fit")(ood_fit_command)
