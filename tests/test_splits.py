"""Patient-grouped, stratified, seeded splits and folds."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import StratifiedGroupKFold

from medclass.data.splits import assign_folds, fold_tables, patient_groups, split_patients, split_summary
from medclass.data.table import DataTable
from medclass.errors import DatasetError


def make_table(n_patients=(40, 60), images_per_patient=3, split="", unknown_patients=0) -> DataTable:
    """Patients of two classes with several images each, plus rows without a patient."""
    rows = []
    for cls, n in zip(("A", "B"), n_patients):
        for p in range(n):
            for i in range(1 + (p % images_per_patient)):
                rows.append({"path": f"{cls}/p{p}_{i}.png", "label": cls, "patient": f"{cls}{p}", "split": split})
    for i in range(unknown_patients):
        rows.append({"path": f"x/{i}.png", "label": "AB"[i % 2], "patient": "", "split": split})
    return DataTable(pd.DataFrame(rows), ["A", "B"])


def splits_of_patients(table: DataTable) -> pd.Series:
    named = table.frame[table.frame["patient"] != ""]
    return named.groupby("patient")["split"].nunique()


def test_patient_groups_give_unknown_patients_their_own_group():
    assert patient_groups(pd.DataFrame({"patient": ["p1", "", "p1", ""]})).tolist() == ["p1", "#row1", "p1", "#row3"]


def test_split_is_grouped_stratified_and_sized():
    table = split_patients(make_table(unknown_patients=20), 0.15, 0.15, seed=1)
    assert (splits_of_patients(table) == 1).all()
    assert set(table.frame["split"]) == {"train", "val", "test"}
    summary = split_summary(table)
    # per class 15 % of the patients (A: 40 + 10 unknown rows, B: 60 + 10) go to val and to test
    assert summary.loc[("test", "A"), "patients"] == round(0.15 * 50)
    assert summary.loc[("val", "B"), "patients"] == round(0.15 * 70)
    assert summary.loc[("train", "B"), "patients"] == 70 - 2 * round(0.15 * 70)
    assert summary["images"].sum() == len(table)


def test_split_is_reproducible_and_depends_on_seed():
    a = split_patients(make_table(), seed=3).frame["split"]
    b = split_patients(make_table(), seed=3).frame["split"]
    c = split_patients(make_table(), seed=4).frame["split"]
    assert a.tolist() == b.tolist()
    assert a.tolist() != c.tolist()


def test_existing_splits_are_kept_and_val_is_carved_from_train_by_patient():
    table = make_table()
    df = table.frame
    df["split"] = np.where(df["patient"].str[1:].astype(int) < 8, "test", "train")
    out = split_patients(table.with_frame(df), val_fraction=0.25, seed=0)
    assert (out.frame["split"][df["split"] == "test"] == "test").all()
    assert (splits_of_patients(out) == 1).all()
    train_patients = df[df["split"] == "train"].groupby("label")["patient"].nunique()
    val_patients = out.frame[out.frame["split"] == "val"].groupby("label")["patient"].nunique()
    assert val_patients.to_dict() == {c: round(0.25 * n) for c, n in train_patients.items()}


def test_unsplit_rows_of_a_known_patient_follow_that_patient():
    table = make_table(n_patients=(10, 10))
    df = table.frame
    df.loc[0, "split"] = "test"  # patient A0 already in test, its other rows unsplit
    out = split_patients(table.with_frame(df), seed=0)
    assert set(out.frame.loc[out.frame["patient"] == "A0", "split"]) == {"test"}


def test_too_few_patients_is_a_clear_error():
    with pytest.raises(DatasetError, match=r"Class 'A' has only 2 patient\(s\).*needs at least 3"):
        split_patients(make_table(n_patients=(2, 10)))
    # without val and test, one patient per class is enough
    assert set(split_patients(make_table(n_patients=(1, 1)), 0, 0).frame["split"]) == {"train"}
    with pytest.raises(DatasetError, match="sum to less than 1"):
        split_patients(make_table(), 0.6, 0.5)


def test_folds_match_scikit_learn_and_keep_patients_together():
    table = make_table(unknown_patients=10)
    out = assign_folds(table, k=5, seed=7)
    groups = patient_groups(table.frame).to_numpy()
    expected = np.empty(len(table), dtype=int)
    splitter = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=7)
    for fold, (_, held) in enumerate(splitter.split(np.zeros(len(table)), table.frame["label"], groups)):
        expected[held] = fold
    assert out.frame["fold"].tolist() == expected.tolist()
    assert (out.frame.groupby(groups)["fold"].nunique() == 1).all()

    train, val = fold_tables(out, 2)
    assert len(train) + len(val) == len(table)
    assert set(val.frame["split"]) == {"val"} and set(train.frame["split"]) == {"train"}
    assert not set(train.frame["path"]) & set(val.frame["path"])


def test_folds_hold_out_test_rows_and_reject_too_few_patients():
    table = make_table(n_patients=(12, 12))
    df = table.frame
    df.loc[df["patient"] == "A0", "split"] = "test"
    out = assign_folds(table.with_frame(df), k=3)
    assert (out.frame.loc[df["split"] == "test", "fold"] == -1).all()
    assert set(out.frame.loc[df["split"] != "test", "fold"]) == {0, 1, 2}
    with pytest.raises(DatasetError, match="at least 5 patients per class"):
        assign_folds(make_table(n_patients=(3, 10)), k=5)
    with pytest.raises(DatasetError, match="no 'fold' column"):
        fold_tables(table, 0)
