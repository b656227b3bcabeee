"""The run folder and its files: every file name of a run (and of a cross-validation) is spelled here.

A run folder is ``workspace/<project>/<experiment>/`` (docs/architecture.md, "Run folder"). Code
that reads or writes one asks :class:`RunDir` for the path (``run.split``, ``run.best``), and for
its state (:attr:`RunDir.is_finished`, :attr:`RunDir.is_resumable`, :meth:`RunDir.best_checkpoint`)
instead of guessing it from which files exist. An evaluation writes into an :class:`EvalDir`, a
cross-validation into a :class:`CVDir`, a comparison into a :class:`CompareDir`, a study into a :class:`TuneDir`.

Example:
    >>> run = RunDir("workspace/default/resnet18")
    >>> run.best.name, run.resume_state.relative_to(run.path).as_posix()
    ('best.safetensors', 'checkpoints/last.ckpt')
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import overload

from ..errors import CheckpointError
from ..utils import write_json


class _File:
    """A file (or sub-folder) of a folder class: ``folder.<attribute>`` is ``folder.path / name``."""

    def __init__(self, name: str, doc: str) -> None:
        self.name = name
        self.__doc__ = doc

    @overload
    def __get__(self, folder: None, owner: type) -> "_File": ...

    @overload
    def __get__(self, folder: object, owner: type) -> Path: ...

    def __get__(self, folder: object, owner: type) -> "Path | _File":
        return self if folder is None else folder.path / self.name  # type: ignore[attr-defined]


@dataclass(frozen=True)
class EvalDir:
    """The files one evaluation writes (the run folder itself for the run's own test split)."""

    path: Path

    metrics = _File("metrics.json", "Every number of the evaluation (format medclass-evaluation/1).")
    predictions = _File("predictions.csv", "One row per evaluated image.")
    patients = _File("patients.csv", "One row per patient (aggregated probabilities).")
    cam_location = _File("cam_location.csv", "Volumes with a lesion mask: share of the Grad-CAM inside it, peak inside.")
    report = _File("report.html", "The self-contained report (report.pdf beside it on request).")
    model_card = _File("model_card.md", "The model card of the evaluated checkpoint (Markdown).")


class RunDir:
    """One training run's folder: its file names and its state.

    Files: ``config.yaml``, ``split.csv``, ``classes.json``, ``audit.json``, ``quality.json``,
    ``split_summary.json``, ``metrics.csv``, ``baseline.json``, ``best.safetensors``,
    ``last.safetensors``, ``checkpoints/last.ckpt``, ``threshold.json``, ``train.log``,
    ``skipped_during_training.json``, ``data_check/``, ``train.lock`` and the evaluation files of :class:`EvalDir`.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # -- file names -------------------------------------------------------------------------------
    config = _File("config.yaml", "The run's RunConfig (YAML).")
    split = _File("split.csv", "The prepared table with its train/val/test split.")
    classes = _File("classes.json", "Class names in label order (for resume).")
    audit = _File("audit.json", "Leak audit before/after the split.")
    quality = _File("quality.json", "Images dropped by the quality filter.")
    split_summary = _File("split_summary.json", "Images/patients per split and class.")
    history = _File("metrics.csv", "Per-epoch training metrics.")
    baseline = _File("baseline.json", "Validation metrics of the untrained model.")
    best = _File("best.safetensors", "Checkpoint of the best epoch.")
    last = _File("last.safetensors", "Checkpoint of the last epoch.")
    checkpoints = _File("checkpoints", "Folder of Lightning's resume state.")
    resume_state = _File("checkpoints/last.ckpt", "Lightning's full state (resume).")
    previous_state = _File("checkpoints/previous.ckpt", "The resume state that last.ckpt replaced.")
    threshold = _File("threshold.json", "Threshold/temperature chosen on validation.")
    log = _File("train.log", "Log of the run.")
    skipped = _File("skipped_during_training.json", "Files unreadable in training.")
    data_check = _File("data_check", "Folder of the quickstart's data check.")
    lock = _File("train.lock", "Locked by the `medclass train` writing the run (pid); empty after a clean end.")

    #: files that describe a finished run (logged to MLflow beside the best checkpoint)
    RECORDS = ("config", "history", "split", "classes", "baseline", "threshold", "audit")

    # -- state ------------------------------------------------------------------------------------
    @property
    def is_run(self) -> bool:
        """The folder holds a run (its ``config.yaml``)."""
        return self.config.is_file()

    @property
    def is_finished(self) -> bool:
        """Training ended and the decision threshold was chosen (``threshold.json`` is written last)."""
        return self.threshold.is_file() and self.best.is_file()

    @property
    def is_resumable(self) -> bool:
        """Training has saved its state at least once, so ``train --resume`` can continue it.

        A finished run is resumable too: continuing it trains no further epoch.
        """
        return self.is_run and self.resume_state.is_file()

    def best_checkpoint(self) -> Path:
        """``best.safetensors``, else ``last.safetensors``.

        Raises:
            CheckpointError: the run has not finished an epoch yet.
        """
        for path in (self.best, self.last):
            if path.is_file():
                return path
        raise CheckpointError(f"Run folder {self.path} has no {self.best.name} or {self.last.name}; "
                              "has it trained an epoch?")

    def evaluation(self, name: str | None = None, split: str = "test") -> EvalDir:
        """Where an evaluation writes: the run folder for its own test split, else ``evaluation-<name>-<split>``."""
        if name is None and split == "test":
            return EvalDir(self.path)
        return EvalDir(self.path / f"evaluation-{name or 'run'}-{split}")

    def records(self) -> list[Path]:
        """The existing record files of the run and of its evaluation (what tracking logs)."""
        ev = self.evaluation()
        paths = [getattr(self, name) for name in self.RECORDS] + [ev.metrics, ev.predictions, ev.report]
        return [p for p in paths if p.is_file()]

    # -- small records ----------------------------------------------------------------------------
    def read_classes(self) -> list[str]:
        """Class names of the run (``classes.json``)."""
        return list(json.loads(self.classes.read_text()))

    def write_classes(self, classes: list[str]) -> None:
        """Record the class names atomically (resume needs them)."""
        write_json(self.classes, list(classes))

    def read_json(self, path: Path) -> dict | None:
        """One of the run's JSON records (``run.baseline``, ``run.threshold``...), or None when absent."""
        return json.loads(path.read_text()) if path.is_file() else None


class CVDir:
    """A cross-validation's folder: its own files, beside one run folder per fold.

    Files: ``cv_config.yaml``, ``cv_state.json``, ``folds.csv``, ``quality.json``, ``audit.json``,
    ``cv_summary.json``, ``cv_folds.csv``, ``oof_predictions.csv``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    config = _File("cv_config.yaml", "The RunConfig of every fold.")
    state = _File("cv_state.json", "The number of folds.")
    folds = _File("folds.csv", "The table with its fold column.")
    quality = _File("quality.json", "Images dropped by the quality filter.")
    audit = _File("audit.json", "Duplicates linked before the folds were drawn.")
    summary = _File("cv_summary.json", "Mean, SD and pooled metrics.")
    fold_table = _File("cv_folds.csv", "One row of metrics per fold (best_epoch: the 0-based index of metrics.csv, as "
                                        "in comparison.csv; printed tables count epochs from 1).")
    oof = _File("oof_predictions.csv", "Out-of-fold predictions.")

    @property
    def is_cross_validation(self) -> bool:
        """The folder holds a cross-validation (its ``cv_config.yaml``)."""
        return self.config.is_file()

    def summary_files(self) -> list[Path]:
        """The existing summary files of the cross-validation (what tracking logs)."""
        return [p for p in (self.config, self.folds, self.summary, self.fold_table, self.oof) if p.is_file()]


@dataclass(frozen=True)
class CompareDir:
    """The files ``medclass compare`` writes (``compare_runs(..., out)``)."""

    path: Path

    table = _File("comparison.csv", "One row per run: metrics, cost, best validation score.")
    pairs = _File("paired_tests.csv", "Paired tests of the test AUC between runs.")
    html = _File("comparison.html", "The comparison page (curves, cost, paired tests).")
    loss_png = _File("loss.png", "Training and validation loss of every run.")
    accuracy_auc_png = _File("accuracy_auc.png", "Training and validation accuracy and AUC of every run.")
    cost_png = _File("cost.png", "Training time and peak memory of every run.")


@dataclass(frozen=True)
class TuneDir:
    """The files ``medclass tune`` writes for a study (beside one run folder per trial)."""

    path: Path

    trials = _File("trials.csv", "One row per trial: parameters, value, state, duration.")
    best_config = _File("best_config.yaml", "The RunConfig of the best trial (train it with medclass train).")
    comparison = _File("comparison", "Folder of the comparison of the best trials (a CompareDir).")
