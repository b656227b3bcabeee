"""Volume throughput and memory: volumes/s for reading + preparing + the model step, cache on and off, and
peak RSS against the number of volumes (it must not grow with it).

Writes ``--counts`` synthetic CT volumes (int16 HU ``.nii.gz`` of ``--shape`` voxels at 0.7 x 0.7 x 2.5 mm: a
lung-like field with a few nodule-like blobs, so that gzip, the resampler and the window see realistic
values) to a temporary folder, then for each count and for the cache off and on runs, in a fresh process,
the training data path of ``medclass train`` on volumes: :func:`~medclass.data.volumes.prepare.volume_dataset`
(read with nibabel, MONAI orientation, resampling to 1 mm, lung window, crop/pad to ``--size``, 3-D
augmentation) in a DataLoader (``collate_skip``, no workers), and a forward + backward + SGD step of
``resnet10_3d`` per batch, for ``--epochs`` epochs. With the cache on, epoch 1 prepares and writes the
memory-mapped cache and later epochs read it. Reported per run: volumes/s of each epoch, the time spent
reading, preparing and in the model step, RSS after each epoch and the process's peak RSS. ``--real`` adds
the read and read + prepare speed of the real ``../shared/data/lidc_nodules`` crops.

    PYTHONPATH=. python bench/bench_volumes_perf.py --counts 50 200 800 --real
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

LIDC = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "lidc_nodules"
SPACING = (0.7, 0.7, 2.5)  # mm: a typical chest CT (in-plane x in-plane x slice)


def write_volumes(folder: Path, n: int, shape: tuple[int, int, int], seed: int = 0) -> Path:
    """``n`` synthetic CT volumes (``.nii.gz``, int16 HU) and ``manifest.csv`` (path, label, patient); returns the CSV."""
    import nibabel as nib
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*(np.arange(s, dtype=np.float32) for s in shape), indexing="ij")
    body = ((x - shape[0] / 2) / (shape[0] * 0.45)) ** 2 + ((y - shape[1] / 2) / (shape[1] * 0.4)) ** 2 < 1
    rows = []
    for i in range(n):
        hu = np.where(body, -820.0, -1000.0) + rng.normal(0, 25, shape)  # lung parenchyma in air, scanner noise
        for _ in range(1 + i % 3):  # nodule-like blobs
            c = rng.uniform(0.3, 0.7, 3) * np.array(shape)
            r = rng.uniform(3, 8)
            hu[((x - c[0]) ** 2 + (y - c[1]) ** 2 + ((z - c[2]) * SPACING[2] / SPACING[0]) ** 2) < r * r] = 40.0
        path = folder / f"vol{i:05d}.nii.gz"
        nib.save(nib.Nifti1Image(hu.astype(np.int16), np.diag([*SPACING, 1.0])), str(path))
        rows.append({"path": str(path), "label": "malignant" if i % 2 else "benign", "patient": f"P{i:05d}"})
    csv = folder / "manifest.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def child(manifest: str, n: int, cache: str, epochs: int, size: int, batch: int, step: bool) -> dict:
    """One run in this process: the training data path (and the model step when ``step``) over the first ``n`` rows,
    ``epochs`` times."""
    import pandas as pd
    import torch
    from torch.utils.data import DataLoader

    from medclass.data.dataset import EpochSampler, collate_skip
    from medclass.data.table import DataTable
    from medclass.data.volumes import prepare as prep_module
    from medclass.data.volumes.prepare import VolumePrep, volume_dataset
    from medclass.models import create_model

    torch.manual_seed(0)
    frame = pd.read_csv(manifest).head(n)
    table = DataTable(frame, ["benign", "malignant"])
    prep = VolumePrep(spacing=(1.0, 1.0, 1.0), size=(size,) * 3, window="lung")
    timers = {"read": 0.0, "prepare": 0.0}

    def timed(fn, key: str):
        def run(*a, **k):
            start = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                timers[key] += time.perf_counter() - start
        return run

    # what read_prepared (the reader without a cache and the cache's first read) calls
    prep_module.read_volume, prep_module.prepare = timed(prep_module.read_volume, "read"), timed(prep_module.prepare, "prepare")
    ds = volume_dataset(table, prep, train=True, seed=0, cache_dir=cache or None)
    model = create_model("resnet10_3d", 2, in_chans=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = torch.nn.BCEWithLogitsLoss()  # two classes: one logit (medclass's binary head)
    out: dict = {"n": n, "cache": bool(cache), "model_step": step, "epochs": [], "rss_start_mb": rss_mb()}
    for epoch in range(epochs):
        sampler = EpochSampler(len(ds), seed=0, shuffle=True)
        sampler.set_epoch(epoch)
        loader = DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=0, collate_fn=collate_skip)
        timers.update(read=0.0, prepare=0.0)
        step_s, seen, start = 0.0, 0, time.perf_counter()
        for b in loader:
            seen += len(b["label"])
            if not step:
                continue
            t = time.perf_counter()
            opt.zero_grad()
            loss_fn(model(b["image"])[:, 0], b["label"].float()).backward()
            opt.step()
            step_s += time.perf_counter() - t
        wall = time.perf_counter() - start
        out["epochs"].append({"volumes": seen, "seconds": wall, "volumes_per_s": seen / wall, "read_s": timers["read"],
                              "prepare_s": timers["prepare"], "model_step_s": step_s, "rss_mb": rss_mb()})
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def real_read_speed(limit: int) -> dict:
    """Read, and read + prepare, the real LIDC crops (the first ``limit``)."""
    from medclass.data.volumes import read_volume
    from medclass.data.volumes.prepare import VolumePrep, prepare

    paths = sorted((LIDC / "images").glob("*.nii.gz"))[:limit]
    prep = VolumePrep(spacing=(1.0, 1.0, 1.0), size=(32, 32, 32), window="lung")
    start = time.perf_counter()
    volumes = [read_volume(p).shape for p in paths]
    read_s = time.perf_counter() - start
    start = time.perf_counter()
    for p in paths:
        prepare(read_volume(p), prep)
    both_s = time.perf_counter() - start
    return {"volumes": len(paths), "median_shape": [int(v) for v in np.median(np.array(volumes), axis=0)],
            "mib": sum(p.stat().st_size for p in paths) / 2**20, "read_per_s": len(paths) / read_s,
            "read_prepare_per_s": len(paths) / both_s, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", type=int, nargs="+", default=[50, 200, 800])
    ap.add_argument("--shape", type=int, nargs=3, default=[96, 96, 40], help="voxels of each synthetic volume")
    ap.add_argument("--size", type=int, default=32, help="prepared size (voxels per axis)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--real", action="store_true", help="also the read speed of ../shared/data/lidc_nodules")
    ap.add_argument("--out", default="", help="write the results as JSON here")
    ap.add_argument("--step-count", type=int, default=50, help="volumes of the runs with the model step (0: none)")
    ap.add_argument("--child", nargs=4, metavar=("MANIFEST", "N", "CACHE", "STEP"), help=argparse.SUPPRESS)
    ap.add_argument("--child-real", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        cache = "" if args.child[2] == "-" else args.child[2]
        print(json.dumps(child(args.child[0], int(args.child[1]), cache, args.epochs, args.size, args.batch_size,
                               args.child[3] == "step")))
        return
    if args.child_real:
        print(json.dumps(real_read_speed(args.child_real)))
        return
    results: dict = {"shape": args.shape, "spacing": SPACING, "size": args.size, "epochs": args.epochs, "runs": []}
    me = [sys.executable, str(Path(__file__).resolve()), "--epochs", str(args.epochs), "--size", str(args.size),
          "--batch-size", str(args.batch_size)]
    with tempfile.TemporaryDirectory(prefix="medclass-volperf-") as tmp:
        start = time.perf_counter()
        manifest = write_volumes(Path(tmp) / "volumes", max(args.counts + [args.step_count]), tuple(args.shape))
        results["write_s"] = time.perf_counter() - start
        results["mib_on_disk"] = sum(p.stat().st_size for p in (Path(tmp) / "volumes").glob("*.nii.gz")) / 2**20
        plan = [(n, cache, "data") for n in args.counts for cache in ("-", "cache")]
        plan += [(args.step_count, cache, "step") for cache in ("-", "cache")] if args.step_count else []
        for n, cache, step in plan:  # each in a fresh process: its own peak RSS
            cache = "-" if cache == "-" else str(Path(tmp) / f"cache-{n}-{step}")
            done = subprocess.run([*me, "--child", str(manifest), str(n), cache, step], capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(done.stderr[-3000:])
            run = json.loads(done.stdout.strip().splitlines()[-1])
            results["runs"].append(run)
            print(json.dumps(run), flush=True)
        if args.real and (LIDC / "images").is_dir():
            done = subprocess.run([*me, "--child-real", "994"], capture_output=True, text=True, check=True)
            results["real"] = json.loads(done.stdout.strip().splitlines()[-1])
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    print_table(results)


def print_table(r: dict) -> None:
    """The README table."""
    print(f"\nSynthetic CT {r['shape'][0]}x{r['shape'][1]}x{r['shape'][2]} int16 .nii.gz at {r['spacing']} mm -> "
          f"{r['size']}^3 at 1 mm, lung window, resnet10_3d, batch of volumes, no workers")
    print("| volumes | cache | model step | epoch 1 vol/s | epoch 2 vol/s | epoch 1: read / prepare / model step s | "
          "RSS after epoch 1 / 2 MiB | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for run in r["runs"]:
        e = run["epochs"]
        last = e[-1]
        print(f"| {run['n']} | {'on' if run['cache'] else 'off'} | {'yes' if run['model_step'] else 'no'} | "
              f"{e[0]['volumes_per_s']:.1f} | "
              f"{last['volumes_per_s']:.1f} | {e[0]['read_s']:.0f} / {e[0]['prepare_s']:.0f} / {e[0]['model_step_s']:.0f} | "
              f"{e[0]['rss_mb']:.0f} / {last['rss_mb']:.0f} | {run['peak_rss_mb']:.0f} |")
    if "real" in r:
        x = r["real"]
        print(f"\nlidc_nodules: {x['volumes']} real crops ({x['mib']:.0f} MiB, median shape {x['median_shape']}): "
              f"read {x['read_per_s']:.0f} vol/s, read + prepare {x['read_prepare_per_s']:.0f} vol/s, "
              f"peak RSS {x['peak_rss_mb']:.0f} MiB")


if __name__ == "__main__":
    main()
