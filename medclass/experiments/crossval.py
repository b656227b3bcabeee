"""K-fold cross-validation by patient: one training run per fold, out-of-fold predictions, mean +- sd and pooled CIs.

The data is loaded and checked once; patients (with duplicate images linked into one patient) are
assigned to ``k`` stratified folds. Fold ``i`` trains on the other folds and validates on fold
``i`` (run ``<experiment>-fold<i>``); its best checkpoint then predicts fold ``i`` through
:func:`medclass.evaluation.evaluate`, at the threshold that fold stored. Written into
``workspace/<project>/<experiment>/``: ``cv_summary.json``, ``cv_folds.csv``, ``oof_predictions.csv``
and ``folds.csv`` (the fold of every image).

Each fold's validation images also chose its best epoch and threshold, so cross-validated figures
are slightly optimistic; a held-out test set gives the unbiased estimate.

Multi-label data: the folds are stratified over all findings together (iterative stratification of
the patients, :func:`~medclass.data.splits.assign_folds`); each fold reports its macro and micro AUC
(:mod:`medclass.metrics.multilabel`, masked labels left out), the summary their mean and sd, and
the pooled out-of-fold macro / micro AUC with patient-bootstrap CIs plus every finding's pooled AUC, sensitivity
and specificity with CIs (none below the rare-finding rule of :mod:`medclass.metrics.rare`).

Example:
    >>> cfg = apply_overrides(RunConfig(), ["data.path=../shared/data/head_ct", "model.name=simple_cnn"])
    >>> cv = cross_validate(cfg, folds=5)          # doctest: +SKIP
    >>> cv.summary["pooled"]["roc_auc"]            # doctest: +SKIP
    {'value': 0.93, 'low': 0.89, 'high': 0.96}
"""
from __future__ import annotations

import dataclasses
import io
import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from rich.table import Table

from ..artifacts import CVDir, RunDir, read_meta
from ..config import RunConfig, load_config, save_config
from ..data.multilabel import finding_column
from ..data.splits import patient_groups
from ..errors import ConfigError, TrainingInterrupted
from ..evaluation._render import ci_text
from ..metrics.bootstrap import bootstrap_ci
from ..metrics.metrics import UndefinedMetricWarning, accuracy, balanced_accuracy, roc_auc, sensitivity, specificity
from ..metrics.findings import findings_cis
from ..metrics.multilabel import finding_aucs, macro_auc, micro_auc
from ..metrics.rare import positive_patients
from ..utils import atomic_write_text, epoch_number, write_json
from ._cvdata import fold_table, prepare_folds

log = logging.getLogger(__name__)

# per-fold metrics (from each fold's evaluation) and how the pooled ones are computed
_DECISION_METRICS = {"accuracy": accuracy, "balanced_accuracy": balanced_accuracy, "sensitivity": sensitivity,
                     "specificity": specificity}
FOLD_METRICS = ("roc_auc", *_DECISION_METRICS)
FINDINGS_FOLD_METRICS = ("macro_auc", "micro_auc")  # multi-label: per fold, from the fold's evaluation
OPTIMISTIC = ("Each fold's validation images also chose its best epoch and threshold, so these figures are optimistic; "
              "a held-out test set gives the unbiased estimate.")


def fold_metric_names(multi_label: bool) -> tuple[str, ...]:
    """The per-fold metrics of a cross-validation: single-label or multi-label."""
    return FINDINGS_FOLD_METRICS if multi_label else FOLD_METRICS


@dataclass
class CVResult:
    """What :func:`cross_validate` produced."""

    out_dir: Path  # workspace/<project>/<experiment>: cv_summary.json, cv_folds.csv, oof_predictions.csv
    folds: pd.DataFrame  # one row per fold: fold, run_dir, images, patients, best_epoch, threshold, metrics
    summary: dict  # content of cv_summary.json: mean, sd, pooled (value, low, high) per metric
    oof: pd.DataFrame  # out-of-fold predictions of every image (fold, path, patient, label, prob_*, predicted...)
    run_dirs: list[Path] = field(default_factory=list)  # the fold runs

    def summary_table(self) -> Table:
        """Per-fold metrics, mean +- sd and the pooled out-of-fold values with 95% CIs, as a rich table."""
        names = [m for m in (*FOLD_METRICS, *FINDINGS_FOLD_METRICS) if m in self.summary["pooled"]]
        t = Table(title=f"{self.summary['k']}-fold cross-validation by patient ({self.summary['n_images']} images)",
                  caption=f"Best epochs counted from 1. {OPTIMISTIC}")
        for col in ("fold", "images", "patients", "best epoch", "threshold", *names):
            t.add_column(col, justify="right")
        per_finding = self.summary["task"] == "multi_label"  # each finding has its own threshold
        for _, row in self.folds.iterrows():
            t.add_row(str(row["fold"]), str(row["images"]), str(row["patients"]), str(epoch_number(row["best_epoch"])),
                      "per finding" if per_finding else _fmt(row["threshold"]), *(_fmt(row[m]) for m in names))
        t.add_row("mean ± sd", "", "", "", "", *(f"{_fmt(self.summary['mean'][m])} ± {_fmt(self.summary['sd'][m])}"
                                                 for m in names), style="bold")
        pooled = self.summary["pooled"]
        t.add_row("pooled (95% CI)", str(self.summary["n_images"]), "", "", "",
                  *(f"{_fmt(pooled[m]['value'])} ({_fmt(pooled[m]['low'])}-{_fmt(pooled[m]['high'])})" for m in names),
                  style="bold")
        return t


    def findings_table(self) -> Table | None:
        """Multi-label: every finding's pooled out-of-fold positives, AUC, sensitivity and specificity with 95% CIs
        (None for single-label)."""
        per = self.summary.get("pooled_findings")
        if not per:
            return None
        t = Table(title="Pooled out-of-fold results per finding (95% CIs, patients resampled; n/e = not estimable)",
                  caption=OPTIMISTIC)
        for col in ("finding", "positives", "positive patients", "AUC", "sensitivity", "specificity"):
            t.add_column(col, justify="left" if col == "finding" else "right")
        for f, r in per.items():
            t.add_row(f, str(r["positives"]), str(r["positive_patients"]),
                      *(ci_text(r[m]) for m in ("roc_auc", "sensitivity", "specificity")))
        return t


def _fmt(value: float | None) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.3f}"


def pooled_metrics(oof: pd.DataFrame, classes: list[str], n_boot: int = 1000, seed: int = 0) -> dict:
    """Metrics over all out-of-fold predictions with 95% CIs resampling patients.

    The AUC ranks the pooled probabilities; decision metrics use each image's own fold decision
    (``predicted``, made at that fold's threshold). Returns ``{metric: {"value", "low", "high"}}``.

    >>> pooled_metrics(oof, ["normal", "hemorrhage"])["roc_auc"]  # doctest: +SKIP
    {'value': 0.91, 'low': 0.86, 'high': 0.95}
    """
    index = {c: i for i, c in enumerate(classes)}
    y = oof["label"].map(index).to_numpy(np.int64)
    decided = oof["predicted"].map(index).to_numpy(np.int64)
    probs = oof[[f"prob_{c}" for c in classes]].to_numpy(float)
    groups = patient_groups(oof).to_numpy()
    metrics = {"roc_auc": (roc_auc, probs)}
    metrics |= {name: (fn, decided) for name, fn in _DECISION_METRICS.items()
                if len(classes) == 2 or name in ("accuracy", "balanced_accuracy")}
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        for name, (fn, values) in metrics.items():
            ci = bootstrap_ci(fn, y, values, groups=groups, n_boot=n_boot, seed=seed)
            out[name] = {"value": ci.point, "low": ci.low, "high": ci.high}
    return out


def pooled_findings_metrics(oof: pd.DataFrame, findings: list[str], n_boot: int = 1000,
                            seed: int = 0) -> tuple[dict, dict[str, float], dict[str, dict]]:
    """Multi-label: macro and micro AUC over all out-of-fold predictions with 95% CIs resampling patients, the
    pooled AUC of every finding (masked labels, blank in ``label_<finding>``, left out), and per finding its
    positives, positive patients, AUC and (at each image's own fold decision) sensitivity and specificity with
    CIs; a finding below the rare-finding rule (:mod:`medclass.metrics.rare`) gets no interval.

    >>> pooled, aucs, per_finding = pooled_findings_metrics(oof, ["Effusion", "Mass"])  # doctest: +SKIP
    >>> pooled["macro_auc"]                                                               # doctest: +SKIP
    {'value': 0.71, 'low': 0.66, 'high': 0.76}
    """
    y = oof[[finding_column(f) for f in findings]].to_numpy(float)
    p = oof[[f"prob_{f}" for f in findings]].to_numpy(float)
    decided = oof[[f"pred_{f}" for f in findings]].to_numpy(float)  # each fold's decision at its own thresholds
    groups = patient_groups(oof).to_numpy()
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        for name, fn in (("macro_auc", macro_auc), ("micro_auc", micro_auc)):
            ci = bootstrap_ci(fn, y, p, groups=groups, n_boot=n_boot, seed=seed)
            out[name] = {"value": ci.point, "low": ci.low, "high": ci.high}
        half = [0.5] * len(findings)
        aucs = findings_cis(y, p, groups, findings, half, n_boot=n_boot, seed=seed, names=("roc_auc",))["per_finding"]
        rates = findings_cis(y, decided, groups, findings, half, n_boot=n_boot, seed=seed,
                             names=("sensitivity", "specificity"))["per_finding"]
    per = {}
    for k, f in enumerate(findings):
        n_pos, _ = positive_patients(y[:, k], groups)
        per[f] = {"positives": int(np.nansum(y[:, k] == 1)), "positive_patients": n_pos, "roc_auc": aucs[f]["roc_auc"],
                  "sensitivity": rates[f]["sensitivity"], "specificity": rates[f]["specificity"]}
    return out, {f: float(a) for f, a in zip(findings, finding_aucs(y, p))}, per


def _fold_summary(folds: pd.DataFrame, names: list[str]) -> tuple[dict, dict]:
    values = folds[names].astype(float)
    return values.mean().to_dict(), values.std(ddof=1).to_dict()


def cross_validate(cfg: RunConfig, folds: int = 5, progress: bool = True, *, n_boot: int = 1000,
                   resume: bool = False, mlflow: str | Path | None = None) -> CVResult:
    """Train ``folds`` runs, one per patient fold, and summarise their out-of-fold predictions.

    Args:
        cfg: the run settings; ``cfg.experiment`` names the CV folder and the fold runs
            (``<experiment>-fold<i>``); empty = model name and time.
        folds: number of folds (k >= 2; each class needs at least k patients; multi-label: the data
            needs k patients, and the folds are stratified over all findings).
        progress: progress bars while training.
        n_boot: bootstrap replicates (over patients) for the pooled CIs.
        resume: continue an interrupted cross-validation in the same folder: finished folds are
            kept, an interrupted fold continues from its last epoch, missing folds are trained.
            :func:`resume_cross_validation` does this from the folder alone.
        mlflow: also log to this MLflow tracking URI: each fold trained here as a run (live
            metrics and files) and the cross-validation summary as one more run.

    Raises:
        ConfigError: the folder already holds a cross-validation (and ``resume`` is false), or, when
            resuming, the data no longer gives the same folds.
        DatasetError: too few patients (per class) for ``folds``.
        LeakError: a fold's training and validation share a patient or an image.

    Example:
        >>> cv = cross_validate(cfg, folds=5, progress=False)  # doctest: +SKIP
        >>> console.print(cv.summary_table())                  # doctest: +SKIP
    """
    from ..training.runner import resolve_experiment

    cfg = resolve_experiment(cfg).validate()
    cv = CVDir(cfg.run_dir())
    out_dir = cv.path
    if cv.is_cross_validation and not resume:
        raise ConfigError(f"{out_dir} already holds a cross-validation; continue it with `medclass train --resume "
                          f"{out_dir}` or choose another experiment name.")
    out_dir.mkdir(parents=True, exist_ok=True)
    previous = _fold_key(cv.folds) if resume and cv.folds.is_file() else None
    if previous is None:  # a resumed run keeps the files that describe its folds
        save_config(cfg, cv.config)
        write_json(cv.state, {"k": folds})
    table, fp = prepare_folds(cfg.data, folds, seed=cfg.split_seed, out_dir=out_dir if previous is None else None,
                              cache_dir=Path(cfg.workspace) / ".cache")
    if previous is not None and not previous.equals(_fold_key(io.StringIO(table.frame.to_csv(index=False)))):
        raise ConfigError(f"Cannot resume {out_dir}: the data in {cfg.data.path} no longer gives the folds of the "
                          "interrupted run (images were added, removed or relabelled). Start a new experiment.")
    rows, oof_parts, run_dirs, audits = [], [], [], []
    for k in range(folds):
        ftable, audit = fold_table(table, k, fp, cfg.data)
        audits.append(audit)
        try:
            row, preds, run_dir = _run_fold(cfg, k, folds, ftable, progress, mlflow)
        except TrainingInterrupted:  # the cross-validation folder resumes every fold, not the fold's own
            raise TrainingInterrupted(out_dir) from None
        rows.append(row)
        oof_parts.append(preds)
        run_dirs.append(run_dir)
    fold_frame = pd.DataFrame(rows)
    oof = pd.concat(oof_parts, ignore_index=True)
    oof.insert(0, "fold", oof.pop("fold"))
    names = [n for n in fold_metric_names(table.multi_label) if fold_frame[n].notna().any()]
    mean, sd = _fold_summary(fold_frame, names)
    extra: dict = {}
    if table.multi_label:
        pooled, extra["pooled_findings_auc"], extra["pooled_findings"] = pooled_findings_metrics(
            oof, table.classes, n_boot, cfg.train.seed)
    else:
        pooled = pooled_metrics(oof, table.classes, n_boot=n_boot, seed=cfg.train.seed)
    summary = {"k": folds, "seed": cfg.train.seed, "experiment": cfg.experiment, "task": table.task,
               "classes": table.classes, "n_images": int(len(oof)), "n_patients": int(patient_groups(oof).nunique()),
               "mean": mean, "sd": sd, "pooled": pooled, **extra,
               "pooled_ci_method": f"95% percentile bootstrap over patients, {n_boot} replicates",
               "patient_disjoint": True, "fold_audits": audits, "folds": rows,
               "note": OPTIMISTIC}
    write_json(cv.summary, summary)
    atomic_write_text(cv.fold_table, fold_frame.to_csv(index=False))
    atomic_write_text(cv.oof, oof.to_csv(index=False))
    log.info("cross-validation results in %s", out_dir)
    if mlflow is not None:
        from .tracking import log_cross_validation

        log_cross_validation(out_dir, mlflow, summary, cfg)
    return CVResult(out_dir, fold_frame, summary, oof, run_dirs)


def resume_cross_validation(cv_dir: str | Path, progress: bool = True, *, n_boot: int = 1000,
                            mlflow: str | Path | None = None) -> CVResult:
    """Continue the interrupted cross-validation in ``cv_dir`` (the folder holding ``cv_config.yaml``); ``mlflow`` as in :func:`cross_validate`.

    >>> cv = resume_cross_validation("workspace/recipes/4_head_ct")  # doctest: +SKIP
    """
    cv = CVDir(cv_dir)
    if not cv.is_cross_validation:
        raise FileNotFoundError(f"{cv.path} is not a cross-validation folder (no {cv.config.name}); pass the folder "
                                "that `medclass train --folds K` printed.")
    state = json.loads(cv.state.read_text()) if cv.state.is_file() else {}
    k = state.get("k") or int(pd.read_csv(cv.folds)["fold"].max()) + 1
    return cross_validate(load_config(cv.config), folds=k, progress=progress, n_boot=n_boot,
                          resume=True, mlflow=mlflow)


def is_cross_validation(path: str | Path) -> bool:
    """True when ``path`` is a cross-validation folder (``medclass train --resume`` uses this)."""
    return CVDir(path).is_cross_validation


def _fold_key(csv: Path | io.StringIO) -> pd.DataFrame:
    """Path, label and fold of every image of a ``folds.csv``, sorted by path, for comparing two fold assignments."""
    return pd.read_csv(csv, usecols=["path", "label", "fold"]).sort_values("path", ignore_index=True)


def _run_fold(cfg: RunConfig, k: int, folds: int, ftable, progress: bool,
              mlflow: str | Path | None) -> tuple[dict, pd.DataFrame, Path]:
    """Train fold ``k`` (or keep it when already finished, or continue it when interrupted) and predict its fold."""
    from ..evaluation.evaluate import evaluate
    from ..training.runner import train

    fold_cfg = dataclasses.replace(cfg, experiment=f"{cfg.experiment}-fold{k}")
    run = RunDir(fold_cfg.run_dir())
    run_dir = run.path
    n_train, n_val = (ftable.frame["split"] == "train").sum(), (ftable.frame["split"] == "val").sum()
    if run.is_finished:
        log.info("fold %d/%d: already trained in %s, kept", k + 1, folds, run_dir)
        epoch = read_meta(run.best).epoch
        best_epoch = -1 if epoch is None else epoch
    else:
        resumable = run.is_resumable
        log.info("fold %d/%d: %d training and %d validation images%s", k + 1, folds, n_train, n_val,
                 " (continuing the interrupted run)" if resumable else "")
        how = {"resume": run_dir} if resumable else {"cfg": fold_cfg, "table": ftable}
        if mlflow is not None:
            from .tracking import track_training

            result = track_training(how.pop("cfg", None), mlflow, progress=progress, **how)[0]
        else:
            result = train(progress=progress, **how)
        best_epoch = result.best_epoch
    ev = evaluate(run_dir, split="val", n_boot=0, cam_samples=0, report=False,
                  batch_size=cfg.train.batch_size, num_workers=cfg.train.num_workers)
    if ftable.multi_label:  # each finding has its own threshold (in the fold's checkpoint)
        m, threshold = ev.metrics["findings"]["summary"], np.nan
    else:
        m, threshold = ev.metrics["metrics"], ev.metrics["threshold"]
    val = ftable.subset("val")
    row = {"fold": k, "run_dir": str(run_dir), "images": len(val),
           "patients": int(patient_groups(val.frame).nunique()), "best_epoch": best_epoch, "threshold": threshold,
           **{name: m.get(name, np.nan) for name in fold_metric_names(ftable.multi_label)}}
    return row, ev.predictions.assign(fold=k), run_dir
