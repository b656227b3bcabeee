"""Where the web app's memory goes under load: a diagnostic run of :mod:`bench_webapp_load` in phases.

The server (what ``medclass serve`` runs, as in :mod:`bench_webapp_load`) starts with a diagnostic thread that,
when asked between phases, records: its RSS; the RSS after ``gc.collect()`` and after glibc's ``malloc_trim(0)``
(memory that Python freed but the allocator kept); the memory Python objects hold (``tracemalloc``, when
``--tracemalloc`` frames > 0) with a snapshot file; the count of live objects by type; and the largest
containers with who holds them (``Class.attribute``). Between two checkpoints after the first, the script prints
what grew: RSS, Python-held memory (top lines of the snapshot diff), object counts and containers.

    .venv/bin/python bench/diag_webapp_memory.py --phases 1500 3000 --concurrency 64 --tracemalloc 8

Reading it: growth that ``malloc_trim`` gives back is freed memory that the allocator keeps (fragmentation over
many threads' arenas); growth in tracemalloc's total is Python objects that stay alive (the diff names the line
that allocated them); growth in neither is native memory (PyTorch, image libraries) that stays allocated.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]
from bench_api import _random_checkpoint, free_port, start_api_server  # noqa: E402
from bench_api_load import MAX_UPLOAD_MB, payloads  # noqa: E402
from bench_webapp_load import run  # noqa: E402

# runs first in the server process: a thread that answers `ask{n}` files in $DIAG_DIR with `done{n}.json`
PRELUDE = r'''
import collections, ctypes, gc, json, os, threading, time, tracemalloc
import psutil
_frames = int(os.environ["DIAG_FRAMES"])
if _frames:
    tracemalloc.start(_frames)

def _owner(container):
    for ref in gc.get_referrers(container):
        if isinstance(ref, dict):
            key = next((k for k, v in ref.items() if v is container), None)
            for holder in gc.get_referrers(ref):
                if getattr(holder, "__dict__", None) is ref:
                    return f"{type(holder).__module__}.{type(holder).__qualname__}.{key}"
            if key is not None and "__name__" in ref:
                return f"{ref['__name__']}.{key}"
        elif hasattr(ref, "__dict__") and not isinstance(ref, type) and type(ref).__name__ not in ("frame", "function"):
            return f"{type(ref).__module__}.{type(ref).__qualname__} (slot or item)"
    return "?"

def _record(n, folder):
    process = psutil.Process()
    out = {"rss_mb": process.memory_info().rss / 2**20}
    gc.collect()
    out["rss_after_gc_mb"] = process.memory_info().rss / 2**20
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    out["rss_after_trim_mb"] = process.memory_info().rss / 2**20
    out["threads"] = threading.active_count()
    if _frames:
        out["traced_mb"] = tracemalloc.get_traced_memory()[0] / 2**20
        tracemalloc.take_snapshot().dump(os.path.join(folder, f"snap{n}.pkl"))
    objects = gc.get_objects()
    out["types"] = dict(collections.Counter(type(o).__qualname__ for o in objects).most_common(60))
    big = sorted((o for o in objects if isinstance(o, (dict, list, set, collections.deque, collections.OrderedDict))
                  and len(o) >= 300), key=len, reverse=True)[:25]
    out["containers"] = [[_owner(o), type(o).__name__, len(o)] for o in big]
    del objects, big
    with open(os.path.join(folder, f"done{n}.json.tmp"), "w") as f:
        json.dump(out, f)
    os.replace(os.path.join(folder, f"done{n}.json.tmp"), os.path.join(folder, f"done{n}.json"))

def _watch(folder):
    n = 0
    while True:
        if os.path.exists(os.path.join(folder, f"ask{n}")):
            _record(n, folder)
            n += 1
        time.sleep(0.5)

threading.Thread(target=_watch, args=(os.environ["DIAG_DIR"],), daemon=True).start()
'''


def checkpoint(folder: Path, n: int, timeout: float = 900) -> dict:
    """Ask the server for record ``n`` and wait for it."""
    (folder / f"ask{n}").touch()
    deadline = time.monotonic() + timeout
    while not (folder / f"done{n}.json").exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the server wrote no record {n} within {timeout:.0f} s")
        time.sleep(0.5)
    return json.loads((folder / f"done{n}.json").read_text())


def compare(folder: Path, a: int, b: int, ra: dict, rb: dict, analyses: int, top: int) -> None:
    """Print what grew between records ``a`` and ``b`` (``analyses`` analyses apart)."""
    per = lambda mb: f"{mb:+.1f} MiB ({mb * 2**20 / max(analyses, 1) / 1024:+.1f} KiB/analysis)"  # noqa: E731
    print(f"\n## record {a} -> {b}: {analyses} analyses")
    for key in ("rss_mb", "rss_after_gc_mb", "rss_after_trim_mb", "traced_mb"):
        if key in ra:
            print(f"- {key}: {ra[key]:.1f} -> {rb[key]:.1f} = {per(rb[key] - ra[key])}")
    print(f"- threads: {ra['threads']} -> {rb['threads']}")
    grown = sorted(((rb["types"].get(t, 0) - ra["types"].get(t, 0), t) for t in set(ra["types"]) | set(rb["types"])),
                   reverse=True)[:12]
    print("- object counts that grew most:", ", ".join(f"{t} {d:+d}" for d, t in grown if d > 0) or "none")
    before = {(o, k): n for o, k, n in ra["containers"]}
    print("- largest containers now (holder, type, len, change):")
    for owner, kind, n in rb["containers"][:15]:
        print(f"    {owner} {kind} {n} ({n - before.get((owner, kind), 0):+d})")
    if (folder / f"snap{a}.pkl").exists():
        diff = tracemalloc.Snapshot.load(str(folder / f"snap{b}.pkl")).compare_to(
            tracemalloc.Snapshot.load(str(folder / f"snap{a}.pkl")), "traceback")
        print(f"- Python-held memory that grew most (tracemalloc, by traceback):")
        for stat in diff[:top]:
            print(f"    {stat.size_diff / 1024:+.0f} KiB in {stat.count_diff:+d} blocks")
            for line in stat.traceback.format()[-6:]:
                print("       ", line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phases", type=int, nargs="+", default=[1500, 3000], help="analyses in each phase")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--tracemalloc", type=int, default=8, help="frames kept per allocation (0: off)")
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--keep-files-s", type=int, default=60)
    parser.add_argument("--env", nargs="*", default=[], help="NAME=VALUE for the server, e.g. MALLOC_ARENA_MAX=2")
    parser.add_argument("--folder", default="", help="keep the records and snapshots here")
    args = parser.parse_args()
    items = payloads()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.folder or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for old in [*folder.glob("ask*"), *folder.glob("done*"), *folder.glob("snap*")]:
            old.unlink()
        ckpt = _random_checkpoint(Path(tmp), "simple_cnn", 64)
        port = free_port()
        env = {"DIAG_DIR": str(folder), "DIAG_FRAMES": str(args.tracemalloc), **dict(e.split("=", 1) for e in args.env)}
        server = start_api_server(ckpt, port, max_upload_mb=MAX_UPLOAD_MB, web=True, log=folder / "server.log",
                                  prelude=PRELUDE, env=env, keep_files_s=args.keep_files_s)
        try:
            base = f"http://127.0.0.1:{port}"
            run(base, port, items, len(items) * 2, 8, 300, server.pid)  # warm-up: every payload twice
            records = [checkpoint(folder, 0)]
            print(f"record 0 (after the warm-up): {json.dumps({k: v for k, v in records[0].items() if k.endswith('mb')})}")
            for i, n in enumerate(args.phases, start=1):
                start = time.perf_counter()
                r = run(base, port, items, n, args.concurrency, 3600, server.pid)
                records.append(checkpoint(folder, i))
                print(f"phase {i}: {r['requests']} analyses in {time.perf_counter() - start:.0f} s, "
                      f"{r['server_errors']} server errors, {r['unexpected']} unexpected")
                compare(folder, i - 1, i, records[i - 1], records[i], r["requests"], args.top)
        finally:
            server.terminate()
            server.wait(timeout=60)


if __name__ == "__main__":
    main()
