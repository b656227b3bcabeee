"""utils: strict JSON (non-finite numbers as null, text untouched) and atomic writes."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from medclass.utils import to_json, write_json


def test_json_turns_non_finite_numbers_into_null_and_leaves_text_alone(tmp_path: Path) -> None:
    obj = {"path": "/data/NaNo/x.png", "note": "Infinity NaN", "auc": float("nan"), "ece": np.float32("inf"),
           "ci": [np.nan, 0.5, -math.inf], "probs": np.array([[0.1, np.nan]]), "n": np.int64(3)}
    write_json(tmp_path / "m.json", obj)
    back = json.loads((tmp_path / "m.json").read_text(), parse_constant=lambda c: f"bad constant {c}")
    assert back == {"path": "/data/NaNo/x.png", "note": "Infinity NaN", "auc": None, "ece": None,
                    "ci": [None, 0.5, None], "probs": [[0.1, None]], "n": 3}
    assert "NaN" not in to_json({"x": float("nan")})
def test_json_writes_non_finite_numbers_as_null_and_keeps_text(tmp_path):
    """`NaN` inside a file name was rewritten to `null` (a text replace over the whole JSON)."""
    report = {"skipped": [{"path": "/data/NaN_scan.png", "reason": "missing label 'NaN'"}],
              "auc": np.float32("nan"), "ci": [np.float64(0.5), np.inf, -np.inf], "n": np.int64(3),
              "probs": np.array([[0.25, np.nan]]), "ok": np.bool_(True), "file": Path("/x/NaN.dcm")}
    write_json(tmp_path / "r.json", report)
    text = (tmp_path / "r.json").read_text()
    back = json.loads(text)
    assert back == {"skipped": [{"path": "/data/NaN_scan.png", "reason": "missing label 'NaN'"}], "auc": None,
                    "ci": [0.5, None, None], "n": 3, "probs": [[0.25, None]], "ok": True, "file": "/x/NaN.dcm"}
    assert "Infinity" not in text and to_json({"x": 1}) == '{\n  "x": 1\n}'
