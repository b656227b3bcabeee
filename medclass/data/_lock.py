"""One builder at a time for a shared cache (the image cache, the fingerprint cache, the volume cache).

Two processes, or two nodes on a shared file system, that build the same cache at once would write the same
files twice or interleave their parts. :func:`building` holds an OS file lock (``filelock.FileLock``:
``flock``/``fcntl``, released by the kernel when its holder dies, so a killed builder never leaves a stale lock)
beside the cache for the whole build; a second builder waits for it, logs that it waits, and then finds the
finished result and reuses it instead of building again.

On a network file system the lock needs working POSIX locks (NFSv4, Lustre, GPFS, CephFS have them).

Example::

    with building(folder / "images-ab12.lock", "the image cache"):
        if not final.is_file():
            ...  # build
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

log = logging.getLogger(__name__)


@contextlib.contextmanager
def building(lock_file: str | Path, what: str) -> Iterator[None]:
    """Hold the lock ``lock_file`` (created with its folder) while the block runs; wait, saying so, while another
    process holds it."""
    lock_file = Path(lock_file)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(lock_file, is_singleton=True)  # nested in one process: re-entered, not a deadlock
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("Another process is building %s (lock %s); waiting for it to finish, then reusing its result.",
                 what, lock_file)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


__all__ = ["building"]
