"""The sections of an evaluation, in the order they run and appear in ``report.html``.

Every evaluation (single-label or multi-label, the run's own split or external data) runs the same
list: each section states which tasks it supports and when it does not apply (e.g. ``external``
without ``--data``, ``subgroups`` without ``--subgroups``), and ``metrics.json["sections"]`` says, for
each, whether it ran or why not. The interface is :class:`~.base.Section`; docs/architecture.md
shows how to add one (volumes, shortcut checks).
"""
from __future__ import annotations

from .base import Context, Options, ReportPart, Section, SectionResult, not_applied, run_sections
from .baselines import Baselines
from .cam_location import CamLocation
from .compare import ExternalComparison, Subgroups
from .decision import Decision
from .examples import Examples
from .internal import InternalMetrics
from .patients import Patients
from .shift import Shift
from .shortcuts import Shortcuts

SECTIONS: tuple[Section, ...] = (InternalMetrics(), Patients(), Decision(), ExternalComparison(), Subgroups(), Baselines(),
                                 Shift(), Shortcuts(), Examples(), CamLocation())


def section(name: str) -> Section:
    """The section called ``name`` (KeyError naming the known ones otherwise)."""
    for s in SECTIONS:
        if s.name == name:
            return s
    raise KeyError(f"no evaluation section {name!r}; known: {[s.name for s in SECTIONS]}")


__all__ = ["Context", "Options", "ReportPart", "SECTIONS", "Section", "SectionResult", "not_applied", "run_sections",
           "section"]
