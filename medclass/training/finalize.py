"""After training: choose the decision threshold (and optional temperature) on validation only.

Both are stored in ``best.safetensors``; every later prediction uses them. So are the
out-of-distribution statistics (:mod:`medclass.metrics.ood`): class means (one mean for a multi-label
model, whose findings overlap) and a shrunk covariance of
the stage statistics (:func:`medclass.inference.forward_with_features`, band-limited: :data:`medclass.metrics.ood.LOWPASS`)
of (at most :data:`OOD_MAX_TRAIN`) training images, and a flagging threshold at the conformal 95% quantile of the
validation images' scores and the training images' cross-fitted scores. Test data is never touched here.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Subset

from ..artifacts import CheckpointMeta, RunDir, load_checkpoint, save_checkpoint
from ..config import RunConfig
from ..data.splits import patient_groups
from ..data.table import DataTable
from ..inference import Predictions, predict_dataset, to_probs
from ..metrics.calibration import fit_temperature
from ..metrics.ood import LOWPASS, MahalanobisOOD, fit_mahalanobis, threshold_text
from ..metrics.rare import FALLBACK_THRESHOLD, positive_patients, too_few_patients
from ..metrics.threshold import choose_threshold
from ..utils import write_json
from .datamodule import SplitDataModule

log = logging.getLogger(__name__)

OOD_MAX_TRAIN = 2000  # training images (a seeded random subset) the OOD statistics are fitted on


def finalize_run(run: RunDir, dm: SplitDataModule, cfg: RunConfig) -> dict:
    """Fit temperature (if asked) and the threshold rule ``cfg.eval.threshold`` on the validation split,
    then the OOD statistics; all are stored in ``best.safetensors`` and summed up in ``threshold.json``.

    A multi-label model gets one threshold per finding (:func:`_decide_findings`) and OOD statistics
    with one Gaussian (all training images one group: its findings overlap)."""
    if not run.best.is_file():
        log.warning("no best checkpoint in %s: nothing to finalise", run.path)
        return {}
    model, meta = load_checkpoint(run.best)
    pred = predict_dataset(model, dm.dataset("val", train=False), batch_size=cfg.train.batch_size,
                           num_workers=cfg.train.num_workers, features=True, lowpass=LOWPASS)
    meta, info = _decide_findings(meta, pred, cfg) if meta.multi_label else _decide_classes(meta, pred, cfg)
    ood = _fit_ood(model, dm, cfg, pred.stage_features, cfg.train.num_workers, one_group=meta.multi_label)
    if ood is not None:
        info.update(ood_threshold=ood.threshold, ood_quantile=ood.quantile, ood_n_train=ood.n_train)
    save_checkpoint(run.best, model, meta, ood=ood)
    write_json(run.threshold, info)
    log.info("decision threshold chosen on validation only: %s", info)
    return info


def _decide_classes(meta: CheckpointMeta, pred: Predictions, cfg: RunConfig) -> tuple[CheckpointMeta, dict]:
    """Single-label: the temperature (when asked) and, for two classes, the threshold by ``cfg.eval.threshold``."""
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
    return meta, info


def add_ood(run: str | Path, num_workers: int = 0) -> MahalanobisOOD | None:
    """Fit OOD statistics for a finished run trained before they existed and store them in its ``best.safetensors``.

    Uses the run's own ``split.csv`` (training and validation rows) exactly as :func:`finalize_run` would
    (multi-label runs too: one Gaussian over all training images).

    >>> add_ood("workspace/default/resnet18").threshold  # doctest: +SKIP
    311.2
    """
    folder = RunDir(run)
    model, meta = load_checkpoint(folder.best_checkpoint())
    cfg = meta.run_config
    dm = SplitDataModule(DataTable.from_csv(folder.split, list(meta.classes)), cfg, list(meta.preprocessing.mean),
                         list(meta.preprocessing.std))
    val = predict_dataset(model, dm.dataset("val", train=False), batch_size=cfg.train.batch_size,
                          num_workers=num_workers, features=True, lowpass=LOWPASS)
    ood = _fit_ood(model, dm, cfg, val.stage_features, num_workers, one_group=meta.multi_label)
    if ood is not None:
        save_checkpoint(folder.best_checkpoint(), model, meta, ood=ood)
    return ood


def _fit_ood(model: torch.nn.Module, dm: SplitDataModule, cfg: RunConfig, val_features: np.ndarray | None,
             num_workers: int, one_group: bool = False) -> MahalanobisOOD | None:
    """OOD statistics on the training images' features, threshold on validation (None when either is too small).

    ``one_group``: one Gaussian over all training images (multi-label), else one mean per class."""
    train = dm.dataset("train", train=False)
    rows = np.random.default_rng(cfg.train.seed).permutation(len(train))[:OOD_MAX_TRAIN]
    fit = predict_dataset(model, Subset(train, sorted(rows.tolist())), batch_size=cfg.train.batch_size,
                          num_workers=num_workers, features=True, lowpass=LOWPASS)
    if val_features is None or len(val_features) < 1 or len(fit.labels) < 2:
        log.warning("too few readable training/validation images to fit out-of-distribution statistics")
        return None
    ood = fit_mahalanobis(fit.stage_features, None if one_group else fit.labels, val_features, lowpass=LOWPASS,
                          groups=np.asarray(fit.patients))  # a patient's images held out together
    log.info("out-of-distribution statistics fitted on %d training images; threshold %s", ood.n_train,
             threshold_text({"threshold": ood.threshold, "quantile": ood.quantile, "n_calibration": ood.n_calibration,
                             "n_val": ood.n_val}))
    return ood


def _decide_findings(meta: CheckpointMeta, pred: Predictions, cfg: RunConfig) -> tuple[CheckpointMeta, dict]:
    """Multi-label: one threshold per finding by ``cfg.eval.threshold`` on its unmasked validation labels.

    A finding with fewer positive (or negative) validation patients than the rare-finding rule
    (:mod:`medclass.metrics.rare`) gets the fallback threshold, with a warning and a note in ``threshold.json``. No temperature is fitted
    (``eval.temperature_scaling`` is single-label only)."""
    if cfg.eval.temperature_scaling:
        log.warning("eval.temperature_scaling is not applied to a multi-label model (one sigmoid per finding)")
    y, p = pred.labels, pred.probs
    groups = patient_groups(pd.DataFrame({"patient": pred.patients})).to_numpy() if len(y) else None
    thresholds, per = [], {}
    for k, finding in enumerate(meta.classes):
        known = ~np.isnan(y[:, k]) if len(y) else np.zeros(0, dtype=bool)
        yk = y[known, k].astype(np.int64)
        n_pos, n_neg = positive_patients(y[:, k], groups) if len(y) else (0, 0)
        reason = too_few_patients(n_pos, n_neg)  # the one rule of medclass.metrics.rare
        if reason:
            thresholds.append(FALLBACK_THRESHOLD)
            per[finding] = {"threshold": FALLBACK_THRESHOLD, "fallback": True, "n_val": int(known.sum()),
                            "val_positive_patients": n_pos,
                            "note": f"{reason} in validation: fixed threshold {FALLBACK_THRESHOLD} instead of "
                                    f"{cfg.eval.threshold}"}
            log.warning("finding %r: %s in validation; its threshold is the fallback %s, not chosen by %s",
                        finding, reason, FALLBACK_THRESHOLD, cfg.eval.threshold)
            continue
        choice = choose_threshold(yk, p[known, k], cfg.eval.threshold)
        thresholds.append(float(choice.threshold))
        per[finding] = {"threshold": float(choice.threshold), "val_sensitivity": float(choice.sensitivity),
                        "val_specificity": float(choice.specificity), "n_val": int(known.sum()),
                        "val_positive_patients": n_pos}
    log.info("per-finding decision thresholds chosen on validation only: %s",
             {f: round(v["threshold"], 3) for f, v in per.items()})
    info = {"temperature": 1.0, "n_val_images": int(len(y)), "rule": cfg.eval.threshold, "thresholds": per}
    return meta.with_decision(0.5, cfg.eval.threshold, 1.0, thresholds), info
