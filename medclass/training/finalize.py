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
    if meta.multi_label:
        return _finalize_findings(run, model, meta, pred, cfg)
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



def _finalize_findings(run: RunDir, model: torch.nn.Module, meta, pred, cfg: RunConfig) -> dict:
    """Multi-label: one threshold per finding by ``cfg.eval.threshold`` on its unmasked validation labels.

    A finding without both classes in validation keeps 0.5 (and says so). No temperature is fitted
    (``eval.temperature_scaling`` is single-label only)."""
    if cfg.eval.temperature_scaling:
        log.warning("eval.temperature_scaling is not applied to a multi-label model (one sigmoid per finding)")
    y, p = pred.labels, pred.probs
    thresholds, per = [], {}
    for k, finding in enumerate(meta.classes):
        known = ~np.isnan(y[:, k]) if len(y) else np.zeros(0, dtype=bool)
        yk = y[known, k].astype(np.int64)
        if len(np.unique(yk)) < 2:
            thresholds.append(0.5)
            per[finding] = {"threshold": 0.5, "note": "one class only in validation: 0.5 kept"}
            continue
        choice = choose_threshold(yk, p[known, k], cfg.eval.threshold)
        thresholds.append(float(choice.threshold))
        per[finding] = {"threshold": float(choice.threshold), "val_sensitivity": float(choice.sensitivity),
                        "val_specificity": float(choice.specificity), "n_val": int(known.sum())}
    meta = meta.with_decision(0.5, cfg.eval.threshold, 1.0, thresholds)
    save_checkpoint(run.best, model, meta)
    info = {"temperature": 1.0, "n_val_images": int(len(y)), "rule": cfg.eval.threshold, "thresholds": per}
    write_json(run.threshold, info)
    log.info("per-finding decision thresholds chosen on validation only: %s",
             {f: round(v["threshold"], 3) for f, v in per.items()})
    return info
