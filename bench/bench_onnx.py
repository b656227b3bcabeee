"""Eager PyTorch vs ONNX Runtime on CPU: images/s of the forward pass (preprocessed input).

For each model (random weights; speed does not depend on them) a checkpoint is written to a
temporary folder, exported with ``export_model(..., "onnx")`` and run through
``Predictor.probabilities`` with each backend: ``--warmup`` passes, then ``--iters`` timed passes
per batch size. Prints a markdown table.

    .venv/bin/python bench/bench_onnx.py --models simple_cnn resnet18 --image-size 224 --batches 1 32
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from medclass.models import create_model
from medclass.serving.export import export_model
from medclass.serving.predictor import Predictor
from medclass.artifacts.checkpoint import build_meta, save_checkpoint


def images_per_second(predictor: Predictor, batch: np.ndarray, warmup: int, iters: int) -> float:
    """Forward passes per second times the batch size, after ``warmup`` untimed passes."""
    for _ in range(warmup):
        predictor.probabilities(batch)
    start = time.perf_counter()
    for _ in range(iters):
        predictor.probabilities(batch)
    return iters * len(batch) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["simple_cnn", "resnet18"])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--in-chans", type=int, default=1)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--iters", type=int, default=20, help="timed passes per batch size (batch >= 16: a quarter)")
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            torch.manual_seed(0)
            meta = build_meta(classes=["NORMAL", "PNEUMONIA"], model_name=name, in_chans=args.in_chans,
                              image_size=args.image_size, mean=[0.5] * args.in_chans, std=[0.25] * args.in_chans)
            ckpt = save_checkpoint(Path(tmp) / f"{name}.safetensors", create_model(name, 2, in_chans=args.in_chans), meta)
            backends = {"eager": Predictor.from_checkpoint(ckpt), "onnxruntime": Predictor.from_checkpoint(ckpt, onnx=export_model(ckpt))}
            for size in args.batches:
                batch = rng.standard_normal((size, args.in_chans, args.image_size, args.image_size)).astype(np.float32)
                iters = max(2, args.iters // 4) if size >= 16 else args.iters
                speed = {k: images_per_second(p, batch, args.warmup, iters) for k, p in backends.items()}
                rows.append((name, size, iters, speed["eager"], speed["onnxruntime"]))
    print(f"CPU, {torch.get_num_threads()} torch threads, {args.image_size} px, {args.in_chans} channel(s)\n")
    print("| model | batch | timed passes | eager img/s | ONNX Runtime img/s | speed-up |")
    print("|---|---|---|---|---|---|")
    for name, size, iters, eager, ort in rows:
        print(f"| {name} | {size} | {iters} | {eager:.1f} | {ort:.1f} | {ort / eager:.2f}x |")


if __name__ == "__main__":
    main()
