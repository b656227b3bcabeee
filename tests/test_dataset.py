"""Streamed dataset: dict samples, seeded augmentation, epoch sampler, skipping unreadable files."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from medclass.data.catalog import sample_path
from medclass.data.dataset import EpochSampler, ImageDataset, collate_skip
from medclass.data.io import read_image
from medclass.data.table import DataTable
from medclass.data.transforms import build_transform
from medclass.errors import ImageReadError


def make_table(folder: Path, n: int = 12, corrupt: tuple[int, ...] = ()) -> DataTable:
    """``n`` tiny PNGs (gray, 20 x 24), labels alternating a/b, rows in ``corrupt`` are garbage bytes."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        path = folder / f"img{i:03d}.png"
        if i in corrupt:
            path.write_bytes(b"not a png at all")
        else:
            Image.fromarray(rng.integers(0, 256, (20, 24), dtype=np.uint8)).save(path)
        rows.append({"path": str(path), "label": "ab"[i % 2], "patient": f"p{i // 2}", "split": "train"})
    return DataTable(pd.DataFrame(rows), ["a", "b"])


def xray_tf(train: bool = True):
    return build_transform("xray", 16, 1, [0.5], [0.25], train=train)


def epoch_batches(ds: ImageDataset, sampler: EpochSampler, epoch: int, workers: int, batch_size: int = 4) -> list[dict]:
    sampler.set_epoch(epoch)
    loader = DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate_skip)
    return [b for b in loader if b is not None]


def same_batches(a: list[dict], b: list[dict]) -> bool:
    return len(a) == len(b) and all(
        torch.equal(x["image"], y["image"]) and x["path"] == y["path"] and torch.equal(x["label"], y["label"])
        for x, y in zip(a, b))


def test_sample_is_a_dict_with_the_contract_fields(tmp_path: Path) -> None:
    table = make_table(tmp_path, 4)
    ds = ImageDataset(table, classes=table.classes, transform=xray_tf(train=False))
    s = ds[3]
    assert set(s) == {"image", "label", "path", "patient", "index"}
    assert s["image"].shape == (1, 16, 16) and s["image"].dtype == torch.float32
    assert (s["label"], s["path"], s["patient"], s["index"]) == (1, table.frame["path"][3], "p1", 3)
    assert torch.equal(ds[(5, 3)]["image"], s["image"])  # eval transform ignores the epoch
    with pytest.raises(IndexError):
        ds[4]


def test_same_seed_same_batches_for_0_and_2_workers(tmp_path: Path) -> None:
    table = make_table(tmp_path, 12)
    ds = ImageDataset(table, transform=xray_tf(), seed=7)
    sampler = EpochSampler(len(ds), seed=7)
    zero = epoch_batches(ds, sampler, 1, workers=0)
    two = epoch_batches(ds, sampler, 1, workers=2)
    assert same_batches(zero, two) and len(zero) == 3


def test_epochs_differ_and_resumed_epoch_equals_uninterrupted(tmp_path: Path) -> None:
    table = make_table(tmp_path, 8)
    ds = ImageDataset(table, transform=xray_tf(), seed=3)
    assert torch.equal(ds[(0, 2)]["image"], ds[(0, 2)]["image"])
    assert not torch.equal(ds[(0, 2)]["image"], ds[(1, 2)]["image"])
    sampler = EpochSampler(len(ds), seed=3)
    runs = [epoch_batches(ds, sampler, e, workers=0) for e in range(3)]
    assert not same_batches(runs[1], runs[2])
    fresh_ds = ImageDataset(table, transform=xray_tf(), seed=3)  # a new process after a crash
    torch.manual_seed(12345)  # whatever the global RNG holds
    resumed = epoch_batches(fresh_ds, EpochSampler(len(fresh_ds), seed=3), 2, workers=0)
    assert same_batches(runs[2], resumed)


def test_augmentation_leaves_the_global_rng_alone(tmp_path: Path) -> None:
    ds = ImageDataset(make_table(tmp_path, 2), transform=xray_tf(), seed=1)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    ds[(0, 1)]
    assert torch.equal(torch.rand(3), expected)


def test_sampler_order_is_a_function_of_seed_and_epoch() -> None:
    a, b = EpochSampler(50, seed=5), EpochSampler(50, seed=5)
    a.set_epoch(4)
    b.set_epoch(4)
    assert list(a) == list(b) and all(e == 4 for e, _ in a)
    b.set_epoch(5)
    assert [i for _, i in a] != [i for _, i in b]
    assert [i for _, i in EpochSampler(6, shuffle=False)] == list(range(6))


@pytest.mark.parametrize("n, replicas", [(12, 3), (10, 3), (7, 2)])
def test_sharding_covers_every_index(n: int, replicas: int) -> None:
    shards = []
    for rank in range(replicas):
        s = EpochSampler(n, seed=1, num_replicas=replicas, rank=rank)
        s.set_epoch(2)
        shards.append([i for _, i in s])
    assert len({len(x) for x in shards}) == 1 and len(shards[0]) == -(-n // replicas)
    flat = [i for x in shards for i in x]
    assert sorted(set(flat)) == list(range(n))
    assert len(flat) - n == (-n) % replicas  # only the padding repeats
    dropped = [[i for _, i in EpochSampler(n, seed=1, num_replicas=replicas, rank=r, drop_last=True)] for r in range(replicas)]
    flat = [i for x in dropped for i in x]
    assert len(flat) == len(set(flat)) == n // replicas * replicas


def test_weighted_sampler_favours_the_rare_class() -> None:
    labels = np.array([0] * 90 + [1] * 10)
    weights = 1.0 / np.bincount(labels)[labels]
    s = EpochSampler(100, seed=0, weights=weights, num_samples=4000)
    drawn = labels[[i for _, i in s]]
    assert len(drawn) == 4000 and 0.45 < drawn.mean() < 0.55  # 10 % of rows, about half of the draws
    with pytest.raises(ValueError, match="weights"):
        EpochSampler(3, weights=[1.0, -1.0, 1.0])


def test_corrupt_file_is_skipped_reported_and_the_epoch_goes_on(tmp_path: Path, caplog) -> None:
    table = make_table(tmp_path, 12, corrupt=(5,))
    bad = table.frame["path"][5]
    for workers in (0, 2):
        ds = ImageDataset(table, transform=xray_tf(), seed=0)
        with caplog.at_level(logging.WARNING, logger="medclass.data.dataset"):
            batches = epoch_batches(ds, EpochSampler(len(ds), seed=0, shuffle=False), 0, workers=workers)
        assert sum(len(b["path"]) for b in batches) == 11 and bad not in [p for b in batches for p in b["path"]]
        assert [p for b in batches for p in b["skipped"]] == [bad]
    assert ds.skipped == {}  # the workers skipped it, not this process
    assert ds[5] is None and ds.skipped[bad].startswith("not an image")
    assert collate_skip([ds[0]])["skipped"] == [bad]  # pending skips of this process go with its next batch
    assert any(bad in r.getMessage() for r in caplog.records)


def test_all_bad_batch_collates_to_none(tmp_path: Path) -> None:
    table = make_table(tmp_path, 4, corrupt=(0, 1))
    ds = ImageDataset(table, transform=xray_tf(), seed=0)
    collate_skip([ds[2]])  # hand over whatever earlier tests left pending in this process
    assert collate_skip([ds[0], ds[1]]) is None
    good = collate_skip([ds[2], ds[0], ds[3]])
    assert good["image"].shape == (2, 1, 16, 16) and good["label"].tolist() == [0, 1]
    assert good["skipped"] == [table.frame["path"][0], table.frame["path"][1]]  # carried to the next batch


def test_reader_is_injectable(tmp_path: Path) -> None:
    table = make_table(tmp_path, 3)
    calls = []

    def reader(path: str, frame: int = -1, window: str = "", size_hint: int | None = None) -> np.ndarray:
        calls.append((Path(path).name, frame, window, size_hint))
        if path.endswith("img001.png"):
            raise ImageReadError(path, "fake failure")
        return np.full((8, 8, 1), 0.75, np.float32)

    ds = ImageDataset(table, transform=build_transform("none", 4, 1, [0.5], [0.25], train=False), window="lung",
                      reader=reader)
    assert torch.allclose(ds[0]["image"], torch.ones(1, 4, 4)) and ds[1] is None
    assert ds.skipped == {table.frame["path"][1]: "fake failure"}
    assert calls[0] == ("img000.png", -1, "lung", 4)


def test_real_chest_xrays_load() -> None:
    files = sorted((sample_path() / "NORMAL").glob("*.jpeg"))[:4]  # the sample shipped in the package
    table = DataTable(pd.DataFrame({"path": [str(f) for f in files], "label": "NORMAL"}), ["NORMAL", "PNEUMONIA"])
    ds = ImageDataset(table, transform=build_transform("xray", 64, 1, [0.5], [0.25], train=True), seed=1)
    batch = collate_skip([ds[(0, i)] for i in range(len(ds))])
    assert batch["image"].shape == (4, 1, 64, 64) and not set(batch["skipped"]) & set(batch["path"])
    assert batch["image"].std() > 0.1 and read_image(files[0]).shape == (96, 96, 1)
