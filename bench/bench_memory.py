"""Peak memory of one training epoch when the data set grows tenfold (streamed decode vs memmap cache).

Builds two CSV manifests in a temporary folder (never in the repository): the N real chest X-ray
JPEGs, and the same files each listed ``--repeat`` times (10N rows; decoding is per sample, so
repeated files cost memory like distinct ones). For each manifest it iterates one full epoch of a
DataLoader (``xray`` augmentation, ``--image-size``, ``--batch-size``, ``--workers`` workers),
decoding every image, and again reading a memory-mapped uint8 cache built beforehand. Every run
happens in a fresh Python process so that peaks do not carry over; inside it a thread samples,
every 50 ms, the memory of the process and the sum over its DataLoader workers: RSS (every page
mapped, including shared libraries, copy-on-write pages shared with the parent and memmap pages
of the page cache), USS (pages only that process holds: what it really owns) and the PSS of
main process plus workers (shared pages divided among their users: the footprint of the whole).

Usage:
    nice .venv/bin/python bench/bench_memory.py --out /tmp/bench_memory.json
    nice .venv/bin/python bench/bench_memory.py --subset 1000 --out /tmp/bench_memory.json  # quicker
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import psutil

DEFAULT_DATA = Path(os.environ.get("MEDCLASS_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
MiB = 2**20


class PeakSampler(threading.Thread):
    """Samples RSS and USS of this process and the sums over its children, and the total PSS."""

    def __init__(self, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.interval, self.proc = interval, psutil.Process()
        self.peak = {"main_rss": 0, "main_uss": 0, "workers_rss": 0, "workers_uss": 0, "total_pss": 0}
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            main = self.proc.memory_full_info()
            workers = []
            for child in self.proc.children(recursive=True):
                try:
                    workers.append(child.memory_full_info())
                except psutil.NoSuchProcess:
                    continue
            now = {"main_rss": main.rss, "main_uss": main.uss, "workers_rss": sum(w.rss for w in workers),
                   "workers_uss": sum(w.uss for w in workers), "total_pss": main.pss + sum(w.pss for w in workers)}
            for key, value in now.items():
                self.peak[key] = max(self.peak[key], value)
            self._done.wait(self.interval)

    def stop(self) -> dict[str, float]:
        self._done.set()
        self.join()
        return {k: round(v / MiB, 1) for k, v in self.peak.items()}


def one_epoch(manifest: Path, classes: list[str], args: argparse.Namespace, cache_path: str) -> dict:
    """Child process: iterate one epoch over ``manifest`` and return timings and memory peaks."""
    from torch.utils.data import DataLoader

    from medclass.data.cache import ImageCache
    from medclass.data.dataset import EpochSampler, ImageDataset, collate_skip
    from medclass.data.table import DataTable
    from medclass.data.transforms import build_transform

    sampler_thread = PeakSampler()
    sampler_thread.start()
    table = DataTable.from_csv(manifest, classes)
    tf = build_transform("xray", args.image_size, 1, [0.5], [0.25], train=True)
    cache = ImageCache.open(cache_path) if cache_path else None
    ds = ImageDataset(table, classes=classes, transform=tf, seed=0, cache=cache)
    sampler = EpochSampler(len(ds), seed=0)
    loader = DataLoader(ds, batch_size=args.batch_size, sampler=sampler, num_workers=args.workers,
                        collate_fn=collate_skip)
    start, seen, skipped = time.perf_counter(), 0, 0
    for batch in loader:
        if batch is not None:
            seen += len(batch["label"])
            skipped += len(batch["skipped"])
    seconds = time.perf_counter() - start
    peaks = sampler_thread.stop()
    return {"rows": len(table), "images": seen, "skipped": skipped, "seconds": round(seconds, 1),
            "images_per_s": round(seen / seconds, 1), **{f"peak_{k}_mib": v for k, v in peaks.items()}}


def manifests(data: Path, folder: Path, subset: int, repeat: int, seed: int) -> tuple[list[Path], list[str]]:
    """Write the N-row and the repeat*N-row CSV manifests; return their paths and the classes."""
    from medclass.data.sources import from_folders

    table = from_folders(data)
    frame = table.frame[["path", "label", "patient", "split", "frame"]].assign(split="train")
    if subset:
        frame = frame.sample(n=min(subset, len(frame)), random_state=seed)
    small, large = folder / "manifest_1x.csv", folder / f"manifest_{repeat}x.csv"
    frame.to_csv(small, index=False)
    pd.concat([frame] * repeat, ignore_index=True).to_csv(large, index=False)
    return [small, large], list(table.classes)


def markdown(results: list[dict]) -> str:
    """The results as a markdown table."""
    head = ("| rows | pixels from | images/s | epoch s | main RSS | main USS | workers RSS (sum) "
            "| workers USS (sum) | total PSS |")
    lines = [head, "|" + "---|" * 9]
    for r in results:
        lines.append(f"| {r['rows']:,} | {r['source']} | {r['images_per_s']:.0f} | {r['seconds']:.1f} "
                     f"| {r['peak_main_rss_mib']:.0f} | {r['peak_main_uss_mib']:.0f} | {r['peak_workers_rss_mib']:.0f} "
                     f"| {r['peak_workers_uss_mib']:.0f} | {r['peak_total_pss_mib']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA / "chest_xray", help="folder of class folders")
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the results")
    parser.add_argument("--subset", type=int, default=0, help="random subset of N files (0 = all)")
    parser.add_argument("--repeat", type=int, default=10, help="rows of the large manifest per file")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-cache", action="store_true", help="skip the memmap cache runs")
    parser.add_argument("--child", nargs=3, metavar=("MANIFEST", "CLASSES", "CACHE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        manifest, classes, cache = args.child
        print(json.dumps(one_epoch(Path(manifest), classes.split(","), args, cache)))
        return

    from medclass.data.cache import build_cache
    from medclass.data.table import DataTable

    results = []
    with tempfile.TemporaryDirectory(prefix="medclass-bench-") as tmp:
        files, classes = manifests(args.data, Path(tmp), args.subset, args.repeat, seed=0)
        for manifest in files:
            caches = [("decode", "")]
            if not args.no_cache:
                start = time.perf_counter()
                cache = build_cache(DataTable.from_csv(manifest, classes), args.image_size, 1, folder=Path(tmp) / "cache",
                                    workers=args.workers)
                caches.append((f"memmap cache ({cache.path.stat().st_size / MiB:.0f} MiB, built in "
                               f"{time.perf_counter() - start:.0f} s)", str(cache.path)))
            for source, cache_path in caches:
                cmd = [sys.executable, __file__, "--out", str(args.out), "--image-size", str(args.image_size),
                       "--batch-size", str(args.batch_size), "--workers", str(args.workers),
                       "--child", str(manifest), ",".join(classes), cache_path]
                child = subprocess.run(cmd, capture_output=True, text=True)
                if child.returncode:
                    sys.exit(f"benchmark run failed ({source}, {manifest.name}):\n{child.stderr}")
                results.append({"source": source, **json.loads(child.stdout.strip().splitlines()[-1])})
                print(markdown(results[-1:]).splitlines()[-1], flush=True)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "child"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"settings": settings, "cpu_count": os.cpu_count(),
                                    "results": results}, indent=2))
    print(markdown(results))
    print(f"\nfiles per manifest: {results[0]['rows']:,} and {results[-1]['rows']:,} rows; JSON: {args.out}")


if __name__ == "__main__":
    main()
