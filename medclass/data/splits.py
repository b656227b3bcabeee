"""Patient-grouped, class-stratified, seeded splits and cross-validation folds.

Every image of a patient lands in the same split (or fold); rows with an empty ``patient`` are
their own group (one per image). A patient's class, used for stratification, is its most common
label (ties go to the first class in ``table.classes``). The same seed gives the same split.
Multi-label tables are stratified over all findings together by a grouped approximation of
iterative stratification: each image's key is its rarest positive finding (or none), each patient's
class its most common key (:func:`~medclass.data.multilabel.stratify_keys`).

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
from sklearn.model_selection import StratifiedGroupKFold

from ..errors import DatasetError
from .multilabel import NO_FINDING, label_matrix, stratify_keys
from .table import DataTable

log = logging.getLogger(__name__)


def patient_groups(frame: pd.DataFrame) -> pd.Series:
    """Group key of every row: the patient id, or ``'#row<i>'`` when the patient is unknown.

    >>> patient_groups(pd.DataFrame({"patient": ["p1", "", "p1"]})).tolist()
    ['p1', '#row1', 'p1']
    """
    patient = frame["patient"].astype(str).reset_index(drop=True)
    own = pd.Series([f"#row{i}" for i in range(len(patient))], dtype=object)
    return patient.where(patient != "", own)


def _group_classes(groups: pd.Series, labels: pd.Series, classes: list[str]) -> pd.Series:
    """Class of each group: its most common label, ties broken by the order of ``classes``."""
    order = {c: i for i, c in enumerate(classes)}
    counts = pd.crosstab(groups.to_numpy(), labels.map(order).to_numpy())
    return pd.Series(counts.idxmax(axis=1).map(lambda i: classes[i]), index=counts.index)


def stratify_labels(table: DataTable, frame: pd.DataFrame | None = None) -> tuple[pd.Series, list[str]]:
    """The label each row is stratified by, and their order: the class, or a multi-label row's key."""
    frame = table.frame if frame is None else frame
    if not table.multi_label:
        return frame["label"], list(table.classes)
    keys = stratify_keys(label_matrix(frame, table.classes), table.classes)
    return pd.Series(keys, index=frame.index), [*table.classes, NO_FINDING]


def _allocate(group_class: pd.Series, fractions: dict[str, float], seed: int, where: str,
              pool_rare: bool = False) -> dict[str, str]:
    """Seeded per-class allocation of groups to splits; ``fractions`` omit the remainder split 'train'.

    ``pool_rare`` (multi-label keys): keys with too few groups are allocated together as one stratum,
    and a stratum still too small goes to train, instead of raising."""
    rng = np.random.default_rng(seed)
    needed = 1 + sum(f > 0 for f in fractions.values())
    if pool_rare:
        sizes = group_class.value_counts()
        group_class = group_class.where(~group_class.isin(sizes.index[sizes < needed]), "#rare")
    assignment: dict[str, str] = {}
    for cls in sorted(group_class.unique()):
        members = sorted(group_class.index[group_class == cls])
        if pool_rare and len(members) < needed:
            assignment.update({g: "train" for g in members})
            continue
        if len(members) < needed:
            wanted = ", ".join(["train", *(s for s, f in fractions.items() if f > 0)])
            raise DatasetError(
                f"Class {cls!r} has only {len(members)} patient(s) in {where}, but the split ({wanted}) needs at least "
                f"{needed} per class. Add images of {cls!r}, lower data.val_fraction / data.test_fraction to 0, "
                "or use cross-validation (assign_folds)."
            )
        members = [members[i] for i in rng.permutation(len(members))]
        start = 0
        for split, frac in fractions.items():
            n = max(1, round(frac * len(members))) if frac > 0 else 0
            n = min(n, len(members) - start - 1)  # always leave at least one group for train
            assignment.update({g: split for g in members[start : start + n]})
            start += n
        assignment.update({g: "train" for g in members[start:]})
    return assignment


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
        test_fraction: share of patients (per class) for the test set.
        seed: fixes the allocation.

    Raises:
        DatasetError: a class has too few patients for the requested splits, or bad fractions.

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
        labels, order = stratify_labels(table, df)
        group_class = _group_classes(groups[train], labels[train], order)
        assignment = _allocate(group_class, {"val": val_fraction}, seed, "the train split", table.multi_label)
        df.loc[train, "split"] = groups[train].map(assignment).to_numpy()
    else:
        known = df.loc[~empty].assign(group=groups[~empty].to_numpy())
        inherited = known.groupby("group")["split"].agg(lambda s: s.value_counts().index[0])
        follow = empty & groups.isin(inherited.index).to_numpy()
        df.loc[follow, "split"] = groups[follow].map(inherited).to_numpy()
        free = empty & ~follow
        if free.any():
            labels, order = stratify_labels(table, df)
            group_class = _group_classes(groups[free], labels[free], order)
            fractions = {"test": test_fraction, "val": val_fraction}
            assignment = _allocate(group_class, fractions, seed, "the unsplit rows", table.multi_label)
            df.loc[free, "split"] = groups[free].map(assignment).to_numpy()
    out = table.with_frame(df)
    log.info("Patient-grouped split (seed %d):\n%s", seed, split_summary(out).to_string())
    return out


def split_summary(table: DataTable) -> pd.DataFrame:
    """Images and patients per split and class (columns ``images`` and ``patients``).

    >>> split_summary(table).loc[("test", "NORMAL"), "patients"]
    """
    df = table.frame.assign(group=patient_groups(table.frame).to_numpy())
    summary = df.groupby(["split", "label"]).agg(images=("path", "size"), patients=("group", "nunique"))
    return summary


def assign_folds(table: DataTable, k: int = 5, seed: int = 42) -> DataTable:
    """Add an int ``fold`` column (0..k-1): patient-grouped, class-stratified, shuffled with ``seed``.

    Rows of the ``test`` split are held out of cross-validation and get ``fold = -1``.

    Raises:
        DatasetError: fewer than ``k`` patients (groups) in some class, or ``k < 2``.

    Example:
        >>> folds = assign_folds(table, k=5, seed=0)
        >>> folds.frame.groupby("fold").size()
    """
    if k < 2:
        raise DatasetError(f"Cross-validation needs k >= 2 folds, got k={k}.")
    df = table.frame.copy()
    pool = (df["split"] != "test").to_numpy()
    groups = patient_groups(df)[pool]
    labels, order = stratify_labels(table, df)
    group_class = _group_classes(groups, labels[pool], order)
    per_class = group_class.value_counts()
    if (per_class < k).any():
        few = {c: int(n) for c, n in per_class[per_class < k].items()}
        raise DatasetError(
            f"{k}-fold cross-validation needs at least {k} patients per class; these classes have fewer: {few}. "
            f"Use fewer folds (k <= {int(per_class.min())}) or add data."
        )
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = np.full(len(df), -1, dtype=int)
    pool_index = np.flatnonzero(pool)
    y = labels[pool].to_numpy()
    for fold, (_, held) in enumerate(splitter.split(np.zeros(len(y)), y, groups.to_numpy())):
        folds[pool_index[held]] = fold
    df["fold"] = folds
    return table.with_frame(df)


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
