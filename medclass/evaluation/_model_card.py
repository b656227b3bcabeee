"""``model_card.md`` of an evaluation: the checkpoint's card filled with its training data and this evaluation."""
from __future__ import annotations

import pandas as pd

from ..artifacts import CheckpointMeta, RunDir
from ..data.presets import patient_rule_summary
from ..data.splits import patient_groups
from ..data.table import DataTable
from ..serving._card import model_card
from ..serving._card_markdown import card_document

MAX_CATEGORIES = 12  # a text column with more distinct values (ids, free text) is not summarised


def _demographics(frame: pd.DataFrame, columns: list[str]) -> dict[str, dict]:
    """Numeric columns: median, IQR, range; columns of few categories: counts; others left out."""
    out: dict[str, dict] = {}
    for column in columns:
        values = frame[column].replace("", pd.NA)
        numbers = pd.to_numeric(values, errors="coerce")
        if values.notna().any() and numbers.notna().sum() >= 0.9 * values.notna().sum():
            q1, median, q3 = numbers.quantile([0.25, 0.5, 0.75])
            out[column] = {"median": float(median), "q1": float(q1), "q3": float(q3), "min": float(numbers.min()),
                           "max": float(numbers.max()), "missing": int(numbers.isna().sum())}
        elif 0 < values.nunique() <= MAX_CATEGORIES:
            out[column] = {"counts": {str(k): int(v) for k, v in values.fillna("missing").value_counts().items()}}
    return out


def training_data_summary(run_dir: RunDir | None, meta: CheckpointMeta) -> dict | None:
    """Sources, images/patients/prevalence per split and the training split's demographics (from ``split.csv``)."""
    if run_dir is None or not run_dir.split.is_file():
        return None
    classes = list(meta.classes)
    table = DataTable.from_csv(run_dir.split, classes)
    df = table.frame
    splits = {}
    for split in [s for s in ("train", "val", "test") if (df["split"] == s).any()]:
        rows = df[df["split"] == split]
        splits[split] = {"n_images": int(len(rows)), "n_patients": int(patient_groups(rows).nunique()),
                         "prevalence": {c: float((pd.to_numeric(rows[f"label_{c}"], errors="coerce") == 1).mean())
                                        if table.multi_label else float((rows["label"] == c).mean()) for c in classes}}
    data = meta.run_config.data
    return {"source": data.path or "not recorded", "patient_rule": patient_rule_summary(data), "classes": classes,
            "splits": splits, "demographics": _demographics(df[df["split"] == "train"], table.metadata_columns())}


def model_card_markdown(meta: CheckpointMeta, metrics: dict, run_dir: RunDir | None, notes: list[str] | None = None) -> str:
    """The Markdown card of ``meta`` with this evaluation's ``metrics`` and the run's training data; ``notes``
    (Markdown lines of the evaluation sections, e.g. rare findings) go under "Evaluation notes" before the limitations."""
    text = card_document(model_card(meta, evaluation=metrics, training_data=training_data_summary(run_dir, meta)))
    if notes:
        text = text.replace("## Limitations", "\n".join(["## Evaluation notes", "", *notes, "", "## Limitations"]), 1)
    return text


__all__ = ["model_card_markdown", "training_data_summary"]
