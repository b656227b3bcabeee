"""bench/bench_gpu.py runs end to end on the CPU with tiny settings (its logic; GPU figures come from a GPU)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from _helpers import make_images

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # a benchmark run: CI's slow stage
def test_bench_gpu_runs_on_the_cpu(tmp_path: Path) -> None:
    data = make_images(tmp_path / "data", n_per_class=8, size=40)
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "bench" / "bench_gpu.py"), "--device", "cpu", "--models", "resnet18",
           "--steps", "3", "--warmup", "1", "--batch-size", "8", "--image-size", "64", "--workers", "0",
           "--data", str(data), "--cache", str(tmp_path / "cache"), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "bench_gpu.json").read_text())
    (result,) = report["results"]
    assert result["model"] == "resnet18" and result["cache_rows"] == 16
    assert result["precision"] == "32-true" and result["channels_last"] is False
    for key in ("median_synthetic_images_per_s", "median_real_images_per_s", "feed_only_images_per_s"):
        assert result[key] > 0
    assert abs(result["ratio"] - result["median_real_images_per_s"] / result["median_synthetic_images_per_s"]) < 1e-9
    table = (out / "bench_gpu.md").read_text()
    assert "| resnet18 | 32-true |" in table and f"{result['ratio']:.3f}" in table


def test_bench_step_measures_every_cell(tmp_path: Path) -> None:
    """bench/bench_step.py: threads x channels_last x bf16 cells, each a positive rate, written as JSON and a table."""
    out = tmp_path / "step.json"
    cmd = [sys.executable, str(ROOT / "bench" / "bench_step.py"), "--model", "simple_cnn", "--image-size", "32",
           "--batch", "4", "--threads", "1", "--warmup", "1", "--steps", "1", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert {(r["channels_last"], r["bf16"]) for r in rows} == {(False, False), (False, True), (True, False), (True, True)}
    assert all(r["images_per_s"] > 0 and r["threads"] == 1 for r in rows)
    assert proc.stdout.count("\n| 1 |") == 4
