"""Self-describing checkpoints: safetensors weights plus JSON metadata, never a pickle.

A checkpoint holds everything ``predict``, ``explain``, ``serve`` and ``export`` need: the model's
tensors, class names, preprocessing (channels, size, mean/std, input range, DICOM window), the
decision threshold, temperature, the full run config, metrics and library versions.

Example:
    >>> model, meta = load_checkpoint("workspace/default/resnet18/best.safetensors")  # doctest: +SKIP
    >>> meta["classes"], meta["threshold"]  # doctest: +SKIP
    (['NORMAL', 'PNEUMONIA'], 0.43)
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from ..errors import CheckpointError
from ..utils import atomic_write_bytes

FORMAT = "medclass-checkpoint/1"
META_KEY = "medclass"


def library_versions() -> dict[str, str]:
    """Versions of the libraries a checkpoint was written with."""
    import numpy
    import timm

    from .. import __version__

    return {"medclass": __version__, "torch": torch.__version__, "timm": timm.__version__, "numpy": numpy.__version__}


def build_meta(
    *,
    classes: list[str],
    model_name: str,
    in_chans: int,
    image_size: int,
    mean: list[float],
    std: list[float],
    window: str = "",
    dropout: float = 0.0,
    pool: str = "avg",
    threshold: float = 0.5,
    threshold_rule: str = "fixed",
    temperature: float = 1.0,
    config: dict | None = None,
    metrics: dict | None = None,
) -> dict[str, Any]:
    """Assemble checkpoint metadata in the documented layout (docs/architecture.md)."""
    from ..models import num_outputs

    return {
        "format": FORMAT,
        "classes": list(classes),
        "model": {"name": model_name, "num_outputs": num_outputs(len(classes)), "in_chans": in_chans,
                  "dropout": dropout, "pool": pool},
        "preprocessing": {"image_size": image_size, "in_chans": in_chans, "mean": list(map(float, mean)),
                          "std": list(map(float, std)), "input_range": [0.0, 1.0], "window": window},
        "threshold": float(threshold),
        "threshold_rule": threshold_rule,
        "temperature": float(temperature),
        "config": config or {},
        "metrics": metrics or {},
        "versions": library_versions(),
    }


def save_checkpoint(path: str | Path, model: torch.nn.Module, meta: dict[str, Any]) -> Path:
    """Write ``model``'s tensors and ``meta`` to ``path`` (.safetensors) atomically."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"Checkpoint path {path} must end in .safetensors.")
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    data = save(tensors, metadata={META_KEY: json.dumps(meta, allow_nan=True)})
    atomic_write_bytes(path, data)
    return path


def read_meta(path: str | Path) -> dict[str, Any]:
    """Read only the metadata of a checkpoint (fast: no tensors are loaded)."""
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
    meta = json.loads(header[META_KEY])
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: unknown checkpoint format {meta.get('format')!r}; expected {FORMAT!r}.")
    return meta


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the model from a checkpoint alone (no download) and return ``(model in eval mode, meta)``.

    Tensors are loaded on the CPU first, so a checkpoint written on a GPU loads anywhere.
    """
    from ..models import create_model

    path = _check_path(path)
    meta = read_meta(path)
    m = meta["model"]
    model = create_model(m["name"], num_classes=len(meta["classes"]), in_chans=m["in_chans"],
                         pretrained=False, dropout=m.get("dropout", 0.0), pool=m.get("pool", "avg"))
    state = load_file(str(path), device="cpu")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not fit model {m['name']!r} (missing {list(missing)[:5]}, unexpected "
            f"{list(unexpected)[:5]}); the checkpoint was written by another model definition."
        )
    return model.to(device).eval(), meta


def _check_path(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        for name in ("best.safetensors", "last.safetensors"):
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"Run folder {path} has no best.safetensors or last.safetensors; has it trained an epoch?")
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
