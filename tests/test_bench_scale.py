"""bench/bench_scale.py runs every stage at tiny sizes; the search and the brute force agree on its hashes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # a benchmark run (about a minute): CI's slow stage
def test_bench_scale_measures_every_stage(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    cmd = [sys.executable, str(ROOT / "bench" / "bench_scale.py"), "--sizes", "500", "2000", "--brute-max", "2000",
           "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())["results"]
    assert {(r["stage"], r["rows"]) for r in results} == {(s, n) for s in ("table", "split", "search", "brute", "audit")
                                                          for n in (500, 2000)}
    assert all(r["seconds"] > 0 and r["peak_rss_mib"] >= r["inputs_rss_mib"] > 0 for r in results)
    found = {(r["stage"], r["rows"]): r["result"] for r in results}
    assert found[("search", 2000)] == found[("brute", 2000)] > 0  # planted pairs found by both
    table = out.with_suffix(".md").read_text()
    assert table.count("\n| search |") == 2 and "slope" in table
