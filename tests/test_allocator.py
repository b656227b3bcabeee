"""The serving process tunes glibc's allocator (medclass/serving/_allocator.py): checked in fresh processes."""
from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="glibc's malloc")

PROBE = """
import ctypes, sys, threading
from medclass.serving._allocator import tune_malloc
print(str(sorted(tune_malloc().items())).replace(" ", "") if sys.argv[1] == "tune" else None, flush=True)
keep, barrier = [], threading.Barrier(8)
def work():  # 8 threads alive at once, each allocating through malloc (objects over pymalloc's 512 bytes)
    keep.append([bytes(1000 + i % 7) for i in range(2000)])
    barrier.wait()
ts = [threading.Thread(target=work) for _ in range(8)]
for t in ts: t.start()
for t in ts: t.join()
class Info(ctypes.Structure):  # glibc's struct mallinfo2
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
first = bytes(2_000_000)  # a large buffer, mapped; freeing it raises glibc's dynamic threshold above its size
del first
before = libc.mallinfo2().hblkhd
both = [bytes(1_000_000), bytes(1_000_000)]  # mapped only while the threshold stays fixed
print(round((libc.mallinfo2().hblkhd - before) / 1e6), flush=True)  # MB of them mapped
libc.malloc_stats()  # on stderr: one "Arena N:" line per arena
"""


def _probe(mode: str, **env: str) -> tuple[str, int, int]:
    """``(what tune_malloc returned, arenas, MB of two 1 MB buffers mapped)`` of a fresh process."""
    run = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120,
                         env={**{k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}, **env})
    assert run.returncode == 0, run.stderr
    tuned, mapped = run.stdout.split()
    return tuned, sum(line.startswith("Arena ") for line in run.stderr.splitlines()), int(mapped)


def test_a_serving_process_has_two_arenas_and_a_fixed_mmap_threshold_unless_the_user_set_them() -> None:
    untuned, arenas, mapped = _probe("none")
    assert untuned == "None" and arenas > 2 and mapped == 0  # glibc: an arena per thread; 1 MB buffers on the heap
    assert _probe("tune") == ("[('arenas',True),('mmap_threshold',True)]", 2, 2)
    tuned, arenas, _ = _probe("tune", MALLOC_ARENA_MAX="3")  # the user's setting stands
    assert tuned == "[('arenas',False),('mmap_threshold',True)]" and arenas == 3
