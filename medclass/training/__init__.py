"""Training engine: Lightning loop (``runner``), self-describing checkpoints, resume.

Checkpoint functions import without PyTorch Lightning, so ``predict`` and ``serve`` start fast;
``train`` and ``RunResult`` load the loop on first use.
"""
from __future__ import annotations

import importlib
from typing import Any

from ..artifacts.checkpoint import load_checkpoint, read_meta, save_checkpoint

__all__ = ["RunResult", "load_checkpoint", "read_meta", "save_checkpoint", "train"]


def __getattr__(name: str) -> Any:
    if name in ("train", "RunResult"):
        return getattr(importlib.import_module(".runner", __name__), name)
    raise AttributeError(f"module 'medclass.training' has no attribute {name!r}")
