"""Multi-label data: several findings per image, each 1 / 0 / unknown.

A multi-label :class:`~medclass.data.table.DataTable` (``table.task == "multi_label"``) has
``classes`` = the K findings, one float column ``label_<finding>`` per finding holding 1.0, 0.0
or NaN (missing or uncertain and masked out: ``data.uncertain=ignore``), and a readable ``label``
(the positive findings joined by ``|``, or :data:`NO_FINDING`) kept for listings.

The task rule, declared once (:func:`resolve_task`): ``data.task`` when it is not ``auto``; else
multi-label when ``data.labels_from`` or ``data.label_columns`` is set; an ``.npz`` source with
``(n, K>1)`` labels is multi-label too (decided by :func:`~medclass.data.sources.from_npz`).

Example:
    >>> spec = FindingSpec(labels_from="finding_labels", sep="|", no_finding="No Finding")
    >>> spec.values({"finding_labels": "Effusion|Mass"}, ["Effusion", "Mass", "Nodule"])
    [1.0, 1.0, 0.0]
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..config import DataConfig, Task, Uncertain, choices
from ..errors import DatasetError, check_choice

SINGLE, MULTI = "single_label", "multi_label"
TASKS = choices(Task)
UNCERTAIN_POLICIES = choices(Uncertain)
PREFIX = "label_"
NO_FINDING = "none"  # the readable label of an image without any positive finding
UNKNOWN = -1.0  # uncertain or blank, before the run's policy (data.uncertain) is applied
_POSITIVE, _NEGATIVE, _UNCERTAIN = {"1", "1.0", "true", "yes"}, {"0", "0.0", "false", "no"}, {"-1", "-1.0", "u", "uncertain"}


def resolve_task(cfg: DataConfig) -> str:
    """``single_label`` or ``multi_label`` for this data config (an npz may still turn out multi-label).

    >>> resolve_task(DataConfig(labels_from="finding_labels"))
    'multi_label'
    """
    task = check_choice("data.task", cfg.task, TASKS)
    if task != "auto":
        if task == MULTI and not (cfg.labels_from or cfg.label_columns) and not str(cfg.path).endswith(".npz"):
            raise DatasetError("data.task=multi_label needs the findings: set data.labels_from (a column listing them, "
                               "e.g. --labels-from finding_labels) or data.label_columns (one 1/0/-1 column per finding).")
        return task
    return MULTI if cfg.labels_from or cfg.label_columns else SINGLE


def finding_column(finding: str) -> str:
    """The table column of one finding: ``label_<finding>``."""
    return PREFIX + finding


@dataclass(frozen=True)
class FindingSpec:
    """How a CSV row holds its findings: a separated list (``labels_from``) or one column each (``columns``)."""

    labels_from: str = ""
    sep: str = "|"
    no_finding: str = "No Finding"
    columns: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, cfg: DataConfig) -> "FindingSpec":
        """The spec of ``cfg`` (exactly one of data.labels_from / data.label_columns must be set)."""
        if cfg.labels_from and cfg.label_columns:
            raise DatasetError("Both data.labels_from and data.label_columns are set; a CSV lists its findings in one "
                               "column (--labels-from) or holds one column per finding (--label-columns): choose one.")
        if cfg.labels_from and not cfg.label_sep:
            raise DatasetError("data.label_sep is empty; give the separator of the findings, e.g. --label-sep '|'.")
        return cls(cfg.labels_from, cfg.label_sep, cfg.no_finding, tuple(cfg.label_columns))

    def source_columns(self) -> list[str]:
        """The CSV columns this spec reads."""
        return [self.labels_from] if self.labels_from else list(self.columns)

    def findings(self, df: pd.DataFrame) -> list[str]:
        """The findings in CSV order of columns, or sorted names found in the list column."""
        if not self.labels_from:
            return list(self.columns)
        names = {n.strip() for cell in df[self.labels_from] for n in str(cell).split(self.sep) if n.strip()}
        return sorted(names - {self.no_finding})

    def values(self, rec: Mapping[str, str], findings: Sequence[str]) -> list[float] | None:
        """1.0 / 0.0 / :data:`UNKNOWN` per finding for one CSV record (None: the row has no label at all)."""
        if self.labels_from:
            cell = rec[self.labels_from].strip()
            if not cell:
                return None
            present = {n.strip() for n in cell.split(self.sep)} - {self.no_finding, ""}
            return [1.0 if f in present else 0.0 for f in findings]
        out = [_cell_value(rec[c], c) for c in self.columns]
        return None if all(v == UNKNOWN for v in out) and not any(rec[c] for c in self.columns) else out


def _cell_value(cell: str, column: str) -> float:
    text = cell.strip().lower()
    if not text:
        return UNKNOWN
    if text in _POSITIVE:
        return 1.0
    if text in _NEGATIVE:
        return 0.0
    if text in _UNCERTAIN:
        return UNKNOWN
    raise DatasetError(f"Finding column {column!r} holds {cell!r}; expected 1, 0, -1 (uncertain) or blank (missing).")


def apply_uncertain(matrix: np.ndarray, policy: str) -> np.ndarray:
    """Uncertain/blank entries (:data:`UNKNOWN`) as NaN (``ignore``: masked out), 1 (``ones``) or 0 (``zeros``).

    >>> apply_uncertain(np.array([[1.0, -1.0, 0.0]]), "ones").tolist()
    [[1.0, 1.0, 0.0]]
    """
    policy = check_choice("data.uncertain", policy, UNCERTAIN_POLICIES)
    fill = {"ignore": np.nan, "ones": 1.0, "zeros": 0.0}[policy]
    out = np.asarray(matrix, dtype=np.float32).copy()
    out[(out == UNKNOWN) | np.isnan(out)] = fill
    return out


def readable_labels(matrix: np.ndarray, findings: Sequence[str]) -> list[str]:
    """Each row's positive findings joined by ``|`` (:data:`NO_FINDING` when none)."""
    return ["|".join(f for f, v in zip(findings, row) if v == 1.0) or NO_FINDING for row in matrix]


def with_findings(frame: pd.DataFrame, findings: Sequence[str], matrix: np.ndarray) -> pd.DataFrame:
    """``frame`` with one ``label_<finding>`` column per finding and the readable ``label``."""
    frame = frame.drop(columns=[c for c in frame.columns if c.startswith(PREFIX)])
    columns = {finding_column(f): matrix[:, k].astype(np.float32) for k, f in enumerate(findings)}
    out = pd.concat([frame.reset_index(drop=True), pd.DataFrame(columns)], axis=1)
    out["label"] = readable_labels(matrix, findings)
    return out


def label_matrix(frame: pd.DataFrame, findings: Sequence[str]) -> np.ndarray:
    """The ``(n, K)`` float32 label matrix of a multi-label frame (NaN = masked)."""
    missing = [finding_column(f) for f in findings if finding_column(f) not in frame.columns]
    if missing:
        raise DatasetError(f"A multi-label table lacks the finding columns {missing[:4]}; expected one "
                           f"{PREFIX}<finding> column per finding of {list(findings)}.")
    cols = [pd.to_numeric(frame[finding_column(f)], errors="coerce") for f in findings]
    return np.stack([c.to_numpy(dtype=np.float32) for c in cols], axis=1) if cols else np.zeros((len(frame), 0), np.float32)


def stratify_keys(matrix: np.ndarray, findings: Sequence[str]) -> np.ndarray:
    """One key per row: its rarest positive finding, else :data:`NO_FINDING`.

    The class of a multi-label row where one class per row is needed: the weighted sampler
    (``train.sampler=weighted``) and ``data.limit_per_class``. The splits do not use it: they stratify over all
    findings together (:mod:`~medclass.data.splits`).

    >>> stratify_keys(np.array([[1.0, 1.0], [1.0, 0.0], [0.0, np.nan]]), ["a", "b"]).tolist()
    ['b', 'a', 'none']
    """
    positives = np.nan_to_num(matrix, nan=0.0) == 1.0
    freq = positives.sum(axis=0).astype(float)
    rank = np.where(positives, freq[None, :], math.inf)
    rarest = rank.argmin(axis=1) if matrix.shape[1] else np.zeros(len(matrix), dtype=int)
    has = positives.any(axis=1)
    return np.array([findings[k] if h else NO_FINDING for k, h in zip(rarest, has)], dtype=object)


def keep_findings(frame: pd.DataFrame, findings: Sequence[str], keep: Sequence[str]) -> pd.DataFrame:
    """Only the findings ``keep`` (in that order): other ``label_*`` columns dropped, ``label`` rewritten."""
    unknown = [f for f in keep if f not in findings]
    if unknown:
        raise DatasetError(f"data.classes {unknown} are not findings of this data; its findings are {list(findings)}.")
    return with_findings(frame, keep, label_matrix(frame, keep))


def positive_counts(frame: pd.DataFrame, findings: Sequence[str], groups: pd.Series) -> pd.DataFrame:
    """Positive images and positive patients per split and finding (for the data check)."""
    matrix = label_matrix(frame, findings)
    rows = []
    for split in sorted(set(frame["split"]), key=("train", "val", "test", "").index):
        mask = (frame["split"] == split).to_numpy()
        for k, f in enumerate(findings):
            pos = mask & (matrix[:, k] == 1.0)
            rows.append({"split": split, "finding": f, "positive_images": int(pos.sum()),
                         "positive_patients": int(groups[pos].nunique()),
                         "masked_images": int((mask & np.isnan(matrix[:, k])).sum())})
    return pd.DataFrame(rows)
