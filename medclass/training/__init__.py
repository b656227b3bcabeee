"""Training engine: the Lightning loop (``runner``), data module, callbacks, threshold choice, LR finder.

``load_checkpoint`` / ``save_checkpoint`` / ``read_meta`` live in :mod:`medclass.artifacts` and are
re-exported here for compatibility.
"""
from __future__ import annotations

from ..artifacts.checkpoint import load_checkpoint, read_meta, save_checkpoint
from .runner import RunResult, train

__all__ = ["RunResult", "load_checkpoint", "read_meta", "save_checkpoint", "train"]
