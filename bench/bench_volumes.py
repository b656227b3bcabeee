"""3-D vs 2.5-D on lidc_nodules, beside the size-only baseline (diameter_mm), on one patient split (CPU, short).

Trains each variant with the same flags a user types (``medclass train --data labels.csv --path-column image
--patient-column patient_id ...``), predicts the held-out test patients with ``medclass.serving.Predictor``
and reports the test AUC with a patient bootstrap 95 % CI; the size-only baseline is ``diameter_mm``
scored on the same test rows. Also the wall time and peak RSS of each run. Writes
``bench/results_volumes/results.json``.

    PYTHONPATH=. python bench/bench_volumes.py --epochs 3          # ~15 min on 2 CPU cores
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "lidc_nodules" / "labels.csv"
VARIANTS = {  # name: the model flags
    "3d_resnet10": ["--model", "resnet10_3d", "--in-chans", "1", "--image-size", "32"],
    "2.5d_simple_cnn": ["--model", "simple_cnn", "--in-chans", "3", "--image-size", "32", "--set", "volume.input=2.5d"],
}


def auc_ci(y: np.ndarray, p: np.ndarray, groups: np.ndarray) -> list[float]:
    from sklearn.metrics import roc_auc_score

    from medclass.metrics.bootstrap import bootstrap_ci

    # any score, not only probabilities (diameter_mm): scikit-learn's AUC inside medclass's patient bootstrap
    return [round(v, 3) for v in bootstrap_ci(roc_auc_score, y, p, groups, n_boot=1000)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--workspace", default="workspace_bench_volumes")
    args = ap.parse_args()
    out = Path(__file__).parent / "results_volumes"
    out.mkdir(exist_ok=True)
    results = {}
    for name, flags in VARIANTS.items():
        cmd = [str(Path(sys.executable).parent / "medclass"), "train", "--data", str(DATA), "--path-column", "image",
               "--patient-column", "patient_id", "--epochs", str(args.epochs), "--batch-size", "16", "--quiet",
               "--experiment", name, *flags, "--set", "data.window=lung", "--set", "train.num_workers=0",
               "--set", "train.monitor=val_auc", "--set", f"workspace={args.workspace}"]
        run = Path(args.workspace) / "default" / name
        start = time.perf_counter()
        if not (run / "best.safetensors").is_file():  # a finished run is evaluated again, not retrained
            subprocess.run(cmd, check=True)
        wall = time.perf_counter() - start
        from medclass.serving.predictor import Predictor

        split = pd.read_csv(run / "split.csv", dtype={"path": str})
        test = split[split["split"] == "test"].reset_index(drop=True)
        pred = Predictor.from_checkpoint(run / "best.safetensors").predict_files(list(test["path"]), progress=False)
        y = (test["label"] == "malignant").to_numpy().astype(int)
        p = pred["prob_malignant"].to_numpy()
        manifest = pd.read_csv(DATA)
        manifest["path"] = [str((DATA.parent / i).resolve()) for i in manifest["image"]]
        size = test["path"].map(lambda q: manifest.set_index("path")["diameter_mm"].get(str(Path(q).resolve())))
        results[name] = {"test_auc_ci": auc_ci(y, p, test["patient"].to_numpy()), "wall_s": round(wall, 1),
                         "n_test": int(len(test)), "test_patients": int(test["patient"].nunique())}
        results["size_only_diameter_mm"] = {"test_auc_ci": auc_ci(y, size.to_numpy(float), test["patient"].to_numpy())}
        print(name, results[name], "size-only", results["size_only_diameter_mm"], flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
