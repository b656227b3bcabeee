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

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml
from annotated_types import Ge, Gt, Interval

from .choices import (Accelerator, Augment, AugmentOn, CamMethod, DuplicatePolicy, InChans, Monitor, Optimizer, Pool,  # noqa: F401
                      Precision, Sampler, Scheduler, Source, SplitBy, Task, Uncertain, VolumeInput, choices)
from ._config_check import check_config, coerce_section, commented_yaml, load_yaml_mapping
from ._formats import (WINDOW_PRESETS, Format, parse_axcodes, parse_class_weights, parse_devices, parse_mapping, parse_spacing,
                       parse_switch, parse_threshold_rule, parse_voxels, parse_window)
from .errors import ConfigError, did_you_mean

DEFAULT_DATA = "chest_xray_sample"  # the chest X-rays shipped in the package (medclass.data.catalog)

# Allowed values of every choice field are declared once in medclass.choices (below the models and
# metrics layers, which read them too) and used here as the fields' types.

# Ranges and formats, declared on the fields with annotated-types markers.
NonNegInt = Annotated[int, Ge(0)]
PosInt = Annotated[int, Ge(1)]
PosFloat = Annotated[float, Gt(0)]
NonNegFloat = Annotated[float, Ge(0)]
UnitFraction = Annotated[float, Interval(ge=0, lt=1)]  # [0, 1)
Window = Annotated[str, Format(parse_window, "'' (the file's own), a preset (" + ", ".join(WINDOW_PRESETS)
                              + ") or 'center,width' such as '40,80'")]
ClassWeights = Annotated[str, Format(parse_class_weights, "none | balanced | positive numbers in class order, e.g. '1,3'")]
Devices = Annotated[str, Format(parse_devices, "auto | a count (-1 = all) | indices such as '0,1'")]
Switch = Annotated[str, Format(parse_switch, "auto | true | false (also on/off, yes/no)")]
VoxelSize = Annotated[list[int], Format(parse_voxels, "[] or three positive whole numbers (x, y, z), e.g. [32, 32, 32]")]
Spacing = Annotated[list[float], Format(parse_spacing, "[] or three positive numbers in mm (x, y, z), e.g. [1.0, 1.0, 1.0]")]
AxisCodes = Annotated[str, Format(parse_axcodes, "'' (as stored) or three orientation codes such as RAS or LPS")]
ThresholdRule = Annotated[str, Format(parse_threshold_rule, "youden | f1 | sensitivity:X | specificity:X | a number in [0, 1]")]


@dataclass
class DataConfig:
    """Where the images are, how they are labelled, grouped by patient and split."""

    path: str = DEFAULT_DATA  # folder of class folders, CSV manifest, .npz file, DICOM folder or a data set name (`medclass datasets`)
    source: Source = "auto"  # how to read data.path (auto = from what the path holds)
    image_root: str = ""  # csv: folder the CSV paths are relative to ('' = the CSV's folder)
    path_column: str = "path"  # csv: column with the image path or id
    label_column: str = "label"  # csv: column with the class (name or number)
    patient_column: str = ""  # csv: column with the patient id ('' = none)
    mask_column: str = ""  # csv: column with a lesion mask file per image (relative like the images; '' = none); evaluate reports the share of the Grad-CAM inside it
    path_template: str = "{}"  # csv: turns the path column into a file name, e.g. "{:03d}.png"
    class_names: list[str] = field(default_factory=list)  # csv/npz: names for numeric labels, in order
    preset: str = ""  # rules of a published data set ('' = none; kermany_chest_xray: patient ids and sub-labels from its file names)
    patient_regex: str = ""  # rule for the patient id from the file name: '' (the preset's, else none), 'none', 'chest_xray' or a regex with one group
    label_from_name: str = ""  # derive the label from the file name with a relabelling of data.preset, e.g. 'chest_xray_3class'
    task: Task = "auto"  # single_label (one class per image) | multi_label (findings 0/1 each) | auto (multi_label when labels_from or label_columns is set, or an .npz holds (n, K>1) labels)
    labels_from: str = ""  # csv, multi-label: column with a separated list of findings per image, e.g. finding_labels
    label_sep: str = "|"  # csv, multi-label: separator of the findings in data.labels_from
    no_finding: str = "No Finding"  # csv, multi-label: the value of data.labels_from meaning every finding is 0
    label_columns: list[str] = field(default_factory=list)  # csv, multi-label: one column per finding holding 1 / 0 / -1 (uncertain) / blank (missing)
    uncertain: Uncertain = "ignore"  # multi-label: uncertain (-1) and blank labels: ignore (masked out of loss and metrics) | ones | zeros
    classes: list[str] = field(default_factory=list)  # keep only these classes, in this order ('' = all, sorted)
    positive: str = ""  # two classes: the positive one (P(positive) >= threshold decides it; sensitivity is measured on it) ('' = the second of classes)
    label_map: dict[str, str] = field(default_factory=dict)  # rename, merge or drop labels: {covid: pneumonia, unknown: drop} or "covid=pneumonia,unknown=drop" (drop removes the label's rows); multi-label: the same for findings, a merged finding is 1 if any source is 1, else masked if any is masked, else 0, and drop removes the finding, not the rows
    where: str = ""  # keep only rows matching this pandas query on the table's columns, e.g. "view in ['PA', 'AP'] and age >= 18"
    val_fraction: UnitFraction = 0.15  # share of patients for validation (used when the source has no split)
    test_fraction: UnitFraction = 0.15  # share of patients for the test set (used when the source has no split)
    split_by: SplitBy = "patient"  # patient: a patient's images stay on one side; data without any patient id is refused unless its file names follow a known public scheme (`medclass data check` names it) | image: every image without an id is its own patient (right only when each image is a different patient; every report says so)
    keep_source_split: bool = True  # keep train/val/test folders or a split column when the source has them
    split_seed: Annotated[int, Interval(ge=-1, lt=2**32)] = -1  # seed of the patient split and data.limit_per_class (-1 = train.seed); fix it to compare training seeds on one split
    duplicates: DuplicatePolicy = "drop"  # leak audit policy for images shared across splits (merge: link them into one patient before splitting)
    near_duplicates: bool = True  # also look for near-duplicates by perceptual hash
    quality_filter: bool = True  # drop blank, near-constant, tiny or unreadable images (each is reported)
    window: Window = ""  # DICOM window ('' = the file's VOI window, else min-max)
    limit_per_class: NonNegInt = 0  # use at most this many images per class (multi-label: per rarest positive finding, or none) (0 = all); for quick runs
    cache: str = ""  # folder for a memory-mapped uint8 cache of resized images ('' = no cache)
    cluster: str = ""  # Dask cluster that reads the images for the fingerprints and the image cache: tcp://HOST:8786 or local:N ('' = this machine's cores; pip install "medclass[cluster]"; see README "More than one machine")


@dataclass
class ModelConfig:
    """The architecture and how its weights start."""

    name: str = "auto"  # a registered model name (see `medclass models`), or auto: resnet18 for 2-D images, the volume default for CT/MRI volumes (`medclass train --help` names it; measured on lidc_nodules)
    pretrained: bool = False  # ImageNet weights: offline where an installed package ships them (efficientnet_lite0), else downloaded from the timm hub
    weights: str = ""  # local weights file (.safetensors or tensor-only .pth) to start from
    in_chans: InChans = 3  # 1 for grayscale input (pretrained RGB first conv is summed), 3 for RGB
    image_size: PosInt = 224  # square input side in pixels
    dropout: UnitFraction = 0.0  # dropout before the classifier
    pool: Pool = "avg"  # global pooling
    target_layer: str = ""  # layer for Grad-CAM ('' = found automatically)


AUTO = "auto"  # model.name and volume.input: chosen from the data and the model when the run starts (choose_model)


@dataclass(frozen=True)
class DefaultModel:
    """What ``model.name=auto`` (the default) becomes on one kind of data, and why (`medclass train` says it)."""

    name: str  # a registered model name
    why: str  # the rule or measurement that chose it, in one line
    volume_input: str = ""  # the volume.input it takes ('' = 2-D images)
    in_chans: int = 0  # model.in_chans it takes where that still has its 2-D default (0 = keep)
    image_size: int = 0  # side in voxels where model.image_size still has its 2-D default (0 = keep)


# The defaults, in one place: 2-D images, and the two volume inputs (the one for volume.input=auto is VOLUME_DEFAULT).
DEFAULT_MODELS: dict[str, DefaultModel] = {
    "image": DefaultModel("resnet18", "ResNet-18 (timm), from scratch unless --pretrained"),
    "3d": DefaultModel("resnet10_3d", "the 3-D network for volume.input=3d (MONAI ResNet-10, from scratch)",
                       volume_input="3d", in_chans=1, image_size=32),
    "2.5d": DefaultModel("simple_cnn", "the 2-D network for volume.input=2.5d: 3 neighbouring slices as channels",
                         volume_input="2.5d", in_chans=3, image_size=32),
}
# Measured on lidc_nodules (bench/bench_volumes.py, README "Which network for volumes"): a tie within the CIs, so the
# cheaper one. Same 4 epochs, same patient split: 3-D minus 2.5-D test AUC +0.002 (95 % CI -0.044 to +0.047).
VOLUME_DEFAULT = "2.5d"
VOLUME_DEFAULT_WHY = ("on lidc_nodules it tied with the 3-D resnet10_3d (test AUC difference 3-D minus 2.5-D +0.002, 95% "
                      "CI -0.044 to +0.047) at half the training time per epoch or less, a third to a fifth of the "
                      "prediction time and less memory")


@dataclass
class TrainConfig:
    """The training loop: optimisation, schedule, imbalance, augmentation, hardware."""

    epochs: PosInt = 10  # maximum number of epochs
    batch_size: PosInt = 32  # images per step (per device)
    lr: PosFloat = 1e-3  # peak learning rate
    weight_decay: NonNegFloat = 1e-4  # decoupled weight decay (AdamW) or L2 (SGD)
    optimizer: Optimizer = "adamw"  # optimiser
    momentum: UnitFraction = 0.9  # SGD momentum
    scheduler: Scheduler = "plateau"  # learning-rate schedule
    plateau_patience: NonNegInt = 2  # epochs without improvement before the LR is reduced
    plateau_factor: Annotated[float, Interval(gt=0, lt=1)] = 0.2  # LR multiplier on plateau
    early_stopping: NonNegInt = 5  # stop after this many epochs without improvement (0 = off)
    monitor: Monitor = "val_loss"  # metric for early stopping, LR plateau and best checkpoint
    freeze_epochs: NonNegInt = 0  # train only the head for this many epochs, then fine-tune everything
    finetune_lr_factor: PosFloat = 0.1  # LR multiplier for the backbone once unfrozen
    freeze_backbone: bool = False  # keep the backbone frozen for the whole run (linear probe)
    class_weights: ClassWeights = "none"  # loss weight of each class
    sampler: Sampler = "shuffle"  # data order (weighted: oversample rare classes)
    augment: Augment = "light"  # augmentation preset of the training images
    augment_on: AugmentOn = "auto"  # where augmentation runs: auto (device on a GPU, else cpu) | cpu (DataLoader workers) | device (batched on the training device)
    channels_last: Switch = "auto"  # channels-last memory format of model and batches: auto (on a GPU) | true | false
    compile: bool = False  # torch.compile the model (slower first steps; measure with bench/bench_gpu.py before relying on it)
    label_smoothing: UnitFraction = 0.0  # cross-entropy label smoothing
    ema: UnitFraction = 0.0  # exponential moving average of the weights, decay per step (e.g. 0.99; 0 = off): validated, saved and evaluated instead of the raw weights
    precision: Precision = "auto"  # Lightning precision (auto: bf16/16-mixed on GPU, 32 on CPU)
    accumulate: PosInt = 1  # gradient accumulation steps
    devices: Devices = "auto"  # Lightning devices
    num_nodes: PosInt = 1  # nodes for multi-node DDP
    strategy: str = "auto"  # Lightning strategy: auto | ddp | ddp_spawn | ...
    accelerator: Accelerator = "auto"  # hardware to train on
    num_workers: NonNegInt = 2  # DataLoader worker processes
    stall_timeout: NonNegInt = 300  # seconds a data worker may go without delivering a batch/image before the run stops with an error (0 = wait forever)
    seed: Annotated[int, Interval(ge=0, lt=2**32)] = 42  # fixes split, initialisation, data order and augmentation
    deterministic: bool = True  # deterministic algorithms (see README: some GPU ops are slower)
    baseline: bool = True  # evaluate the untrained model on validation before the first epoch
    max_steps_per_epoch: NonNegInt = 0  # cap on training batches per epoch (0 = all); for smoke runs


@dataclass
class EvalConfig:
    """How decisions are made from probabilities."""

    threshold: ThresholdRule = "youden"  # decision threshold rule, chosen on validation
    temperature_scaling: bool = False  # fit a temperature on validation and store it
    tta: bool = False  # test-time augmentation (horizontal flip) when predicting
    cam_method: CamMethod = "gradcam"  # class activation map method of the reports


@dataclass
class VolumeConfig:
    """How CT/MRI volumes (NIfTI, DICOM series, 3-D .npz) become the model input (MONAI transforms); 2-D data ignores it.

    The HU window is ``data.window`` (a preset such as lung or mediastinum, or 'C,W'; '' = each volume's
    0.5-99.5th percentiles); the normalisation after it is the model's mean/std, as for 2-D images.
    ``train.augment`` (the 2-D presets) does not apply to volumes: ``volume.augment`` does.
    """

    input: VolumeInput = "auto"  # 3d: the volume (1 channel) feeds a 3-D network such as resnet10_3d | 2.5d: model.in_chans neighbouring axial slices around the centre become the channels of a 2-D network | auto: 3d for a 3-D network, 2.5d for a 2-D one
    orientation: AxisCodes = "RAS"  # axis codes every volume is turned to before resampling ('' = as stored)
    spacing: Spacing = field(default_factory=lambda: [1.0, 1.0, 1.0])  # voxel size in mm to resample to, along the oriented x, y, z ([] = keep each volume's own)
    size: VoxelSize = field(default_factory=list)  # voxels (x, y, z) after a centred crop or zero pad ([] = model.image_size along every axis)
    augment: bool = True  # 3-D augmentation of training volumes: flips, small rotation and scaling, intensity scale/shift, Gaussian noise
    cache: bool = True  # keep every prepared volume as a memory-mapped .npy in <workspace>/.cache/volumes: epochs do not re-read and re-resample the files


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
    volume: VolumeConfig = field(default_factory=VolumeConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML/JSON friendly)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        """Build from a nested dict; unknown keys and values of the wrong type raise :class:`ConfigError`."""
        return coerce_section(cls, d or {}, "")

    @property
    def split_seed(self) -> int:
        """The seed of the patient split: ``data.split_seed``, or ``train.seed`` when that is -1.

        >>> RunConfig().split_seed
        42
        """
        return self.train.seed if self.data.split_seed < 0 else self.data.split_seed

    def run_dir(self) -> Path:
        """``workspace/<project>/<experiment>``."""
        return Path(self.workspace) / self.project / self.experiment

    def validate(self, *, devices: bool = True) -> "RunConfig":
        """Check every field against its declaration, then what spans fields; return ``self``.

        Fast and reads no data: the types, choices, ranges and formats declared on the fields, the
        validation and test fractions together, the model name and minimum input size in the
        registry, and (``devices``) whether the GPUs asked for exist. Raises :class:`ConfigError`
        naming the field, what was expected, what came and how to fix it.

        >>> RunConfig().validate().train.optimizer
        'adamw'
        """
        check_config(self)
        d = self.data
        if d.val_fraction + d.test_fraction >= 1:
            raise ConfigError(f"data.val_fraction + data.test_fraction = {d.val_fraction + d.test_fraction:g} leaves no "
                              "patients for training; make their sum less than 1 (e.g. 0.15 and 0.15).")
        from .models.registry import model_info  # the registry owns the names: a lookup, no model is built

        if self.model.name != AUTO:  # auto is checked once the data have chosen the model (choose_model)
            info = model_info(self.model.name)
            if self.model.image_size < info.min_input_size:
                raise ConfigError(f"model.image_size={self.model.image_size} is below the minimum {info.min_input_size} px "
                                  f"of {self.model.name}; use at least {info.min_input_size}.")
        if self.model.pretrained and self.model.weights:
            raise ConfigError(f"Both model.pretrained=true and model.weights={self.model.weights!r} are set; choose one.")
        if devices:
            check_devices(self.train.accelerator, self.train.devices)
        return self


def default_model(spatial_dims: int, volume_input: str = AUTO) -> DefaultModel:
    """The model ``model.name=auto`` becomes for 2-D images (``spatial_dims=2``) or volumes (3) with this volume.input.

    >>> default_model(2).name
    'resnet18'
    >>> default_model(3, "3d").name
    'resnet10_3d'
    """
    if spatial_dims != 3:
        return DEFAULT_MODELS["image"]
    return DEFAULT_MODELS[VOLUME_DEFAULT if volume_input == AUTO else volume_input]


def choose_model(cfg: RunConfig, spatial_dims: int) -> tuple[RunConfig, str]:
    """``cfg`` with ``model.name=auto`` and ``volume.input=auto`` made concrete for data of ``spatial_dims``.

    ``model.name=auto``: :func:`default_model` (with its channels, and its voxel side where
    ``model.image_size`` is still the 2-D default); ``volume.input=auto``: ``3d`` for a 3-D network,
    ``2.5d`` for a 2-D one. Returns the config and a line saying which model was chosen and why ('' when
    the model was named).

    >>> cfg, why = choose_model(RunConfig(), 3)
    >>> cfg.model.name == default_model(3).name, cfg.model.image_size, cfg.volume.input == default_model(3).volume_input
    (True, 32, True)
    """
    from .models.registry import model_info  # the registry owns the names: a lookup, no model is built

    m, plain, overrides, why = cfg.model, ModelConfig(), [], ""
    if m.name == AUTO:
        choice = default_model(spatial_dims, cfg.volume.input)
        overrides.append(f"model.name={choice.name}")
        if choice.in_chans and m.in_chans == plain.in_chans:
            overrides.append(f"model.in_chans={choice.in_chans}")
        if choice.image_size and m.image_size == plain.image_size:
            overrides.append(f"model.image_size={choice.image_size}")
    name = overrides[0].split("=", 1)[1] if overrides else m.name
    if cfg.volume.input == AUTO:
        overrides.append(f"volume.input={'3d' if model_info(name).spatial_dims == 3 else '2.5d'}")
    out = apply_overrides(cfg, overrides)
    if m.name == AUTO:
        size = f"{out.model.image_size} px" if spatial_dims == 2 else (
            f"volume.input={out.volume.input}, {out.model.in_chans} channel(s), {out.model.image_size} voxels a side")
        reason = VOLUME_DEFAULT_WHY if spatial_dims == 3 and cfg.volume.input == AUTO else choice.why
        why = (f"{name} ({size}): no model named, so the default for {'CT/MRI volumes' if spatial_dims == 3 else '2-D images'}"
               f": {reason}; choose another with --model")
    return out, why


def check_devices(accelerator: str, devices: str) -> None:
    """Refuse an accelerator or devices that this machine does not have (clear error, no traceback).

    GPUs must be seen by torch; CPU processes take a count, not indices (more processes than cores is
    allowed: DDP on CPU is how multi-process training is tested).

    >>> check_devices("cpu", "auto")
    """
    wanted = parse_devices(devices)
    asked = f"train.accelerator={accelerator}, train.devices={devices}"
    if accelerator in ("auto", "cpu") and wanted in ("auto", -1):
        return
    import torch

    if accelerator == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"{asked}: this machine has no Apple MPS device; set train.accelerator=auto or cpu.")
        return
    seen = torch.cuda.device_count()
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and seen):
        need = 1 if wanted in ("auto", -1) else (max(wanted) + 1 if isinstance(wanted, list) else wanted)
        if seen < need:
            fix = ("set train.accelerator=cpu (or auto)" if not seen else
                   f"use at most {seen} GPU(s): train.devices={seen} or indices below {seen}")
            raise ConfigError(f"{asked} asks for {need} GPU(s) but torch sees {seen}"
                              + (" (no CUDA GPU or driver)" if not seen else "") + f"; {fix}.")
        return
    if isinstance(wanted, list):
        raise ConfigError(f"{asked}: training on CPU takes a process count such as 2, not device indices; "
                          "set train.devices=auto or a number (or train.accelerator=gpu on a GPU machine).")


def with_data_settings(cfg: RunConfig, settings: Mapping[str, Any]) -> RunConfig:
    """A copy of ``cfg`` with these ``data.*`` fields (the data flags of `train`, `quickstart`...), checked like any value."""
    d = cfg.to_dict()
    d["data"].update(settings)
    return RunConfig.from_dict(d)


def apply_overrides(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """Return a copy of ``cfg`` with ``section.field=value`` overrides applied (CLI ``--set``).

    Values are read as YAML (``[a, b]``, ``true``, ``0.5``); a value of the wrong type is refused.
    """
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
        try:
            node[parts[-1]] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"Override {item!r}: the value is not valid YAML ({getattr(e, 'problem', e)}); "
                              f"quote it, e.g. {key}='\"{value}\"'.") from None
    return RunConfig.from_dict(d)


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config (any subset of fields) and apply overrides.

    Raises :class:`ConfigError` naming the file for malformed YAML, tabs, binary files, a document
    that is not a mapping, unknown keys and values of the wrong type.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Config file {path} does not exist; write one with `medclass config > {path.name}`.")
    d = load_yaml_mapping(path, "sections (data, model, train, eval)")
    try:
        cfg = RunConfig.from_dict(d)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    return apply_overrides(cfg, overrides or [])


def save_config(cfg: RunConfig, path: str | Path) -> None:
    """Write ``cfg`` as YAML (atomically)."""
    from .utils import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(cfg.to_dict(), sort_keys=False))


__all__ = ["RunConfig", "AUTO", "DEFAULT_MODELS", "VOLUME_DEFAULT", "VOLUME_DEFAULT_WHY", "DefaultModel", "choose_model", "default_model", "DataConfig", "ModelConfig", "TrainConfig", "EvalConfig", "VolumeConfig", "apply_overrides", "with_data_settings", "load_config",
           "save_config", "commented_yaml", "choices", "check_devices", "parse_window", "parse_threshold_rule", "parse_class_weights",
           "parse_devices", "parse_mapping", "load_yaml_mapping", "WINDOW_PRESETS", "DEFAULT_DATA"]
