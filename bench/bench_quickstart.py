"""Ablation of the main job: which lever buys the most test accuracy per CPU-second (issue 15, part 1).

Each variant is the README's main job, ``medclass quickstart --data DATA``, with some settings
changed (``--model``, ``--image-size``, ``--epochs``, ``--set section.field=value``), run as its own
process in its own fresh workspace, so the wall time includes everything a newcomer waits for
(data check, fingerprints and leak audit, uint8 cache when used, baseline, training, threshold and OOD
fit, test evaluation and report). Every variant uses the same patient split (``data.split_seed``
fixed), so seeds vary initialisation, data order and augmentation only.

Selection rule: variants are compared on the **validation** AUC of their best epoch; the test
figures are reported beside it, never used to choose (the test split is touched by no choice).
Test figures: ROC AUC with its patient-bootstrap 95 % CI, and the sensitivity at specificity >= 0.90
(read off the ROC curve, threshold-free) from the run's ``metrics.json``.

Cost: the CPU seconds of the run and its data workers (user + system, from ``getrusage``), which
other jobs on the machine disturb far less than the wall time (also recorded, with the load average).

Results are appended to ``OUT/runs.csv`` (one row per variant and seed; a row already there is not
run again, so an interrupted ablation continues) and summarised in ``OUT/ablation.md``: medians over
seeds, CPU seconds and their ratio to the ``base`` variant, wall time.

Usage (2-core CPU machine, one run at a time; see bench/README_quickstart.md):
    .venv/bin/python bench/bench_quickstart.py --data ../shared/data/chest_xray --variants base,cache --seeds 1
    .venv/bin/python bench/bench_quickstart.py --list
    .venv/bin/python bench/bench_quickstart.py --summary-only --out bench/results_quickstart
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

SPLIT_SEED = 42  # every variant and seed trains on the same patient split

# name: (what it changes, quickstart arguments). "base" is the quickstart default before this ablation.
# every setting the quickstart recipe may change is pinned, so the variants mean the same whatever its defaults
PINNED = ["--set", "model.pretrained=false", "--set", "data.cache=", "--set", "eval.tta=false", "--set", "train.ema=0",
          "--set", "train.scheduler=plateau", "--set", "train.channels_last=auto", "--set", "train.num_workers=2"]
BASE = ["--model", "resnet18", "--image-size", "64", "--epochs", "3", *PINNED]


def _with(args: list[str], flag: str, value: str) -> list[str]:
    """``args`` with the value after ``flag`` replaced."""
    i = args.index(flag) + 1
    return [*args[:i], value, *args[i + 1:]]


LITE0 = [*("model.pretrained=true" if a == "model.pretrained=false" else a
           for a in _with(_with(BASE, "--model", "efficientnet_lite0"), "--image-size", "96")), "--set", "data.cache=CACHE"]
LITE0_128 = _with(LITE0, "--image-size", "128")
LITE0_128_4EP = _with(LITE0_128, "--epochs", "4")
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "base": ("resnet18 from scratch, 64 px, 3 epochs, plateau LR, 2 workers decoding JPEGs", BASE),
    "cache": ("+ uint8 memory-mapped cache (decode once)", [*BASE, "--set", "data.cache=CACHE"]),
    "cache_cl": ("+ cache + channels_last", [*BASE, "--set", "data.cache=CACHE", "--set", "train.channels_last=true"]),
    "cache_w0": ("+ cache, no worker processes (augmentation in the training process)",
                 [*BASE, "--set", "data.cache=CACHE", "--set", "train.num_workers=0"]),
    "cache_dev": ("+ cache, batched augmentation in the training process (augment_on=device)",
                  [*BASE, "--set", "data.cache=CACHE", "--set", "train.augment_on=device"]),
    "onecycle": ("+ cache + one-cycle LR", [*BASE, "--set", "data.cache=CACHE", "--set", "train.scheduler=onecycle"]),
    "ema": ("+ cache + EMA of the weights (decay 0.99)", [*BASE, "--set", "data.cache=CACHE", "--set", "train.ema=0.99"]),
    "tta": ("+ cache + flip TTA at evaluation", [*BASE, "--set", "data.cache=CACHE", "--set", "eval.tta=true"]),
    "r18_96": ("resnet18 96 px + cache", ["--model", "resnet18", "--image-size", "96", "--epochs", "3", *PINNED,
                                          "--set", "data.cache=CACHE"]),
    "r18_128": ("resnet18 128 px + cache", ["--model", "resnet18", "--image-size", "128", "--epochs", "3", *PINNED,
                                          "--set", "data.cache=CACHE"]),
    "cnn_64": ("simple_cnn 64 px + cache, 3 epochs", ["--model", "simple_cnn", "--image-size", "64", "--epochs", "3", *PINNED,
                                                      "--set", "data.cache=CACHE"]),
    "lite0_96": ("ImageNet-pretrained EfficientNet-Lite0 (installed package), 96 px + cache", LITE0),
    "lite0_128": ("ImageNet-pretrained EfficientNet-Lite0, 128 px + cache", LITE0_128),
    "lite0_96_oc": ("lite0_96 + one-cycle LR", [*LITE0, "--set", "train.scheduler=onecycle"]),
    "lite0_96_ema": ("lite0_96 + EMA of the weights (decay 0.99)", [*LITE0, "--set", "train.ema=0.99"]),
    "lite0_96_5ep": ("lite0_96, 5 epochs", _with(LITE0, "--epochs", "5")),
    "lite0_128_ema": ("lite0_128 + EMA of the weights (decay 0.99)",
                      [*LITE0_128, "--set", "train.ema=0.99"]),
    "lite0_128_4ep": ("lite0_128, 4 epochs", LITE0_128_4EP),
    "lite0_128_4ep_ema": ("lite0_128, 4 epochs + EMA of the weights (decay 0.99)",
                          [*LITE0_128_4EP, "--set", "train.ema=0.99"]),
    "lite0_128_cos": ("lite0_128 + cosine LR decay over the epochs",
                      [*LITE0_128, "--set", "train.scheduler=cosine"]),
    "lite0_128_w0": ("lite0_128, no worker processes (augmentation in the training process)",
                     [*LITE0_128, "--set", "train.num_workers=0"]),
    "lite0_128_w0_cl": ("lite0_128, no worker processes + channels_last",
                        [*LITE0_128, "--set", "train.num_workers=0",
                         "--set", "train.channels_last=true"]),
    "lite0_128_4ep_w0_cl": ("lite0_128, 4 epochs, no worker processes + channels_last",
                            [*LITE0_128_4EP, "--set", "train.num_workers=0",
                             "--set", "train.channels_last=true"]),
}
# progressive resizing: quickstart runs in turn, each starting from the weights of the one before (model.weights=),
# same split; the cost is the sum (each stage also repeats the data check and evaluation: an upper bound)
STAGED: dict[str, tuple[str, list[list[str]]]] = {
    "lite0_prog": ("progressive: lite0 64 px 2 epochs, then 96 px 1 epoch from its weights",
                   [_with(_with(LITE0, "--image-size", "64"), "--epochs", "2"), _with(LITE0, "--epochs", "1")]),
    "lite0_prog128": ("progressive: lite0 96 px 2 epochs, then 128 px 1 epoch from its weights",
                      [_with(LITE0, "--epochs", "2"), _with(LITE0_128, "--epochs", "1")]),
}


def run_variant(name: str, seed: int, data: str, out: Path, extra: list[str]) -> dict:
    """Run one quickstart variant (each of its stages) in a fresh workspace; return its row (the workspace is removed)."""
    what, stages = STAGED[name] if name in STAGED else (VARIANTS[name][0], [VARIANTS[name][1]])
    ws = out / "ws" / f"{name}-s{seed}"
    shutil.rmtree(ws, ignore_errors=True)
    wall = cpu = 0.0
    previous: Path | None = None
    for i, args in enumerate(stages):
        experiment = f"{name}-s{seed}" + (f"-stage{i + 1}" if len(stages) > 1 else "")
        args = [a.replace("CACHE", str(ws / "cache")) for a in args]
        if previous is not None:  # start from the previous stage's weights instead of ImageNet's
            args = [*args, "--set", "model.pretrained=false", "--set", f"model.weights={previous / 'best.safetensors'}"]
        cmd = [str(Path(sys.executable).parent / "medclass"), "--quiet", "quickstart", "--data", data,
               "--workspace", str(ws), *args, "--set", f"train.seed={seed}", "--set", f"data.split_seed={SPLIT_SEED}",
               "--set", f"experiment={experiment}", *extra]
        start, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall += time.perf_counter() - start
        cpu += (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)  # the run and its data workers
        if proc.returncode != 0:
            raise RuntimeError(f"{experiment} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        previous = ws / "quickstart" / experiment
    run = previous
    tta = _tta_scores(run)
    m = json.loads((run / "metrics.json").read_text())
    hist = pd.read_csv(run / "metrics.csv")
    keep = out / "runs" / f"{name}-s{seed}"
    keep.mkdir(parents=True, exist_ok=True)
    for f in ("metrics.json", "metrics.csv", "config.yaml", "threshold.json", "predictions.csv"):
        shutil.copy2(run / f, keep / f)
    shutil.rmtree(ws, ignore_errors=True)
    met, ci = m["metrics"], m["ci"]
    return {"variant": name, "seed": seed, "what": what, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
            "load_avg_1min": round(os.getloadavg()[0], 2),
            "train_s": round(float(hist["epoch_time_s"].sum()), 1), "epochs": len(hist),
            "val_auc": round(float(hist["val_auc"].max()), 4),
            "test_auc": round(met["roc_auc"], 4), "test_auc_lo": round(ci["roc_auc"]["low"], 4),
            "test_auc_hi": round(ci["roc_auc"]["high"], 4), "test_sens_at_spec90": round(met["sensitivity_at_spec90"], 4),
            "test_sensitivity": round(met["sensitivity"], 4), "test_specificity": round(met["specificity"], 4),
            **tta, "n_test": met["n"], "peak_rss_mb": float(hist["peak_rss_mb"].max()), "command": " ".join(cmd[1:])}


def _tta_scores(run: Path) -> dict:
    """Validation and test AUC with and without flip TTA (``medclass evaluate --tta``), without retraining.

    TTA would be chosen on the validation pair; the test pair is reported beside it."""
    medclass = str(Path(sys.executable).parent / "medclass")
    out: dict = {}
    for split, tta in (("val", False), ("val", True), ("test", True)):
        folder = run / f"eval_{split}_{'tta' if tta else 'plain'}"
        subprocess.run([medclass, "--quiet", "evaluate", str(run), "--split", split, "--tta" if tta else "--no-tta",
                        "--out", str(folder), "--n-boot", "200"], check=True, capture_output=True)
        m = json.loads((folder / "metrics.json").read_text())["metrics"]
        key = f"{split}_{'tta' if tta else 'plain'}"
        out[f"{key}_auc"], out[f"{key}_sens90"] = round(m["roc_auc"], 4), round(m["sensitivity_at_spec90"], 4)
    return out


def summarise(rows: pd.DataFrame) -> str:
    """The ablation table: medians over seeds per variant, in run order, wall time relative to ``base``."""
    med = rows.groupby("variant", sort=False).agg(
        what=("what", "first"), seeds=("seed", "count"), wall_s=("wall_s", "median"), cpu_s=("cpu_s", "median"),
        train_s=("train_s", "median"),
        val_auc=("val_auc", "median"), test_auc=("test_auc", "median"), test_auc_lo=("test_auc_lo", "median"),
        test_auc_hi=("test_auc_hi", "median"), sens90=("test_sens_at_spec90", "median"),
        val_auc_min=("val_auc", "min"), val_auc_max=("val_auc", "max"))
    base_cpu = med["cpu_s"].get("base", float("nan"))
    lines = ["| variant | what | seeds | CPU s (x base) | wall s | val AUC (min-max) | test AUC [95 % CI] | "
             "test sens @ spec>=0.90 |", "|---|---|---|---|---|---|---|---|"]
    for name, r in med.iterrows():
        spread = f" ({r.val_auc_min:.4f}-{r.val_auc_max:.4f})" if r.seeds > 1 else ""
        lines.append(f"| {name} | {r.what} | {r.seeds} | {r.cpu_s:.0f} ({r.cpu_s / base_cpu:.2f}) | {r.wall_s:.0f} | "
                     f"{r.val_auc:.4f}{spread} | {r.test_auc:.4f} [{r.test_auc_lo:.3f}-{r.test_auc_hi:.3f}] | "
                     f"{r.sens90:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data/chest_xray")
    ap.add_argument("--variants", default="base")
    ap.add_argument("--seeds", default="1", help="comma-separated training seeds")
    ap.add_argument("--out", type=Path, default=Path("bench/results_quickstart"))
    ap.add_argument("--set", dest="extra", action="append", default=[], help="extra section.field=value for every run")
    ap.add_argument("--list", action="store_true", help="list the variants and exit")
    ap.add_argument("--summary-only", action="store_true", help="rewrite ablation.md from runs.csv and exit")
    a = ap.parse_args()
    if a.list:
        for name, (what, args) in VARIANTS.items():
            print(f"{name:12s} {what}\n{'':12s} {' '.join(args)}")
        for name, (what, stages) in STAGED.items():
            print(f"{name:12s} {what}\n" + "".join(f"{'':12s} stage {i + 1}: {' '.join(a)}\n" for i, a in enumerate(stages)))
        return
    a.out.mkdir(parents=True, exist_ok=True)
    table = a.out / "runs.csv"
    extra = [x for s in a.extra for x in ("--set", s)]
    if not a.summary_only:
        done = set()
        if table.exists():
            done = {(r["variant"], int(r["seed"])) for r in csv.DictReader(table.open())}
        for name in a.variants.split(","):
            if name not in VARIANTS and name not in STAGED:
                sys.exit(f"unknown variant {name!r}; choose from {', '.join([*VARIANTS, *STAGED])} (--list)")
            for seed in (int(s) for s in a.seeds.split(",")):
                if (name, seed) in done:
                    continue
                row = run_variant(name, seed, a.data, a.out, extra)
                earlier = pd.read_csv(table) if table.exists() else pd.DataFrame()
                pd.concat([earlier, pd.DataFrame([row])], ignore_index=True).to_csv(table, index=False)
                print(f"{name} seed {seed}: wall {row['wall_s']} s, val AUC {row['val_auc']}, test AUC {row['test_auc']} "
                      f"[{row['test_auc_lo']}-{row['test_auc_hi']}], sens@spec90 {row['test_sens_at_spec90']}", flush=True)
    rows = pd.read_csv(table)
    header = (f"# Quickstart ablation ({os.cpu_count()} CPU cores; medians over seeds; one split, "
              f"data.split_seed={SPLIT_SEED}; chosen on validation AUC, test reported only)\n\n"
              f"Produced by `bench/bench_quickstart.py`; per-run rows with commands in runs.csv.\n\n")
    (a.out / "ablation.md").write_text(header + summarise(rows))
    print(summarise(rows))


if __name__ == "__main__":
    main()
