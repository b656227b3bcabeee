"""Training engine: Lightning loop, self-describing checkpoints, workspaces and resume."""
from .checkpoint import load_checkpoint, read_meta, save_checkpoint
from .train import RunResult, train

__all__ = ["RunResult", "load_checkpoint", "read_meta", "save_checkpoint", "train"]
