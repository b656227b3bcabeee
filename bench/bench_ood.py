"""How well does the out-of-distribution flag work? Detection rate on real non-chest-X-ray images, false alarms on the model's own test set.

Trains a tiny chest X-ray run (``--model``, default simple_cnn at 64 px, ``--epochs`` 2, at most
``--limit-per-class`` images per class of ``../shared/data/chest_xray``), or takes ``--run``, and
feeds the :class:`~medclass.serving.Predictor` (the OOD statistics stored in its
``best.safetensors`` by training) with:

- the run's own **test** split (in-distribution: every flag is a false alarm);
- the **same test images stored at another resolution** (``--same-source``: the files of the same class
  folder and name in another copy of the data set, e.g. the 224 px originals of the 96 px packaged sample;
  by default the packaged sample for a run on ``chest_xray`` and the originals for a run on the sample):
  also in-distribution, every flag a false alarm;
- ``head_ct/`` (head CT slices), ``dicom/`` (CT, MR, US, radiographs... as DICOM: the readable
  ones) and ``fundus_odir/images`` (colour fundus photographs): out-of-distribution;
- ``nih_cxr/images`` (adult chest X-rays of another hospital): the same modality under dataset
  shift, reported for information (neither a detection nor a false alarm).

At most ``--per-set`` images of each set (a seeded sample). Rates come with 95% Wilson intervals.
``--refit`` first fits the run's OOD statistics again with the installed medclass (``medclass ood-fit``),
so that a run trained by an older version is measured with the current rule. Prints a table and writes
``ood.json`` and ``ood.md`` to ``--out``::

    python bench/bench_ood.py --out /tmp/bench_ood              # ~3-5 min on 2 CPU cores
    python bench/bench_ood.py --run workspace/quickstart/chest_xray_sample-efficientnet_lite0-128px --refit \
        --per-set 100 --out /tmp/bench_ood
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SHARED = ROOT.parent / "shared" / "data"
# name, folder under the shared data, kind
SETS = [("head_ct", "head_ct", "ood"), ("dicom", "dicom", "ood"), ("fundus_odir", "fundus_odir/images", "ood"),
        ("nih_cxr (adult CXR)", "nih_cxr/images", "shift")]


def train_tiny(shared: Path, workspace: Path, model: str, epochs: int, limit: int, size: int) -> Path:
    """A small chest X-ray run; returns its folder."""
    from medclass.config import RunConfig, apply_overrides
    from medclass.training import train

    items = {"data.path": str(shared / "chest_xray"), "data.preset": "kermany_chest_xray",
             "data.limit_per_class": str(limit), "data.near_duplicates": "false", "model.name": model,
             "model.in_chans": "1", "model.image_size": str(size), "model.pretrained": "false",
             "train.epochs": str(epochs), "train.batch_size": "32", "train.num_workers": "0",
             "train.early_stopping": "0", "workspace": str(workspace), "experiment": f"ood-{model}"}
    cfg = apply_overrides(RunConfig(), [f"{k}={v}" for k, v in items.items()])
    return train(cfg, progress=False).run_dir


def files_of(folder: Path, n: int, seed: int) -> list[Path]:
    """At most ``n`` image/DICOM files under ``folder`` (seeded sample)."""
    from medclass.data.dicom import DICOM_EXTENSIONS
    from medclass.data.io import IMAGE_EXTENSIONS

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS + DICOM_EXTENSIONS)
    rows = np.random.default_rng(seed).permutation(len(files))[:n]
    return [files[i] for i in sorted(rows)]


def same_source(paths: list[str], root: Path) -> list[Path]:
    """The files under ``root`` with the class folder and name of ``paths`` (the same images in another copy)."""
    found = [root / Path(p).parent.name / Path(p).name for p in paths]
    return [f for f in found if f.is_file()]


def rate_row(name: str, kind: str, df: pd.DataFrame) -> dict:
    """Flag counts of one set (unreadable files left out), with a 95% Wilson interval of the rate."""
    from medclass.metrics.stats import wilson_interval

    ok = df[df["error"] == ""]
    flagged = int(ok["ood"].astype(bool).sum())
    low, high = wilson_interval(flagged, len(ok)) if len(ok) else (float("nan"), float("nan"))
    return {"set": name, "kind": kind, "n_files": int(len(df)), "n_scored": int(len(ok)), "flagged": flagged,
            "rate": flagged / len(ok) if len(ok) else float("nan"), "low": low, "high": high,
            "median_score": float(ok["ood_score"].median()) if len(ok) else float("nan")}


def markdown(rows: list[dict]) -> str:
    """The table as Markdown (rates as percentages with their 95% Wilson interval)."""
    lines = ["| set | kind | files | scored | flagged OOD | rate (95% CI) | median score |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['set']} | {r['kind']} | {r['n_files']} | {r['n_scored']} | {r['flagged']} | {100 * r['rate']:.1f}% "
              f"({100 * r['low']:.1f}-{100 * r['high']:.1f}%) | {r['median_score']:.4g} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="An existing chest X-ray run (else a tiny one is trained).")
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    parser.add_argument("--model", default="simple_cnn")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--limit-per-class", type=int, default=300)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--per-set", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--same-source", type=Path, help="Another copy of the training data set at another resolution.")
    parser.add_argument("--refit", action="store_true", help="Fit the run's OOD statistics again first (ood-fit).")
    parser.add_argument("--out", type=Path, default=Path("bench_ood"))
    args = parser.parse_args(argv)
    from medclass.artifacts import RunDir
    from medclass.serving.predictor import Predictor

    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    run = args.run or train_tiny(args.shared, args.out / "ws", args.model, args.epochs, args.limit_per_class,
                                 args.image_size)
    if args.refit:
        from medclass.training.finalize import add_ood

        add_ood(run)
    train_s = time.perf_counter() - start
    predictor = Predictor.from_checkpoint(run)
    if predictor.ood is None:
        raise SystemExit(f"{run} has no OOD statistics (trained before they existed); train it again.")
    split = pd.read_csv(RunDir(run).split, keep_default_na=False)
    test = split.loc[split["split"] == "test", "path"].tolist()
    rows = [rate_row("own test split (false alarms)", "in-distribution",
                     predictor.predict_files(test[:args.per_set * 5], progress=False))]
    sample = ROOT / "medclass" / "sample_data" / "chest_xray"
    other = args.same_source or (sample if Path(test[0]).parents[1].resolve() != sample.resolve()
                                 else args.shared / "chest_xray")
    twins = same_source(test[:args.per_set * 5], other)
    if twins:
        rows.append(rate_row(f"same test images at another resolution ({other.name if other != sample else 'packaged sample'})",
                             "in-distribution", predictor.predict_files(twins, progress=False)))
    for name, folder, kind in SETS:
        files = files_of(args.shared / folder, args.per_set, args.seed)
        rows.append(rate_row(name, kind, predictor.predict_files(files, progress=False)))
    result = {"run": str(run), "model": predictor.meta.model.name, "image_size": predictor.meta.preprocessing.image_size,
              "ood": {"threshold": predictor.ood.threshold, "quantile": predictor.ood.quantile,
                      "n_train": predictor.ood.n_train, "n_val": predictor.ood.n_val,
                      "n_calibration": predictor.ood.n_calibration, "lowpass": predictor.ood.lowpass},
              "val_auc": predictor.meta.metrics.get("val_auc"), "rows": rows,
              "train_s": round(train_s, 1), "total_s": round(time.perf_counter() - start, 1)}
    md = markdown(rows)
    (args.out / "ood.json").write_text(json.dumps(result, indent=2))
    (args.out / "ood.md").write_text(md + "\n")
    print(md)
    from medclass.metrics.ood import threshold_text

    print(f"model {result['model']} at {result['image_size']} px, val AUC {result['val_auc']}; threshold "
          f"{threshold_text(result['ood'])}; fitted on {predictor.ood.n_train} training images; band limit "
          f"{predictor.ood.lowpass}; {result['total_s']} s")
    return result


if __name__ == "__main__":
    main()
