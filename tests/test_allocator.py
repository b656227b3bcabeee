"""The serving process caps glibc's malloc arenas (medclass/serving/_allocator.py): checked in a fresh process."""
from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="glibc's malloc arenas")

PROBE = """
import ctypes, sys, threading
from medclass.serving._allocator import limit_malloc_arenas
print(limit_malloc_arenas() if sys.argv[1] == "limit" else None, flush=True)
keep, barrier = [], threading.Barrier(8)
def work():  # 8 threads alive at once, each allocating through malloc (objects over pymalloc's 512 bytes)
    keep.append([bytes(1000 + i % 7) for i in range(2000)])
    barrier.wait()
ts = [threading.Thread(target=work) for _ in range(8)]
for t in ts: t.start()
for t in ts: t.join()
ctypes.CDLL("libc.so.6").malloc_stats()  # one "Arena N:" line per arena, on stderr
"""


def _arenas(mode: str, **env: str) -> tuple[str, int]:
    run = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120,
                         env={**{k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}, **env})
    assert run.returncode == 0, run.stderr
    return run.stdout.strip(), sum(line.startswith("Arena ") for line in run.stderr.splitlines())


def test_a_serving_process_uses_two_malloc_arenas_unless_the_user_set_their_own() -> None:
    default, arenas = _arenas("none")
    assert default == "None" and arenas > 2  # glibc's default: an arena per thread here, up to 8 per core
    assert _arenas("limit") == ("True", 2)
    assert _arenas("limit", MALLOC_ARENA_MAX="3") == ("False", 3)  # the user's setting stands
