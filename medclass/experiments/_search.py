"""Search spaces of ``medclass tune``: config keys mapped to value lists or ranges, checked before any trial runs.

A space is a dict (YAML-friendly) from a ``section.field`` config key to

- a list: a categorical choice, e.g. ``model.name: [resnet18, densenet121]``;
- a range ``{low, high}``: integers when both bounds are integers, floats otherwise; ``log: true``
  samples on a log scale, ``step`` sets a grid.

Example:
    >>> space = check_space({"train.lr": {"low": 1e-4, "high": 1e-2, "log": True}, "model.name": ["simple_cnn"]},
    ...                     RunConfig())
    >>> suggest(optuna.trial.FixedTrial({"train.lr": 0.001, "model.name": "simple_cnn"}), space)
    {'train.lr': 0.001, 'model.name': 'simple_cnn'}
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import RunConfig, apply_overrides, load_yaml_mapping
from ..errors import ConfigError

if TYPE_CHECKING:
    import optuna

# learning rate (log), model, augmentation preset, image size, batch size and freeze schedule
DEFAULT_SPACE: dict[str, Any] = {
    "train.lr": {"low": 1e-4, "high": 1e-2, "log": True},
    "model.name": ["simple_cnn", "resnet18", "efficientnet_b0"],
    "train.augment": ["none", "light"],
    "model.image_size": [128, 224],
    "train.batch_size": [16, 32],
    "train.freeze_epochs": [0, 1, 2],
}


def load_space(path: str | Path) -> dict[str, Any]:
    """Read a search space from a YAML file (a mapping of config keys to lists or ranges)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Search space file {path} does not exist.")
    return load_yaml_mapping(path, "config keys to choices or ranges, e.g. 'train.lr: {low: 1e-4, high: 1e-2, log: true}'")


def _is_range(spec: Any) -> bool:
    return isinstance(spec, dict) and {"low", "high"} <= set(spec) and set(spec) <= {"low", "high", "log", "step"}


def check_space(space: dict[str, Any], cfg: RunConfig) -> dict[str, Any]:
    """Return ``space`` after checking every key and value against the config (and models against the registry).

    Raises:
        ConfigError: an unknown key (with a hint), an empty list, a malformed range or a value the config
            or the model registry rejects.
    """
    if not space:
        raise ConfigError("The search space is empty; give at least one key, e.g. train.lr: {low: 1e-4, high: 1e-2}.")
    for key, spec in space.items():
        if isinstance(spec, list):
            if not spec:
                raise ConfigError(f"Search space {key!r}: the list of choices is empty.")
            values = spec
        elif _is_range(spec):
            if not spec["low"] < spec["high"] or (spec.get("log") and spec["low"] <= 0):
                raise ConfigError(f"Search space {key!r}: need low < high (and low > 0 with log); got {spec}.")
            values = [spec["low"], spec["high"]]
        else:
            raise ConfigError(f"Search space {key!r}: expected a list of choices or {{low, high[, log, step]}}; got {spec!r}.")
        for value in values:  # unknown keys, bad types, choices, ranges and model names raise ConfigError here
            apply_overrides(cfg, [f"{key}={value}"]).validate(devices=False)
    return space


def suggest(trial: "optuna.trial.BaseTrial", space: dict[str, Any]) -> dict[str, Any]:
    """Draw one value per key of ``space`` from ``trial`` (parameter names are the config keys)."""
    params = {}
    for key, spec in space.items():
        if isinstance(spec, list):
            params[key] = trial.suggest_categorical(key, spec)
        elif isinstance(spec["low"], int) and isinstance(spec["high"], int):
            params[key] = trial.suggest_int(key, spec["low"], spec["high"], step=int(spec.get("step", 1)),
                                            log=bool(spec.get("log")))
        else:
            params[key] = trial.suggest_float(key, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log")),
                                              step=spec.get("step"))
    return params


def apply_params(cfg: RunConfig, params: dict[str, Any]) -> RunConfig:
    """``cfg`` with the trial's parameters (config keys) applied.

    >>> apply_params(RunConfig(), {"train.lr": 0.01}).train.lr
    0.01
    """
    return apply_overrides(cfg, [f"{k}={v}" for k, v in params.items()])
