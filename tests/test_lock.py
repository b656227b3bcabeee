"""Two processes build the same fingerprint cache and image cache at once: one builds, the other waits and reuses
the result (medclass.data._lock); the files are those of a single builder, none of them half written."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import numpy as np
import pandas as pd

import medclass
from medclass.data.cache import build_cache
from medclass.data.fingerprint import PART_GLOB, fingerprint
from test_cache import make_table

BUILDER = Path(__file__).with_name("_lock_builder.py")
WAIT_S = 180  # the longest either side waits for the other's event (two interpreters start on a busy machine)


def _wait_for(condition, what: str) -> None:
    end = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


@pytest.mark.slow  # a race between two real processes: CI's slow stage
def test_two_processes_building_the_same_caches_build_them_once(tmp_path: Path) -> None:
    table = make_table(tmp_path, n=12)
    csv = tmp_path / "table.csv"
    table.frame.to_csv(csv, index=False)
    shared, gate = tmp_path / "shared", tmp_path / "gate"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(medclass.__file__).parents[1]),
                                                                      os.environ.get("PYTHONPATH", "")]))}
    logs = [open(tmp_path / f"builder{i}.log", "w+") for i in (0, 1)]
    first = subprocess.Popen([sys.executable, str(BUILDER), str(csv), str(shared), str(gate)], env=env,
                             stdout=subprocess.PIPE, stderr=logs[0], text=True)
    try:
        _wait_for(Path(f"{gate}.started").exists, "the first builder to start decoding (holding the lock)")
        second = subprocess.Popen([sys.executable, str(BUILDER), str(csv), str(shared)], env=env,
                                  stdout=subprocess.PIPE, stderr=logs[1], text=True)
        _wait_for(lambda: "Another process is building" in (tmp_path / "builder1.log").read_text(),
                  "the second builder to wait for the lock")
        gate.touch()
        outs = [p.communicate(timeout=WAIT_S)[0] for p in (first, second)]
    finally:
        for p in (first, locals().get("second")):
            if p is not None and p.poll() is None:
                p.kill()
        for f in logs:
            f.close()
    assert (first.returncode, second.returncode) == (0, 0), [(tmp_path / f"builder{i}.log").read_text() for i in (0, 1)]
    results = [json.loads(out.strip().splitlines()[-1]) for out in outs]
    # every image decoded once in all (by whichever builder came first), never by both
    assert sum(r["decoded"]["fingerprints"] for r in results) == len(table)
    assert sum(r["decoded"]["cache"] for r in results) == len(table)
    assert results[0]["fingerprints"] == results[1]["fingerprints"]
    assert results[0]["cache"] == results[1]["cache"]
    # and the shared files are exactly what one builder alone writes
    alone = build_cache(table, 16, 1, folder=tmp_path / "alone", workers=1)
    assert hashlib.sha256(np.asarray(alone.images).tobytes()).hexdigest() == results[0]["cache"]
    fp = fingerprint(table, workers=1)
    assert hashlib.sha256(pd.util.hash_pandas_object(fp).to_numpy().tobytes()).hexdigest() == results[0]["fingerprints"]
    assert sum(len(np.load(p)["key"]) for p in (shared / "fp").glob(PART_GLOB)) == len(table)
    assert not list(shared.rglob("*.partial")) and not list(shared.rglob("*.tmp"))
