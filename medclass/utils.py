"""Small shared helpers: atomic file writes, memory measurement, JSON that knows numpy."""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

PIXEL_TOLERANCE = 1e-4  # float rounding allowed around the [0, 1] pixel convention ((x - lo) / (hi - lo), resampling)

if TYPE_CHECKING:
    import torch


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new one, never half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Text version of :func:`atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _plain(o: Any) -> Any:
    """``o`` with numpy scalars and arrays as Python values, paths as text and non-finite floats as None (recursively)."""
    if isinstance(o, dict):
        return {k: _plain(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_plain(v) for v in o]
    if isinstance(o, np.ndarray):
        return _plain(o.tolist())
    if isinstance(o, (float, np.floating)):
        return float(o) if math.isfinite(o) else None
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, Path):
        return str(o)
    return o


def to_json(obj: Any) -> str:
    """Strict JSON text of ``obj``: numpy scalars/arrays and paths are converted, NaN and inf written as null.

    >>> print(to_json({"auc": float("nan"), "path": "/data/NaNo/x.png"}))
    {
      "auc": null,
      "path": "/data/NaNo/x.png"
    }
    """
    return json.dumps(_plain(obj), indent=2, allow_nan=False)


def write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as JSON."""
    atomic_write_text(Path(path), to_json(obj))


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (ru_maxrss)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0



def torch_device(spec: str | None) -> "torch.device":
    """The torch device ``spec`` (``cpu``, ``cuda``, ``cuda:1``, ``mps``) if this machine has it; else a ConfigError.

    >>> str(torch_device("cpu"))
    'cpu'
    """
    import torch

    from .errors import ConfigError

    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError):
        raise ConfigError(f"Unknown device {spec!r}; expected cpu, cuda, cuda:N (a GPU index) or mps.") from None
    if device.type == "cuda":
        n = torch.cuda.device_count()
        if (device.index or 0) >= n:
            fix = "use --device cpu" if not n else f"use cuda:0 to cuda:{n - 1}"
            raise ConfigError(f"Device {spec!r} was asked for, but torch sees {n} CUDA GPU(s)"
                              + (" (no GPU or driver)" if not n else "") + f"; {fix}.")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"Device {spec!r} was asked for, but this machine has no Apple MPS device; use --device cpu.")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"Device {spec!r} is not supported by medclass; use cpu, cuda, cuda:N or mps.")
    return device


def epoch_number(index: int) -> int:
    """The epoch as people count it (1, 2, ...) from Lightning's 0-based index (``metrics.csv`` keeps the index).

    >>> epoch_number(0)
    1
    """
    return int(index) + 1
