"""Memory-mapped image cache: round trip, keys, unreadable rows, atomic build, disk check."""
from __future__ import annotations

import logging
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from medclass.data import cache as cache_mod
from medclass.data.cache import ImageCache, build_cache, cache_key
from medclass.data.dataset import ImageDataset
from medclass.data.io import read_image
from medclass.data.table import DataTable
from medclass.data.transforms import build_transform, prepare_image
from medclass.errors import ConfigError, DatasetError


def make_table(folder: Path, n: int = 6, corrupt: tuple[int, ...] = ()) -> DataTable:
    """``n`` small RGB PNGs of different sizes; rows in ``corrupt`` are not images."""
    rng = np.random.default_rng(1)
    rows = []
    for i in range(n):
        path = folder / f"im{i}.png"
        if i in corrupt:
            path.write_bytes(b"\x00" * 40)
        else:
            Image.fromarray(rng.integers(0, 256, (30 + i, 26, 3), dtype=np.uint8)).save(path)
        rows.append({"path": str(path), "label": "xy"[i % 2]})
    return DataTable(pd.DataFrame(rows), ["x", "y"])


@pytest.mark.parametrize("in_chans", [1, 3])
def test_round_trip_equals_direct_decode_within_one_grey_level(tmp_path: Path, in_chans: int) -> None:
    table = make_table(tmp_path)
    cache = build_cache(table, 12, in_chans, folder=tmp_path / "c", workers=1)
    assert cache.images.shape == (6, in_chans, 12, 12) and cache.images.dtype == np.uint8 and cache.valid.all()
    for i, path in enumerate(table.frame["path"]):
        direct = prepare_image(read_image(path, size_hint=12), 12, in_chans).permute(1, 2, 0).numpy()
        assert np.abs(cache.image(i) - direct).max() <= 1 / 255
        assert cache.image(i).dtype == np.float32


def test_parallel_build_equals_serial_build(tmp_path: Path) -> None:
    table = make_table(tmp_path)
    serial = build_cache(table, 10, 1, folder=tmp_path / "a", workers=1)
    parallel = build_cache(table, 10, 1, folder=tmp_path / "b", workers=2)
    assert np.array_equal(serial.images, parallel.images)


def test_key_changes_with_every_setting_and_rows(tmp_path: Path) -> None:
    table = make_table(tmp_path)
    base = cache_key(table, 64, 1)
    others = [cache_key(table, 32, 1), cache_key(table, 64, 3), cache_key(table, 64, 1, window="lung"),
              cache_key(table, 64, 1, keep_aspect=True), cache_key(table.subset(np.arange(6) < 5), 64, 1)]
    assert base == cache_key(table, 64, 1) and len({base, *others}) == 6
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(table.frame["path"][0])  # the file changed on disk
    assert cache_key(table, 64, 1) != base


def test_existing_cache_is_reused_and_other_size_builds_anew(tmp_path: Path, caplog) -> None:
    table = make_table(tmp_path)
    first = build_cache(table, 8, 1, folder=tmp_path / "c", workers=1)
    stamp = first.path.stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="medclass.data.cache"):
        again = build_cache(table, 8, 1, folder=tmp_path / "c", workers=1)
    assert again.path == first.path and again.path.stat().st_mtime_ns == stamp
    assert any("Using image cache" in r.getMessage() for r in caplog.records)
    other = build_cache(table, 16, 1, folder=tmp_path / "c", workers=1)
    assert other.path != first.path and other.images.shape[-1] == 16


def test_unreadable_rows_are_marked_and_the_dataset_skips_them(tmp_path: Path, caplog) -> None:
    table = make_table(tmp_path, corrupt=(2,))
    with caplog.at_level(logging.WARNING, logger="medclass.data.cache"):
        cache = build_cache(table, 8, 1, folder=tmp_path / "c", workers=1)
    assert cache.valid.tolist() == [True, True, False, True, True, True] and "not an image" in cache.reasons[2]
    assert any("1 of 6 rows" in r.getMessage() and "im2.png" in r.getMessage() for r in caplog.records)
    reopened = ImageCache.open(cache.path)
    assert reopened.valid.tolist() == cache.valid.tolist() and reopened.reasons == cache.reasons
    ds = ImageDataset(table, transform=build_transform("none", 8, 1, [0.5], [0.25], train=False), cache=cache)
    assert ds[2] is None and ds.skipped == {table.frame["path"][2]: cache.reasons[2]}


def test_dataset_from_cache_matches_dataset_from_files(tmp_path: Path) -> None:
    table = make_table(tmp_path)
    cache = build_cache(table, 16, 1, folder=tmp_path / "c", workers=1)
    tf = build_transform("xray", 16, 1, [0.5], [0.25], train=True)
    cached = ImageDataset(table, transform=tf, seed=4, cache=cache)
    direct = ImageDataset(table, transform=tf, seed=4)
    for i in range(len(table)):
        diff = (cached[(2, i)]["image"] - direct[(2, i)]["image"]).abs().max()
        assert diff <= 1.01 / 255 / 0.25  # half a grey level, through the same augmentation, divided by std
    with pytest.raises(DatasetError, match="image_size"):
        ImageDataset(table, transform=build_transform("none", 32, 1, [0.5], [0.25], train=False), cache=cache)
    with pytest.raises(DatasetError, match="rows"):
        ImageDataset(table.subset(np.arange(6) < 4), transform=tf, cache=cache)


def test_interrupted_build_leaves_no_complete_looking_file(tmp_path: Path, monkeypatch) -> None:
    table = make_table(tmp_path)
    real = cache_mod._encode
    calls = []

    def failing(args):
        calls.append(args)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(args)

    monkeypatch.setattr(cache_mod, "_encode", failing)
    with pytest.raises(KeyboardInterrupt):
        build_cache(table, 8, 1, folder=tmp_path / "c", workers=1)
    assert [p.suffix for p in (tmp_path / "c").iterdir()] == [".lock"]  # the builders' lock file only
    monkeypatch.setattr(cache_mod, "_encode", real)
    assert build_cache(table, 8, 1, folder=tmp_path / "c", workers=1).valid.all()


def test_disk_space_is_checked_and_logged(tmp_path: Path, monkeypatch, caplog) -> None:
    table = make_table(tmp_path)
    with caplog.at_level(logging.INFO, logger="medclass.data.cache"):
        build_cache(table, 8, 1, folder=tmp_path / "ok", workers=1)
    assert any("needs 0.0 MiB on disk" in r.getMessage() and "MiB free" in r.getMessage() for r in caplog.records)
    monkeypatch.setattr(cache_mod.shutil, "disk_usage", lambda _: type("U", (), {"free": 1000})())
    with pytest.raises(ConfigError, match="data.cache"):
        build_cache(table, 8, 1, folder=tmp_path / "full", workers=1)
    assert [p.suffix for p in (tmp_path / "full").iterdir()] == [".lock"]


def test_cache_pickles_without_its_pixels(tmp_path: Path) -> None:
    cache = build_cache(make_table(tmp_path), 64, 3, folder=tmp_path / "c", workers=1)
    cache.images  # opened here
    blob = pickle.dumps(cache)
    assert len(blob) < 4096 < cache.images.nbytes  # a spawned worker maps the file itself
    assert np.array_equal(pickle.loads(blob).images, cache.images)
    assert torch.is_tensor(ImageDataset(make_table(tmp_path), transform=build_transform(
        "none", 64, 3, [0.5] * 3, [0.25] * 3, train=False), cache=cache)[0]["image"])
