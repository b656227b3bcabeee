"""Small shared helpers: atomic file writes, memory measurement, JSON that knows numpy."""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


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
    """``o`` with numpy scalars and arrays as Python values and non-finite floats as None (recursively)."""
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
    """JSON text of ``obj``; numpy scalars/arrays and paths are converted, NaN and infinities written as null
    (as values: a string such as a file name containing 'NaN' is kept as it is).

    >>> to_json({"auc": float("nan"), "path": "scan_NaN.png"}).split()
    ['{', '"auc":', 'null,', '"path":', '"scan_NaN.png"', '}']
    """
    return json.dumps(_plain(obj), indent=2, allow_nan=False)


def write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as JSON."""
    atomic_write_text(Path(path), to_json(obj))


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (ru_maxrss)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

