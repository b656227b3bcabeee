"""``medclass train``: one run from a data path and a model name, or from a YAML config with overrides."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from ..config import DEFAULT_MODELS, VOLUME_DEFAULT
from ..pipeline import QUICKSTART
from ._common import DataFlags, console, data_options, friendly_errors, metrics_table, show_progress

if TYPE_CHECKING:
    from ..config import RunConfig
    from ..experiments.crossval import CVResult
    from ..training import RunResult


_IMAGE, _VOLUME = DEFAULT_MODELS["image"], DEFAULT_MODELS[VOLUME_DEFAULT]
MODEL_HELP = (f"Registered model name (see `medclass models`). Default: {_IMAGE.name} for 2-D images; for CT/MRI volumes "
              f"{_VOLUME.name} ({VOLUME_DEFAULT}, {_VOLUME.image_size} voxels a side unless --image-size is given), "
              "chosen on lidc_nodules (README, 'CT and MRI as volumes'); the output says which model was used and why.")


@data_options
def train_command(
    config: Annotated[Optional[Path], typer.Argument(help="YAML config (any subset of fields; see `medclass config`).")] = None,
    data: Annotated[Optional[str], typer.Option(help="Data: class folders, CSV manifest, .npz, DICOM folder or a `medclass datasets` name.")] = None,
    model: Annotated[Optional[str], typer.Option(help=MODEL_HELP)] = None,
    project: Annotated[Optional[str], typer.Option(help="Workspace project.")] = None,
    experiment: Annotated[Optional[str], typer.Option(help="Experiment name (default: model and time).")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Maximum epochs.")] = None,
    image_size: Annotated[Optional[int], typer.Option(help="Square input size in pixels.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Batch size per device.")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate.")] = None,
    in_chans: Annotated[Optional[int], typer.Option(help="1 = grayscale, 3 = RGB.")] = None,
    weights: Annotated[Optional[str], typer.Option(help="Local weights file to start from (.safetensors / tensor-only .pth).")] = None,
    pretrained: Annotated[bool, typer.Option(help="Start from ImageNet weights: offline for models whose weights "
                                                   "are installed (efficientnet_lite0, the quickstart's), otherwise downloaded from the timm hub.")] = False,
    freeze_epochs: Annotated[Optional[int], typer.Option(help="Train only the head for N epochs, then fine-tune.")] = None,
    devices: Annotated[Optional[str], typer.Option(help="Lightning devices (auto, N, or 0,1).")] = None,
    num_nodes: Annotated[Optional[int], typer.Option(help="Nodes for multi-node DDP.")] = None,
    strategy: Annotated[Optional[str], typer.Option(help="Lightning strategy (auto, ddp, ddp_spawn...).")] = None,
    folds: Annotated[int, typer.Option(help="K-fold cross-validation by patient (0 = one train/val/test split).")] = 0,
    resume: Annotated[Optional[Path], typer.Option(help="Resume the run (or cross-validation) folder workspace/<project>/<experiment>.")] = None,
    mlflow: Annotated[Optional[str], typer.Option(help="Also log to MLflow: a folder, sqlite:///x.db or http://host:port.")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override any field: section.field=value (repeatable).")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
    *, data_flags: DataFlags,
) -> None:
    """Train a classifier; results go to workspace/<project>/<experiment>/.

    Example: medclass train --data ../shared/data/nih_cxr/labels.csv --path-column image --patient-column patient_id
    --where "view in [PA, AP]" --label-map no_finding=normal
    """
    from ..config import RunConfig, apply_overrides, load_config
    from ..utils import epoch_number

    with friendly_errors():
        if resume is not None:
            from ..experiments.crossval import is_cross_validation, resume_cross_validation

            if is_cross_validation(resume):
                cv = resume_cross_validation(resume, progress=show_progress(quiet), mlflow=mlflow)
                _print_cv(cv, mlflow)
                return
            result = _train(None, mlflow, resume=resume, progress=show_progress(quiet))
        else:
            cfg = load_config(config) if config else RunConfig()
            flags = {"data.path": data, "model.name": model, "project": project, "experiment": experiment,
                     "train.epochs": epochs, "model.image_size": image_size, "train.batch_size": batch_size,
                     "train.lr": lr, "model.in_chans": in_chans, "model.weights": weights,
                     "train.freeze_epochs": freeze_epochs, "train.devices": devices, "train.num_nodes": num_nodes,
                     "train.strategy": strategy}
            overrides = [f"{k}={v}" for k, v in flags.items() if v is not None]
            if pretrained:
                overrides.append("model.pretrained=true")
            cfg = data_flags.apply(apply_overrides(cfg, overrides + list(set_ or []))).validate()  # before torch is even imported
            if _data_line(cfg.data.path):
                console.print(_data_line(cfg.data.path), soft_wrap=True)
            cfg = _chosen_model(cfg)
            if folds:
                from ..experiments.crossval import cross_validate

                cv = cross_validate(cfg, folds=folds, progress=show_progress(quiet), mlflow=mlflow)
                _print_cv(cv, mlflow)
                return
            result = _train(cfg, mlflow, progress=show_progress(quiet))
        if result.early_stop:
            console.print(f"[yellow]early stopping:[/] {result.early_stop}")
        baseline = ", ".join(f"{k} {v:.3f}" for k, v in (result.baseline or {}).items() if k.startswith("val_"))
        console.print(f"[bold green]done[/] in {result.wall_time_s:.0f} s; best epoch {epoch_number(result.best_epoch)} "
                      f"(monitored value {result.best_score:.4f})" + (f"; untrained baseline: {baseline}" if baseline else ""))
        _print_positive(result.best_checkpoint)
        console.print(f"[bold]results:[/] {result.run_dir}")


def _print_positive(checkpoint: Path) -> None:
    """The positive class and threshold of a two-class run (nothing for other runs)."""
    from ..artifacts import read_meta
    from .data import positive_line

    meta = read_meta(checkpoint)
    if meta.binary:
        console.print(positive_line(meta.classes[1]) + f"; threshold {meta.threshold:.3f} (chosen on validation)")


def _chosen_model(cfg: "RunConfig") -> "RunConfig":
    """``cfg`` with ``model.name=auto`` replaced by the default for its data, said on the console (which and why)."""
    from ..training.runner import resolve_model

    cfg, why = resolve_model(cfg)
    if why:
        console.print(f"[bold]model:[/] {why}", soft_wrap=True)
    return cfg


def _data_line(path: str) -> str:
    """'' unless a new run trains on the default data (no --data, none in the config): then a line naming it."""
    from ..config import DEFAULT_DATA
    from ..data.catalog import SAMPLE

    if path != DEFAULT_DATA:
        return ""
    return (f"[bold]data:[/] {DEFAULT_DATA}, the {SAMPLE.images} chest X-rays shipped with medclass (no --data "
            "given; pass --data FOLDER_OR_CSV to train on your own images)")


def _train(cfg: "RunConfig | None", mlflow: str | None, **kwargs: Any) -> "RunResult":
    """``train`` (``cfg`` or ``resume=RUN``), tracked in MLflow when ``mlflow`` is given."""
    from ..training import train

    if not mlflow:
        return train(cfg, **kwargs)
    from ..experiments.tracking import track_training

    result, run_id = track_training(cfg, mlflow, **kwargs)
    console.print(f"[bold]MLflow run:[/] {run_id} at {mlflow}")
    return result


def _print_cv(cv: "CVResult", mlflow: str | None) -> None:
    console.print(cv.summary_table())
    findings = cv.findings_table()
    if findings is not None:
        console.print(findings)
    console.print(f"[bold]cross-validation results:[/] {cv.out_dir}")
    if mlflow:
        console.print(f"[bold]MLflow:[/] each fold and the summary logged at {mlflow}")


def config_command(
    config: Annotated[Optional[Path], typer.Argument(help="A YAML config to check and print in full (default: the defaults).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override any field: section.field=value (repeatable).")] = None,
) -> None:
    """Print every config field as YAML with its value, meaning and allowed values (edit it and pass it to `medclass train`)."""
    from ..config import RunConfig, apply_overrides, commented_yaml, load_config

    with friendly_errors():
        cfg = apply_overrides(load_config(config) if config else RunConfig(), list(set_ or []))
        cfg.validate(devices=False)
    typer.echo(commented_yaml(cfg), nl=False)


@data_options
def quickstart_command(
    data: Annotated[str, typer.Option(help="A path or a data set name from `medclass datasets` "
                                            "(default: the chest X-ray sample shipped with medclass).")] = "",
    model: Annotated[str, typer.Option(help="Registered model name.")] = QUICKSTART.model,
    image_size: Annotated[int, typer.Option(help="Square input size in pixels.")] = QUICKSTART.image_size,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = QUICKSTART.epochs,
    workspace: Annotated[str, typer.Option(help="Workspace root.")] = "workspace",
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override any field: section.field=value.")] = None,
    *, data_flags: DataFlags,
) -> None:
    """The main job: data check, patient-level split with leak audit, short training, held-out evaluation.

    Own data takes the same data flags as `train`, e.g. medclass quickstart --data covid/metadata.csv
    --path-column filename --label-column finding --patient-column patient_id --positive covid
    """
    from ..config import DEFAULT_DATA
    from ..pipeline import quickstart

    with friendly_errors():
        out = quickstart(data or DEFAULT_DATA, workspace=workspace, model=model, image_size=image_size,
                         epochs=epochs, overrides=list(set_ or []), progress=show_progress(),
                         data_settings=data_flags.values())
    m = out["evaluation"].metrics
    audit = out["check"]["audit"]["counts"]
    console.print(f"[bold]data check:[/] {out['check']['source']['images']} images; "
                  f"{audit['exact_groups']} groups of identical images; written to {out['data_check']}")
    console.print(f"[bold]baseline (untrained, validation):[/] AUC {out['baseline'].get('val_auc', float('nan')):.3f}")
    _print_positive(out["run_dir"] / "best.safetensors")
    console.print(f"[bold]held-out test:[/] {m.get('leak_check', {}).get('statement', '')}")
    console.print(metrics_table(m, "test metrics"))
    console.print(f"[bold green]results:[/] {out['run_dir']}\n[bold green]report:[/] {out['report']}")


def register(app: typer.Typer) -> None:
    """Add `train`, `config` and `quickstart`."""
    app.command("quickstart")(quickstart_command)
    app.command("train")(train_command)
    app.command("config")(config_command)
