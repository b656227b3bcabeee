"""The section interface of an evaluation: one prediction result (:class:`Context`), many sections.

A section is one part of an evaluation: it says whether it applies (:meth:`Section.skip_reason`),
computes one typed result (a dataclass with ``to_dict()``: its top-level keys of ``metrics.json``),
renders its part of ``report.html`` (:meth:`Section.report`, from ``metrics.json`` and the result) and
adds its lines to ``model_card.md`` (:meth:`Section.card`). :func:`run_sections` runs a list of them
over one :class:`Context`; a section that does not apply leaves one line in ``metrics.json["sections"]``
and the log, never silence.

A new section (volumes, shortcut checks...) subclasses :class:`Section`, sets ``name``, ``title`` and
``tasks``, and is added to :data:`medclass.evaluation.sections.SECTIONS`::

    @dataclass
    class ShortcutResult:
        share_explained: float
        def to_dict(self) -> dict: return {"shortcut": {"share_explained": self.share_explained}}

    class Shortcut(Section):
        name, title, tasks = "shortcut", "Shortcut check", ("single_label", "multi_label")
        def skip_reason(self, ctx): return "" if ctx.table.metadata_columns() else "no metadata columns"
        def compute(self, ctx): return ShortcutResult(...)
        def report(self, result, figures): return [("shortcut", self.title, "<p>...</p>")]
"""
from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
import pandas as pd

from ...artifacts import EvalDir
from ...choices import ShortcutCheck, choices
from ...data.dataset import ImageDataset
from ...data.table import DataTable
from ...inference import Predictions
from ...metrics.subgroups import SubgroupSpec
from .._loading import LoadedRun, groups_of

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..result import EvaluationResult

log = logging.getLogger(__name__)

TASKS = ("single_label", "multi_label")
ReportPart = tuple[str, str, str]  # (element id, title, HTML body) of one part of report.html


class SectionResult(Protocol):
    """What a section computes: a dataclass whose ``to_dict()`` gives its top-level keys of ``metrics.json``."""

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Options:
    """The flags of one evaluation that sections read."""

    n_boot: int = 1000  # bootstrap replicates (0 = no CIs)
    cam_samples: int = 4  # Grad-CAM images per cell (0 = none)
    mask_column: str = ""  # --mask-column: the evaluated rows' column with a lesion mask file ('' = none)
    mask_root: str = ""  # folder relative mask paths are read from (the run's CSV folder or data.image_root)
    subgroups: tuple[SubgroupSpec, ...] = ()  # --subgroups
    baselines: tuple[str, ...] = ()  # --baselines: metadata columns of the metadata baselines
    recalibrate: bool = False  # --recalibrate (external, binary)
    external: bool = False  # the evaluated data came with --data
    batch_size: int = 64
    num_workers: int = 2
    seed: int = 0
    tta: bool = False  # the prediction pass used flip TTA (the occluded passes do the same)
    shortcuts: tuple[str, ...] = choices(ShortcutCheck)  # --shortcuts: the checks to run (all by default; () = none)
    shortcut_images: int = 200  # --shortcut-images: Grad-CAM maps for "where the model looks" (a seeded sample)


@dataclass
class Context:
    """One prediction result and what every section may read; ``results`` fills as sections run (in order)."""

    run: LoadedRun
    table: DataTable  # the evaluated rows
    dataset: ImageDataset  # their images, as the model reads them
    pred: Predictions  # probabilities (temperature applied), labels, patients, features
    frame: pd.DataFrame  # predictions.csv, one row per predicted image (sections may add columns)
    options: Options
    results: dict[str, SectionResult] = field(default_factory=dict)

    @property
    def multi_label(self) -> bool:
        return self.run.meta.multi_label

    @property
    def task(self) -> str:
        return self.run.meta.task

    @property
    def classes(self) -> list[str]:
        return list(self.run.meta.classes)

    @functools.cached_property
    def groups(self) -> np.ndarray:
        """The patient key of every predicted image (an image without a patient id is its own patient)."""
        return groups_of(self.pred.patients)

    @property
    def metadata(self) -> list[str]:
        return self.table.metadata_columns()


class Section:
    """One part of an evaluation; subclasses set ``name``, ``title``, ``tasks`` and override what they need."""

    name: ClassVar[str]  # its key in metrics.json["sections"]
    title: ClassVar[str]  # for people (report, console)
    tasks: ClassVar[tuple[str, ...]] = TASKS  # the tasks it supports

    def skip_reason(self, ctx: Context) -> str:
        """Why it does not apply to this evaluation (the data, the flags), ``''`` when it does."""
        return ""

    def compute(self, ctx: Context) -> SectionResult:
        """Its typed result (pure computation on ``ctx``; no files written)."""
        raise NotImplementedError

    def write(self, result: SectionResult, ev: EvalDir) -> dict[str, Path]:
        """Files of its own beside metrics.json (e.g. ``patients.csv``): ``{name: path}``."""
        return {}

    def figures(self, result: EvaluationResult) -> dict[str, Figure]:
        """Its figures by name (drawn from the computed results; they also go into the optional PDF)."""
        return {}

    def report(self, result: EvaluationResult, figures: dict[str, bytes]) -> list[ReportPart]:
        """Its parts of report.html, from ``result.metrics`` (and the PNGs of :meth:`figures`)."""
        return []

    def card(self, metrics: dict) -> list[str]:
        """Markdown lines of its own for model_card.md (the headline results are the card's own)."""
        return []


def not_applied(section: Section, ctx: Context) -> str:
    """The reason ``section`` does not run on ``ctx`` (its task, then its own rule), ``''`` when it runs."""
    if ctx.task not in section.tasks:
        return f"not available for {ctx.task} models"
    return section.skip_reason(ctx)


def run_sections(ctx: Context, sections: Sequence[Section]) -> tuple[dict[str, Any], dict[str, dict]]:
    """Run each section that applies, in order: ``(its metrics.json keys merged, status per section)``.

    The status says ``{"applied": True, "seconds": ...}`` (its compute time) or ``{"applied": False, "reason": ...}``
    for every section.
    """
    metrics: dict[str, Any] = {}
    status: dict[str, dict] = {}
    for section in sections:
        reason = not_applied(section, ctx)
        if reason:
            status[section.name] = {"title": section.title, "applied": False, "reason": reason}
            log.info("evaluation section %r not applied: %s", section.name, reason)
            continue
        start = time.perf_counter()
        result = section.compute(ctx)
        ctx.results[section.name] = result
        metrics.update(result.to_dict())
        status[section.name] = {"title": section.title, "applied": True,
                                "seconds": round(time.perf_counter() - start, 2)}
    return metrics, status


__all__ = ["Context", "Options", "ReportPart", "Section", "SectionResult", "TASKS", "not_applied", "run_sections"]
