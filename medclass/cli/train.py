"""``medclass train``: one run from a data path and a model name, or from a YAML config with overrides."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import console, friendly_errors


def train_command(
    config: Annotated[Optional[Path], typer.Argument(help="YAML config (any subset of fields; see `medclass config`).")] = None,
    data: Annotated[Optional[str], typer.Option(help="Data: class folders, CSV manifest, .npz or DICOM folder.")] = None,
    model: Annotated[Optional[str], typer.Option(help="Registered model name (see `medclass models`).")] = None,
    project: Annotated[Optional[str], typer.Option(help="Workspace project.")] = None,
    experiment: Annotated[Optional[str], typer.Option(help="Experiment name (default: model and time).")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Maximum epochs.")] = None,
    image_size: Annotated[Optional[int], typer.Option(help="Square input size in pixels.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Batch size per device.")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate.")] = None,
    in_chans: Annotated[Optional[int], typer.Option(help="1 = grayscale, 3 = RGB.")] = None,
    weights: Annotated[Optional[str], typer.Option(help="Local weights file to start from (.safetensors / tensor-only .pth).")] = None,
    pretrained: Annotated[bool, typer.Option(help="ImageNet weights from the timm hub (needs internet).")] = False,
    freeze_epochs: Annotated[Optional[int], typer.Option(help="Train only the head for N epochs, then fine-tune.")] = None,
    devices: Annotated[Optional[str], typer.Option(help="Lightning devices (auto, N, or 0,1).")] = None,
    num_nodes: Annotated[Optional[int], typer.Option(help="Nodes for multi-node DDP.")] = None,
    strategy: Annotated[Optional[str], typer.Option(help="Lightning strategy (auto, ddp, ddp_spawn...).")] = None,
    folds: Annotated[int, typer.Option(help="K-fold cross-validation by patient (0 = one train/val/test split).")] = 0,
    resume: Annotated[Optional[Path], typer.Option(help="Resume the run folder workspace/<project>/<experiment>.")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override any field: section.field=value (repeatable).")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Train a classifier; results go to workspace/<project>/<experiment>/."""
    from ..config import RunConfig, apply_overrides, load_config
    from ..training import train

    with friendly_errors():
        if resume is not None:
            result = train(resume=resume, progress=not quiet)
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
            cfg = apply_overrides(cfg, overrides + list(set_ or []))
            if folds:
                from ..experiments.crossval import cross_validate

                cv = cross_validate(cfg, folds=folds, progress=not quiet)
                console.print(cv.summary_table())
                console.print(f"[bold]cross-validation results:[/] {cv.out_dir}")
                return
            result = train(cfg, progress=not quiet)
        console.print(f"[bold green]done[/] in {result.wall_time_s:.0f} s; best epoch {result.best_epoch} "
                      f"({result.best_score:.4f}); baseline {result.baseline}")
        console.print(f"[bold]results:[/] {result.run_dir}")


def config_command() -> None:
    """Print the default config as YAML (every field; edit and pass to `medclass train`)."""
    import yaml

    from ..config import RunConfig

    typer.echo(yaml.safe_dump(RunConfig().to_dict(), sort_keys=False))


def register(app: typer.Typer) -> None:
    """Add `train` and `config`."""
    app.command("train")(train_command)
    app.command("config")(config_command)
