"""Small shared helpers: atomic file writes, memory measurement, JSON that knows numpy."""
from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

PIXEL_TOLERANCE = 1e-4  # float rounding allowed around the [0, 1] pixel convention ((x - lo) / (hi - lo), resampling)

if TYPE_CHECKING:
    import torch


#: suffix of the temporary file of an atomic write (``.<name>.<random>.tmp`` beside the target); one left
#: behind means a write was killed (the target kept its previous content), see :func:`leftover_writes`
TMP_SUFFIX = ".tmp"
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def atomic_write_bytes(path: Path, data: bytes | Callable[[BinaryIO], Any]) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new one, never half of it.

    ``data``: the bytes, or a function that writes them to the open file (large content, streamed).

    The bytes go to a temporary file beside ``path``, are flushed to disk, then moved over it. A full
    disk raises :class:`~medclass.errors.DiskFullError` (the previous file is unchanged, the temporary
    file removed); a killed process leaves only the temporary file (found by :func:`leftover_writes`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            data(f) if callable(data) else f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise_if_disk_full(e, path)
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def raise_if_disk_full(error: OSError, path: Path) -> None:
    """Raise :class:`~medclass.errors.DiskFullError` (one sentence: where, what is kept, what to do) when
    ``error`` is a full disk or quota while writing ``path``; else return."""
    from .errors import DiskFullError

    if error.errno not in _DISK_FULL:
        return
    path = Path(path)
    full = DiskFullError(f"No space left on the disk of {path.parent} while writing {path.name}; the previous "
                         f"{path.name} is unchanged. Free some space and run the command again.")
    full.errno = error.errno
    raise full from None


def leftover_writes(folder: Path) -> list[Path]:
    """Temporary files of atomic writes that never finished in ``folder`` and its direct subfolders (each
    one a write that was killed: the file it was to replace kept its previous content).

    >>> leftover_writes(Path("workspace/default/run"))  # doctest: +SKIP
    [PosixPath('workspace/default/run/.metrics.csv.k2j3_x.tmp')]
    """
    folder = Path(folder)
    found = [*folder.glob(f".*{TMP_SUFFIX}"), *folder.glob(f"*/.*{TMP_SUFFIX}"), *folder.glob(f"*/*.ckpt{TMP_SUFFIX}")]
    return sorted(p for p in found if p.is_file())


_HELD_LOCKS: set[str] = set()  # files this process holds an exclusive_lock on


@contextlib.contextmanager
def exclusive_lock(path: Path, holder: str, busy: str) -> Iterator[str]:
    """Hold an exclusive lock on the file ``path`` for the block, with this process's pid and ``holder`` in it.

    Another live holder makes it raise :class:`~medclass.errors.BusyError` (``busy``, then who holds it).
    The lock is the operating system's POSIX record lock (``lockf``), so it ends with its process, even one
    that was killed, and is not inherited by forked children (DataLoader workers of a killed run, still
    shutting down, do not keep it, as they kept a ``flock``); a second lock of the same file in the same
    process is refused by a registry of this process's locks. The file is emptied on a normal exit. Yields what the file held when the lock was taken: '' after a
    clean exit, else the previous holder, who ended without releasing it (killed). No lock on systems
    without ``fcntl`` (Windows).
    """
    from .errors import BusyError

    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield ""
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = os.path.realpath(path)
    if key in _HELD_LOCKS:  # this process holds it already (POSIX locks do not conflict within one process)
        raise BusyError(f"{busy} (held by {path.read_text(errors='replace').strip()}; lock file {path}).")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            held_by = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "a process starting up"
            raise BusyError(f"{busy} (held by {held_by}; lock file {path}).") from None
        previous = os.pread(fd, 4096, 0).decode(errors="replace").strip()
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, {holder}, since {time.strftime('%Y-%m-%d %H:%M:%S')}"
                      .encode(), 0)
        _HELD_LOCKS.add(key)
        try:
            yield previous
        finally:
            os.ftruncate(fd, 0)
            _HELD_LOCKS.discard(key)
    finally:
        os.close(fd)  # releases the lock


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
