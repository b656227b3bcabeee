"""Small shared helpers: atomic file writes, memory measurement, JSON that knows numpy."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

PIXEL_TOLERANCE = 1e-4  # float rounding allowed around the [0, 1] pixel convention ((x - lo) / (hi - lo), resampling)


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


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def to_json(obj: Any) -> str:
    """JSON text of ``obj``; numpy scalars/arrays and paths are converted, NaN written as null."""
    text = json.dumps(obj, default=_json_default, indent=2, allow_nan=True)
    return text.replace("NaN", "null")


def write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as JSON."""
    atomic_write_text(Path(path), to_json(obj))


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (ru_maxrss)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0



def epoch_number(index: int) -> int:
    """The epoch as people count it (1, 2, ...) from Lightning's 0-based index (``metrics.csv`` keeps the index).

    >>> epoch_number(0)
    1
    """
    return int(index) + 1
