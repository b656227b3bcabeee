"""Does the GPU wait for data? Training images/s from synthetic on-device tensors vs real images through medclass.

For each model (default ResNet-50 and resnet18 at 224 px), in one process:

(a) synthetic: the real :class:`~medclass.training.module.ClassifierModule` driven by the real Trainer
    (:func:`~medclass.training.runner.make_trainer`), fed one pre-made normalised batch that already
    lies on the device: the compute ceiling of the step (forward, backward, optimiser, medclass's
    per-step bookkeeping), with no data loading at all;
(b) real: the same module and Trainer fed by medclass's full pipeline: chest X-ray JPEGs
    (``--data``, default ``../shared/data/chest_xray``) decoded once into the uint8 memory-mapped
    cache, :class:`~medclass.training.datamodule.SplitDataModule` (``EpochSampler``, DataLoader
    workers, pinned memory on a GPU) and augmentation on the device (``train.augment_on=device``,
    preset ``--augment``);
(c) feed only: (b)'s data pipeline without a model (loader, copy to the device, batched
    augmentation and normalisation), to tell a slow feed from a slow step.

Figure of merit: ``(b) / (a)``, goal >= 0.90 (and (b) >= 3,000 images/s for ResNet-50 on an
H100-class GPU). Each variant is timed over ``--steps`` steps after ``--warmup`` steps (the CUDA
device is synchronised at both ends); ``--repeats`` alternates (a) and (b) and reports medians.
Precision, channels-last and torch.compile follow medclass's config switches and apply to (a)
and (b) alike.

The same script runs on the CPU with tiny settings (its logic is tested by
``tests/test_bench_gpu.py``)::

    python bench/bench_gpu.py --device cpu --models resnet18 --steps 3 --warmup 1 --batch-size 8 \\
        --image-size 64 --workers 0 --out /tmp/bench_gpu

On a GPU (see bench/README_gpu.md)::

    python bench/bench_gpu.py --device cuda --batch-size 256 --workers 12 --out bench/results_gpu
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from bench_throughput import DEFAULT_DATA, StepTimer
from medclass.config import DataConfig, RunConfig, apply_overrides
from medclass.data.cache import build_cache
from medclass.data.sources import load_source
from medclass.data.table import DataTable
from medclass.models import create_model, model_info
from medclass.training.accel import prepare_model, to_channels_last, use_channels_last
from medclass.training.datamodule import SplitDataModule
from medclass.training.module import ClassifierModule
from medclass.training.runner import make_trainer


class SyncStepTimer(StepTimer):
    """:class:`bench_throughput.StepTimer` over steps counted across epochs; stops after ``warmup + steps``.

    The CUDA device is synchronised only at the two ends of the timed span (the last warm-up step
    and the last step), so the host may run ahead of the GPU in between, as in real training.
    """

    def __init__(self, warmup: int, steps: int) -> None:
        super().__init__(warmup)
        self.total, self.done = warmup + steps, 0

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:  # noqa: D102
        self.done += 1
        if self.done > self.total:  # Lightning may finish the step in flight after should_stop
            return
        if module.device.type == "cuda" and self.done in (self.warmup, self.total):
            torch.cuda.synchronize(module.device)
        super().on_train_batch_end(trainer, module, outputs, batch, self.done - 1)
        if self.done >= self.total:
            trainer.should_stop = True


class OnDevice(Dataset):
    """``n`` steps of one pre-made batch that already lies on the device (use with ``batch_size=None``)."""

    def __init__(self, batch: dict, n: int) -> None:
        self.batch, self.n = batch, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return self.batch


def bench_config(args: argparse.Namespace, model: str, workspace: Path) -> RunConfig:
    """medclass's config for one model: device augmentation, no validation cost, the bench's switches."""
    return apply_overrides(RunConfig(), [
        f"model.name={model}", f"model.image_size={args.image_size}", f"model.in_chans={args.in_chans}",
        f"train.batch_size={args.batch_size}", f"train.precision={args.precision}",
        f"train.accelerator={'gpu' if args.device == 'cuda' else 'cpu'}", "train.devices=1",
        f"train.num_workers={args.workers}", f"train.augment={args.augment}", "train.augment_on=device",
        f"train.channels_last={args.channels_last}", f"train.compile={args.compile}",
        f"train.deterministic={args.deterministic}", "train.baseline=false", "train.early_stopping=0",
        "train.scheduler=none", "train.epochs=1000", f"workspace={workspace}", "experiment=bench_gpu"])


def fit_timed(cfg: RunConfig, classes: list[str], args: argparse.Namespace, **fit_kwargs) -> tuple[float, str]:
    """Seconds of the timed steps of one fit (a fresh model each time, same seed) and the precision used."""
    torch.manual_seed(0)
    model = prepare_model(create_model(cfg.model.name, num_classes=len(classes), in_chans=cfg.model.in_chans), cfg.train)
    module = ClassifierModule(model, classes, cfg)
    timer = SyncStepTimer(args.warmup, args.steps)
    trainer = make_trainer(cfg, [timer], progress=False)
    trainer.limit_val_batches = 0  # training throughput only
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        trainer.fit(module, **fit_kwargs)
    if timer.done < timer.total:
        raise RuntimeError(f"only {timer.done} of {timer.total} steps ran; lower --steps or --warmup, or add data.")
    return timer.end[0] - timer.start[0], str(trainer.precision)


def synthetic_batch(cfg: RunConfig, device: torch.device) -> dict:
    """One normalised float batch with labels, on ``device`` (channels-last when the config says so)."""
    g = torch.Generator().manual_seed(0)
    m, t = cfg.model, cfg.train
    image = torch.randn(t.batch_size, m.in_chans, m.image_size, m.image_size, generator=g).to(device)
    label = torch.randint(0, 2, (t.batch_size,), generator=g).to(device)
    return {"image": to_channels_last(image) if use_channels_last(t) else image, "label": label}


def feed_rate(dm: SplitDataModule, device: torch.device, warmup: int, steps: int) -> float:
    """Images/s of the data pipeline alone: loader, copy to ``device``, batched augmentation, normalisation."""
    images, start, done, epoch = 0, 0.0, 0, 0
    loader = dm.train_dataloader()  # one loader: its persistent workers serve every epoch
    while done < warmup + steps:
        loader.sampler.set_epoch(epoch)
        epoch += 1
        for batch in loader:
            batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
            x = dm.feed.after_transfer(batch, training=True)["image"]
            done += 1
            if device.type == "cuda" and done in (warmup, warmup + steps):
                torch.cuda.synchronize(device)
            if done == warmup:
                start = time.perf_counter()
            elif done > warmup:
                images += len(x)
            if done >= warmup + steps:
                break
    return images / (time.perf_counter() - start)


def load_table(args: argparse.Namespace) -> DataTable:
    """Every image of ``--data`` in the training split (the split does not matter for throughput)."""
    table = load_source(DataConfig(path=str(args.data), keep_source_split=False, patient_regex="none"))
    table.frame["split"] = "train"
    return table


def bench_model(name: str, args: argparse.Namespace, table: DataTable, workspace: Path) -> dict:
    """(a), (b) and (c) for one model; medians over ``--repeats``."""
    cfg = bench_config(args, name, workspace)
    device = torch.device(args.device)
    mean, std = model_info(name).mean_std(args.in_chans)
    start = time.perf_counter()
    cache = build_cache(table, args.image_size, args.in_chans, folder=args.cache, workers=args.workers or None)
    cache_s = time.perf_counter() - start
    dm = SplitDataModule(table, cfg, mean, std, caches={"train": cache})
    n = args.steps * args.batch_size
    synthetic, real, precision = [], [], ""
    for r in range(args.repeats):
        loader = DataLoader(OnDevice(synthetic_batch(cfg, device), args.warmup + args.steps), batch_size=None)
        seconds, precision = fit_timed(cfg, table.classes, args, train_dataloaders=loader)
        synthetic.append(n / seconds)
        real.append(n / fit_timed(cfg, table.classes, args, datamodule=dm)[0])
        print(f"{name}, repeat {r + 1}/{args.repeats}: synthetic {synthetic[-1]:.1f} img/s, real {real[-1]:.1f} img/s",
              flush=True)
    feed = feed_rate(dm, device, args.warmup, args.steps)
    a, b = statistics.median(synthetic), statistics.median(real)
    return {"model": name, "synthetic_images_per_s": synthetic, "real_images_per_s": real,
            "median_synthetic_images_per_s": a, "median_real_images_per_s": b, "ratio": b / a,
            "feed_only_images_per_s": feed, "cache_build_s": cache_s, "cache_rows": len(cache),
            "precision": precision,
            "channels_last": use_channels_last(cfg.train), "compile": cfg.train.compile}


def environment(args: argparse.Namespace) -> dict:
    """What the figures were measured on."""
    env = {"python": platform.python_version(), "torch": torch.__version__, "device": args.device,
           "cpu_count": os.cpu_count(), "machine": platform.machine()}
    if args.device == "cuda":
        env |= {"gpu": torch.cuda.get_device_name(), "cuda": torch.version.cuda,
                "bf16": torch.cuda.is_bf16_supported()}
    return env


def markdown(results: list[dict], args: argparse.Namespace, env: dict) -> str:
    """The results table (and the settings) as Markdown."""
    lines = [f"Device: {env.get('gpu', env['device'])}; torch {env['torch']}; image size {args.image_size}, "
             f"{args.in_chans} channel(s), batch {args.batch_size}, {args.steps} timed steps after {args.warmup}, "
             f"{args.workers} workers, augment {args.augment} on the device, {args.repeats} repeat(s) (medians).", "",
             "| model | precision | channels-last | compile | (a) synthetic img/s | (b) real img/s | (b)/(a) | feed only img/s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['model']} | {r['precision']} | {r['channels_last']} | {r['compile']} | "
                     f"{r['median_synthetic_images_per_s']:,.1f} | {r['median_real_images_per_s']:,.1f} | "
                     f"{r['ratio']:.3f} | {r['feed_only_images_per_s']:,.1f} |")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="resnet50,resnet18", help="comma-separated registered model names")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cuda", "cpu"])
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--in-chans", type=int, default=3, choices=[1, 3])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=50, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first (cuDNN autotune, compile)")
    p.add_argument("--repeats", type=int, default=1, help="alternations of (a) and (b); medians are reported")
    p.add_argument("--precision", default="auto", help="train.precision: auto (bf16-mixed on a GPU) | 32 | 16-mixed | bf16-mixed")
    p.add_argument("--channels-last", default="auto", choices=["auto", "true", "false"])
    p.add_argument("--compile", action="store_true", help="train.compile=true (torch.compile)")
    p.add_argument("--deterministic", action="store_true", help="train.deterministic=true (slower on a GPU)")
    p.add_argument("--workers", type=int, default=min(12, os.cpu_count() or 1), help="DataLoader workers")
    p.add_argument("--augment", default="xray", help="augmentation preset, run on the device")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA / "chest_xray", help="image folder (class sub-folders)")
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "medclass_bench_gpu_cache",
                   help="folder of the uint8 image cache (built once, reused)")
    p.add_argument("--out", type=Path, required=True, help="folder for bench_gpu.json and bench_gpu.md")
    args = p.parse_args(argv)
    if args.warmup < 1 or args.steps < 1:
        p.error(f"--warmup and --steps must be at least 1, got {args.warmup} and {args.steps}.")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but torch sees no CUDA GPU; use --device cpu for a logic check.")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    env = environment(args)
    table = load_table(args)
    per_epoch = math.ceil(len(table) / args.batch_size)
    if args.compile and args.warmup <= per_epoch:
        # the last, smaller batch of the first epoch makes torch.compile recompile: keep that out of the timing
        print(f"--compile: warm-up raised from {args.warmup} to {per_epoch + 1} steps (one epoch of the real data)", flush=True)
        args.warmup = per_epoch + 1
    with tempfile.TemporaryDirectory(prefix="bench_gpu_ws_") as ws:
        results = [bench_model(m.strip(), args, table, Path(ws)) for m in args.models.split(",") if m.strip()]
    report = {"environment": env, "settings": {k: str(v) for k, v in vars(args).items()}, "results": results,
              "goal": {"ratio": 0.90, "resnet50_images_per_s_h100": 3000}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_gpu.json").write_text(json.dumps(report, indent=2))
    table_md = markdown(results, args, env)
    (args.out / "bench_gpu.md").write_text(table_md)
    print(table_md)
    return report


if __name__ == "__main__":
    main()
