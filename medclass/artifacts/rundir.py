"""The run folder and its files: every file name of a run (and of a cross-validation) is spelled here.

A run folder is ``workspace/<project>/<experiment>/`` (docs/architecture.md, "Run folder"). Code
that reads or writes one asks :class:`RunDir` for the path (``run.split``, ``run.best``), and for
its state (:attr:`RunDir.is_finished`, :attr:`RunDir.is_resumable`, :meth:`RunDir.best_checkpoint`)
instead of guessing it from which files exist. An evaluation writes into an :class:`EvalDir`, a
cross-validation into a :class:`CVDir`.

Example:
    >>> run = RunDir("workspace/default/resnet18")
    >>> run.best.name, run.resume_state.relative_to(run.path).as_posix()
    ('best.safetensors', 'checkpoints/last.ckpt')
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointError
from ..utils import write_json


@dataclass(frozen=True)
class EvalDir:
    """The files one evaluation writes (the run folder itself for the run's own test split)."""

    path: Path

    @property
    def metrics(self) -> Path:
        """``metrics.json``: every number of the evaluation (format ``medclass-evaluation/1``)."""
        return self.path / "metrics.json"

    @property
    def predictions(self) -> Path:
        """``predictions.csv``: one row per evaluated image."""
        return self.path / "predictions.csv"

    @property
    def patients(self) -> Path:
        """``patients.csv``: one row per patient (aggregated probabilities)."""
        return self.path / "patients.csv"

    @property
    def report(self) -> Path:
        """``report.html``: the self-contained report (``report.pdf`` beside it on request)."""
        return self.path / "report.html"


class RunDir:
    """One training run's folder: its file names and its state.

    Files: ``config.yaml``, ``split.csv``, ``classes.json``, ``audit.json``, ``quality.json``,
    ``split_summary.json``, ``metrics.csv``, ``baseline.json``, ``best.safetensors``,
    ``last.safetensors``, ``checkpoints/last.ckpt``, ``threshold.json``, ``train.log``,
    ``skipped_during_training.json``, ``data_check/`` and the evaluation files of :class:`EvalDir`.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # -- file names -------------------------------------------------------------------------------
    config = property(lambda self: self.path / "config.yaml", doc="The run's RunConfig (YAML).")
    split = property(lambda self: self.path / "split.csv", doc="The prepared table with its train/val/test split.")
    classes = property(lambda self: self.path / "classes.json", doc="Class names in label order (for resume).")
    audit = property(lambda self: self.path / "audit.json", doc="Leak audit before/after the split.")
    quality = property(lambda self: self.path / "quality.json", doc="Images dropped by the quality filter.")
    split_summary = property(lambda self: self.path / "split_summary.json", doc="Images/patients per split and class.")
    history = property(lambda self: self.path / "metrics.csv", doc="Per-epoch training metrics.")
    baseline = property(lambda self: self.path / "baseline.json", doc="Validation metrics of the untrained model.")
    best = property(lambda self: self.path / "best.safetensors", doc="Checkpoint of the best epoch.")
    last = property(lambda self: self.path / "last.safetensors", doc="Checkpoint of the last epoch.")
    checkpoints = property(lambda self: self.path / "checkpoints", doc="Folder of Lightning's resume state.")
    resume_state = property(lambda self: self.checkpoints / "last.ckpt", doc="Lightning's full state (resume).")
    threshold = property(lambda self: self.path / "threshold.json", doc="Threshold/temperature chosen on validation.")
    log = property(lambda self: self.path / "train.log", doc="Log of the run.")
    skipped = property(lambda self: self.path / "skipped_during_training.json", doc="Files unreadable in training.")
    data_check = property(lambda self: self.path / "data_check", doc="Folder of the quickstart's data check.")

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

    config = property(lambda self: self.path / "cv_config.yaml", doc="The RunConfig of every fold.")
    state = property(lambda self: self.path / "cv_state.json", doc="The number of folds.")
    folds = property(lambda self: self.path / "folds.csv", doc="The table with its fold column.")
    quality = property(lambda self: self.path / "quality.json", doc="Images dropped by the quality filter.")
    audit = property(lambda self: self.path / "audit.json", doc="Duplicates linked before the folds were drawn.")
    summary = property(lambda self: self.path / "cv_summary.json", doc="Mean, SD and pooled metrics.")
    fold_table = property(lambda self: self.path / "cv_folds.csv", doc="One row of metrics per fold.")
    oof = property(lambda self: self.path / "oof_predictions.csv", doc="Out-of-fold predictions.")

    @property
    def is_cross_validation(self) -> bool:
        """The folder holds a cross-validation (its ``cv_config.yaml``)."""
        return self.config.is_file()
