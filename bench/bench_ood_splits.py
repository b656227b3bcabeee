"""Does the out-of-distribution flag hold its 5% false-alarm rate on the sample? The sample recipe on several patient splits.

Runs ``medclass quickstart`` (the main job's recipe on the packaged chest X-ray sample) once per ``--seeds``
value with ``data.split_seed`` set to it (a different patient split; training seed 42 as always), one run
at a time, or reads the finished runs (``metrics.json`` beside ``best.safetensors``). Each run's evaluation
flags some of its own held-out test images (every flag a false alarm, ``ood.false_alarm_rate``). Reports
per run and pooled over runs: the flagged images, their patients, the rate with its 95% Wilson interval
over images, and for the pooled rate also a 95% interval from a bootstrap over (run, patient) clusters
(the images of one patient are flagged together more often than independent images would be)::

    nice -n 10 python bench/bench_ood_splits.py --seeds 42 1 2 3 4 5 --workspace /tmp/ood_splits
    # ~1.5 min per run on 2 idle CPU cores

Writes ``ood_splits.json`` and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd


def run_folder(workspace: Path, seed: int) -> Path:
    return workspace / "quickstart" / f"split{seed}"


def train_split(workspace: Path, seed: int) -> Path:
    """The sample recipe on the patient split of ``seed`` (reused when its evaluation exists)."""
    from medclass.pipeline import quickstart

    folder = run_folder(workspace, seed)
    if not (folder / "metrics.json").is_file():
        quickstart(workspace=str(workspace), progress=False,
                   overrides=[f"experiment=split{seed}", f"data.split_seed={seed}"])
    return folder


def test_flags(folder: Path) -> pd.DataFrame:
    """One row per scored test image of a run: ``path, patient, flagged``."""
    ood = json.loads((folder / "metrics.json").read_text())["ood"]
    split = pd.read_csv(folder / "split.csv", keep_default_na=False)
    test = split[split["split"] == "test"][["path", "patient"]].reset_index(drop=True)
    if len(test) != ood["n_scored"]:
        raise ValueError(f"{folder}: {len(test)} test rows in split.csv but {ood['n_scored']} scored images.")
    test["flagged"] = test["path"].isin(set(ood["flagged"]))
    if test["flagged"].sum() != ood["n_flagged"]:
        raise ValueError(f"{folder}: the flagged paths do not match the {ood['n_flagged']} flagged images.")
    return test


def cluster_interval(frames: list[pd.DataFrame], n_boot: int = 4000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the pooled flag rate, resampling the patients of each run with replacement."""
    rng = np.random.default_rng(seed)
    per_run = [f.groupby("patient")["flagged"].agg(["sum", "count"]).to_numpy() for f in frames]
    rates = np.empty(n_boot)
    for b in range(n_boot):
        picks = [counts[rng.integers(0, len(counts), len(counts))].sum(axis=0) for counts in per_run]
        flagged, scored = np.sum(picks, axis=0)
        rates[b] = flagged / scored
    return float(np.quantile(rates, 0.025)), float(np.quantile(rates, 0.975))


def summary(seeds: list[int], frames: list[pd.DataFrame]) -> dict:
    """Per-run and pooled false-alarm rates (Wilson over images; pooled also by patient-cluster bootstrap)."""
    from medclass.metrics.stats import wilson_interval

    rows = []
    for seed, f in zip(seeds, frames):
        k, n = int(f["flagged"].sum()), len(f)
        rows.append({"seed": seed, "images": n, "patients": int(f["patient"].nunique()), "flagged": k,
                     "flagged_patients": int(f.loc[f["flagged"], "patient"].nunique()), "rate": k / n,
                     "wilson": wilson_interval(k, n)})
    k, n = sum(r["flagged"] for r in rows), sum(r["images"] for r in rows)
    pooled = {"images": n, "flagged": k, "rate": k / n, "wilson": wilson_interval(k, n),
              "cluster_bootstrap": cluster_interval(frames)}
    return {"runs": rows, "pooled": pooled}


def markdown(result: dict) -> str:
    lines = ["| split seed | test images / patients | flagged (patients) | false-alarm rate (95% Wilson CI) |",
             "|---|---|---|---|"]
    for r in result["runs"]:
        lines.append(f"| {r['seed']} | {r['images']} / {r['patients']} | {r['flagged']} ({r['flagged_patients']}) | "
                     f"{100 * r['rate']:.1f}% ({100 * r['wilson'][0]:.1f}-{100 * r['wilson'][1]:.1f}%) |")
    p = result["pooled"]
    lines.append(f"| pooled, {len(result['runs'])} runs | {p['images']} | {p['flagged']} | {100 * p['rate']:.1f}% "
                 f"({100 * p['wilson'][0]:.1f}-{100 * p['wilson'][1]:.1f}%; patient bootstrap "
                 f"{100 * p['cluster_bootstrap'][0]:.1f}-{100 * p['cluster_bootstrap'][1]:.1f}%) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2, 3, 4, 5])
    parser.add_argument("--workspace", type=Path, default=Path("ood_splits"))
    parser.add_argument("--no-train", action="store_true", help="Only read the runs that are finished.")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    seeds, frames = [], []
    for seed in args.seeds:
        folder = run_folder(args.workspace, seed)
        if not args.no_train:
            train_split(args.workspace, seed)
        if (folder / "metrics.json").is_file():
            seeds.append(seed)
            frames.append(test_flags(folder))
    if not frames:
        raise SystemExit(f"No finished run under {args.workspace / 'quickstart'}.")
    result = summary(seeds, frames) | {"seconds": round(time.perf_counter() - start, 1)}
    (args.workspace / "ood_splits.json").write_text(json.dumps(result, indent=2))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
