"""From 10^4 to 10^6 rows: time and peak memory of each data-check stage, and the slope of time against rows.

Stages (each run in a fresh process, so its peak RSS is its own; synthetic data, no images decoded):

- ``table``: build and validate a :class:`~medclass.data.table.DataTable` of N rows (a third as many
  patients, 5% rows without one) and count images and patients per split and class (the data check's counts);
- ``split``: :func:`~medclass.data.splits.split_patients` (patient-grouped, class-stratified);
- ``search``: :func:`~medclass.data.neardup.hamming_pairs` on N random 256-bit hashes of which a tenth are
  copies of others with 0, 3, 15, 16 or 17 bits flipped (the threshold is 16);
- ``brute``: :func:`~medclass.data.neardup.brute_force_pairs` on the same hashes (only up to ``--brute-max``);
- ``audit``: :func:`~medclass.data.audit.audit_leaks` on the split table with those hashes and 1% byte-identical
  copies, plus its JSON report (``LeakReport.to_dict``), up to ``--audit-max`` rows.

Two stages decode real files and run only when named (``--stages fingerprint cache``, up to ``--decode-max``
rows): N distinct 32 x 32 grey PNGs are written first (not timed), then

- ``fingerprint``: :func:`~medclass.data.fingerprint.fingerprint` with 2 worker processes and a cache folder
  (the data check's decode pass: sha256, 256-bit phash, size, mean/std, written to the cache every 2,048 rows);
- ``cache``: :func:`~medclass.data.cache.build_cache` at 32 px, 1 channel, 2 worker processes (the memory-mapped
  training cache).

``result`` is what the stage found (patients, test rows, pairs within 16 bits, bytes of the JSON report):
the search and the brute force give the same number of pairs on the same hashes.

The slope is the least-squares slope of log(time) against log(rows) over the sizes measured for a stage
(1.0 = linear, 2.0 = all pairs); ``slope_top`` uses the two largest sizes only.

Example:
    python bench/bench_scale.py --sizes 10000 100000 1000000 --out /tmp/bench_scale.json
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

STAGES = ("table", "split", "search", "brute", "audit")
DECODE_STAGES = ("fingerprint", "cache")  # decode real files: only when named
THRESHOLD = 16  # bits of 256, the audit's default
PLANTED = (0, 3, 15, 16, 17)  # bit flips of the planted copies: identical, close, under, at and over the threshold


def hashes(n: int, seed: int = 0) -> np.ndarray:
    """``(n, 4)`` uint64 random hashes, a tenth of them copies of others with :data:`PLANTED` bits flipped."""
    rng = np.random.default_rng(seed)
    words = rng.integers(0, 2**64, size=(n, 4), dtype=np.uint64)
    k = n // 10
    src, dst, flips = rng.integers(0, n, k), rng.integers(0, n, k), rng.choice(PLANTED, size=k)
    for d in PLANTED:
        chosen = np.argsort(rng.random((int((flips == d).sum()), 256)), axis=1)[:, :d]
        mask = np.zeros((len(chosen), 256), dtype=bool)
        np.put_along_axis(mask, chosen, True, axis=1)
        words[dst[flips == d]] = words[src[flips == d]] ^ np.packbits(mask, axis=1, bitorder="little").view(np.uint64)
    return words


def table_frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    index = pd.Series(np.arange(n)).astype(str)
    patient = ("p" + pd.Series(rng.integers(0, max(1, n // 3), n)).astype(str)).where(rng.random(n) > 0.05, "")
    return pd.DataFrame({"path": "img" + index + ".png", "label": np.where(rng.random(n) < 0.3, "A", "B"),
                         "patient": patient})


def fingerprints(frame: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    n = len(frame)
    words = hashes(n, seed)
    sha = np.zeros((n, 4), dtype=np.uint64)
    sha[:, 0] = np.arange(n)
    rng = np.random.default_rng(seed + 1)
    copies, of = rng.integers(0, n, n // 100), rng.integers(0, n, n // 100)  # 1% byte-identical files
    sha[copies], words[copies] = sha[of], words[of]
    columns = {f"{name}_{w}": values[:, w] for name, values in (("sha256", sha), ("phash", words)) for w in range(4)}
    return pd.DataFrame({"path": frame["path"], "frame": -1, **columns, "error": ""})


def image_table(n: int, folder: Path):
    """A DataTable of ``n`` distinct 32 x 32 grey PNGs written under ``folder`` (100 sub-folders)."""
    from PIL import Image

    from medclass.data.table import DataTable

    frame = table_frame(n)
    paths = []
    rng = np.random.default_rng(0)
    for i in range(n):
        path = folder / f"{i % 100:02d}" / f"img{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return DataTable(frame.assign(path=paths), ["A", "B"])


def run_stage(stage: str, n: int) -> dict:
    """Build the inputs, then time ``stage`` alone; peak RSS (MiB) before and after it."""
    from medclass.config import DataConfig
    from medclass.data.audit import audit_leaks
    from medclass.data.check import _counts
    from medclass.data.neardup import brute_force_pairs, hamming_pairs
    from medclass.data.splits import split_patients
    from medclass.data.table import DataTable

    frame = table_frame(n)
    prepared: dict = {}
    tmp = tempfile.TemporaryDirectory()
    if stage in DECODE_STAGES:
        prepared["table"] = image_table(n, Path(tmp.name) / "images")
    if stage in ("search", "brute"):
        prepared["words"] = hashes(n)
    elif stage in ("split", "audit"):
        prepared["table"] = DataTable(frame, ["A", "B"])
        if stage == "audit":
            prepared["table"] = split_patients(prepared["table"], 0.15, 0.15, seed=0)
            prepared["fp"] = fingerprints(prepared["table"].frame)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    found = 0
    if stage == "table":
        found = _counts(DataTable(frame, ["A", "B"]), DataConfig())["patients_total"]
    elif stage == "split":
        found = int((split_patients(prepared["table"], 0.15, 0.15, seed=0).frame["split"] == "test").sum())
    elif stage == "search":
        found = len(hamming_pairs(prepared["words"], THRESHOLD)[0])
    elif stage == "brute":
        found = len(brute_force_pairs(prepared["words"], THRESHOLD)[0])
    elif stage == "audit":
        report = audit_leaks(prepared["table"], prepared["fp"], max_distance=THRESHOLD)
        found = len(json.dumps(report.to_dict()))
    elif stage == "fingerprint":
        from medclass.data.fingerprint import fingerprint

        found = int((fingerprint(prepared["table"], workers=2, cache_dir=Path(tmp.name) / "fp")["error"] == "").sum())
    elif stage == "cache":
        from medclass.data.cache import build_cache

        found = int(build_cache(prepared["table"], 32, 1, folder=Path(tmp.name) / "cache", workers=2).valid.sum())
    seconds = time.perf_counter() - start
    tmp.cleanup()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"stage": stage, "rows": n, "seconds": seconds, "peak_rss_mib": peak, "inputs_rss_mib": before,
            "result": found}


def slope(rows: list[int], seconds: list[float]) -> float | None:
    """Least-squares slope of log(seconds) against log(rows); None with fewer than two sizes."""
    if len(rows) < 2:
        return None
    return float(np.polyfit(np.log(rows), np.log(np.maximum(seconds, 1e-6)), 1)[0])


def markdown(results: list[dict]) -> str:
    lines = ["| stage | rows | seconds | peak RSS MiB (inputs) | result | slope (all sizes) | slope (two largest) |",
             "|---|---|---|---|---|---|---|"]
    for stage in (*STAGES, *DECODE_STAGES):
        mine = sorted((r for r in results if r["stage"] == stage), key=lambda r: r["rows"])
        fit = slope([r["rows"] for r in mine], [r["seconds"] for r in mine])
        top = slope([r["rows"] for r in mine[-2:]], [r["seconds"] for r in mine[-2:]])
        for i, r in enumerate(mine):
            last = i == len(mine) - 1
            lines.append(f"| {stage} | {r['rows']:,} | {r['seconds']:.3f} | {r['peak_rss_mib']:.0f} "
                         f"({r['inputs_rss_mib']:.0f}) | {r['result']:,} | "
                         f"{f'{fit:.2f}' if last and fit is not None else ''} | "
                         f"{f'{top:.2f}' if last and top is not None else ''} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--brute-max", type=int, default=10_000, help="largest size the brute force runs at")
    parser.add_argument("--audit-max", type=int, default=100_000, help="largest size the audit runs at")
    parser.add_argument("--table-max", type=int, default=1_000_000, help="largest size of the table stage")
    parser.add_argument("--decode-max", type=int, default=100_000, help="largest size of the decoding stages")
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES + DECODE_STAGES)
    parser.add_argument("--one", nargs=2, metavar=("STAGE", "ROWS"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=Path("bench_scale.json"))
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_stage(args.one[0], int(args.one[1]))))
        return
    limits = {"brute": args.brute_max, "audit": args.audit_max, "table": args.table_max,
              "fingerprint": args.decode_max, "cache": args.decode_max}
    results = []
    for stage in args.stages:
        for n in sorted(args.sizes):
            if n > limits.get(stage, n):
                continue
            proc = subprocess.run([sys.executable, __file__, "--one", stage, str(n)], capture_output=True, text=True,
                                  check=True)
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"{stage} {n:,}: {results[-1]['seconds']:.3f} s", file=sys.stderr, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"sizes": args.sizes, "threshold": THRESHOLD, "results": results}, indent=1))
    table = markdown(results)
    args.out.with_suffix(".md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
