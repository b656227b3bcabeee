"""The server process's C allocator: fewer glibc malloc arenas, so that its memory does not creep under load.

glibc gives each new thread its own malloc arena, up to 8 per core; a server runs an event loop, a pool of
worker threads for Gradio and the API, and PyTorch's own threads, and memory freed in one arena is not reused
by the others. Under a long load (``bench/diag_webapp_memory.py``, 64 clients) the web app's RSS kept rising
by 16-25 KiB an analysis once no Python object count grew any more, held in about twenty arenas of 20-30 MiB
each; with 2 arenas it rose by 6 and then 2 KiB an analysis, at the same throughput (figures in
``bench/README_serving.md``).

Hand-written because it is one ``mallopt`` call (no library sets it); ``MALLOC_ARENA_MAX`` in the
environment, the standard glibc setting, wins over it, and other C libraries (musl, macOS) are left alone.
"""
from __future__ import annotations

import ctypes
import logging
import os

_log = logging.getLogger(__name__)
SERVER_ARENAS = 2  # malloc arenas of a serving process (glibc's default: 8 per core)
_M_ARENA_MAX = -8  # mallopt's parameter number for the arena limit (glibc's malloc.h)


def limit_malloc_arenas(arenas: int = SERVER_ARENAS) -> bool:
    """Cap glibc's malloc arenas at ``arenas`` for this process; call it before the server starts its threads.

    Returns whether the limit was set: not when ``MALLOC_ARENA_MAX`` is set (the user's choice stands) or the C
    library is not glibc.

    >>> limit_malloc_arenas()  # doctest: +SKIP
    True
    """
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    done = bool(mallopt(_M_ARENA_MAX, arenas))
    _log.debug("malloc arenas capped at %d: %s", arenas, done)
    return done
