"""Patient-grouped, class-stratified, seeded splits and cross-validation folds.

Every image of a patient lands in the same split (or fold); rows with an empty ``patient`` are
their own group (one per image). The same seed gives the same split.

Single-label: a patient's class, used for stratification, is its most common label (ties go to the
first class in ``table.classes``); each class's patients are shuffled and cut by the fractions.

Multi-label: the patients are stratified over all findings together by iterative stratification
(Sechidis, Tsoumakas & Vlahavas 2011, from the ``iterative-stratification`` package: ``iterstrat``).
A patient's findings are the union over its images (positive when any image is; masked labels count
as not positive), plus one column "no positive finding", so patients without findings are spread too.
The split is drawn in two stages, test first and then validation from the rest at the adjusted
fraction ``val / (1 - test)``; folds come from ``MultilabelStratifiedKFold`` over the patients.
Every image then follows its patient.

Example:
    >>> table = split_patients(table, val_fraction=0.15, test_fraction=0.15, seed=42)
    >>> split_summary(table)            # images and patients per split and class
    >>> folds = assign_folds(table, k=5)  # adds an int 'fold' column
    >>> train, val = fold_tables(folds, 0)
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold, MultilabelStratifiedShuffleSplit
from sklearn.model_selection import StratifiedGroupKFold

from ..errors import DatasetError
from ..metrics.multilabel import aggregate_findings
from .multilabel import label_matrix, positive_counts
from .table import DataTable

log = logging.getLogger(__name__)


def patient_groups(frame: pd.DataFrame) -> pd.Series:
    """Group key of every row: the patient id, or ``'#row<i>'`` when the patient is unknown.

    >>> patient_groups(pd.DataFrame({"patient": ["p1", "", "p1"]})).tolist()
    ['p1', '#row1', 'p1']
    """
    patient = frame["patient"].astype(str).reset_index(drop=True)
    own = "#row" + pd.Series(np.arange(len(patient))).astype(str)
    return patient.where(patient != "", own)


def _group_classes(groups: pd.Series, labels: pd.Series, classes: list[str]) -> pd.Series:
    """Class of each group: its most common label, ties broken by the order of ``classes``."""
    order = {c: i for i, c in enumerate(classes)}
    label = labels.map(order).to_numpy()
    codes, keys = pd.factorize(groups.to_numpy(), sort=True)
    counts = np.bincount(codes * len(classes) + label, minlength=len(keys) * len(classes)).reshape(len(keys), -1)
    best = counts.argmax(axis=1)  # ties: the first class
    return pd.Series(np.asarray(classes, dtype=object)[best], index=pd.Index(keys))


def _allocate(group_class: pd.Series, fractions: dict[str, float], seed: int, where: str) -> dict[str, str]:
    """Seeded per-class allocation of groups to splits; ``fractions`` omit the remainder split 'train'."""
    rng = np.random.default_rng(seed)
    needed = 1 + sum(f > 0 for f in fractions.values())
    assignment: dict[str, str] = {}
    for cls in sorted(group_class.unique()):
        members = np.sort(group_class.index[group_class.to_numpy() == cls].to_numpy())
        if len(members) < needed:
            wanted = ", ".join(["train", *(s for s, f in fractions.items() if f > 0)])
            raise DatasetError(
                f"Class {cls!r} has only {len(members)} patient(s) in {where}, but the split ({wanted}) needs at least "
                f"{needed} per class. Add images of {cls!r}, lower data.val_fraction / data.test_fraction to 0, "
                "or use cross-validation (`medclass train --folds K`)."
            )
        members = members[rng.permutation(len(members))]
        start = 0
        for split, frac in fractions.items():
            n = max(1, round(frac * len(members))) if frac > 0 else 0
            n = min(n, len(members) - start - 1)  # always leave at least one group for train
            assignment.update(dict.fromkeys(members[start : start + n].tolist(), split))
            start += n
        assignment.update(dict.fromkeys(members[start:].tolist(), "train"))
    return assignment


def patient_findings(frame: pd.DataFrame, findings: list[str], groups: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Sorted group ids and their ``(G, K + 1)`` boolean findings: the union over each group's images
    (masked labels count as not positive), and a last column "no positive finding".

    >>> frame = pd.DataFrame({"label_a": [1.0, 0.0, np.nan], "label_b": [0.0, 0.0, 1.0]})
    >>> ids, y = patient_findings(frame, ["a", "b"], pd.Series(["p1", "p1", "p2"]))
    >>> ids.tolist(), y.astype(int).tolist()
    (['p1', 'p2'], [[1, 0, 0], [0, 1, 0]])
    """
    matrix = label_matrix(frame, findings)
    positive = (np.nan_to_num(matrix, nan=0.0) == 1.0).astype(np.float64)
    ids, per_group, _ = aggregate_findings(positive, np.zeros_like(positive), groups.to_numpy())
    positive_groups = per_group == 1.0
    return ids, np.column_stack([positive_groups, ~positive_groups.any(axis=1)])


def _allocate_findings(ids: np.ndarray, y: np.ndarray, fractions: dict[str, float], seed: int,
                       where: str) -> dict[str, str]:
    """Iterative stratification of groups over their findings, one split after the other (fractions
    of all groups, in the order given; each stage draws from what the earlier ones left); rest = train."""
    rng = np.random.RandomState(seed)  # one seeded stream for all stages: the same seed gives the same split
    remaining, left = np.arange(len(ids)), 1.0
    assignment: dict[str, str] = {}
    for split, frac in fractions.items():
        if frac <= 0:
            continue
        splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=frac / left, random_state=rng)
        try:
            _, held = next(splitter.split(np.zeros((len(remaining), 1)), y[remaining]))
        except ValueError as err:  # too few groups for a non-empty train and held-out part
            wanted = ", ".join(["train", *(s for s, f in fractions.items() if f > 0)])
            raise DatasetError(
                f"{len(ids)} patient(s) in {where} are too few for a split into {wanted} "
                f"({', '.join(f'{s} {f:g}' for s, f in fractions.items())}); add data, lower data.val_fraction / "
                f"data.test_fraction, or use cross-validation (`medclass train --folds K`). ({err})"
            ) from err
        assignment.update(dict.fromkeys(ids[remaining[held]], split))
        remaining, left = np.delete(remaining, held), left - frac
    assignment.update(dict.fromkeys(ids[remaining], "train"))
    return assignment


def _assignment(table: DataTable, df: pd.DataFrame, rows: np.ndarray, groups: pd.Series,
                fractions: dict[str, float], seed: int, where: str) -> dict[str, str]:
    """Split of every group of ``rows``: per class (single-label) or over all findings (multi-label)."""
    if table.multi_label:
        ids, y = patient_findings(df[rows], table.classes, groups[rows])
        return _allocate_findings(ids, y, fractions, seed, where)
    group_class = _group_classes(groups[rows], df["label"][rows], table.classes)
    return _allocate(group_class, fractions, seed, where)


def split_patients(
    table: DataTable, val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 42
) -> DataTable:
    """Assign ``split`` to rows that have none, grouped by patient and stratified by class.

    Rows that already have a split are kept (e.g. Kaggle ``train/`` and ``test/`` folders). When
    every row has a split but there is no ``val``, a share ``val_fraction`` of the train patients is
    moved to ``val``. Unsplit rows of a patient already seen in a split join that split.

    Args:
        table: the data; ``patient`` may be empty (each such row is its own group).
        val_fraction: share of patients (per class) for validation.
        test_fraction: share of patients (per class) for the test set. Multi-label: shares of all
            patients, stratified over the findings.
        seed: fixes the allocation.

    Raises:
        DatasetError: a class (multi-label: the data) has too few patients for the requested splits, or bad
            fractions.

    Example:
        >>> out = split_patients(table, 0.15, 0.15, seed=42)
        >>> out.frame["split"].value_counts()
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DatasetError(
            f"Split fractions val={val_fraction}, test={test_fraction} must be in [0, 1) and sum to less than 1 "
            "(the rest is train); e.g. data.val_fraction=0.15 data.test_fraction=0.15."
        )
    df = table.frame.copy()
    groups = patient_groups(df)
    empty = (df["split"] == "").to_numpy()
    if not empty.any():
        if "val" in set(df["split"]) or val_fraction == 0 or "train" not in set(df["split"]):
            return table.with_frame(df)
        train = (df["split"] == "train").to_numpy()
        assignment = _assignment(table, df, train, groups, {"val": val_fraction}, seed, "the train split")
        df.loc[train, "split"] = groups[train].map(assignment).to_numpy()
    else:
        known = df.loc[~empty].assign(group=groups[~empty].to_numpy())
        counts = known.groupby(["group", "split"], sort=False).size().reset_index(name="n")  # first seen first
        inherited = counts.sort_values("n", ascending=False, kind="stable").drop_duplicates("group").set_index(
            "group")["split"]  # each group's most common split (ties: the one seen first)
        follow = empty & groups.isin(inherited.index).to_numpy()
        df.loc[follow, "split"] = groups[follow].map(inherited).to_numpy()
        free = empty & ~follow
        if free.any():
            fractions = {"test": test_fraction, "val": val_fraction}
            assignment = _assignment(table, df, free, groups, fractions, seed, "the unsplit rows")
            df.loc[free, "split"] = groups[free].map(assignment).to_numpy()
    out = table.with_frame(df)
    log.info("Patient-grouped split (seed %d):\n%s", seed, split_summary(out).to_string())
    return out


def split_summary(table: DataTable) -> pd.DataFrame:
    """Images and patients per split and class (columns ``images`` and ``patients``); multi-label: per
    split and finding, the positive images and positive patients.

    >>> split_summary(table).loc[("test", "NORMAL"), "patients"]
    """
    groups = patient_groups(table.frame)
    if table.multi_label:
        per = positive_counts(table.frame, table.classes, groups)
        return per.rename(columns={"positive_images": "images", "positive_patients": "patients"}).set_index(
            ["split", "finding"])[["images", "patients"]]
    df = table.frame.assign(group=groups.to_numpy())
    summary = df.groupby(["split", "label"]).agg(images=("path", "size"), patients=("group", "nunique"))
    return summary


def assign_folds(table: DataTable, k: int = 5, seed: int = 42) -> DataTable:
    """Add an int ``fold`` column (0..k-1): patient-grouped, class-stratified, shuffled with ``seed``.

    Multi-label: the patients are stratified over all findings together (iterative stratification,
    see the module docstring). Rows of the ``test`` split are held out of cross-validation and get
    ``fold = -1``.

    Raises:
        DatasetError: fewer than ``k`` patients (groups) in some class (multi-label: in all), or ``k < 2``.

    Example:
        >>> folds = assign_folds(table, k=5, seed=0)
        >>> folds.frame.groupby("fold").size()
    """
    if k < 2:
        raise DatasetError(f"Cross-validation needs k >= 2 folds, got k={k}.")
    df = table.frame.copy()
    pool = (df["split"] != "test").to_numpy()
    groups = patient_groups(df)[pool]
    folds = np.full(len(df), -1, dtype=int)
    if table.multi_label:
        folds[pool] = groups.map(_finding_folds(df[pool], table.classes, groups, k, seed)).to_numpy()
        df["fold"] = folds
        return table.with_frame(df)
    group_class = _group_classes(groups, df["label"][pool], table.classes)
    per_class = group_class.value_counts()
    if (per_class < k).any():
        few = {c: int(n) for c, n in per_class[per_class < k].items()}
        raise DatasetError(
            f"{k}-fold cross-validation needs at least {k} patients per class; these classes have fewer: {few}. "
            f"Use fewer folds (k <= {int(per_class.min())}) or add data."
        )
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    pool_index = np.flatnonzero(pool)
    y = df["label"][pool].to_numpy()
    for fold, (_, held) in enumerate(splitter.split(np.zeros(len(y)), y, groups.to_numpy())):
        folds[pool_index[held]] = fold
    df["fold"] = folds
    return table.with_frame(df)


def _finding_folds(frame: pd.DataFrame, findings: list[str], groups: pd.Series, k: int, seed: int) -> dict[str, int]:
    """Fold of every group: ``MultilabelStratifiedKFold`` over the groups' findings (:func:`patient_findings`)."""
    ids, y = patient_findings(frame, findings, groups)
    if len(ids) < k:
        raise DatasetError(f"{k}-fold cross-validation needs at least {k} patients; the data has {len(ids)}. "
                           f"Use fewer folds (k <= {len(ids)}) or add data.")
    rare = {f: int(n) for f, n in zip(findings, y[:, :-1].sum(axis=0)) if n < k}
    if rare:
        log.warning("%d-fold cross-validation: these findings have fewer than %d positive patients, so some folds "
                    "validate them without a positive (their AUC is undefined there): %s", k, k, rare)
    splitter = MultilabelStratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    fold_of: dict[str, int] = {}
    for fold, (_, held) in enumerate(splitter.split(np.zeros((len(ids), 1)), y)):
        fold_of.update(dict.fromkeys(ids[held], fold))
    return fold_of


def fold_tables(table: DataTable, k_index: int) -> tuple[DataTable, DataTable]:
    """Train and validation tables of fold ``k_index`` (needs a ``fold`` column from :func:`assign_folds`).

    >>> train, val = fold_tables(assign_folds(table, k=5), 0)
    """
    if "fold" not in table.frame.columns:
        raise DatasetError("The table has no 'fold' column; call assign_folds(table, k) first.")
    folds = table.frame["fold"].to_numpy()
    n_folds = int(folds.max()) + 1
    if not 0 <= k_index < n_folds:
        raise DatasetError(f"Fold index {k_index} is out of range; the table has folds 0..{n_folds - 1}.")
    train = table.with_frame(table.frame[(folds >= 0) & (folds != k_index)].assign(split="train"))
    val = table.with_frame(table.frame[folds == k_index].assign(split="val"))
    return train, val


__all__ = ["assign_folds", "fold_tables", "patient_groups", "split_patients", "split_summary"]
