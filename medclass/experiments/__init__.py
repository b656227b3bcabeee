"""Experiments over runs: compare finished runs, cross-validate, track with MLflow, tune with Optuna.

The public functions are imported lazily, so that ``import medclass.experiments`` needs neither
MLflow nor Optuna (optional extras) until they are used.

Example:
    >>> from medclass.experiments import compare_runs
    >>> cmp = compare_runs(["chest/resnet18", "chest/simple_cnn"], out="comparisons/chest")  # doctest: +SKIP
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Comparison": "compare", "compare_runs": "compare",
    "CVResult": "crossval", "cross_validate": "crossval",
    "MLflowCallback": "tracking", "log_run_folder": "tracking", "track_training": "tracking",
    "TuneResult": "tune", "tune": "tune", "PruningCallback": "tune",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
