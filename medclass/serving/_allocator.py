"""The server process's C allocator (glibc): 2 malloc arenas and a fixed mmap threshold, so that memory stays flat
under a long load.

Two glibc defaults made the web app's RSS creep by 10-25 KiB an analysis after every Python-level store was
bounded (``bench/diag_webapp_memory.py`` and ``bench/bench_webapp_load.py``, figures in
``bench/README_serving.md``):

- **an arena per thread**, up to 8 per core: the server's event loop, worker threads and PyTorch's threads each
  allocate in their own arena, and memory freed in one is not reused by the others (about twenty arenas of
  20-30 MiB each after 9,000 analyses). Capped at :data:`SERVER_ARENAS`;
- **a dynamic mmap threshold**: after the first large buffer (an image, a CAM map) is freed, glibc raises the
  size above which it maps memory from the system, so later buffers of that size come from the heap and
  fragment it. Fixed at :data:`MMAP_THRESHOLD` (glibc's starting value), which also turns the raising off: every
  large buffer goes back to the system when freed.

Hand-written because these are two ``mallopt`` calls (no library sets them). ``MALLOC_ARENA_MAX`` and
``MALLOC_MMAP_THRESHOLD_`` in the environment, glibc's own settings, win over them; other C libraries (musl,
macOS) are left alone.
"""
from __future__ import annotations

import ctypes
import logging
import os

_log = logging.getLogger(__name__)
SERVER_ARENAS = 2  # malloc arenas of a serving process (glibc's default: 8 per core)
MMAP_THRESHOLD = 128 * 1024  # bytes; allocations this large are mapped and returned to the system when freed
_M_ARENA_MAX, _M_MMAP_THRESHOLD = -8, -3  # mallopt's parameter numbers (glibc's malloc.h)


def tune_malloc(arenas: int = SERVER_ARENAS, mmap_threshold: int = MMAP_THRESHOLD) -> dict[str, bool]:
    """Cap glibc's malloc arenas at ``arenas`` and fix its mmap threshold at ``mmap_threshold`` bytes for this
    process; call it before the server starts its threads.

    Returns which of the two were set (``{"arenas": ..., "mmap_threshold": ...}``): not one whose environment
    variable is set (the user's choice stands), neither when the C library is not glibc.

    >>> tune_malloc()  # doctest: +SKIP
    {'arenas': True, 'mmap_threshold': True}
    """
    done = {"arenas": False, "mmap_threshold": False}
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return done
    for key, variable, parameter, value in (("arenas", "MALLOC_ARENA_MAX", _M_ARENA_MAX, arenas),
                                            ("mmap_threshold", "MALLOC_MMAP_THRESHOLD_", _M_MMAP_THRESHOLD,
                                             mmap_threshold)):
        if not os.environ.get(variable):
            done[key] = bool(mallopt(parameter, value))
    _log.debug("malloc tuned: %s", done)
    return done
