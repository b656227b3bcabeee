"""A tiny run folder built without training, for the evaluation, report and explain tests.

Images are smooth random patterns (so perceptual hashes are stable) with a class-dependent
brightness; the checkpoint is an untrained SimpleCNN saved with ``save_checkpoint``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from medclass.config import RunConfig
from medclass.data.table import DataTable
from medclass.models import create_model
from medclass.artifacts.checkpoint import build_meta, save_checkpoint

PATIENT_REGEX = r"^(pat\d+)_"
SPLIT_PATIENTS = {"train": 10, "val": 4, "test": 6}
IMAGES_PER_PATIENT = 2


def pattern(rng: np.random.Generator, label: int, size: int = 40) -> np.ndarray:
    """A smooth grey uint8 image: a random 5x5 field upsampled, brighter for higher class indices."""
    coarse = rng.uniform(0, 1, (5, 5))
    field = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC), float)
    return np.clip(field * 0.6 + 40 + 40 * label, 0, 255).astype(np.uint8)


def write_image(path: Path, pixels: np.ndarray) -> str:
    """Save a uint8 greyscale PNG and return its path as text."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return str(path)


def make_run(root: Path, classes: tuple[str, ...] = ("NORMAL", "PNEUMONIA"), threshold: float = 0.4,
             temperature: float = 2.0, seed: int = 0, image_size: int = 32) -> Path:
    """Write images under ``root/images`` and a run folder ``root/ws/proj/exp``; return the run folder."""
    rng = np.random.default_rng(seed)
    rows, patient = [], 0
    for split, n_patients in SPLIT_PATIENTS.items():
        for _ in range(n_patients):
            label = patient % len(classes)
            for k in range(IMAGES_PER_PATIENT):
                file = root / "images" / classes[label] / f"pat{patient}_img{k}.png"
                rows.append({"path": write_image(file, pattern(rng, label)), "label": classes[label],
                             "patient": f"pat{patient}", "split": split, "frame": -1})
            patient += 1
    run = root / "ws" / "proj" / "exp"
    run.mkdir(parents=True)
    table = DataTable(pd.DataFrame(rows), list(classes))
    table.to_csv(run / "split.csv")
    (run / "classes.json").write_text(json.dumps(list(classes)))
    cfg = RunConfig.from_dict({"workspace": str(root / "ws"), "project": "proj", "experiment": "exp",
                               "data": {"path": str(root / "images"), "patient_regex": PATIENT_REGEX},
                               "model": {"name": "simple_cnn", "in_chans": 1, "image_size": image_size}})
    import torch

    torch.manual_seed(seed)
    model = create_model("simple_cnn", len(classes), in_chans=1)
    meta = build_meta(classes=list(classes), model_name="simple_cnn", in_chans=1, image_size=image_size, mean=[0.5],
                      std=[0.25], threshold=threshold, threshold_rule="youden", temperature=temperature,
                      config=cfg.to_dict(), metrics={"epoch": 1, "val_auc": 0.6})
    save_checkpoint(run / "best.safetensors", model, meta)
    pd.DataFrame({"epoch": [0, 1], "train_loss": [0.69, 0.6], "train_acc": [0.5, 0.6], "train_auc": [0.5, 0.65],
                  "val_loss": [0.68, 0.62], "val_acc": [0.5, 0.62], "val_auc": [0.55, 0.6], "lr": [1e-3, 1e-3],
                  "epoch_time_s": [1.0, 1.0], "peak_rss_mb": [500.0, 510.0],
                  "gpu_max_allocated_mb": [float("nan")] * 2}).to_csv(run / "metrics.csv", index=False)
    (run / "baseline.json").write_text(json.dumps({"val_loss": 0.7, "val_acc": 0.5, "val_auc": 0.5, "n_images": 8}))
    (run / "threshold.json").write_text(json.dumps({"temperature": temperature, "threshold": threshold,
                                                    "rule": "youden", "val_sensitivity": 0.75,
                                                    "val_specificity": 0.5}))
    return run
