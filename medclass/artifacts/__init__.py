"""Artifacts of a run, below training, evaluation and serving: the checkpoint format and the run folder.

- :class:`CheckpointMeta` (:mod:`.meta`): the typed, validated metadata of a checkpoint;
- :func:`save_checkpoint` / :func:`load_checkpoint` / :func:`read_meta` (:mod:`.checkpoint`):
  safetensors weights plus that metadata, never a pickle;
- :class:`RunDir`, :class:`EvalDir`, :class:`CVDir`, :class:`CompareDir`, :class:`TuneDir` (:mod:`.rundir`): every file name of a run folder,
  of an evaluation and of a cross-validation, and whether a run is finished or resumable.

Importing this package imports neither PyTorch nor the model registry; loading a checkpoint does.

Example:
    >>> from medclass.artifacts import RunDir, load_checkpoint
    >>> model, meta = load_checkpoint(RunDir("workspace/default/resnet18").best_checkpoint())  # doctest: +SKIP
    >>> meta.preprocessing.image_size                                                          # doctest: +SKIP
    224
"""
from .checkpoint import load_checkpoint, load_ood, read_meta, save_checkpoint
from .meta import FORMAT, CheckpointMeta, ModelSpec, OODSpec, Preprocessing, build_meta
from .rundir import CompareDir, CVDir, EvalDir, RunDir, TuneDir

__all__ = ["FORMAT", "CompareDir", "CVDir", "CheckpointMeta", "EvalDir", "ModelSpec", "OODSpec", "Preprocessing", "RunDir", "TuneDir",
           "build_meta", "load_checkpoint", "load_ood", "read_meta", "save_checkpoint"]
