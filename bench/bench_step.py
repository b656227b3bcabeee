"""Training-step throughput of one model on this machine's CPU (or GPU) under the arithmetic levers (issue 15).

The quickstart ablation (``bench_quickstart.py``) measures whole runs; this script isolates what the
levers that do not touch the data do to one optimisation step (forward, loss, backward, AdamW step)
of a medclass model on a synthetic batch: torch intra-op threads, the channels-last memory format and
bf16 autocast. Each cell is a fresh model, ``--warmup`` steps, then the images/s of ``--steps`` timed
steps; the cells run in turn in one process, so run it on otherwise idle cores.

Usage:
    .venv/bin/python bench/bench_step.py --model efficientnet_lite0 --image-size 128 --threads 1,2
    .venv/bin/python bench/bench_step.py --model resnet18 --image-size 64 --out /tmp/step.json
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from pathlib import Path

import torch

from medclass.models import create_model
from medclass.training.accel import to_channels_last


def step_rate(model_name: str, image_size: int, in_chans: int, batch: int, threads: int, channels_last: bool,
              bf16: bool, warmup: int, steps: int) -> float:
    """Images per second of ``steps`` training steps of a fresh ``model_name`` (binary head) on random data."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_model(model_name, num_classes=2, in_chans=in_chans).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(batch, in_chans, image_size, image_size)
    y = torch.randint(0, 2, (batch, 1)).float()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = to_channels_last(x)

    def one() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        one()
    start = time.perf_counter()
    for _ in range(steps):
        one()
    return batch * steps / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--in-chans", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", default=str(torch.get_num_threads()), help="comma-separated torch thread counts")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = ap.parse_args()
    rows = []
    for threads, channels_last, bf16 in itertools.product([int(t) for t in args.threads.split(",")], (False, True),
                                                          (False, True)):
        rate = step_rate(args.model, args.image_size, args.in_chans, args.batch, threads, channels_last, bf16,
                         args.warmup, args.steps)
        rows.append({"model": args.model, "image_size": args.image_size, "batch": args.batch, "threads": threads,
                     "channels_last": channels_last, "bf16": bf16, "images_per_s": round(rate, 1)})
    base = {r["threads"]: r["images_per_s"] for r in rows if not r["channels_last"] and not r["bf16"]}
    print(f"{args.model}, {args.image_size} px, batch {args.batch}, {os.cpu_count()} CPUs, torch {torch.__version__}")
    print("| threads | channels_last | bf16 autocast | images/s | x fp32 contiguous |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['threads']} | {r['channels_last']} | {r['bf16']} | {r['images_per_s']} | "
              f"{r['images_per_s'] / base[r['threads']]:.2f} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
