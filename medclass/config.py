"""The one configuration of a run: a dataclass with a comment on every field.

A run is fully described by a :class:`RunConfig`. It is loaded from YAML, overridden from the
command line with ``section.field=value`` strings, written as ``config.yaml`` into the run folder
and embedded in every checkpoint.

Example:
    >>> cfg = RunConfig()
    >>> cfg = apply_overrides(cfg, ["model.name=resnet18", "train.epochs=3"])
    >>> cfg.model.name, cfg.train.epochs
    ('resnet18', 3)
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, did_you_mean

DEFAULT_DATA = "../shared/data/chest_xray"


@dataclass
class DataConfig:
    """Where the images are, how they are labelled, grouped by patient and split."""

    path: str = DEFAULT_DATA  # folder of class folders, CSV manifest, .npz file or DICOM folder
    source: str = "auto"  # auto | folders | csv | npz | dicom
    image_root: str = ""  # csv: folder the CSV paths are relative to ('' = the CSV's folder)
    path_column: str = "path"  # csv: column with the image path or id
    label_column: str = "label"  # csv: column with the class (name or number)
    patient_column: str = ""  # csv: column with the patient id ('' = none)
    path_template: str = "{}"  # csv: turns the path column into a file name, e.g. "{:03d}.png"
    class_names: list[str] = field(default_factory=list)  # csv/npz: names for numeric labels, in order
    preset: str = ""  # rules of a published data set ('' = none; kermany_chest_xray: patient ids and sub-labels from its file names)
    patient_regex: str = ""  # rule for the patient id from the file name: '' (the preset's, else none), 'none', 'chest_xray' or a regex with one group
    label_from_name: str = ""  # derive the label from the file name with a relabelling of data.preset, e.g. 'chest_xray_3class'
    classes: list[str] = field(default_factory=list)  # keep only these classes, in this order ('' = all, sorted)
    label_map: dict[str, str] = field(default_factory=dict)  # rename, merge or drop labels: {covid: pneumonia, unknown: drop} or "covid=pneumonia,unknown=drop"
    where: str = ""  # keep only rows matching this pandas query on the table's columns, e.g. "view in ['PA', 'AP'] and age >= 18"
    val_fraction: float = 0.15  # share of patients for validation (used when the source has no split)
    test_fraction: float = 0.15  # share of patients for the test set (used when the source has no split)
    keep_source_split: bool = True  # keep train/val/test folders or a split column when the source has them
    duplicates: str = "drop"  # leak audit policy for duplicate images across splits: fail | drop | warn
    near_duplicates: bool = True  # also look for near-duplicates by perceptual hash
    quality_filter: bool = True  # drop blank, near-constant, tiny or unreadable images (each is reported)
    window: str = ""  # DICOM window: '' (file VOI, else min-max), a preset (lung, mediastinum, brain, bone) or 'C,W'
    limit_per_class: int = 0  # use at most this many images per class (0 = all); for quick runs
    cache: str = ""  # folder for a memory-mapped uint8 cache of resized images ('' = no cache)


@dataclass
class ModelConfig:
    """The architecture and how its weights start."""

    name: str = "resnet18"  # a registered model name: see `medclass models`
    pretrained: bool = False  # ImageNet weights from the timm hub (needs internet)
    weights: str = ""  # local weights file (.safetensors or tensor-only .pth) to start from
    in_chans: int = 3  # 1 for grayscale input (pretrained RGB first conv is summed), 3 for RGB
    image_size: int = 224  # square input side in pixels
    dropout: float = 0.0  # dropout before the classifier
    pool: str = "avg"  # global pooling: avg | max | avgmax
    target_layer: str = ""  # layer for Grad-CAM ('' = found automatically)


@dataclass
class TrainConfig:
    """The training loop: optimisation, schedule, imbalance, augmentation, hardware."""

    epochs: int = 10  # maximum number of epochs
    batch_size: int = 32  # images per step (per device)
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 1e-4  # decoupled weight decay (AdamW) or L2 (SGD)
    optimizer: str = "adamw"  # adamw | sgd
    momentum: float = 0.9  # SGD momentum
    scheduler: str = "plateau"  # none | plateau | cosine | onecycle
    plateau_patience: int = 2  # epochs without improvement before the LR is reduced
    plateau_factor: float = 0.2  # LR multiplier on plateau
    early_stopping: int = 5  # stop after this many epochs without improvement (0 = off)
    monitor: str = "val_loss"  # metric for early stopping, LR plateau and best checkpoint: val_loss | val_auc | val_acc
    freeze_epochs: int = 0  # train only the head for this many epochs, then fine-tune everything
    finetune_lr_factor: float = 0.1  # LR multiplier for the backbone once unfrozen
    freeze_backbone: bool = False  # keep the backbone frozen for the whole run (linear probe)
    class_weights: str = "none"  # none | balanced | comma-separated weights in class order
    sampler: str = "shuffle"  # shuffle | weighted (oversample rare classes)
    augment: str = "light"  # none | light | xray | fundus
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    precision: str = "auto"  # auto (bf16/16-mixed on GPU, 32 on CPU) | 32 | 16-mixed | bf16-mixed
    accumulate: int = 1  # gradient accumulation steps
    devices: str = "auto"  # Lightning devices: auto, a count, or a list such as "0,1"
    num_nodes: int = 1  # nodes for multi-node DDP
    strategy: str = "auto"  # Lightning strategy: auto | ddp | ddp_spawn | ...
    accelerator: str = "auto"  # auto | cpu | gpu | mps
    num_workers: int = 2  # DataLoader worker processes
    stall_timeout: int = 300  # seconds a data worker may go without delivering a batch/image before the run stops with an error (0 = wait forever)
    seed: int = 42  # fixes split, initialisation, data order and augmentation
    deterministic: bool = True  # deterministic algorithms (see README: some GPU ops are slower)
    baseline: bool = True  # evaluate the untrained model on validation before the first epoch
    max_steps_per_epoch: int = 0  # cap on training batches per epoch (0 = all); for smoke runs


@dataclass
class EvalConfig:
    """How decisions are made from probabilities."""

    threshold: str = "youden"  # youden | sensitivity:0.95 | specificity:0.9 | a number such as 0.5
    temperature_scaling: bool = False  # fit a temperature on validation and store it
    tta: bool = False  # test-time augmentation (horizontal flip) when predicting
    cam_method: str = "gradcam"  # gradcam | gradcam++ | eigencam


@dataclass
class RunConfig:
    """Everything that defines one run; saved as ``config.yaml`` and inside the checkpoints."""

    project: str = "default"  # workspace project name
    experiment: str = ""  # experiment name ('' = model name and a timestamp)
    workspace: str = "workspace"  # root folder of all projects
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML/JSON friendly)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        """Build from a nested dict; unknown keys raise :class:`ConfigError` with a hint."""
        return _build(cls, d or {}, "")

    def run_dir(self) -> Path:
        """``workspace/<project>/<experiment>``."""
        return Path(self.workspace) / self.project / self.experiment


def _build(cls: type, d: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    kwargs = {}
    for key, value in d.items():
        if key not in names:
            raise ConfigError(f"Unknown config key {prefix + key!r}." + did_you_mean(key, names))
        ftype = hints[key]
        if dataclasses.is_dataclass(ftype):
            if not isinstance(value, dict):
                raise ConfigError(f"Config section {prefix + key!r} must be a mapping, got {value!r}.")
            kwargs[key] = _build(ftype, value, prefix + key + ".")
        else:
            kwargs[key] = _coerce(prefix + key, value, ftype)
    return cls(**kwargs)


def _coerce(name: str, value: Any, ftype: Any) -> Any:
    """Convert ``value`` (possibly a CLI string) to the field type ``ftype``."""
    if typing.get_origin(ftype) is dict:
        return parse_mapping(name, value)
    try:
        if ftype is bool:
            if isinstance(value, str):
                low = value.strip().lower()
                if low in {"1", "true", "yes", "on"}:
                    return True
                if low in {"0", "false", "no", "off"}:
                    return False
                raise ValueError(value)
            return bool(value)
        if ftype is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if ftype is float:
            return float(value)
        if ftype is str:
            return "" if value is None else str(value)
        if typing.get_origin(ftype) is list:
            if isinstance(value, str):
                return [v.strip() for v in value.split(",") if v.strip()]
            return [str(v) for v in (value or [])]
    except (TypeError, ValueError):
        raise ConfigError(f"Config value {name}={value!r} is not a valid {getattr(ftype, '__name__', ftype)}.") from None
    return value


def parse_mapping(name: str, value: Any) -> dict[str, str]:
    """A ``{str: str}`` field from a mapping or from ``"a=b,c=d"`` (the CLI form of ``data.label_map``).

    >>> parse_mapping("data.label_map", "covid=pneumonia, unknown=drop")
    {'covid': 'pneumonia', 'unknown': 'drop'}
    """
    if isinstance(value, dict):
        return {str(k).strip(): str(v).strip() for k, v in value.items()}
    pairs = [p.strip() for p in str(value or "").split(",") if p.strip()]
    bad = [p for p in pairs if "=" not in p or not p.split("=", 1)[0].strip() or not p.split("=", 1)[1].strip()]
    if bad:
        raise ConfigError(f"{name}: {bad[0]!r} is not old=new; write e.g. covid=pneumonia,other_pneumonia=pneumonia,"
                          "unknown=drop (a mapping in YAML).")
    return {k.strip(): v.strip() for k, v in (p.split("=", 1) for p in pairs)}


def apply_overrides(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """Return a copy of ``cfg`` with ``section.field=value`` overrides applied (CLI ``--set``)."""
    d = cfg.to_dict()
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"Override {item!r} must look like section.field=value, e.g. train.lr=0.001.")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = d
        for p in parts[:-1]:
            if p not in node or not isinstance(node[p], dict):
                raise ConfigError(f"Unknown config section {p!r} in {key!r}." + did_you_mean(p, [k for k, v in node.items() if isinstance(v, dict)]))
            node = node[p]
        if parts[-1] not in node:
            raise ConfigError(f"Unknown config key {key!r}." + did_you_mean(parts[-1], node.keys()))
        node[parts[-1]] = yaml.safe_load(value) if value.strip() else ""
    return RunConfig.from_dict(d)


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config (any subset of fields) and apply overrides."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Config file {path} does not exist; write one with `medclass config > {path.name}`.")
    with path.open() as f:
        d = yaml.safe_load(f) or {}
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: expected a YAML mapping of sections (data, model, train, eval), got {type(d).__name__}.")
    cfg = RunConfig.from_dict(d)
    return apply_overrides(cfg, overrides or [])


def save_config(cfg: RunConfig, path: str | Path) -> None:
    """Write ``cfg`` as YAML (atomically)."""
    from .utils import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(cfg.to_dict(), sort_keys=False))
