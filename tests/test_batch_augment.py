"""Augmentation on the device (medclass.data.batch_augment, medclass.training.accel) against the CPU path.

On a CPU-only machine the "device" is the CPU, so these tests check the device path here: for the
same seed, epoch and index a sample gets the same parameters as on the CPU path, and the batched
output equals the CPU path's per-image output. Tolerance: both paths compute the same bilinear
affine (torchvision's matrix and sampling, mask included) in float32, so the difference is float
rounding: max abs difference < 1e-4 on normalised images (std 0.25; measured ~3e-5). When the
images are resized in the worker (no cache), the device path serves them as uint8: the bound is
then half a grey level, times the largest brightness/contrast gain.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torchvision.transforms import v2

from medclass.config import DataConfig, apply_overrides
from medclass.data.batch_augment import PARAM_NAMES, BatchAugment, FeedDataset, FeedTransform, draw_params
from medclass.data.cache import build_cache
from medclass.data.dataset import ImageDataset, collate_skip, sample_seed
from medclass.data.sources import load_source
from medclass.data.table import DataTable
from medclass.data.transforms import PRESETS, build_transform
from medclass.errors import ConfigError
from medclass.training.accel import DeviceFeed, resolve_augment_on, use_channels_last

from _helpers import make_images, tiny_config

SIZE, SEED, EPOCH, N = 32, 42, 3, 12
AUGMENTED = [p for p in PRESETS if p != "none"]


def make_reader(size: int, chans: int):
    """A reader of seeded random images whose pixels are exact multiples of 1/255 (as from the cache)."""
    def reader(path: str, frame: int = -1, window: str = "", size_hint: int | None = None) -> np.ndarray:
        rng = np.random.default_rng(int(Path(path).stem))
        return (rng.integers(0, 256, (size, size, chans)) / 255).astype(np.float32)
    return reader


def make_table(n: int = N) -> DataTable:
    frame = pd.DataFrame({"path": [f"/img/{i}.png" for i in range(n)], "label": ["a", "b"] * (n // 2)})
    return DataTable(frame, classes=["a", "b"])


def cpu_batch(preset: str, chans: int, reader, epoch: int = EPOCH) -> torch.Tensor:
    tf = build_transform(preset, SIZE, chans, [0.5] * chans, [0.25] * chans, train=True)
    ds = ImageDataset(make_table(), transform=tf, seed=SEED, reader=reader)
    return torch.stack([ds[(epoch, i)]["image"] for i in range(N)])


def device_batch(preset: str, chans: int, reader, epoch: int = EPOCH) -> torch.Tensor:
    aug = BatchAugment(PRESETS[preset], SIZE, [0.5] * chans, [0.25] * chans, seed=SEED)
    ds = FeedDataset(make_table(), aug, chans, seed=SEED, reader=reader)
    batch = collate_skip([ds[(epoch, i)] for i in range(N)])
    assert batch["image"].dtype == torch.uint8 and batch["augment_params"].shape == (N, len(PARAM_NAMES))
    return aug(batch["image"], batch["augment_params"], train=True)


@pytest.mark.parametrize("preset", AUGMENTED)
def test_parameters_equal_those_of_the_cpu_path(preset: str, monkeypatch) -> None:
    """Spy on the torchvision transforms of the CPU path and compare with draw_params, sample by sample."""
    seen: dict[str, list] = {"hflip": [], "vflip": [], "affine": [], "jitter": []}

    def spy(cls, method, key):
        original = getattr(cls, method)

        def wrapped(self, *args, **kwargs):
            out = original(self, *args, **kwargs)
            seen[key].append(out if method == "make_params" else True)
            return out
        monkeypatch.setattr(cls, method, wrapped)

    spy(v2.RandomAffine, "make_params", "affine")
    spy(v2.ColorJitter, "make_params", "jitter")
    spy(v2.RandomHorizontalFlip, "transform", "hflip")
    spy(v2.RandomVerticalFlip, "transform", "vflip")
    a = PRESETS[preset]
    tf = build_transform(preset, SIZE, 1, [0.5], [0.25], train=True)
    ds = ImageDataset(make_table(), transform=tf, seed=SEED, reader=make_reader(SIZE, 1))
    flips = 0
    for i in range(N):
        for k in seen:
            seen[k].clear()
        ds[(EPOCH, i)]
        got = dict(zip(PARAM_NAMES, draw_params(a, SIZE, sample_seed(SEED, EPOCH, i))))
        assert got["hflip"] == float(bool(seen["hflip"])) and got["vflip"] == float(bool(seen["vflip"]))
        flips += got["hflip"]
        if seen["affine"]:
            cpu = seen["affine"][0]
            assert cpu["angle"] == pytest.approx(got["angle"], abs=1e-12)
            assert list(cpu["translate"]) == [got["tx"], got["ty"]]
            assert cpu["scale"] == pytest.approx(got["scale"], abs=1e-12)
            assert cpu["shear"][0] == pytest.approx(got["shear"], abs=1e-12)
        if seen["jitter"]:
            cpu = seen["jitter"][0]
            order = cpu["fn_idx"].tolist()
            assert got["brightness_first"] == float(order.index(0) < order.index(1))
            assert (cpu["brightness_factor"] or 1.0) == pytest.approx(got["brightness"], abs=1e-12)
            assert (cpu["contrast_factor"] or 1.0) == pytest.approx(got["contrast"], abs=1e-12)
    assert 0 < flips < N  # both outcomes occurred, so the comparison saw flipped and unflipped samples


@pytest.mark.parametrize("chans", [1, 3])
@pytest.mark.parametrize("preset", list(PRESETS))
def test_batched_output_equals_cpu_path(preset: str, chans: int) -> None:
    reader = make_reader(SIZE, chans)
    cpu, dev = cpu_batch(preset, chans, reader), device_batch(preset, chans, reader)
    assert dev.dtype == torch.float32 and dev.shape == cpu.shape == (N, chans, SIZE, SIZE)
    diff = (cpu - dev).abs()
    assert float(diff.max()) < 1e-4, f"{preset}: max abs difference {float(diff.max()):.2e}"
    if preset != "none":
        plain = BatchAugment(PRESETS["none"], SIZE, [0.5] * chans, [0.25] * chans)(
            torch.stack([FeedTransform(SIZE, chans)(reader(f"/img/{i}.png")) for i in range(N)]))
        assert float((plain - dev).abs().mean()) > 0.05  # the augmentation did change the images


def test_uint8_feed_of_resized_images_is_within_half_a_grey_level() -> None:
    """Without the cache the worker resizes, then serves uint8: at most 0.5/255 before augmentation."""
    reader = make_reader(SIZE + 9, 1)
    cpu, dev = cpu_batch("xray", 1, reader), device_batch("xray", 1, reader)
    gain = (1 + PRESETS["xray"].brightness) * (1 + PRESETS["xray"].contrast)
    assert float((cpu - dev).abs().max()) <= gain * 0.5 / 255 / 0.25 + 1e-4


def test_feed_from_the_cache_equals_the_feed_from_decoding(tmp_path: Path) -> None:
    """Cached rows are served as stored (uint8, no float round trip) and equal a fresh decode + quantisation."""
    table = load_source(DataConfig(path=str(make_images(tmp_path / "data", n_per_class=4, size=40))))
    cache = build_cache(table, SIZE, 1, folder=tmp_path / "cache", workers=1)
    aug = BatchAugment(PRESETS["xray"], SIZE, [0.5], [0.25], seed=SEED)
    cached, decoded = FeedDataset(table, aug, 1, seed=SEED, cache=cache), FeedDataset(table, aug, 1, seed=SEED)
    for i in range(len(table)):
        a, b = cached[(EPOCH, i)], decoded[(EPOCH, i)]
        assert a["image"].dtype == torch.uint8 and torch.equal(a["image"], b["image"])
        assert torch.equal(a["augment_params"], b["augment_params"])


def test_same_seed_same_batch_and_epochs_differ() -> None:
    reader = make_reader(SIZE, 1)
    first, again = device_batch("xray", 1, reader), device_batch("xray", 1, reader)
    assert torch.equal(first, again)
    assert not torch.equal(first, device_batch("xray", 1, reader, epoch=EPOCH + 1))


def test_training_batch_needs_its_parameters() -> None:
    aug = BatchAugment(PRESETS["light"], SIZE, [0.5], [0.25])
    images = torch.zeros(2, 1, SIZE, SIZE, dtype=torch.uint8)
    with pytest.raises(ValueError, match="augment_params"):
        aug(images, None, train=True)
    assert torch.allclose(aug(images, None, train=False), torch.full((2, 1, SIZE, SIZE), -2.0))


def test_device_feed_choices_and_channels_last(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, tmp_path, **{"train.accelerator": "cpu"})
    assert resolve_augment_on(cfg.train) == "cpu" and not use_channels_last(cfg.train)  # auto on a CPU
    with pytest.raises(ConfigError, match="train.augment_on"):
        resolve_augment_on(apply_overrides(cfg, ["train.augment_on=gpu"]).train)
    cfg = apply_overrides(cfg, ["train.augment_on=device", "train.channels_last=true"])
    feed = DeviceFeed(cfg, [0.5], [0.25])
    assert not feed.pin_memory  # no GPU: nothing to pin for
    batch = {"image": torch.zeros(4, 1, SIZE, SIZE, dtype=torch.uint8), "augment_params": feed.batch_augment.params(0, range(4))}
    x = feed.after_transfer(batch, training=True)["image"]
    assert x.dtype == torch.float32 and x.is_contiguous(memory_format=torch.channels_last)


def test_auto_settings_follow_the_gpu(tmp_path: Path, monkeypatch) -> None:
    """With a CUDA GPU visible, auto means device augmentation, pinned memory and channels-last; accelerator=cpu overrides."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cfg = tiny_config(tmp_path, tmp_path, **{"train.accelerator": "auto"})
    feed = DeviceFeed(cfg, [0.5], [0.25])
    assert feed.batch_augment is not None and feed.pin_memory and feed.channels_last
    forced = DeviceFeed(apply_overrides(cfg, ["train.augment_on=cpu", "train.channels_last=false"]), [0.5], [0.25])
    assert forced.batch_augment is None and forced.pin_memory and not forced.channels_last
    on_cpu = DeviceFeed(apply_overrides(cfg, ["train.accelerator=cpu"]), [0.5], [0.25])
    assert on_cpu.batch_augment is None and not on_cpu.pin_memory and not on_cpu.channels_last


def test_tiny_training_run_with_augmentation_on_the_device(tmp_path: Path) -> None:
    """40 images, 32 px, 1 epoch on the CPU: device augmentation, channels-last, the uint8 cache, a persistent worker."""
    from medclass import train
    from medclass.training.datamodule import SplitDataModule

    data = make_images(tmp_path / "data", n_per_class=20, size=40)
    cfg = tiny_config(data, tmp_path / "ws", **{"train.epochs": "1", "train.augment": "xray", "train.accelerator": "cpu",
                                                 "train.augment_on": "device", "train.channels_last": "on",
                                                 "train.num_workers": "1"})  # a worker: the feed pickles
    result = train(cfg, progress=False)
    assert result.best_checkpoint.is_file() and len(result.metrics) == 1
    assert np.isfinite(result.metrics["train_loss"]).all()
    assert list((tmp_path / "ws" / ".cache").glob("images-*.npy"))  # device feed decodes once into the cache
    table = DataTable.from_csv(result.run_dir / "split.csv", ["disk", "plain"])
    ds = SplitDataModule(table, cfg, [0.5], [0.25]).dataset("train", train=True)
    assert isinstance(ds, FeedDataset) and ds[(0, 0)]["image"].dtype == torch.uint8
