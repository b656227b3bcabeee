"""``evaluate(run)``: held-out metrics with patient-level CIs, a checked leak statement, predictions and a report.

One path for every task (compute first, plot second):

1. Load the checkpoint (model, classes, preprocessing, threshold(s), temperature) and pick the images:
   the run's own ``split.csv`` rows of ``split`` (default: the held-out test set), or an external
   data set (``data=PATH``) read with the run's data settings and preprocessed as the checkpoint says.
2. Check, not assume, that those images are held out: compare them with the run's training and
   validation rows by path, file hash, patient id and perceptual hash.
3. Predict once (checkpoint temperature, optional TTA); decide at the checkpoint's threshold(s), chosen on
   validation and never re-tuned here.
4. Run the evaluation sections over that one prediction result (:mod:`.sections`): internal metrics,
   patients, decision (thresholds, rare findings), external comparison, subgroups, shift/OOD, examples.
   Each says whether it applies; ``metrics.json["sections"]`` records which ran and why not.
5. Write ``metrics.json``, ``predictions.csv``, the sections' files (``patients.csv``), ``model_card.md`` and
   ``report.html`` (each section renders its own part).

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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ..artifacts import EvalDir
from ..config import DataConfig
from ..data._csv import csv_image_root
from ..data.dataset import ImageDataset
from ..data.table import DataTable
from ..data.transforms import inference_transform
from ..errors import ConfigError, DatasetError
from ..inference import Predictions, predict_dataset
from ..metrics.metrics import predict_labels
from ..metrics.subgroups import check_columns, parse_subgroups
from ..utils import atomic_write_text, torch_device, write_json
from ._examples import per_image_loss
from ._leakcheck import check_held_out
from ._loading import LoadedRun, default_out, filters, fingerprint_cache, load_run, load_tables, run_files
from ._model_card import model_card_markdown
from ._multilabel import prediction_frame
from .report import write_report
from .result import EvaluationResult
from .sections import SECTIONS, Context, Options, run_sections
from .sections.baselines import check_baseline_columns, parse_baselines, training_rows
from .sections.shortcuts import parse_shortcuts

log = logging.getLogger(__name__)

FORMAT = "medclass-evaluation/1"


def _single_label_frame(pred: Predictions, table: DataTable, classes: list[str], threshold: float) -> pd.DataFrame:
    """``predictions.csv`` of a single-label model: label, probabilities, decision, correct, loss per image."""
    decided = predict_labels(pred.probs, threshold)
    df = pd.DataFrame({"path": pred.paths, "frame": table.frame["frame"].to_numpy()[pred.indices],
                       "patient": pred.patients, "label": [classes[i] for i in pred.labels]})
    for column in table.metadata_columns():  # sex, age, view, site... carried from the manifest
        df[column] = table.frame[column].to_numpy()[pred.indices]
    for j, c in enumerate(classes):
        df[f"prob_{c}"] = pred.probs[:, j]
    df["predicted"] = [classes[i] for i in decided]
    df["correct"] = decided == pred.labels
    df["loss"] = per_image_loss(pred.probs, pred.labels)
    return df


def _mask_settings(r: LoadedRun, data: Any, data_settings: Mapping[str, Any] | None) -> tuple[str, str]:
    """The lesion-mask column (``--mask-column``, else the run's ``data.mask_column``) and the folder its relative
    paths are read from (the evaluated CSV's, else the run's data source's)."""
    column = (data_settings or {}).get("mask_column") or r.config.data.mask_column
    dcfg = data if isinstance(data, DataConfig) else r.config.data
    source = dcfg.path if data is None or isinstance(data, DataConfig) else str(data)
    image_root = (data_settings or {}).get("image_root") or dcfg.image_root
    return column, str(csv_image_root(source, image_root)) if column else ""


def _predict(r: LoadedRun, evaluated: DataTable, options: Options, tta: bool) -> Context:
    """The one prediction result every section reads."""
    meta = r.meta
    pre = meta.preprocessing
    ds = ImageDataset(evaluated, classes=list(meta.classes), transform=inference_transform(pre), window=pre.window)
    pred = predict_dataset(r.model, ds, batch_size=options.batch_size, num_workers=options.num_workers,
                           temperature=meta.temperature, tta=tta, multi_label=meta.multi_label, features=True,
                           lowpass=meta.ood.lowpass if meta.ood is not None else 1.0)
    if not len(pred.labels):
        raise DatasetError(f"None of the {len(evaluated)} images to evaluate could be read; see the warnings above.")
    frame = (prediction_frame(pred, evaluated, meta) if meta.multi_label
             else _single_label_frame(pred, evaluated, list(meta.classes), meta.threshold))
    return Context(r, evaluated, ds, pred, frame, options)


def _header(ctx: Context, data: Any, split: str, leak: dict, summary: dict, data_settings: Mapping[str, Any] | None,
            tta: bool) -> dict[str, Any]:
    """The entries every evaluation has, whatever its sections: what was evaluated, how, and the run's records."""
    r = ctx.run
    baseline, history, _ = run_files(r.run_dir)
    out = {"format": FORMAT, "task": r.meta.task,
           "checkpoint": str(r.checkpoint), "run": str(r.run_dir) if r.run_dir else None,
           "model": dataclasses.asdict(r.meta.model), "classes": ctx.classes, "preprocessing": r.meta.preprocessing.to_dict(),
           "tta": bool(tta),
           "data": {"source": "run split" if data is None else "external", "path": str(data) if data is not None else
                    str(r.run_dir.split), "split": split, "n_predicted": int(len(ctx.pred.labels)),
                    "unreadable_at_prediction": list(ctx.pred.skipped), **summary},
           "leak_check": leak, "contaminated": leak.get("clean") is False,
           "baseline": baseline, "checkpoint_metrics": dict(r.meta.metrics),
           "training": {"history": history.to_dict(orient="list") if history is not None else None,
                        "best_epoch": r.meta.epoch, "max_epochs": r.config.train.epochs,
                        "early_stopping": r.config.train.early_stopping, "monitor": r.config.train.monitor},
           "filters": {**filters(r.config.data, data, data_settings), "metadata": ctx.metadata},
           "versions": dict(r.meta.versions), "cam_method": r.config.eval.cam_method}
    if ctx.multi_label:
        out["uncertain"] = r.config.data.uncertain
    return out


def _check_flags(r: LoadedRun, data: Any, data_settings: Mapping[str, Any] | None, recalibrate: bool) -> None:
    # --mask-column names a column of the evaluated rows (which rows are read does not change): allowed on the run's split
    if data_settings and set(data_settings) - {"mask_column"} and data is None:
        raise ConfigError("Data settings (image root, columns, --where, --label-map) apply to external data given "
                          "with --data; the run's own split was read with its recorded config (--mask-column may be "
                          "given for it).")
    if recalibrate and (data is None or r.meta.multi_label or len(r.meta.classes) != 2):
        raise ConfigError("--recalibrate fits a threshold and a binary temperature on external data: it needs a "
                          f"two-class single-label model (this one is {r.meta.task} with {len(r.meta.classes)} "
                          "classes) and --data; the run's own threshold and temperature were chosen on its validation split.")


def _write(ctx: Context, metrics: dict, ev: EvalDir, report: bool, start: float) -> EvaluationResult:
    """predictions.csv, the sections' own files, metrics.json, model_card.md and report.html."""
    ev.path.mkdir(parents=True, exist_ok=True)
    examples = {k: v for res in ctx.results.values() for k, v in getattr(res, "examples", {}).items()}
    history = run_files(ctx.run.run_dir)[1]
    result = EvaluationResult(metrics, ev.path, predictions=ctx.frame, examples=examples, history=history)
    atomic_write_text(ev.predictions, ctx.frame.to_csv(index=False))
    result.files["predictions"] = ev.predictions
    for section in SECTIONS:
        if section.name in ctx.results:
            result.files.update(section.write(ctx.results[section.name], ev))
    metrics["wall_time_s"] = round(time.perf_counter() - start, 2)
    write_json(ev.metrics, metrics)
    result.files["metrics"] = ev.metrics
    notes = [line for s in SECTIONS if s.name in ctx.results for line in s.card(metrics)]
    result.model_card = model_card_markdown(ctx.run.meta, metrics, ctx.run.run_dir, notes)
    atomic_write_text(ev.model_card, result.model_card)
    result.files["model_card"] = ev.model_card
    if report:
        result.files["report"] = write_report(result, ev.report)
    return result


def evaluate(run: str | Path, data: str | Path | DataConfig | None = None, split: str = "test",
             out: str | Path | None = None, n_boot: int = 1000, cam_samples: int = 4, tta: bool | None = None,
             batch_size: int = 64, num_workers: int = 2, report: bool = True, device: str | None = None,
             data_settings: Mapping[str, Any] | None = None, subgroups: str = "",
             recalibrate: bool = False, baselines: str = "", shortcuts: str = "all",
             shortcut_images: int = 200) -> EvaluationResult:
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
        recalibrate: external data, binary models: also fit a threshold and a temperature on a patient-disjoint half
            of it and evaluate them on the other half (declared as such in ``metrics["external"]``).
        baselines: metadata columns, e.g. ``"view,sex,age"``: a logistic regression on them alone, fitted on the run's
            training rows, against the image model with paired patient-bootstrap CIs; in ``metrics["baselines"]``.
        shortcuts: shortcut checks to run (:mod:`.sections.shortcuts`): ``occlusion`` (border-only / centre-only
            AUC), ``cam`` (share of Grad-CAM in the border band or mask), comma-separated; ``"all"`` or ``"none"``.
        shortcut_images: Grad-CAM maps (a seeded sample of the evaluated images) for the ``cam`` check.
        (the mask column is the data flag ``--mask-column`` in ``data_settings``, else the run's ``data.mask_column``: a
            column with one mask image per row, lungs or lesion; it adds mask-only / mask-removed occlusion and the
            CAM share and peak inside the mask; volumes: the ``cam_location`` section.)

    Example:
        >>> res = evaluate("workspace/default/simple_cnn-1", n_boot=200, cam_samples=2)  # doctest: +SKIP
        >>> res.metrics["leak_check"]["statement"]                                       # doctest: +SKIP
        'No evaluated image or patient was used in training or validation: checked 600 images / 190 patients ...'
    """
    start = time.perf_counter()
    r = load_run(run, torch_device(device or ("cuda" if torch.cuda.is_available() else "cpu")))
    tta = r.config.eval.tta if tta is None else tta
    _check_flags(r, data, data_settings, recalibrate)
    if data is not None and r.run_dir is not None and not EvalDir(r.run_dir.path).metrics.is_file():
        log.info("No internal test evaluation in %s yet: evaluating the run's own test split first, to compare the "
                 "external data with it.", r.run_dir.path)
        try:
            evaluate(r.run_dir.path, n_boot=n_boot, cam_samples=cam_samples, tta=tta, batch_size=batch_size,
                     num_workers=num_workers, report=report, device=device, shortcuts=shortcuts,
                     shortcut_images=shortcut_images)
        except DatasetError as e:  # e.g. a run without test rows: the external section says there is no comparison
            log.warning("The run's own test split could not be evaluated (%s).", e)
    evaluated, reference, ref_names = load_tables(r, data, split, data_settings)
    specs = parse_subgroups(subgroups)
    check_columns(specs, evaluated.metadata_columns())  # before any prediction
    baseline_columns = parse_baselines(baselines)
    if baseline_columns:
        train_rows = training_rows(r)
        check_baseline_columns(baseline_columns, evaluated.metadata_columns(),
                               train_rows.metadata_columns() if train_rows is not None else None)
    checks = parse_shortcuts(shortcuts)
    pre = r.meta.preprocessing
    leak, summary = check_held_out(evaluated, reference, ref_names=ref_names, window=pre.window,
                                   near_duplicates=r.config.data.near_duplicates, cache_dir=fingerprint_cache(r.run_dir))
    mask_column, mask_root = _mask_settings(r, data, data_settings)
    options = Options(n_boot=n_boot, cam_samples=cam_samples, subgroups=tuple(specs), baselines=baseline_columns,
                      recalibrate=recalibrate, external=data is not None, batch_size=batch_size,
                      num_workers=num_workers, tta=tta, shortcuts=checks, shortcut_images=shortcut_images,
                      mask_column=mask_column, mask_root=mask_root)
    ctx = _predict(r, evaluated, options, tta)
    computed, status = run_sections(ctx, SECTIONS)
    metrics = {**_header(ctx, data, split, leak, summary, data_settings, tta), **computed, "sections": status}
    ev = EvalDir(Path(out)) if out is not None else default_out(r, data, split)
    result = _write(ctx, metrics, ev, report, start)
    log.info("evaluation of %s on %d images written to %s (%.1f s)", r.checkpoint, len(ctx.frame), ev.path,
             time.perf_counter() - start)
    return result


__all__ = ["EvaluationResult", "evaluate"]
