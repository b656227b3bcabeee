"""The data check's warnings before training (issue 12 point 6), each naming what it found."""
from __future__ import annotations

import logging

import pandas as pd

from medclass.config import DataConfig
from medclass.data.advice import data_warnings
from medclass.data.audit import LeakReport, _describe, apply_leak_policy
from medclass.data.table import DataTable


def _table() -> DataTable:
    rows = [{"path": f"n{i}.png", "label": "normal", "patient": f"n{i}", "view": "PA"} for i in range(120)]
    rows += [{"path": f"p{i}.png", "label": "pneumonia", "patient": f"p{i}", "view": "PA"} for i in range(100)]
    rows += [{"path": f"c{i}.png", "label": "covid", "patient": f"c{i // 2}", "view": "PA"} for i in range(19)]
    rows[0]["view"] = rows[1]["view"] = "LL"  # two lateral views
    rows[3]["patient"] = "p0"  # an image labelled normal under a pneumonia patient: p0 has two labels
    return DataTable(pd.DataFrame(rows), ["covid", "normal", "pneumonia"])


def test_every_finding_is_named():
    table = _table()
    audit = LeakReport(len(table), -1, exact_groups=[{"rows": [5, 6], "patients": ["n5", "n6"], "splits": ["", ""],
                                                      "labels": ["normal"] * 2, "paths": ["a", "b"]}])
    warnings = data_warnings(table, None, audit, DataConfig())
    found = {w.kind: w for w in warnings}
    assert [w.kind for w in warnings] == ["split_too_small", "conflicting_labels", "imbalance", "acquisition",
                                          "duplicate_patients"]
    small = found["split_too_small"]
    assert "class 'covid' has 19 images" in small.message and small.details[0]["class"] == "covid"
    assert small.details[0]["test"] < 10 and sum(small.details[0][s] for s in ("train", "val", "test")) == 19
    assert sum(small.details[0]["patients"].values()) == 10 and "test images (" in small.message  # 19 images, 10 patients
    assert "p0 (normal / pneumonia)" in found["conflicting_labels"].message
    assert "2 x 'LL'" in found["acquisition"].message and "--where" in found["acquisition"].message
    assert "n5 = n6" in found["duplicate_patients"].message
    assert "(6 : 1)" in found["imbalance"].message and "class_weights=balanced" in found["imbalance"].message

def test_imbalance_and_a_clean_table():
    rows = [{"path": f"a{i}", "label": "a", "patient": f"a{i}"} for i in range(600)]
    rows += [{"path": f"b{i}", "label": "b", "patient": f"b{i}"} for i in range(100)]
    table = DataTable(pd.DataFrame(rows), ["a", "b"])
    kinds = [w.kind for w in data_warnings(table, None, LeakReport(len(table), -1), DataConfig())]
    assert kinds == ["imbalance"]
    balanced = DataTable(pd.DataFrame(rows[:100] + rows[600:]), ["a", "b"])
    assert [w.kind for w in data_warnings(balanced, None, LeakReport(len(balanced), -1), DataConfig())] == []


def test_merging_patient_ids_is_logged_by_name(caplog):
    table = DataTable(pd.DataFrame({"path": ["x.png", "y.png"], "label": ["a", "a"], "patient": ["P1", "P2"]}), ["a"])
    report = LeakReport(2, -1, exact_groups=[_describe(table.frame, table.frame["patient"], [0, 1])])
    with caplog.at_level(logging.WARNING):
        merged, info = apply_leak_policy(table, report, "merge")
    assert set(merged.frame["patient"]) == {"P1"}
    assert "Duplicate images link patients P1, P2" in caplog.text
