"""Training images/s of medclass (ClassifierModule + Lightning Trainer) against a plain PyTorch loop, and data loading.

(a) medclass: the real :class:`~medclass.training.module.ClassifierModule` driven by the real
    Trainer from :func:`~medclass.training.runner.make_trainer` (CPU, precision 32, no progress bar),
    over pre-made random tensors served by an in-memory dataset (data loading excluded).
(b) plain: the same model (same initial weights), AdamW with the same LR and weight decay,
    ``BCEWithLogits`` on the single logit, the same batches and number of steps, in a hand-written loop.

Both time the steps after ``--warmup`` warm-up steps, from the end of the last warm-up step to the
end of the last step. (a) and (b) alternate ``--repeats`` times in one process; medians are reported
with the ratio medclass / plain (goal: >= 0.95), in wall and in process CPU time.

Both also run on a tiny model (``simple_cnn``, 32 px, batch 2) where the fixed cost per step shows,
with two more variants that split it: ``medclass_no_log`` (no per-step ``self.log``) and
``lightning_bare`` (forward and loss only: no reseed, no probability collection, no log). The reseed
and the probability collection of ``ClassifierModule`` are also timed alone.

(c) data loading: images/s from the chest X-ray JPEGs (``../shared/data/chest_xray``) through
``ImageDataset`` + ``DataLoader`` (``EpochSampler``, ``collate_skip``), no model, for 0 and 2
workers, image size 64 and 224, transform ``none`` and ``xray``; the first batch (worker start-up)
is timed separately and excluded from images/s.

Usage:
    nice .venv/bin/python bench/bench_throughput.py --out /tmp/bench_throughput.json
    nice .venv/bin/python bench/bench_throughput.py --model resnet18 --image-size 64 --batch-size 32 \\
        --steps 30 --repeats 3 --out /tmp/bench_throughput.json
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import platform
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import Checkpoint
from torch.utils.data import DataLoader, Dataset

from medclass.config import DataConfig, RunConfig, apply_overrides
from medclass.data.dataset import EpochSampler, ImageDataset, collate_skip, sample_seed
from medclass.data.sources import load_source
from medclass.data.transforms import build_transform
from medclass.inference import to_probs
from medclass.models import create_model, model_info
from medclass.training.module import ClassifierModule
from medclass.training.runner import make_trainer

DEFAULT_DATA = Path(os.environ.get("MEDCLASS_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
CLASSES = ["negative", "positive"]


class PremadeBatches(Dataset):
    """``n`` steps cycling over a few pre-made batches (dicts of tensors); use with ``batch_size=None``."""

    def __init__(self, n: int, batch_size: int, in_chans: int, image_size: int, distinct: int = 4, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.n = n
        self.batches = [{"image": torch.randn(batch_size, in_chans, image_size, image_size, generator=g),
                         "label": torch.randint(0, 2, (batch_size,), generator=g)} for _ in range(distinct)]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return self.batches[i % len(self.batches)]


class StepTimer(Checkpoint):
    """Wall and CPU time from the end of step ``warmup - 1`` to the end of the last step.

    A ``Checkpoint`` subclass, like medclass's own callbacks, so that Lightning adds no default
    ``ModelCheckpoint`` (``train()`` runs without one).
    """

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end = warmup, (0.0, 0.0), (0.0, 0.0)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:  # noqa: D102
        now = (time.perf_counter(), time.process_time())
        if batch_idx == self.warmup - 1:
            self.start = now
        self.end = now


class NoLogModule(ClassifierModule):
    """ClassifierModule without the per-step ``self.log`` of ``training_step``."""

    def training_step(self, batch, batch_idx):  # noqa: D102
        return self._step(batch, "train")


class BareModule(ClassifierModule):
    """Only forward and loss: no reseed, no probability collection, no log (Lightning's own cost)."""

    def on_train_batch_start(self, batch, batch_idx) -> None:  # noqa: D102
        return None

    def training_step(self, batch, batch_idx):  # noqa: D102
        return self.loss(self(batch["image"]), batch["label"])


VARIANTS = {"medclass": ClassifierModule, "medclass_no_log": NoLogModule, "lightning_bare": BareModule, "plain": None}


def bench_config(model: str, image_size: int, in_chans: int, batch_size: int, steps: int) -> RunConfig:
    """The medclass defaults, on CPU at precision 32, one epoch of ``steps`` batches."""
    return apply_overrides(RunConfig(), [
        f"model.name={model}", f"model.image_size={image_size}", f"model.in_chans={in_chans}",
        f"train.batch_size={batch_size}", "train.precision=32", "train.accelerator=cpu", "train.devices=1",
        "train.epochs=1", f"train.max_steps_per_epoch={steps}", "train.num_workers=0",
        "workspace=/tmp/bench_throughput_ws", "experiment=bench"])


def run_medclass(module_cls: type, model0: torch.nn.Module, loader: DataLoader, cfg: RunConfig,
                 warmup: int) -> tuple[float, float]:
    """(wall s, CPU s) of the timed steps of ``module_cls`` trained by medclass's Lightning Trainer."""
    module = module_cls(copy.deepcopy(model0), CLASSES, cfg)
    timer = StepTimer(warmup)
    trainer = make_trainer(cfg, [timer], progress=False)
    trainer.fit(module, train_dataloaders=loader)
    return timer.end[0] - timer.start[0], timer.end[1] - timer.start[1]


def run_plain(model0: torch.nn.Module, loader: DataLoader, cfg: RunConfig, warmup: int) -> tuple[float, float]:
    """(wall s, CPU s) of the timed steps of a hand-written loop: same model, optimiser, loss and batches."""
    model = copy.deepcopy(model0).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    start = (0.0, 0.0)
    for i, batch in enumerate(loader):
        opt.zero_grad(set_to_none=True)
        logits = model(batch["image"])
        loss = F.binary_cross_entropy_with_logits(logits[:, 0], batch["label"].float())
        loss.backward()
        opt.step()
        if i == warmup - 1:
            start = (time.perf_counter(), time.process_time())
    return time.perf_counter() - start[0], time.process_time() - start[1]


def bench_training(model: str, image_size: int, in_chans: int, batch_size: int, steps: int, warmup: int,
                   repeats: int, variants: list[str]) -> dict:
    """Images/s of each variant over the same pre-made batches, alternating variants ``repeats`` times."""
    cfg = bench_config(model, image_size, in_chans, batch_size, warmup + steps)
    torch.manual_seed(0)
    model0 = create_model(model, num_classes=len(CLASSES), in_chans=in_chans)
    loader = DataLoader(PremadeBatches(warmup + steps, batch_size, in_chans, image_size),
                        batch_size=None, shuffle=False, num_workers=0)
    images = steps * batch_size
    times: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
    for r in range(repeats):
        for v in variants:
            cls = VARIANTS[v]
            times[v].append(run_plain(model0, loader, cfg, warmup) if cls is None
                            else run_medclass(cls, model0, loader, cfg, warmup))
        print(f"{model} {image_size} px, repeat {r + 1}/{repeats}: "
              + ", ".join(f"{k} {images / t[-1][0]:.1f} img/s" for k, t in times.items()), flush=True)
    out: dict = {"model": model, "image_size": image_size, "batch_size": batch_size, "steps": steps, "variants": {}}
    for k, t in times.items():
        wall, cpu = [w for w, _ in t], [c for _, c in t]
        out["variants"][k] = {"wall_s": wall, "cpu_s": cpu, "images_per_s": [images / w for w in wall],
                              "median_images_per_s": images / statistics.median(wall),
                              "median_step_ms": statistics.median(wall) / steps * 1e3,
                              "median_cpu_step_ms": statistics.median(cpu) / steps * 1e3}
    m, p = out["variants"]["medclass"], out["variants"]["plain"]
    out["ratio"] = m["median_images_per_s"] / p["median_images_per_s"]
    out["ratio_cpu"] = p["median_cpu_step_ms"] / m["median_cpu_step_ms"]
    out["ratio_per_repeat"] = [pw / mw for (mw, _), (pw, _) in zip(times["medclass"], times["plain"])]
    return out


def per_call_ms(fn, n: int = 2000) -> float:
    """Median over 5 rounds of the mean time of ``fn()`` in milliseconds."""
    rounds = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        rounds.append((time.perf_counter() - t) / n * 1e3)
    return statistics.median(rounds)


def step_extras_ms(batch_size: int) -> dict[str, float]:
    """Isolated per-step cost (ms) of the reseed and of the probability collection of ClassifierModule."""
    logits, labels, loss = torch.randn(batch_size, 1), torch.randint(0, 2, (batch_size,)), torch.tensor(0.7)
    counter = iter(range(10**9))
    return {
        "reseed": per_call_ms(lambda: torch.manual_seed(sample_seed(42, 0, next(counter)))),
        "sample_seed_only": per_call_ms(lambda: sample_seed(42, 0, next(counter))),
        "collect_probs": per_call_ms(lambda: (loss.detach().float().cpu() * len(labels),
                                              to_probs(logits.detach()).cpu(), labels.cpu())),
    }


def bench_loading(args: argparse.Namespace) -> list[dict]:
    """(c) images/s of ImageDataset + DataLoader over real JPEGs, no model."""
    table = load_source(DataConfig(path=str(args.data)))
    rng = np.random.default_rng(0)
    mask = np.zeros(len(table), bool)
    mask[rng.choice(len(table), min(args.load_images, len(table)), replace=False)] = True
    table = table.subset(mask)
    mean, std = model_info(args.model).mean_std(args.in_chans)
    rows = []
    for workers in (0, 2):
        for size in (64, 224):
            for preset in ("none", "xray"):
                tf = build_transform(preset, size, args.in_chans, mean, std, train=preset != "none")
                ds = ImageDataset(table, transform=tf, seed=0)
                loader = DataLoader(ds, batch_size=args.batch_size, sampler=EpochSampler(len(ds), seed=0),
                                    num_workers=workers, collate_fn=collate_skip)
                start = time.perf_counter()
                it = iter(loader)
                first = next(it)
                t_first = time.perf_counter()
                rest = sum(len(b["label"]) for b in it)
                t_end = time.perf_counter()
                rows.append({"workers": workers, "image_size": size, "transform": preset, "images": len(first["label"]) + rest,
                             "first_batch_s": t_first - start, "images_per_s": rest / (t_end - t_first)})
                print(f"loading: workers {workers}, size {size}, {preset}: {rows[-1]['images_per_s']:.0f} img/s", flush=True)
                del it, loader
    return rows


def training_table(result: dict) -> list[str]:
    """Markdown rows of one training comparison."""
    lines = [f"{result['model']}, {result['image_size']} px, batch {result['batch_size']}, {result['steps']} timed steps:", "",
             "| loop | images/s per repeat | median images/s | median ms/step (wall) | median ms/step (CPU) |",
             "|---|---|---|---|---|"]
    for key, t in result["variants"].items():
        lines.append(f"| {key} | {', '.join(f'{v:.1f}' for v in t['images_per_s'])} | {t['median_images_per_s']:.1f} | "
                     f"{t['median_step_ms']:.2f} | {t['median_cpu_step_ms']:.2f} |")
    lines += ["", f"Ratio medclass / plain: **{result['ratio']:.3f}** (median wall), {result['ratio_cpu']:.3f} (median CPU); "
              f"per repeat (wall): {', '.join(f'{r:.3f}' for r in result['ratio_per_repeat'])}", ""]
    return lines


def markdown(main_run: dict, overhead: dict, extras: dict[str, float], loading: list[dict]) -> str:
    """The results as markdown tables."""
    lines = ["### Training throughput", "", *training_table(main_run),
             "### Per-step overhead (tiny model, so that the fixed cost per step shows)", "", *training_table(overhead)]
    v = {k: t["median_cpu_step_ms"] for k, t in overhead["variants"].items()}
    lines += ["Per-step cost split (median CPU ms/step differences): "
              f"self.log {v['medclass'] - v['medclass_no_log']:.2f}, "
              f"reseed + probability collection {v['medclass_no_log'] - v['lightning_bare']:.2f}, "
              f"Lightning loop {v['lightning_bare'] - v['plain']:.2f}; total {v['medclass'] - v['plain']:.2f} ms/step.", "",
              "Timed alone (ms per call): " + ", ".join(f"{k} {t:.3f}" for k, t in extras.items()), ""]
    if loading:
        lines += ["### Data loading (chest X-ray JPEGs, no model)", "",
                  "| workers | image size | transform | images | first batch s | images/s |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['workers']} | {r['image_size']} | {r['transform']} | {r['images']} | {r['first_batch_s']:.2f} | "
                  f"{r['images_per_s']:.0f} |" for r in loading]
    return "\n".join(lines)


def main() -> None:
    """Parse arguments, run the benchmarks, write JSON and print markdown."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="resnet18")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--in-chans", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=30, help="timed training steps per run")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps before them")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch's default; 1 is steadier on a shared machine)")
    p.add_argument("--overhead-steps", type=int, default=200, help="timed steps of the tiny-model overhead run")
    p.add_argument("--load-images", type=int, default=320, help="JPEGs per data-loading run (0 = skip part c)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA / "chest_xray")
    p.add_argument("--out", type=Path, required=True, help="JSON results")
    args = p.parse_args()
    if args.warmup < 1:
        p.error("--warmup must be at least 1 (the timer starts at the end of the last warm-up step)")
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*(does not have many workers|LeafSpec|no `val_dataloader`).*")
    main_run = bench_training(args.model, args.image_size, args.in_chans, args.batch_size, args.steps, args.warmup,
                              args.repeats, ["medclass", "plain"])
    overhead = bench_training("simple_cnn", 32, args.in_chans, 2, args.overhead_steps, 20, args.repeats, list(VARIANTS))
    extras = step_extras_ms(args.batch_size)
    loading = bench_loading(args) if args.load_images else []
    result = {"args": {k: str(v) for k, v in vars(args).items()}, "date": time.strftime("%Y-%m-%d %H:%M"),
              "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
                          "torch": torch.__version__, "lightning": pl.__version__, "load_avg": os.getloadavg()},
              "training": main_run, "overhead": overhead, "step_extras_ms": extras, "loading": loading}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(markdown(main_run, overhead, extras, loading))


if __name__ == "__main__":
    main()
