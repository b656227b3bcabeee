"""Self-describing checkpoints: safetensors weights plus JSON metadata, never a pickle.

A checkpoint holds everything ``predict``, ``explain``, ``serve`` and ``export`` need: the model's
tensors, class names, preprocessing (channels, size, mean/std, input range, DICOM window), the
decision threshold, temperature, the full run config, metrics and library versions.

Example:
    >>> model, meta = load_checkpoint("workspace/default/resnet18/best.safetensors")  # doctest: +SKIP
    >>> meta.classes, meta.threshold  # doctest: +SKIP
    (('NORMAL', 'PNEUMONIA'), 0.43)

Importing this module does not import PyTorch (it is imported when a checkpoint is written or loaded).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors import SafetensorError, safe_open

from ..errors import CheckpointError, ConfigError
from ..metrics.ood import MahalanobisOOD
from ..models.weights import EXTRA_PREFIX
from ..utils import atomic_write_bytes
from .meta import CheckpointMeta, OODSpec, build_meta
from .rundir import RunDir

if TYPE_CHECKING:
    import torch

META_KEY = "medclass"
OOD_PREFIX = EXTRA_PREFIX + "ood."  # tensors of the out-of-distribution statistics, beside the model's
# state_dict entries that are statistics, not learned parameters
_BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


def save_checkpoint(path: str | Path, model: torch.nn.Module, meta: CheckpointMeta,
                    ood: MahalanobisOOD | None = None) -> Path:
    """Write ``model``'s tensors and ``meta`` to ``path`` (.safetensors) atomically.

    ``ood``: out-of-distribution statistics stored with it (``meta.ood`` then describes them; without
    them the file has none, whatever ``meta.ood`` said).
    """
    import torch
    from safetensors.torch import save

    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"Checkpoint path {path} must end in .safetensors.")
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    meta = meta.with_ood(None if ood is None else OODSpec("mahalanobis", float(ood.threshold), float(ood.quantile),
                                                          ood.n_train, ood.n_val, ood.feature_dim,
                                                          ood.n_calibration, float(ood.lowpass)))
    if ood is not None:
        tensors[OOD_PREFIX + "means"] = torch.from_numpy(ood.means.astype("float64")).contiguous()
        tensors[OOD_PREFIX + "precision"] = torch.from_numpy(ood.precision.astype("float64")).contiguous()
    data = save(tensors, metadata={META_KEY: json.dumps(meta.to_dict(), allow_nan=True)})
    atomic_write_bytes(path, data)
    return path


def read_meta(path: str | Path) -> CheckpointMeta:
    """Read and validate only the metadata of a checkpoint (fast: no tensors are loaded).

    Raises:
        CheckpointError: not a safetensors file, no medclass metadata, or metadata that is not valid
            (``"<file> is not a valid medclass checkpoint: <what is wrong>"``).
    """
    path = _check_path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint ({e}).") from None
    if META_KEY not in header:
        raise CheckpointError(
            f"{path} has no medclass metadata: it is a bare safetensors file. Use it as starting weights "
            "with `--weights`, or load a checkpoint written by `medclass train` (best.safetensors)."
        )
    try:
        raw = json.loads(header[META_KEY])
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not a valid medclass checkpoint: its metadata is not JSON ({e}).") from None
    return CheckpointMeta.from_dict(raw, source=str(path))


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, CheckpointMeta]:
    """Rebuild the model from a checkpoint alone (no download) and return ``(model in eval mode, meta)``.

    Tensors are loaded on the CPU first, so a checkpoint written on a GPU loads anywhere.
    """
    from safetensors.torch import load_file

    from ..models import create_model

    path = _check_path(path)
    meta = read_meta(path)
    m = meta.model
    try:
        model = create_model(m.name, num_classes=len(meta.classes), in_chans=m.in_chans, pretrained=False,
                             dropout=m.dropout, pool=m.pool, multi_label=meta.multi_label)
    except ConfigError as e:
        raise CheckpointError(f"{path} is not a valid medclass checkpoint: its model cannot be built ({e})") from None
    state = {k: v for k, v in load_file(str(path), device="cpu").items() if not k.startswith(OOD_PREFIX)}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # tensor shapes differ: other classes or input channels than the metadata says
        shapes = "; ".join(line.strip() for line in str(e).splitlines()[1:3])
        raise CheckpointError(
            f"{path} is not a valid medclass checkpoint: its tensors do not fit the metadata ({len(meta.classes)} "
            f"classes, in_chans {m.in_chans}, model {m.name!r}): {shapes}"
        ) from None
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not fit model {m.name!r} (missing {list(missing)[:5]}, unexpected "
            f"{list(unexpected)[:5]}); the checkpoint was written by another model definition."
        )
    return model.to(device).eval(), meta


def load_ood(path: str | Path) -> MahalanobisOOD | None:
    """The out-of-distribution statistics stored in a checkpoint, or None when it has none (older files).

    >>> load_ood("workspace/p/e/best.safetensors").threshold  # doctest: +SKIP
    412.7
    """
    path = _check_path(path)
    spec = read_meta(path).ood
    if spec is None:
        return None
    with safe_open(str(path), framework="np") as f:
        keys = set(f.keys())
        missing = [k for k in ("means", "precision") if OOD_PREFIX + k not in keys]
        if missing:
            raise CheckpointError(f"{path} is not a valid medclass checkpoint: its metadata describes OOD statistics "
                                  f"but the tensors {[OOD_PREFIX + k for k in missing]} are missing.")
        means, precision = f.get_tensor(OOD_PREFIX + "means"), f.get_tensor(OOD_PREFIX + "precision")
    d = spec.feature_dim
    if means.ndim != 2 or means.shape[1] != d or precision.shape != (d, d):
        raise CheckpointError(f"{path} is not a valid medclass checkpoint: OOD tensors of shapes {means.shape} and "
                              f"{precision.shape} do not fit feature_dim {d}.")
    return MahalanobisOOD(means, precision, spec.threshold, spec.quantile, spec.n_train, spec.n_val, spec.n_calibration,
                          spec.lowpass)


def _check_path(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        return RunDir(path).best_checkpoint()
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {path} does not exist.")
    if path.suffix != ".safetensors":
        with path.open("rb") as f:
            head = f.read(4)
        kind = "a pickled PyTorch file" if head[:2] in (b"PK", b"\x80\x02", b"\x80\x04", b"\x80\x05") else "not a safetensors file"
        raise CheckpointError(
            f"{path} is {kind}. medclass loads checkpoints only from .safetensors so that no code is ever "
            "unpickled; convert trusted weights with safetensors.torch.save_file, or pass them as --weights "
            "(tensor-only .pth files are read with weights_only=True)."
        )
    return path


def stored_parameters(path: str | Path) -> int | None:
    """Learned values stored in a safetensors checkpoint (normalisation statistics left out); None if absent.

    Shapes are read from the header only; no tensor is loaded. (The size of a model built from its
    registry name is :func:`medclass.models.count_parameters`.)

    >>> stored_parameters("workspace/p/e/best.safetensors")  # doctest: +SKIP
    11170753
    """
    if not Path(path).is_file():
        return None
    with safe_open(str(path), framework="pt") as f:
        return int(sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys()
                       if not k.endswith(_BUFFER_SUFFIXES) and not k.startswith(OOD_PREFIX)))


__all__ = ["CheckpointMeta", "build_meta", "load_checkpoint", "load_ood", "read_meta", "save_checkpoint", "stored_parameters"]
