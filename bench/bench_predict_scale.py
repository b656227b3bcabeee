"""`medclass predict` at growing numbers of files: wall time and peak RSS stay flat per row as the files grow tenfold.

Two inputs, each run as the CLI a user types, in its own process (peak RSS from ``os.wait4``):

- ``folder``: N distinct tiny PNGs (32 x 32 grey) in 100 sub-folders, walked one file at a time;
- ``manifest``: a CSV of N rows pointing at 8 tiny PNGs (the manifest is read in chunks);
- ``unlisted``: a CSV of N rows naming files that do not exist (every row an error row, no model call): the
  listing, the parts and the output writer alone, at sizes where predicting would take hours here.

The checkpoint is a simple_cnn with random weights at 32 px (the model's cost is not what is measured); torch
runs one thread (``OMP_NUM_THREADS=1``: on a shared 2-core machine two threads were 9x slower). Each
run writes ``--out`` (.csv by default; ``--format parquet`` for the ParquetWriter path) and is checked to hold N
rows.

Example:
    nice python bench/bench_predict_scale.py --folder 2000 20000 --manifest 10000 100000 --out bench/results_predict
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

SIZE = 32


def make_checkpoint(path: Path) -> Path:
    import torch

    from medclass.artifacts.checkpoint import build_meta, save_checkpoint
    from medclass.models import create_model

    torch.manual_seed(0)
    model = create_model("simple_cnn", num_classes=2, in_chans=1)
    meta = build_meta(classes=["a", "b"], model_name="simple_cnn", in_chans=1, image_size=SIZE, mean=[0.5], std=[0.25],
                      threshold=0.5, temperature=1.0, metrics={}, config={"data": {"path": "bench", "split_by": "image"}})
    return save_checkpoint(path, model, meta)


def write_png(path: Path, seed: int) -> None:
    pixels = np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def make_folder(root: Path, n: int) -> Path:
    folder = root / f"folder_{n}"
    for i in range(n):
        sub = folder / f"{i % 100:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        write_png(sub / f"img_{i:07d}.png", i)
    return folder


def make_unlisted(root: Path, n: int) -> Path:
    manifest = root / f"unlisted_{n}.csv"
    pd.DataFrame({"path": [f"gone/{i:07d}.png" for i in range(n)], "site": ["a"] * n}).to_csv(manifest, index=False)
    return manifest


def make_manifest(root: Path, n: int) -> Path:
    images = root / "few"
    images.mkdir(exist_ok=True)
    names = [f"few_{k}.png" for k in range(8)]
    for k, name in enumerate(names):
        write_png(images / name, k)
    manifest = root / f"manifest_{n}.csv"
    pd.DataFrame({"path": [f"few/{names[i % 8]}" for i in range(n)], "patient": [f"p{i}" for i in range(n)],
                  "site": ["a"] * n}).to_csv(manifest, index=False)
    return manifest


def run(ckpt: Path, source: Path, out: Path) -> dict:
    """The CLI in its own process: seconds and peak RSS (MiB)."""
    start = time.perf_counter()
    cli = "import sys; from medclass.cli import main; sys.argv[0] = 'medclass'; main()"
    proc = subprocess.Popen([sys.executable, "-c", cli, "predict", str(ckpt), str(source), "--out", str(out), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    output = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"predict failed on {source}:\n{output}")
    rows = len(pd.read_parquet(out, columns=["path"])) if out.suffix == ".parquet" else \
        sum(len(c) for c in pd.read_csv(out, usecols=["path"], chunksize=100_000))
    return {"seconds": round(seconds, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024), "rows_written": rows}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=int, nargs="*", default=[2000, 20000], help="files in the folder runs")
    parser.add_argument("--manifest", type=int, nargs="*", default=[10000, 100000], help="rows in the manifest runs")
    parser.add_argument("--unlisted", type=int, nargs="*", default=[], help="rows in the runs of missing files")
    parser.add_argument("--format", choices=["csv", "parquet", "jsonl"], default="csv")
    parser.add_argument("--out", type=Path, default=None, help="folder for results.json and results.md")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ckpt = make_checkpoint(root / "m.safetensors")
        jobs = [("folder", n, make_folder) for n in args.folder] + [("manifest", n, make_manifest) for n in args.manifest]
        jobs += [("unlisted", n, make_unlisted) for n in args.unlisted]
        for kind, n, make in jobs:
            source = make(root, n)
            result = {"input": kind, "rows": n, **run(ckpt, source, root / f"predictions_{kind}_{n}.{args.format}")}
            result["ms_per_row"] = round(1000 * result["seconds"] / n, 3)
            assert result["rows_written"] == n, result
            results.append(result)
            print(json.dumps(result), flush=True)
    lines = ["| input | rows | seconds | ms per row | peak RSS MiB |", "|---|---|---|---|---|"]
    lines += [f"| {r['input']} | {r['rows']:,} | {r['seconds']} | {r['ms_per_row']} | {r['peak_rss_mib']} |"
              for r in results]
    print("\n".join(lines))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(results, indent=2))
        (args.out / "results.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
