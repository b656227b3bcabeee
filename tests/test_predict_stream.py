"""`predict` inputs found one at a time (manifests read in chunks) and the resume keys of a killed run."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medclass.config import DataConfig
from medclass.serving import _inputs
from medclass.serving.prediction_file import DoneRows, PredictionFile
from _helpers import xray_paths


def test_a_manifest_read_in_chunks_gives_the_rows_of_one_read(tmp_path, monkeypatch):
    """Chunks of 2 rows: the same rows, metadata, filters, label map, bad rows and line numbers as one read."""
    xrays = xray_paths()
    manifest = tmp_path / "list.csv"
    pd.DataFrame({"image": [str(p) for p in xrays] + ["missing.png"], "pid": ["a", "b", "", "d", "e"],
                  "label": ["x", "y", "x", "drop_me", "x"], "age": ["30", "40", "50", "60", "70"]}).to_csv(manifest, index=False)
    settings = DataConfig(path_column="image", patient_column="pid", label_column="label", where="age < 35 or age > 45",
                          label_map={"drop_me": "drop"})
    whole = list(_inputs.iter_inputs([manifest], "none", settings))
    monkeypatch.setattr(_inputs, "MANIFEST_CHUNK_ROWS", 2)
    chunked = list(_inputs.iter_inputs([manifest], "none", settings))
    assert chunked == whole
    assert [Path(r["path"]).name for r in whole] == [xrays[0].name, xrays[2].name, "missing.png"]
    assert [r["patient"] for r in whole[:2]] == ["a", ""]
    assert "does not exist" in whole[2]["reason"] and whole[0]["age"] == "30"
    assert _inputs.metadata_columns([manifest], settings) == ["label", "age"]


def test_folders_are_walked_lazily_with_their_problems_in_place(tmp_path):
    for name in ("a.jpeg", "b.jpeg"):
        shutil.copy(xray_paths()[0], tmp_path / name)
    (tmp_path / "a_notes.txt").write_text("x")
    rows = _inputs.iter_inputs([tmp_path])
    first = next(rows)  # nothing listed ahead: the first file comes before the rest is looked at
    assert Path(first["path"]).name == "a.jpeg"
    rest = list(rows)
    assert [Path(r["path"]).name for r in rest] == ["a_notes.txt", "b.jpeg"] and "unsupported" in rest[0]["reason"]


def test_done_rows_are_eight_byte_keys_that_tell_rows_apart():
    done = DoneRows()
    done.add(["/x/a.png", "/x/b.dcm", "/x/b.dcm"], [-1, 0, 1])
    assert len(done) == 3
    np.testing.assert_array_equal(done.mask(["/x/a.png", "/x/b.dcm", "/x/b.dcm", "/x/a.png"], [-1, 1, 2, 0]),
                                  [True, True, False, False])
    assert not DoneRows().mask(["/x/a.png"], [-1]).any()


def test_an_output_with_other_columns_is_not_appended_to(tmp_path):
    out = tmp_path / "p.csv"
    out.write_text("path,frame,predicted,error,ood\n/a.png,-1,x,,\n")
    target = PredictionFile(out, resume=True)
    assert target.resumed == 1
    with pytest.raises(Exception, match="give a new --out"):
        target.write(pd.DataFrame({"path": ["/b.png"], "frame": [-1], "other": [1]}))
