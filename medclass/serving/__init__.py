"""Serving: predict from a checkpoint, export to ONNX/TorchScript, REST API and web app.

Heavy optional dependencies (onnxruntime, fastapi, gradio) are imported only by the module that
needs them, so ``from medclass.serving import Predictor`` stays light.

>>> from medclass.serving import Predictor, export_model  # doctest: +SKIP
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Predictor": "medclass.serving.predictor",
    "export_model": "medclass.serving.export", "onnx_metadata": "medclass.serving.export",
    "torchscript_metadata": "medclass.serving.export",
    "create_api": "medclass.serving.api",
    "create_webapp": "medclass.serving.webapp", "create_app": "medclass.serving.webapp", "serve": "medclass.serving.webapp",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'medclass.serving' has no attribute {name!r}")
