"""The result of one evaluation, shared by :mod:`.evaluate` (which fills it) and :mod:`.report` (which draws it)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@dataclass
class EvaluationResult:
    """Everything one evaluation computed: ``metrics`` is the content of ``metrics.json``."""

    metrics: dict  # JSON-able: see the module docstring of medclass.evaluation.evaluate and docs/architecture.md
    out_dir: Path  # folder of the written files
    files: dict[str, Path] = field(default_factory=dict)  # metrics, predictions, report (and pdf)
    predictions: pd.DataFrame = field(default_factory=pd.DataFrame)  # predictions.csv
    examples: dict[str, list] = field(default_factory=dict)  # gallery, top_losses, cam (Example); most_wrong:<finding> (GridItem)
    history: pd.DataFrame | None = None  # the run's metrics.csv (training curves)
    model_card: str = ""  # model_card.md (Markdown), embedded in the report
