"""medclass: from a folder of medical images to a trustworthy, explained, deployable classifier.

The public API, re-exported here once (imported lazily so ``import medclass`` stays light):

>>> from medclass import RunConfig, apply_overrides, train, evaluate, load_checkpoint  # doctest: +SKIP
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "RunConfig": "medclass.config", "DataConfig": "medclass.config", "ModelConfig": "medclass.config",
    "TrainConfig": "medclass.config", "EvalConfig": "medclass.config", "apply_overrides": "medclass.config",
    "load_config": "medclass.config", "save_config": "medclass.config",
    "DataTable": "medclass.data.table", "load_source": "medclass.data.sources", "read_image": "medclass.data.io",
    "prepare_data": "medclass.data.prepare", "check_data": "medclass.data.check",
    "create_model": "medclass.models", "list_models": "medclass.models", "model_info": "medclass.models",
    "train": "medclass.training", "RunResult": "medclass.training", "load_checkpoint": "medclass.artifacts",
    "save_checkpoint": "medclass.artifacts", "CheckpointMeta": "medclass.artifacts", "RunDir": "medclass.artifacts",
    "evaluate": "medclass.evaluation.evaluate", "compute_metrics": "medclass.metrics.metrics",
    "Predictor": "medclass.serving.predictor", "quickstart": "medclass.pipeline",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'medclass' has no attribute {name!r}")
