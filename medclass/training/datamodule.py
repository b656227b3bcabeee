"""LightningDataModule over a split :class:`~medclass.data.table.DataTable`.

Loaders are built inside each process (after DDP has started), so the epoch sampler knows its
rank and shards the data; validation is never augmented.

The train sampler starts at the epoch the loop is about to run. Lightning creates the first
iterator of a fit *before* it calls ``set_epoch``, and with worker processes that iterator draws
the sampler's order at once: a run resumed at epoch 2 with the default epoch 0 replayed epoch 0's
order and augmentations (with ``num_workers=0`` the order is drawn lazily, after ``set_epoch``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
from torch.utils.data import DataLoader

from ..config import RunConfig
from ..data.batch_augment import FeedDataset
from ..data.dataset import EpochSampler, ImageDataset, collate_skip
from ..data.table import DataTable
from ..data.transforms import build_transform
from ..data.volumes.prepare import VolumePrep, volume_dataset
from .accel import DeviceFeed


def train_strata(table: DataTable) -> np.ndarray:
    """Class index of every row; multi-label: the index of the row's rarest positive finding (K = none)."""
    if not table.multi_label:
        return table.labels
    from ..data.multilabel import NO_FINDING, label_matrix, stratify_keys

    keys = stratify_keys(label_matrix(table.frame, table.classes), table.classes)
    index = {k: i for i, k in enumerate([*table.classes, NO_FINDING])}
    return np.array([index[k] for k in keys], dtype=np.int64)


def volume_prep(cfg: RunConfig, mean: list[float], std: list[float]) -> VolumePrep:
    """The volume preparation of a run (slices as channels share one mean/std: their averages)."""
    return VolumePrep.from_config(cfg, sum(mean) / len(mean), sum(std) / len(std))


def volume_cache_dir(cfg: RunConfig) -> Path | None:
    """``<data.cache or workspace/.cache>/volumes`` when ``volume.cache`` is on."""
    if not cfg.volume.cache:
        return None
    return Path(cfg.data.cache or Path(cfg.workspace) / ".cache") / "volumes"


class SplitDataModule(pl.LightningDataModule):
    """Train/val loaders for one run; ``cache`` is an optional memory-mapped image cache per split."""

    def __init__(self, table: DataTable, cfg: RunConfig, mean: list[float], std: list[float],
                 caches: dict | None = None) -> None:
        super().__init__()
        self.table = table
        self.cfg = cfg
        self.mean, self.std = list(mean), list(std)
        self.caches = caches or {}
        self.feed = DeviceFeed(cfg, self.mean, self.std)  # pinned memory, augmentation on the device, channels-last
        # CT/MRI volumes: read, oriented, resampled, windowed, cropped by MONAI transforms (medclass.data.volumes)
        self.volume_prep = volume_prep(cfg, self.mean, self.std) if table.spatial_dims == 3 else None

    def dataset(self, split: str, train: bool) -> ImageDataset:
        """The dataset of one split, with the train (augmented) or eval transform.

        With augmentation on the device, the train dataset is a :class:`FeedDataset` instead: uint8
        images and their augmentation parameters (see :class:`~.accel.DeviceFeed`).
        """
        m, t = self.cfg.model, self.cfg.train
        if self.volume_prep is not None:
            return volume_dataset(self.table.subset(split), self.volume_prep, train=train, augment=self.cfg.volume.augment,
                                  seed=t.seed, cache_dir=volume_cache_dir(self.cfg), classes=self.table.classes)
        common = dict(classes=self.table.classes, window=self.cfg.data.window, seed=t.seed, cache=self.caches.get(split))
        if train and self.feed.batch_augment is not None:
            return FeedDataset(self.table.subset(split), self.feed.batch_augment, m.in_chans, **common)
        tf = build_transform(t.augment if train else "none", image_size=m.image_size, in_chans=m.in_chans,
                             mean=self.mean, std=self.std, train=train)
        return ImageDataset(self.table.subset(split), transform=tf, **common)

    def _loader(self, ds: ImageDataset, sampler=None, train: bool = False) -> DataLoader:
        t = self.cfg.train
        workers = max(0, t.num_workers)
        # a 3-D network pools volumes down to 1x1x1 maps: BatchNorm cannot train on a last batch of one volume
        drop_last = train and self.volume_prep is not None and sampler is not None and len(sampler) % t.batch_size == 1
        return DataLoader(ds, batch_size=t.batch_size, sampler=sampler, num_workers=workers,
                          collate_fn=collate_skip, persistent_workers=workers > 0,
                          pin_memory=self.feed.pin_memory, drop_last=drop_last,
                          timeout=t.stall_timeout if workers > 0 else 0)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):  # noqa: D102
        training = self.trainer is not None and self.trainer.training
        return self.feed.after_transfer(batch, training)

    def sample_weights(self, labels: np.ndarray) -> np.ndarray:
        """Inverse class frequency per sample, for the weighted sampler (multi-label: of each row's rarest finding)."""
        counts = np.bincount(labels, minlength=len(self.table.classes) + 1).astype(float)
        return 1.0 / np.maximum(counts[labels], 1.0)

    def train_dataloader(self) -> DataLoader:  # noqa: D102
        ds = self.dataset("train", train=True)
        t = self.cfg.train
        weights = self.sample_weights(train_strata(self.table.subset("train"))) if t.sampler == "weighted" else None
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        sampler = EpochSampler(len(ds), seed=t.seed, shuffle=True, weights=weights, num_replicas=world, rank=rank)
        sampler.set_epoch(self._next_epoch())
        return self._loader(ds, sampler, train=True)

    def _next_epoch(self) -> int:
        """The epoch the fit loop runs next: the value it hands to ``set_epoch`` (restored on resume)."""
        if self.trainer is None:
            return 0
        return self.trainer.fit_loop.epoch_progress.current.processed

    def val_dataloader(self) -> DataLoader:  # noqa: D102
        ds = self.dataset("val", train=False)
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        sampler = EpochSampler(len(ds), seed=self.cfg.train.seed, shuffle=False, num_replicas=world, rank=rank)
        return self._loader(ds, sampler)
