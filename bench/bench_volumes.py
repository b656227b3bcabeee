"""3-D vs 2.5-D on lidc_nodules on one patient split, paired, beside the size-only baseline (CPU, short).

Trains each variant with the same flags a user types (``medclass train --data labels.csv --path-column image
--patient-column patient_id ...``; both use the default split seed, so the same patients), unless the run folder
already holds a finished run. Then, per variant in a fresh process, predicts the held-out test nodules with
``medclass.serving.Predictor`` (seconds per volume, peak RSS of that process). Reports per variant: test AUC with a
95 % patient-bootstrap CI, best validation AUC and its epoch, seconds per training epoch, peak RSS of training
(``metrics.csv``); and the paired comparison of the two image models on the same test patients
(:func:`medclass.metrics.stats.paired_bootstrap_auc` over patients, and DeLong) plus each against ``diameter_mm``
alone. Writes ``bench/results_volumes/results.json``.

    PYTHONPATH=. nice -n 5 python bench/bench_volumes.py --epochs 4          # ~20 min on 2 quiet CPU cores
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import rankdata

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "lidc_nodules" / "labels.csv"
POSITIVE = "malignant"
VARIANTS = {  # name: the model flags
    "3d_resnet10": ["--model", "resnet10_3d", "--in-chans", "1", "--image-size", "32", "--set", "volume.input=3d"],
    "2.5d_simple_cnn": ["--model", "simple_cnn", "--in-chans", "3", "--image-size", "32", "--set", "volume.input=2.5d"],
}


def auc_ci(y: np.ndarray, p: np.ndarray, groups: np.ndarray) -> list[float]:
    from sklearn.metrics import roc_auc_score

    from medclass.metrics.bootstrap import bootstrap_ci

    # any score, not only probabilities (diameter_mm): scikit-learn's AUC inside medclass's patient bootstrap
    return [round(v, 3) for v in bootstrap_ci(roc_auc_score, y, p, groups, n_boot=1000)]


def predict_test(run: Path, out: Path) -> None:
    """In this (fresh) process: predict the run's test rows; write the predictions and the cost as JSON."""
    from medclass.serving.predictor import Predictor

    split = pd.read_csv(run / "split.csv", dtype={"path": str})
    test = split[split["split"] == "test"].reset_index(drop=True)
    predictor = Predictor.from_checkpoint(run / "best.safetensors")
    predictor.predict_files(list(test["path"][:2]), progress=False)  # warm-up: first-call set-up is not per volume
    start = time.perf_counter()
    pred = predictor.predict_files(list(test["path"]), progress=False)
    seconds = time.perf_counter() - start
    test["prob"] = pred[f"prob_{POSITIVE}"].to_numpy()
    out.write_text(json.dumps({"rows": test[["path", "patient", "label", "prob"]].to_dict(orient="list"),
                               "s_per_volume": seconds / len(test),
                               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def train_cost(run: Path) -> dict:
    """Best validation AUC and epoch, seconds per epoch and peak RSS of training, from the run's metrics.csv."""
    m = pd.read_csv(run / "metrics.csv")
    best = int(m["val_auc"].idxmax())
    return {"epochs": len(m), "best_epoch": int(m["epoch"][best]) + 1, "best_val_auc": round(float(m["val_auc"][best]), 3),
            "epoch_s_median": round(float(m["epoch_time_s"].median()), 1),
            "epoch_s_first": round(float(m["epoch_time_s"].iloc[0]), 1),  # the first epoch also fills the volume cache
            "train_peak_rss_mb": round(float(m["peak_rss_mb"].max()), 0)}


def paired(y: np.ndarray, a: np.ndarray, b: np.ndarray, groups: np.ndarray, n_boot: int) -> dict:
    from medclass.metrics.stats import delong_test, paired_bootstrap_auc

    boot = paired_bootstrap_auc(y, a, b, groups=groups, n_boot=n_boot, seed=0)
    return {"diff": round(boot["diff"], 3), "ci": [round(boot["ci_low"], 3), round(boot["ci_high"], 3)],
            "bootstrap_p": round(boot["p_value"], 3), "delong_p": round(delong_test(y, a, b)["p_value"], 3),
            "n_boot_valid": boot["n_valid"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--workspace", default="workspace_bench_volumes")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--predict", nargs=2, metavar=("RUN", "OUT"), help=argparse.SUPPRESS)  # the per-variant process
    args = ap.parse_args()
    if args.predict:
        predict_test(Path(args.predict[0]), Path(args.predict[1]))
        return
    out = Path(__file__).parent / "results_volumes"
    out.mkdir(exist_ok=True)
    results: dict = {"variants": {}}
    probs = {}
    for name, flags in VARIANTS.items():
        run = Path(args.workspace) / "default" / name
        if not (run / "best.safetensors").is_file():  # a finished run is evaluated again, not retrained
            subprocess.run([str(Path(sys.executable).parent / "medclass"), "train", "--data", str(DATA),
                            "--path-column", "image", "--patient-column", "patient_id", "--epochs", str(args.epochs),
                            "--batch-size", "16", "--quiet", "--experiment", name, *flags, "--set", "data.window=lung",
                            "--set", "train.num_workers=0", "--set", "train.monitor=val_auc",
                            "--set", f"workspace={args.workspace}"], check=True)
        pred_json = Path(args.workspace) / f"{name}_test_predictions.json"
        if not pred_json.is_file() or pred_json.stat().st_mtime < (run / "best.safetensors").stat().st_mtime:
            subprocess.run([sys.executable, __file__, "--predict", str(run), str(pred_json)], check=True)
        pred = json.loads(pred_json.read_text())
        rows = pd.DataFrame(pred["rows"])
        probs[name] = rows
        y = (rows["label"] == POSITIVE).to_numpy(int)
        results["variants"][name] = {**train_cost(run), "test_auc_ci": auc_ci(y, rows["prob"].to_numpy(), rows["patient"].to_numpy()),
                                     "predict_s_per_volume": round(pred["s_per_volume"], 4),
                                     "predict_peak_rss_mb": round(pred["peak_rss_mb"], 0)}
        print(name, results["variants"][name], flush=True)
    (a, ra), (b, rb) = probs.items()
    if list(ra["path"]) != list(rb["path"]):
        raise SystemExit(f"{a} and {b} were not tested on the same nodules (different splits?)")
    y, groups = (ra["label"] == POSITIVE).to_numpy(int), ra["patient"].to_numpy()
    manifest = pd.read_csv(DATA)
    size = pd.Series(manifest["diameter_mm"].to_numpy(), index=[str((DATA.parent / i).resolve()) for i in manifest["image"]])
    diameter = ra["path"].map(lambda q: size[str(Path(q).resolve())]).to_numpy(float)
    size_score = rankdata(diameter) / len(diameter)  # the AUC of a score is that of its ranks: diameter as a [0, 1] score
    results["size_only_diameter_mm"] = {"test_auc_ci": auc_ci(y, diameter, groups)}
    results["paired"] = {f"{a} - {b}": paired(y, ra["prob"].to_numpy(), rb["prob"].to_numpy(), groups, args.n_boot),
                         **{f"{n} - diameter_mm": paired(y, r["prob"].to_numpy(), size_score, groups, args.n_boot)
                            for n, r in probs.items()}}
    results["test"] = {"nodules": int(len(ra)), "patients": int(ra["patient"].nunique()), "malignant": int(y.sum())}
    print(json.dumps(results["paired"], indent=1))
    (out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
