"""Row filters and label maps of ``data.where`` / ``data.label_map``, the same for every command.

* ``data.where`` is a :meth:`pandas.DataFrame.query` expression over the table's columns (``label``,
  ``patient``, ``split`` and every metadata column of a CSV: ``view``, ``age``, ``sex``...). Columns
  whose values are all numbers compare as numbers (``age >= 18``). Bare words inside a list are
  read as text, so ``view in [PA, AP]`` means ``view in ['PA', 'AP']``. An unknown column is refused
  by name.
* ``data.label_map`` renames, merges or drops labels: ``{covid: pneumonia, other_pneumonia: pneumonia,
  unknown: drop}``. A label it names that the data does not hold is refused by name; labels it
  does not name stay as they are.
* On multi-label data it maps *findings* (:func:`map_findings`): a renamed finding keeps its
  column; several findings merged into one give a finding that is 1 where any of them is 1, else
  masked (NaN) where any of them is masked, else 0 (:func:`merge_finding_values`); ``finding: drop``
  removes that finding's column, never the rows.

The filter runs first (on the original labels), then the map.

Example:
    >>> df = pd.DataFrame({"label": ["a", "b"], "view": ["PA", "LL"], "age": ["30", "9"]})
    >>> where_mask(df, "view in [PA, AP] and age >= 18", "data.where").tolist()
    [True, False]
"""
from __future__ import annotations

import logging
import re
from collections.abc import Mapping

import numpy as np
import pandas as pd

from ..errors import DatasetError, did_you_mean
from .multilabel import UNKNOWN, label_matrix, with_findings
from .table import DataTable

log = logging.getLogger(__name__)

DROP = "drop"  # label_map target that removes the rows of a label (multi-label: the column of a finding)
_LIST = re.compile(r"\[([^\[\]]*)\]")
_BARE = re.compile(r"^[A-Za-z_][\w.\-]*$")


def join_where(clauses: list[str]) -> str:
    """Several ``--where`` flags as one expression (each clause in parentheses, joined by ``and``).

    >>> join_where(["view == 'PA'", "age >= 18"])
    "(view == 'PA') and (age >= 18)"
    """
    clauses = [c.strip() for c in clauses if c and c.strip()]
    return clauses[0] if len(clauses) == 1 else " and ".join(f"({c})" for c in clauses)


def _quote_bare_words(expr: str, columns: set[str]) -> str:
    """``[PA, AP]`` -> ``['PA', 'AP']``: bare words in a list that are not columns become strings."""
    def quote(match: re.Match[str]) -> str:
        items = [i.strip() for i in match.group(1).split(",")]
        fixed = [f"'{i}'" if _BARE.match(i) and i not in columns and i not in ("True", "False") else i for i in items]
        return "[" + ", ".join(fixed) + "]"

    return _LIST.sub(quote, expr)


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns whose non-empty values are all numbers as numbers (empty -> NaN); the rest as they are."""
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if not pd.api.types.is_numeric_dtype(values):
            numbers = pd.to_numeric(values.replace("", None), errors="coerce")
            if numbers.notna().sum() and numbers.notna().sum() == (values.astype(str) != "").sum():
                out[column] = numbers
    return out


def where_mask(frame: pd.DataFrame, expr: str, option: str = "data.where") -> pd.Series:
    """Boolean mask of the rows of ``frame`` that match ``expr`` (see the module docstring)."""
    columns = set(map(str, frame.columns))
    query = _quote_bare_words(expr, columns)
    try:
        mask = _typed(frame).eval(query, engine="python")
    except pd.errors.UndefinedVariableError as e:
        name = re.search(r"name '([^']+)'", str(e))
        missing = name.group(1) if name else str(e)
        raise DatasetError(f"{option} {expr!r}: no column {missing!r}; the columns are {sorted(columns)}."
                           + did_you_mean(missing, columns)) from None
    except (SyntaxError, ValueError, TypeError, KeyError) as e:
        raise DatasetError(f"{option} {expr!r} is not a valid pandas query ({type(e).__name__}: {e}); write e.g. "
                           "\"view in ['PA', 'AP'] and age >= 18\" (text values in quotes).") from None
    if not isinstance(mask, pd.Series) or mask.dtype != bool:
        raise DatasetError(f"{option} {expr!r} does not give true/false per row; compare a column, e.g. \"age >= 18\".")
    return mask


def filter_rows(table: DataTable, expr: str, aliases: Mapping[str, str] | None = None) -> DataTable:
    """Only the rows matching ``data.where`` (classes left without rows are dropped from ``classes``).

    ``aliases`` maps a manifest's own column names to the table's (``{"finding": "label"}``), so the
    expression may use either.
    """
    if not expr.strip():
        return table
    frame = table.frame
    extra = {alias: frame[column] for alias, column in (aliases or {}).items() if alias and alias not in frame.columns}
    keep = where_mask(frame.assign(**extra) if extra else frame, expr).to_numpy()
    if not keep.any():
        raise DatasetError(f"data.where {expr!r} keeps none of the {len(table)} rows of {table.root}.")
    log.info("data.where %r keeps %d of %d rows", expr, int(keep.sum()), len(table))
    df = table.frame[keep].copy()
    if table.multi_label:  # findings stay, even one without positives left (it is reported, not dropped)
        return table.with_frame(df)
    classes = [c for c in table.classes if c in set(df["label"])]
    return DataTable(df, classes, list(table.skipped), table.source, table.root)


def map_label_values(labels: pd.Series, mapping: Mapping[str, str], where: str) -> pd.Series:
    """``labels`` renamed by ``mapping`` (``drop`` marks rows to remove); a mapped label not in ``labels`` is refused."""
    present = sorted(set(labels))
    unknown = [old for old in mapping if old not in present]
    if unknown:
        raise DatasetError(f"data.label_map names {unknown}, which {where} does not hold; its labels are "
                           f"{present[:20]}." + did_you_mean(unknown[0], present))
    return labels.map(lambda label: mapping.get(label, label))


def map_labels(table: DataTable, mapping: Mapping[str, str]) -> DataTable:
    """Rename, merge (several old -> one new) or drop (``-> drop``) labels; unknown old labels are refused.

    Multi-label tables: the same for findings (:func:`map_findings`)."""
    if not mapping:
        return table
    if table.multi_label:
        return map_findings(table, mapping)
    df = table.frame.copy()
    df["label"] = map_label_values(df["label"], mapping, table.root)
    dropped = df["label"] == DROP
    if dropped.all():
        raise DatasetError(f"data.label_map {dict(mapping)} drops every row of {table.root}.")
    df = df[~dropped]
    classes: list[str] = []
    for old in table.classes:  # the source's order, each new name where its first old name stood
        new = mapping.get(old, old)
        if new != DROP and new not in classes:
            classes.append(new)
    log.info("data.label_map %s: classes %s -> %s (%d rows dropped)", dict(mapping), table.classes, classes,
             int(dropped.sum()))
    return DataTable(df, classes, list(table.skipped), table.source, table.root)


def merge_finding_values(values: np.ndarray) -> np.ndarray:
    """One finding from the ``(n, m)`` values of the findings merged into it: 1 where any is 1, else NaN
    (masked) where any is masked (NaN or uncertain -1), else 0.

    >>> merge_finding_values(np.array([[1, np.nan], [0, np.nan], [0, 0], [-1, 1]])).tolist()
    [1.0, nan, 0.0, 1.0]
    """
    values = np.asarray(values, dtype=np.float32)
    positive = (values == 1.0).any(axis=1)
    masked = (np.isnan(values) | (values == UNKNOWN)).any(axis=1)
    return np.where(positive, 1.0, np.where(masked, np.nan, 0.0)).astype(np.float32)


def map_findings(table: DataTable, mapping: Mapping[str, str]) -> DataTable:
    """Multi-label ``data.label_map``: rename, merge (several -> one, :func:`merge_finding_values`) or drop
    (``-> drop``: the finding's column, not the rows) findings; a name that is not a finding is refused.

    The new findings keep the source's order, each where its first old finding stood.

    >>> t = DataTable(pd.DataFrame({"path": ["a", "b"], "label": ["", ""], "label_Mass": [1.0, 0.0],
    ...                             "label_Nodule": [0.0, np.nan], "label_Hernia": [1.0, 0.0]}),
    ...               ["Mass", "Nodule", "Hernia"], task="multi_label")
    >>> m = map_findings(t, {"Mass": "lesion", "Nodule": "lesion", "Hernia": "drop"})
    >>> m.classes, m.targets.tolist(), m.frame["label"].tolist()
    (['lesion'], [[1.0], [nan]], ['lesion', 'none'])
    """
    findings = list(table.classes)
    unknown = [old for old in mapping if old not in findings]
    if unknown:
        raise DatasetError(f"data.label_map names {unknown}, which are not findings of {table.root or 'this data'} "
                           f"(multi-label: label_map renames, merges or drops findings); its findings are "
                           f"{findings[:20]}." + did_you_mean(unknown[0], findings))
    new_names: list[str] = []
    for old in findings:
        new = mapping.get(old, old)
        if new != DROP and new not in new_names:
            new_names.append(new)
    if not new_names:
        raise DatasetError(f"data.label_map {dict(mapping)} drops every finding of {table.root}; keep at least one.")
    matrix = label_matrix(table.frame, findings)
    sources = {new: [k for k, old in enumerate(findings) if mapping.get(old, old) == new] for new in new_names}
    merged = np.stack([merge_finding_values(matrix[:, columns]) for columns in sources.values()], axis=1)
    dropped = [old for old in findings if mapping.get(old) == DROP]
    log.info("data.label_map %s: findings %s -> %s (dropped: %s; every row kept)", dict(mapping), findings, new_names,
             dropped or "none")
    return DataTable(with_findings(table.frame, new_names, merged), new_names, list(table.skipped), table.source,
                     table.root, table.task)
