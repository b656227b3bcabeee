"""``evaluate(run)``: held-out metrics with patient-level CIs, a checked leak statement, predictions and a report.

Steps (compute first, plot second):

1. Load the checkpoint (model, classes, preprocessing, threshold, temperature) and pick the images:
   the run's own ``split.csv`` rows of ``split`` (default: the held-out test set), or an external
   data set (``data=PATH``) read with the run's data settings and preprocessed as the checkpoint says.
2. Check, not assume, that those images are held out: compare them with the run's training and
   validation rows by path, file hash, patient id and perceptual hash.
3. Predict (checkpoint temperature, optional TTA); decide at the checkpoint's threshold, chosen on
   validation and never re-tuned here.
4. Metrics with 95% bootstrap CIs resampling patients, curves, calibration, per-patient results.
5. External data: the run's own test evaluation beside it (differences with CIs, prevalence, calibration
   slope and in-the-large, operating points; :mod:`._external`); ``subgroups``: metrics per subgroup.
6. Pick examples (gallery, top losses, Grad-CAM cells), write ``metrics.json``, ``predictions.csv``,
   ``model_card.md`` and ``report.html`` (plots drawn from the computed results).

Example:
    >>> result = evaluate("workspace/default/resnet18-20261123-1301", n_boot=1000)  # doctest: +SKIP
    >>> result.metrics["ci"]["roc_auc"]                                            # doctest: +SKIP
    {'value': 0.961, 'low': 0.944, 'high': 0.975, 'n_valid': 1000}
    >>> result.files["report"]                                                     # doctest: +SKIP
    PosixPath('workspace/default/resnet18-20261123-1301/report.html')
"""
from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..artifacts import CheckpointMeta, EvalDir, RunDir, load_checkpoint
from ..config import DataConfig, RunConfig
from ..data.dataset import ImageDataset
from ..data.splits import patient_groups
from ..data.table import DataTable
from ..data.transforms import inference_transform
from ..errors import ConfigError, DatasetError
from ..inference import Predictions, predict_dataset
from ..metrics.bootstrap import bootstrap_metrics
from ..metrics.calibration import reliability_curve
from ..metrics.curves import score_curves
from ..metrics.metrics import UndefinedMetricWarning, classification_report_dict, compute_metrics, predict_labels
from ..metrics.patients import aggregate_by_patient, patient_errors
from ..metrics.subgroups import check_columns, parse_subgroups
from ..utils import atomic_write_text, torch_device, write_json
from ._examples import Example, load_views, per_image_loss, pick_cells, pick_gallery
from ._external import external_section, subgroups_section
from ._leakcheck import check_held_out
from ._model_card import model_card_markdown
from ._shift import shift_and_ood
from .report import write_report
from .result import EvaluationResult

log = logging.getLogger(__name__)

FORMAT = "medclass-evaluation/1"
GALLERY_SIZE = 16  # images in the prediction gallery
TOP_LOSSES = 12  # images in the top-losses grid


@dataclass
class _Run:
    checkpoint: Path
    run_dir: RunDir | None  # folder with split.csv (None for a bare checkpoint)
    model: torch.nn.Module
    meta: CheckpointMeta

    @property
    def config(self) -> RunConfig:
        return self.meta.run_config


def _load_run(run: str | Path, device: torch.device) -> _Run:
    path = Path(run)
    checkpoint = RunDir(path).best_checkpoint() if path.is_dir() else path
    model, meta = load_checkpoint(checkpoint, device=device)
    folder = RunDir(checkpoint.parent)
    meta.run_config.validate(devices=False)  # a stored config that no longer validates is refused here
    return _Run(checkpoint, folder if folder.split.is_file() else None, model, meta)


def _external_settings(run_data: DataConfig, data_settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """The data settings external data is read with: the run's (columns, image root, window...) without its
    label map and row filter, which describe the training source (the other data's are given as flags)."""
    return {**dataclasses.asdict(run_data), "label_map": {}, "where": "", **(data_settings or {})}


def _external_table(data: str | Path | DataConfig, r: _Run, split: str,
                    data_settings: Mapping[str, Any] | None = None) -> DataTable:
    """Rows of an external data set, labelled with the checkpoint's classes."""
    from ..data.sources import load_source

    if isinstance(data, DataConfig):
        dcfg = data
    else:
        base = {**_external_settings(r.config.data, data_settings), "path": str(data), "source": "auto",
                "classes": [], "positive": "", "limit_per_class": 0, "keep_source_split": True}  # checkpoint's order
        dcfg = RunConfig.from_dict({"data": base}).data
    table = load_source(dcfg)
    classes = list(r.meta.classes)
    if table.multi_label != r.meta.multi_label or (table.multi_label and table.classes != classes):
        raise DatasetError(f"{dcfg.path} is read as {table.task} data with classes {table.classes}, but the checkpoint "
                           f"{r.checkpoint} is {r.meta.task} with {classes}; read it with the same findings "
                           "(data.labels_from / data.label_columns / data.classes).")
    counts = table.frame["label"].value_counts()
    unknown = [] if table.multi_label else sorted(set(counts.index) - set(classes))
    if unknown:
        listed = ", ".join(f"{u!r} ({counts[u]} image(s))" for u in unknown)
        example = ",".join(f"{u}={classes[min(i, len(classes) - 1)]}" for i, u in enumerate(unknown[:2]))
        raise DatasetError(f"{dcfg.path}: labels {listed} do not map onto the model's classes {classes} (checkpoint "
                           f"{r.checkpoint}). Map each of them with --label-map, e.g. --label-map {example} "
                           "(LABEL=drop drops a label's rows).")
    if len(counts) and len(set(counts.index) & set(classes)) < len(classes):
        log.warning("%s holds only the classes %s of the model's %s: AUC and calibration are undefined on it.",
                    dcfg.path, sorted(counts.index), classes)
    present = sorted(set(table.frame["split"]) - {""})
    if present:
        if split not in present:
            raise DatasetError(f"{dcfg.path} has splits {present} but no {split!r} rows; pass --split with one of them.")
        table = table.subset(split)
    return DataTable(table.frame, classes, table.skipped, table.source, table.root, table.task)


def _tables(r: _Run, data: str | Path | DataConfig | None, split: str,
            data_settings: Mapping[str, Any] | None = None) -> tuple[DataTable, DataTable | None, str]:
    """(evaluated rows, reference rows for the leak check or None, name of the reference splits)."""
    classes = list(r.meta.classes)
    full = DataTable.from_csv(r.run_dir.split, classes) if r.run_dir is not None else None
    if data is None:
        if full is None:
            raise FileNotFoundError(f"{r.checkpoint} has no split.csv beside it, so its test split is unknown; "
                                    "pass the images to evaluate with --data PATH.")
        evaluated = full.subset(split)
        if not len(evaluated):
            counts = full.frame["split"].value_counts().to_dict()
            raise DatasetError(f"{r.run_dir.split} has no rows in split {split!r} (splits: {counts}).")
    else:
        evaluated = _external_table(data, r, split, data_settings)
        if not len(evaluated):
            raise DatasetError(f"No images to evaluate in {data} (split {split!r}).")
    if full is None:
        return evaluated, None, "training or validation"
    ref_splits = [s for s in ("train", "val") if not (data is None and s == split)]
    if data is None and split != "test":
        log.warning("Evaluating the %r split: it was used during training (model selection/threshold), so these "
                    "metrics are not held-out estimates.", split)
    reference = full.subset(full.frame["split"].isin(ref_splits).to_numpy())
    return evaluated, reference, " or ".join({"train": "training", "val": "validation"}[s] for s in ref_splits)


def _filters(run_data: DataConfig, data: str | Path | DataConfig | None,
             data_settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """The row filter and label map the evaluated rows were read with (the run's unless replaced)."""
    dcfg = data if isinstance(data, DataConfig) else run_data if data is None else RunConfig.from_dict(
        {"data": _external_settings(run_data, data_settings)}).data
    return {"where": dcfg.where, "label_map": dict(dcfg.label_map)}


def _default_out(r: _Run, data: str | Path | DataConfig | None, split: str) -> EvalDir:
    name = Path(data.path if isinstance(data, DataConfig) else data).stem if data is not None else None
    return (r.run_dir or RunDir(r.checkpoint.parent)).evaluation(name, split)


def _groups(patients: list[str]) -> np.ndarray:
    return patient_groups(pd.DataFrame({"patient": patients})).to_numpy()


def _metrics(pred: Predictions, classes: list[str], threshold: float, n_boot: int, seed: int = 0) -> dict:
    """Image-level metrics, CIs resampling patients, report, curves, calibration."""
    y, P = pred.labels, pred.probs
    out = {"metrics": compute_metrics(y, P, threshold, classes)}
    decided = predict_labels(P, threshold)
    out["classification_report"] = classification_report_dict(y, decided, classes)
    if n_boot > 0:
        out["ci"] = bootstrap_metrics(y, P, _groups(pred.patients), threshold=threshold, n_boot=n_boot, seed=seed)
        out["ci_method"] = (f"95% percentile bootstrap, {n_boot} replicates resampling patients "
                            "(images without a patient id count as their own patient)")
    out["log_loss"] = float(per_image_loss(P, y).mean())
    out["curves"] = score_curves(y, P, classes)
    out["calibration"] = reliability_curve(y, P)
    if len(classes) == 2:
        m = out["metrics"]
        fpr, tpr = 1.0 - m["specificity"], m["sensitivity"]
        out["operating_point"] = {"threshold": threshold, "sensitivity": m["sensitivity"], "specificity": m["specificity"],
                                  "ppv": m["ppv"], "npv": m["npv"], "fpr": fpr, "tpr": tpr, "recall": tpr,
                                  "precision": m["ppv"]}
    return out


def _patient_results(pred: Predictions, classes: list[str], threshold: float, frames: np.ndarray,
                     n_boot: int = 0, seed: int = 0) -> tuple[dict, pd.DataFrame]:
    """Patient-level metrics (with bootstrap CIs over patients) for mean and max aggregation, each patient's
    wrong images, and a per-patient table."""
    groups = _groups(pred.patients)
    decided = predict_labels(pred.probs, threshold)
    out: dict = {"label_rule": "any positive image" if len(classes) == 2 else "most frequent image label",
                 "images_without_patient_count_as_own_patient": True}
    table = pd.DataFrame()
    for how in ("mean", "max"):
        ids, y_pat, P_pat = aggregate_by_patient(pred.labels, pred.probs, groups, how=how)
        full = compute_metrics(y_pat, P_pat, threshold, classes)
        out[how] = {k: v for k, v in full.items() if k != "per_class"}
        if n_boot > 0:  # one row per patient: resampling rows resamples patients
            out.setdefault("ci", {})[how] = bootstrap_metrics(y_pat, P_pat, None, threshold=threshold,
                                                              n_boot=n_boot, seed=seed)
        table["patient"], table["label"] = ids, [classes[i] for i in y_pat]
        for j, c in enumerate(classes):
            table[f"{how}_prob_{c}"] = P_pat[:, j]
        table[f"{how}_predicted"] = [classes[i] for i in predict_labels(P_pat, threshold)]
    table.insert(2, "n_images", pd.Series(groups).value_counts().reindex(table["patient"]).to_numpy())
    out["n_patients"] = int(len(table))
    out["errors"] = patient_errors(pred.paths, groups, pred.labels, decided, pred.probs, order=frames,
                                   class_names=classes)
    return out, table


def _prediction_frame(pred: Predictions, table: DataTable, classes: list[str], threshold: float,
                      loss: np.ndarray) -> pd.DataFrame:
    decided = predict_labels(pred.probs, threshold)
    df = pd.DataFrame({"path": pred.paths, "frame": table.frame["frame"].to_numpy()[pred.indices],
                       "patient": pred.patients, "label": [classes[i] for i in pred.labels]})
    for column in table.metadata_columns():  # sex, age, view, site... carried from the manifest
        df[column] = table.frame[column].to_numpy()[pred.indices]
    for j, c in enumerate(classes):
        df[f"prob_{c}"] = pred.probs[:, j]
    df["predicted"] = [classes[i] for i in decided]
    df["correct"] = decided == pred.labels
    df["loss"] = loss
    return df


def _examples(rows: np.ndarray, df: pd.DataFrame, ds: ImageDataset, indices: np.ndarray, classes: list[str],
              probs: np.ndarray) -> tuple[list[Example], torch.Tensor | None]:
    views, inputs, kept = load_views(ds, indices[rows])
    out = []
    for view, pos in zip(views, kept):
        row = df.iloc[int(rows[pos])]
        p = probs[int(rows[pos])]
        out.append(Example(row["path"], row["patient"], row["label"], row["predicted"],
                           float(p[classes.index(row["predicted"])]), float(p[classes.index(row["label"])]),
                           float(row["loss"]), view))
    return out, inputs


def _cam_examples(r: _Run, df: pd.DataFrame, ds: ImageDataset, pred: Predictions, classes: list[str],
                  per_cell: int) -> list[Example]:
    """Grad-CAM overlays (explaining the predicted class) for sampled correct and wrong images of each class."""
    from ..explain.cam import compute_cam, overlay_cam

    device = next(r.model.parameters()).device
    out = []
    for _, _, rows in pick_cells(pred.labels, df["correct"].to_numpy(), len(classes), per_cell):
        if not len(rows):
            continue
        examples, inputs = _examples(rows, df, ds, pred.indices, classes, pred.probs)
        if inputs is None:
            continue
        targets = [classes.index(ex.predicted) for ex in examples]
        cams = compute_cam(r.model, inputs.to(device), target_class=targets, method=r.config.eval.cam_method,
                           target_layer=r.config.model.target_layer or None)
        for ex, cam in zip(examples, cams):
            ex.overlay, ex.cam_class = overlay_cam(ex.image, cam), ex.predicted
        out.extend(examples)
    return out


def _run_files(run: RunDir | None) -> tuple[dict | None, pd.DataFrame | None, dict | None]:
    """The run's baseline, training history and threshold choice when present."""
    if run is None:
        return None, None, None
    history = pd.read_csv(run.history) if run.history.is_file() else None
    return run.read_json(run.baseline), history, run.read_json(run.threshold)


def _fingerprint_cache(run: RunDir | None) -> Path | None:
    """The workspace fingerprint cache that training filled (``<workspace>/.cache``), when it exists."""
    if run is None:
        return None
    cache = run.path.resolve().parents[1] / ".cache"
    return cache if cache.is_dir() else None


def evaluate(run: str | Path, data: str | Path | DataConfig | None = None, split: str = "test",
             out: str | Path | None = None, n_boot: int = 1000, cam_samples: int = 4, tta: bool | None = None,
             batch_size: int = 64, num_workers: int = 2, report: bool = True, device: str | None = None,
             data_settings: Mapping[str, Any] | None = None, subgroups: str = "",
             recalibrate: bool = False) -> EvaluationResult:
    """Evaluate a run folder (or checkpoint) on its held-out split or on external data; write metrics and a report.

    Args:
        run: a run folder (``best.safetensors`` and ``split.csv``) or a checkpoint file.
        data: external data (a path read with the run's data settings, or a :class:`DataConfig`); all of
            its rows, or its ``split`` rows when it has splits. ``None``: the run's own ``split`` rows.
        split: which split to evaluate (``test`` is the only held-out one of a run).
        out: output folder (default: the run folder for its test split, else ``<run>/evaluation-<name>-<split>``).
        n_boot: bootstrap replicates for the CIs (0 = no CIs).
        cam_samples: Grad-CAM images per (class, correct/wrong) cell (0 = none).
        tta: horizontal-flip test-time augmentation (``None`` = the run's ``eval.tta``).
        batch_size, num_workers: inference loader settings.
        report: also write ``report.html``.
        device: ``cuda``/``cpu`` (default: CUDA when available).
        data_settings: ``data.*`` fields that replace the run's when reading external ``data`` (e.g.
            ``{"image_root": ..., "label_map": "covid=pneumonia", "where": "view == 'PA'"}``).
        subgroups: metrics per subgroup of metadata columns, e.g. ``"sex,age:18:65,view"`` (numeric columns
            binned at the cut points: ``<18``, ``18-65``, ``>=65``); in ``metrics["subgroups"]``.
        recalibrate: external data only: also fit a threshold and a temperature on a patient-disjoint half of
            it and evaluate them on the other half (declared as such in ``metrics["external"]``).

    Example:
        >>> res = evaluate("workspace/default/simple_cnn-1", n_boot=200, cam_samples=2)  # doctest: +SKIP
        >>> res.metrics["leak_check"]["statement"]                                       # doctest: +SKIP
        'No evaluated image or patient was used in training or validation: checked 600 images / 190 patients ...'
    """
    start = time.perf_counter()
    dev = torch_device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    r = _load_run(run, dev)
    classes, pre = list(r.meta.classes), r.meta.preprocessing
    threshold, temperature = r.meta.threshold, r.meta.temperature
    tta = r.config.eval.tta if tta is None else tta
    if data_settings and data is None:
        raise ConfigError("Data settings (image root, columns, --where, --label-map) apply to external data given "
                          "with --data; the run's own split was read with its recorded config.")
    if recalibrate and (data is None or len(classes) != 2):
        raise ConfigError("--recalibrate fits a threshold and a binary temperature on external data: it needs a "
                          f"two-class model (this one has {len(classes)}) and --data; the run's own threshold and "
                          "temperature were chosen on its validation split.")
    if data is not None and r.run_dir is not None and not EvalDir(r.run_dir.path).metrics.is_file():
        log.info("No internal test evaluation in %s yet: evaluating the run's own test split first, to compare the "
                 "external data with it.", r.run_dir.path)
        try:
            evaluate(r.run_dir.path, n_boot=n_boot, cam_samples=cam_samples, tta=tta, batch_size=batch_size,
                     num_workers=num_workers, report=report, device=device)
        except DatasetError as e:  # e.g. a run without test rows: the external section says there is no comparison
            log.warning("The run's own test split could not be evaluated (%s).", e)
    evaluated, reference, ref_names = _tables(r, data, split, data_settings)
    specs = parse_subgroups(subgroups)
    metadata = evaluated.metadata_columns()
    check_columns(specs, metadata)  # before any prediction
    leak, summary = check_held_out(evaluated, reference, ref_names=ref_names, window=pre.window,
                                   near_duplicates=r.config.data.near_duplicates, cache_dir=_fingerprint_cache(r.run_dir))

    if r.meta.multi_label:
        return _evaluate_findings(r, evaluated, leak, summary, data, split, out, data_settings, n_boot=n_boot,
                                  cam_samples=cam_samples, tta=tta, batch_size=batch_size, num_workers=num_workers,
                                  report=report, start=start)
    ds = ImageDataset(evaluated, classes=classes, transform=inference_transform(pre), window=pre.window)
    pred = predict_dataset(r.model, ds, batch_size=batch_size, num_workers=num_workers, temperature=temperature, tta=tta,
                           features=True)
    if not len(pred.labels):
        raise DatasetError(f"None of the {len(evaluated)} images to evaluate could be read; see the warnings above.")
    loss = per_image_loss(pred.probs, pred.labels)
    df = _prediction_frame(pred, evaluated, classes, threshold, loss)
    ood, shift, df["ood_score"] = shift_and_ood(r.model, r.meta, r.checkpoint, r.run_dir, evaluated, pred, data is not None,
                                                batch_size=batch_size, num_workers=num_workers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # NaN metrics are reported as null
        computed = _metrics(pred, classes, threshold, n_boot)
        patients, patient_table = _patient_results(pred, classes, threshold, df["frame"].to_numpy(), n_boot)
        extra = {}  # the external validation and subgroup sections (medclass.evaluation._external)
        if data is not None:
            extra["external"] = external_section(pred.labels, pred.probs, _groups(pred.patients), classes, threshold,
                                                 r.meta.threshold_rule, r.run_dir, n_boot, recalibrate)
        if specs:
            extra["subgroups"] = subgroups_section(specs, pred.labels, pred.probs, _groups(pred.patients), df[metadata],
                                                   classes, threshold, n_boot)
    baseline, history, chosen = _run_files(r.run_dir)

    gallery, _ = _examples(pick_gallery(df["correct"].to_numpy(), GALLERY_SIZE), df, ds, pred.indices, classes, pred.probs)
    top, _ = _examples(np.argsort(-loss, kind="stable")[:TOP_LOSSES], df, ds, pred.indices, classes, pred.probs)
    cams = _cam_examples(r, df, ds, pred, classes, cam_samples) if cam_samples > 0 else []

    metrics = {
        "format": FORMAT,
        "checkpoint": str(r.checkpoint), "run": str(r.run_dir) if r.run_dir else None,
        "model": dataclasses.asdict(r.meta.model), "classes": classes, "preprocessing": pre.to_dict(),
        "threshold": threshold, "threshold_rule": r.meta.threshold_rule, "threshold_on_validation": chosen,
        "temperature": temperature, "tta": bool(tta),
        "data": {"source": "run split" if data is None else "external", "path": str(data) if data is not None else
                 str(r.run_dir.split), "split": split, "n_predicted": int(len(pred.labels)),
                 "unreadable_at_prediction": list(pred.skipped), **summary},
        "leak_check": leak, "contaminated": leak.get("clean") is False,
        **computed, "patients": patients,
        "top_losses": df.iloc[np.argsort(-loss, kind="stable")[:TOP_LOSSES]].to_dict(orient="records"),
        "baseline": baseline, "checkpoint_metrics": dict(r.meta.metrics),
        "training": {"history": history.to_dict(orient="list") if history is not None else None,
                     "best_epoch": r.meta.epoch, "max_epochs": r.config.train.epochs,
                     "early_stopping": r.config.train.early_stopping, "monitor": r.config.train.monitor},
        "filters": {**_filters(r.config.data, data, data_settings), "metadata": metadata},
        "versions": dict(r.meta.versions), "cam_method": r.config.eval.cam_method, "ood": ood, "shift": shift, **extra,
    }
    ev = EvalDir(Path(out)) if out is not None else _default_out(r, data, split)
    out_dir = ev.path
    out_dir.mkdir(parents=True, exist_ok=True)
    result = EvaluationResult(metrics, out_dir, predictions=df,
                              examples={"gallery": gallery, "top_losses": top, "cam": cams}, history=history)
    atomic_write_text(ev.predictions, df.to_csv(index=False))
    result.files["predictions"] = ev.predictions
    atomic_write_text(ev.patients, patient_table.to_csv(index=False))
    result.files["patients"] = ev.patients
    metrics["wall_time_s"] = round(time.perf_counter() - start, 2)
    write_json(ev.metrics, metrics)
    result.files["metrics"] = ev.metrics
    result.model_card = model_card_markdown(r.meta, metrics, r.run_dir)
    atomic_write_text(ev.model_card, result.model_card)
    result.files["model_card"] = ev.model_card
    if report:
        result.files["report"] = write_report(result, ev.report)
    log.info("evaluation of %s on %d images written to %s (%.1f s)", r.checkpoint, len(df), out_dir,
             time.perf_counter() - start)
    return result


def _evaluate_findings(r: _Run, evaluated: DataTable, leak: dict, summary: dict, data, split: str, out,
                       data_settings: Mapping[str, Any] | None, **kw: Any) -> EvaluationResult:
    """A multi-label checkpoint: the entries every evaluation shares, then :mod:`._multilabel`."""
    from ._multilabel import FindingsRun, evaluate_findings

    baseline, history, chosen = _run_files(r.run_dir)
    base = {"checkpoint": str(r.checkpoint), "run": str(r.run_dir) if r.run_dir else None,
            "model": dataclasses.asdict(r.meta.model), "classes": list(r.meta.classes),
            "preprocessing": r.meta.preprocessing.to_dict(), "threshold_rule": r.meta.threshold_rule,
            "threshold_on_validation": chosen, "tta": bool(kw["tta"]),
            "data": {"source": "run split" if data is None else "external",
                     "path": str(data) if data is not None else str(r.run_dir.split), "split": split, **summary},
            "leak_check": leak, "contaminated": leak.get("clean") is False, "baseline": baseline,
            "checkpoint_metrics": dict(r.meta.metrics),
            "training": {"history": history.to_dict(orient="list") if history is not None else None,
                         "best_epoch": r.meta.epoch, "max_epochs": r.config.train.epochs,
                         "monitor": r.config.train.monitor},
            "filters": {**_filters(r.config.data, data, data_settings), "metadata": evaluated.metadata_columns()},
            "versions": dict(r.meta.versions), "cam_method": r.config.eval.cam_method}
    ev = EvalDir(Path(out)) if out is not None else _default_out(r, data, split)
    run = FindingsRun(r.model, r.meta, str(r.checkpoint), r.config.eval.cam_method, r.config.model.target_layer,
                      r.run_dir, data is not None)
    return evaluate_findings(run, evaluated, ev, base=base, **kw)


__all__ = ["EvaluationResult", "evaluate"]
