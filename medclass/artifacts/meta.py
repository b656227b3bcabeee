"""The typed metadata of a checkpoint: one home for its layout, defaults and validation.

A checkpoint's JSON metadata (docs/architecture.md, "Checkpoint format") is read into a frozen
:class:`CheckpointMeta` once, when the file is opened; every reader then uses attributes
(``meta.classes``, ``meta.preprocessing.mean``, ``meta.threshold``) instead of dict look-ups with
their own defaults. Metadata that does not fit the layout raises one
:class:`~medclass.errors.CheckpointError` naming the file and what is wrong.

Example:
    >>> meta = CheckpointMeta.from_dict({"format": FORMAT, "classes": ["a", "b"],
    ...     "model": {"name": "simple_cnn", "num_outputs": 1, "in_chans": 1},
    ...     "preprocessing": {"image_size": 64, "in_chans": 1, "mean": [0.5], "std": [0.25]}})
    >>> meta.binary, meta.threshold, meta.preprocessing.window
    (True, 0.5, '')
    >>> CheckpointMeta.from_dict(meta.to_dict()) == meta
    True
"""
from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config import RunConfig
from ..errors import CheckpointError, ConfigError

FORMAT = "medclass-checkpoint/1"
KNOWN_FORMATS = (FORMAT,)  # every format version this code reads; add the old one when the layout changes
EXPORTED_KEYS = ("format", "classes", "model", "preprocessing", "threshold", "threshold_rule", "temperature", "versions",
                 "task", "thresholds")
TASKS = ("single_label", "multi_label")  # data.task once resolved (medclass.data.multilabel.resolve_task)


class _Invalid(Exception):
    """One problem in the metadata, turned into a :class:`CheckpointError` naming the file."""


def _number(d: Mapping[str, Any], key: str, where: str, default: float | None = None) -> float:
    value = d.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _Invalid(f"{where}{key} must be a finite number, got {value!r}")
    return float(value)


def _integer(d: Mapping[str, Any], key: str, where: str, default: int | None = None, minimum: int = 1) -> int:
    value = d.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _Invalid(f"{where}{key} must be an integer >= {minimum}, got {value!r}")
    return value


def _text(d: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = d.get(key, default)
    if not isinstance(value, str):
        raise _Invalid(f"{where}{key} must be a string, got {value!r}")
    return value


def _section(d: Mapping[str, Any], key: str, required: bool = True) -> dict[str, Any]:
    value = d.get(key) if key in d or required else {}
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise _Invalid(f"entry {key!r} must be an object, got {'nothing' if key not in d else repr(value)[:60]}")
    return value


def _numbers(d: Mapping[str, Any], key: str, where: str, length: int) -> tuple[float, ...]:
    value = d.get(key)
    if not isinstance(value, list) or len(value) != length:
        raise _Invalid(f"{where}{key} must be a list of {length} numbers (one per input channel), got {value!r}")
    return tuple(_number({key: v}, key, where) for v in value)


@dataclass(frozen=True)
class ModelSpec:
    """How to rebuild the network through the registry (no download): ``create_model(name, ...)``."""

    name: str  # registry name (medclass.models.list_models)
    num_outputs: int  # 1 for two classes (one logit), else the number of classes
    in_chans: int  # input channels the first layer expects (1 or 3)
    dropout: float = 0.0  # dropout before the classifier
    pool: str = "avg"  # global pooling of the backbone

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelSpec":
        """Validated from the ``model`` entry."""
        w = "model."
        return cls(_text(d, "name", w), _integer(d, "num_outputs", w), _integer(d, "in_chans", w),
                   _number(d, "dropout", w, 0.0), _text(d, "pool", w, "avg"))


@dataclass(frozen=True)
class Preprocessing:
    """What turns a unit image (float HxWxC in [0, 1]) into the model input: exactly as in training."""

    image_size: int  # square side in pixels
    in_chans: int  # channels of the model input (1 or 3)
    mean: tuple[float, ...]  # per-channel normalisation: (x - mean) / std
    std: tuple[float, ...]
    input_range: tuple[float, float] = (0.0, 1.0)  # pixel convention of the unit image
    window: str = ""  # DICOM window preset or "center,width" ('' = the file's own window)
    volume: Mapping[str, Any] | None = None  # CT/MRI volumes: medclass.data.volumes.VolumePrep.to_dict() (spacing, size, orientation, window, input); None = 2-D images

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Preprocessing":
        """Validated from the ``preprocessing`` entry."""
        w = "preprocessing."
        chans = _integer(d, "in_chans", w)
        low, high = _numbers({"input_range": d.get("input_range", [0.0, 1.0])}, "input_range", w, 2)
        volume = _section(d, "volume", required=False) or None
        if volume is not None:
            v = w + "volume."
            _numbers(volume, "size", v, 3)
            if volume.get("spacing"):
                _numbers(volume, "spacing", v, 3)
            if _text(volume, "input", v) not in ("3d", "2.5d"):
                raise _Invalid(f"{v}input must be '3d' or '2.5d', got {volume.get('input')!r}")
            _text(volume, "orientation", v), _text(volume, "window", v)
        return cls(_integer(d, "image_size", w), chans, _numbers(d, "mean", w, chans), _numbers(d, "std", w, chans),
                   (low, high), _text(d, "window", w, ""), volume)

    def to_dict(self) -> dict[str, Any]:
        """The JSON layout (lists, not tuples); ``volume`` only for volume models (2-D files keep their layout)."""
        out = {"image_size": self.image_size, "in_chans": self.in_chans, "mean": list(self.mean),
               "std": list(self.std), "input_range": list(self.input_range), "window": self.window}
        if self.volume is not None:
            out["volume"] = dict(self.volume)
        return out


@dataclass(frozen=True)
class OODSpec:
    """The out-of-distribution statistics a checkpoint carries (their tensors are stored beside the weights).

    Absent in checkpoints written before they existed (``meta.ood is None``: "no OOD statistics").
    """

    method: str  # 'mahalanobis' (medclass.metrics.ood)
    threshold: float  # scores above it are flagged
    quantile: float  # the conformal quantile of the held-out scores where the threshold was set
    n_train: int  # training images the statistics were fitted on
    n_val: int  # validation images among the held-out scores
    feature_dim: int  # length of the feature vector (the stage statistics)
    n_calibration: int = 0  # held-out scores the threshold was set on (0 in older files: the validation images alone)
    lowpass: float = 1.0  # the features' band limit (medclass.metrics.ood.LOWPASS; 1.0 in older files: none)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "OODSpec":
        """Validated from the ``ood`` entry."""
        w = "ood."
        spec = cls(_text(d, "method", w), _number(d, "threshold", w), _number(d, "quantile", w),
                   _integer(d, "n_train", w), _integer(d, "n_val", w), _integer(d, "feature_dim", w),
                   _integer(d, "n_calibration", w, 0, minimum=0), _number(d, "lowpass", w, 1.0))
        if not 0.0 < spec.lowpass <= 1.0:
            raise _Invalid(f"ood.lowpass must lie in (0, 1], got {spec.lowpass}")
        if spec.method != "mahalanobis" or not 0.0 < spec.quantile < 1.0:
            raise _Invalid(f"ood must have method 'mahalanobis' and a quantile in (0, 1), got {spec.method!r} and "
                           f"{spec.quantile}")
        return spec


@dataclass(frozen=True)
class CheckpointMeta:
    """Everything a checkpoint says about its model besides the tensors (docs/architecture.md).

    ``threshold`` decides ``classes[1]`` for two classes (``p >= threshold``); more classes use the
    argmax. ``task="multi_label"``: ``classes`` are findings, one sigmoid logit each, and finding
    ``k`` is present when ``p_k >= thresholds[k]`` (chosen per finding on validation; files
    without ``task`` are single-label). ``temperature`` divides the logits before the sigmoid/softmax. ``config`` is the run's
    ``RunConfig.to_dict()`` (:attr:`run_config` parses it), ``metrics`` the epoch's validation metrics.
    """

    classes: tuple[str, ...]
    model: ModelSpec
    preprocessing: Preprocessing
    threshold: float = 0.5
    threshold_rule: str = "fixed"  # how the threshold was chosen (eval.threshold of the run)
    temperature: float = 1.0
    config: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    versions: Mapping[str, str] = field(default_factory=dict)
    intended_use: str = ""  # shown by the model card ('' = the generic research-use text)
    format: str = FORMAT
    task: str = "single_label"  # single_label | multi_label
    thresholds: tuple[float, ...] = ()  # multi-label: one decision threshold per finding (() = threshold for all)
    ood: OODSpec | None = None  # out-of-distribution statistics (None: the file has none)

    @property
    def binary(self) -> bool:
        """Two classes: one logit, decision at :attr:`threshold`."""
        return len(self.classes) == 2 and not self.multi_label

    @property
    def multi_label(self) -> bool:
        """Several findings per image: one sigmoid per class, each with its own threshold."""
        return self.task == "multi_label"

    @property
    def finding_thresholds(self) -> tuple[float, ...]:
        """Multi-label: the decision threshold of every finding, in ``classes`` order."""
        return self.thresholds or (self.threshold,) * len(self.classes)

    @property
    def epoch(self) -> int | None:
        """The training epoch whose weights these are (None when not recorded)."""
        epoch = self.metrics.get("epoch")
        return int(epoch) if epoch is not None else None

    @functools.cached_property
    def run_config(self) -> RunConfig:
        """The run's typed config (defaults of :class:`RunConfig` where the stored one is silent)."""
        try:
            return RunConfig.from_dict(dict(self.config))
        except ConfigError as e:
            raise CheckpointError(f"The run config stored in this checkpoint no longer loads: {e}") from None

    def with_decision(self, threshold: float, threshold_rule: str, temperature: float,
                      thresholds: Sequence[float] = ()) -> "CheckpointMeta":
        """A copy with the decision threshold(s) (``thresholds``: one per finding) and temperature chosen after training."""
        return dataclasses.replace(self, threshold=float(threshold), threshold_rule=threshold_rule,
                                   temperature=float(temperature), thresholds=tuple(float(t) for t in thresholds))

    def with_ood(self, ood: OODSpec | None) -> "CheckpointMeta":
        """A copy describing these out-of-distribution statistics (None: none)."""
        return dataclasses.replace(self, ood=ood)

    def with_metrics(self, metrics: Mapping[str, Any]) -> "CheckpointMeta":
        """A copy carrying the validation metrics of the epoch being saved."""
        return dataclasses.replace(self, metrics=dict(metrics))

    def to_dict(self) -> dict[str, Any]:
        """The JSON layout written into the checkpoint."""
        out = {"format": self.format, "classes": list(self.classes), "model": dataclasses.asdict(self.model),
               "preprocessing": self.preprocessing.to_dict(), "threshold": self.threshold,
               "threshold_rule": self.threshold_rule, "temperature": self.temperature, "config": dict(self.config),
               "metrics": dict(self.metrics), "versions": dict(self.versions)}
        if self.intended_use:
            out["intended_use"] = self.intended_use
        if self.ood is not None:
            out["ood"] = dataclasses.asdict(self.ood)
        if self.multi_label:  # single-label files keep the version-1 layout exactly
            out.update(task=self.task, thresholds=list(self.finding_thresholds))
        return out

    def exported(self) -> dict[str, Any]:
        """The part stored inside exported ONNX/TorchScript files (no config, no metrics)."""
        return {k: v for k, v in self.to_dict().items() if k in EXPORTED_KEYS}

    @classmethod
    def from_dict(cls, d: Any, source: str = "checkpoint") -> "CheckpointMeta":
        """Validate ``d`` (the parsed JSON metadata of ``source``) and build the typed metadata.

        Raises:
            CheckpointError: ``"<source> is not a valid medclass checkpoint: <what is wrong>"``.
        """
        try:
            return cls._parse(d)
        except _Invalid as e:
            raise CheckpointError(f"{source} is not a valid medclass checkpoint: {e}.") from None

    @classmethod
    def _parse(cls, d: Any) -> "CheckpointMeta":
        if not isinstance(d, dict):
            raise _Invalid(f"its metadata must be a JSON object, got a {type(d).__name__}")
        fmt = d.get("format")
        if fmt not in KNOWN_FORMATS:
            raise _Invalid(f"unknown format {fmt!r}; this medclass reads {', '.join(map(repr, KNOWN_FORMATS))}")
        classes = d.get("classes")
        if not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) for c in classes) \
                or len(set(classes)) != len(classes):
            raise _Invalid(f"classes must be a list of at least 2 distinct names, got {classes!r}")
        model, pre = ModelSpec.from_dict(_section(d, "model")), Preprocessing.from_dict(_section(d, "preprocessing"))
        task = _text(d, "task", "", "single_label")
        if task not in TASKS:
            raise _Invalid(f"task must be one of {TASKS}, got {task!r}")
        _check_consistent(classes, model, pre, task == "multi_label")
        thresholds = d.get("thresholds", [])
        if not isinstance(thresholds, list) or (thresholds and len(thresholds) != len(classes)):
            raise _Invalid(f"thresholds must be a list of {len(classes)} numbers (one per finding), got {thresholds!r}")
        thresholds = tuple(_number({"thresholds": t}, "thresholds", "") for t in thresholds)
        if any(not 0.0 <= t <= 1.0 for t in thresholds):
            raise _Invalid(f"thresholds must lie in [0, 1], got {list(thresholds)}")
        threshold, temperature = _number(d, "threshold", "", 0.5), _number(d, "temperature", "", 1.0)
        if not 0.0 <= threshold <= 1.0 or temperature <= 0:
            raise _Invalid(f"threshold must lie in [0, 1] and temperature be > 0, got {threshold} and {temperature}")
        versions = _section(d, "versions", required=False)
        ood = OODSpec.from_dict(_section(d, "ood")) if d.get("ood") is not None else None
        return cls(tuple(classes), model, pre, threshold, _text(d, "threshold_rule", "", "fixed"), temperature,
                   _section(d, "config", required=False), _section(d, "metrics", required=False),
                   {str(k): str(v) for k, v in versions.items()}, _text(d, "intended_use", "", ""), fmt, task, thresholds,
                   ood)


def _check_consistent(classes: Sequence[str], model: ModelSpec, pre: Preprocessing, multi_label: bool) -> None:
    from ..models import num_outputs

    expected = num_outputs(len(classes), multi_label)
    if model.num_outputs != expected:
        raise _Invalid(f"model.num_outputs {model.num_outputs} does not fit {len(classes)} "
                       f"{'findings' if multi_label else 'classes'} (expected {expected})")
    if model.in_chans != pre.in_chans:
        raise _Invalid(f"model.in_chans {model.in_chans} differs from preprocessing.in_chans {pre.in_chans}")


def build_meta(*, classes: Sequence[str], model_name: str, in_chans: int, image_size: int, mean: Sequence[float],
               std: Sequence[float], window: str = "", dropout: float = 0.0, pool: str = "avg",
               threshold: float = 0.5, threshold_rule: str = "fixed", temperature: float = 1.0,
               config: Mapping[str, Any] | None = None, metrics: Mapping[str, Any] | None = None,
               task: str = "single_label", volume: Mapping[str, Any] | None = None) -> CheckpointMeta:
    """Metadata of a model being trained now (library versions of this process).

    >>> build_meta(classes=["a", "b"], model_name="simple_cnn", in_chans=1, image_size=64,
    ...            mean=[0.5], std=[0.25]).model.num_outputs
    1
    """
    from ..models import num_outputs

    return CheckpointMeta(
        classes=tuple(classes),
        model=ModelSpec(model_name, num_outputs(len(classes), task == "multi_label"), in_chans, float(dropout), pool),
        preprocessing=Preprocessing(image_size, in_chans, tuple(map(float, mean)), tuple(map(float, std)), (0.0, 1.0), window,
                                    dict(volume) if volume is not None else None),
        threshold=float(threshold), threshold_rule=threshold_rule, temperature=float(temperature),
        config=dict(config or {}), metrics=dict(metrics or {}), versions=library_versions(), task=task,
    )


def library_versions() -> dict[str, str]:
    """Versions of the libraries a checkpoint was written with."""
    import numpy
    import timm
    import torch

    from .. import __version__

    return {"medclass": __version__, "torch": torch.__version__, "timm": timm.__version__, "numpy": numpy.__version__}
