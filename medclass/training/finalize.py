"""After training: choose the decision threshold (and optional temperature) on validation only.

Both are stored in ``best.safetensors``; every later prediction uses them. Test data is never
touched here.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from ..artifacts import RunDir, load_checkpoint, save_checkpoint
from ..config import RunConfig
from ..inference import predict_dataset, to_probs
from ..metrics.calibration import fit_temperature
from ..metrics.threshold import choose_threshold
from ..utils import write_json
from .datamodule import SplitDataModule

log = logging.getLogger(__name__)


def finalize_run(run: RunDir, dm: SplitDataModule, cfg: RunConfig) -> dict:
    """Fit temperature (if asked) and the threshold rule ``cfg.eval.threshold`` on the validation split."""
    if not run.best.is_file():
        log.warning("no best checkpoint in %s: nothing to finalise", run.path)
        return {}
    model, meta = load_checkpoint(run.best)
    pred = predict_dataset(model, dm.dataset("val", train=False), batch_size=cfg.train.batch_size,
                           num_workers=cfg.train.num_workers)
    temperature = 1.0
    if cfg.eval.temperature_scaling and len(pred.labels):
        logits = pred.logits[:, 0] if pred.logits.shape[1] == 1 else pred.logits
        temperature = float(fit_temperature(logits, pred.labels))
    probs = to_probs(torch.from_numpy(pred.logits), temperature).numpy()
    info: dict = {"temperature": temperature, "n_val_images": int(len(pred.labels))}
    if probs.shape[1] == 2 and len(np.unique(pred.labels)) == 2:
        choice = choose_threshold(pred.labels, probs[:, 1], cfg.eval.threshold)
        meta = meta.with_decision(choice.threshold, cfg.eval.threshold, temperature)
        info.update(threshold=float(choice.threshold), rule=cfg.eval.threshold,
                    val_sensitivity=float(choice.sensitivity), val_specificity=float(choice.specificity))
    else:
        meta = meta.with_decision(meta.threshold, meta.threshold_rule, temperature)
    save_checkpoint(run.best, model, meta)
    write_json(run.threshold, info)
    log.info("decision threshold chosen on validation only: %s", info)
    return info

