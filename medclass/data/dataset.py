"""The streamed torch Dataset: one image decoded per sample, dict samples, bad files skipped.

Determinism contract (a run resumed after a crash reproduces the uninterrupted run):

* :class:`EpochSampler` yields ``(epoch, index)`` pairs whose order is a pure function of
  ``(seed, epoch)``; ``set_epoch`` is called by Lightning at every epoch start. The epoch thus
  reaches the dataset even inside persistent worker processes.
* :meth:`ImageDataset.__getitem__` seeds torch's RNG from ``(seed, epoch, index)`` (inside
  ``torch.random.fork_rng``, so the caller's RNG is untouched) before the random transform: a
  sample's augmentation does not depend on the number of workers or which worker loads it.
  The transforms of :mod:`.transforms` draw from torch's RNG only.

Unreadable files never stop an epoch: the dataset logs a warning naming the file and the reason
(once per file and process), returns ``None``, and :func:`collate_skip` drops it and lists the
path in ``batch["skipped"]`` (worker processes cannot hand a list back any other way).

Example (``table`` from :func:`medclass.data.sources.load_source`)::

    tf = build_transform("xray", image_size=64, in_chans=1, mean=[0.5], std=[0.25], train=True)
    ds = ImageDataset(table.subset("train"), classes=table.classes, transform=tf, seed=42)
    sampler = EpochSampler(len(ds), seed=42, shuffle=True)
    loader = DataLoader(ds, batch_size=32, sampler=sampler, num_workers=2, collate_fn=collate_skip)
    sampler.set_epoch(3)
    batch = next(iter(loader))  # batch["image"]: (32, 1, 64, 64); batch["skipped"]: []
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, default_collate

from ..errors import DatasetError, ImageReadError
from .io import read_image, report_skip
from .table import DataTable

if TYPE_CHECKING:
    from .cache import ImageCache


Reader = Callable[..., np.ndarray]  # reader(path, frame=-1, window="", size_hint=None) -> float32 HWC in [0, 1]
Key = int | tuple[int, int]

# Paths skipped in this process since the last collate_skip call. collate_skip runs in the same
# process as the __getitem__ calls of its batch (a worker, or the main process when
# num_workers=0), so it hands them over in that batch, whichever dataset of the process skipped
# them. Each file enters once per dataset and process: the list stays small if nothing drains it.
_PENDING_SKIPS: list[str] = []


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The RNG seed of one sample's augmentation: a well-mixed function of its three arguments.

    >>> sample_seed(42, 0, 7) == sample_seed(42, 0, 7) != sample_seed(42, 1, 7)
    True
    """
    entropy = [int(seed) % 2**63, int(epoch), int(index)]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> 1)


class ImageDataset(Dataset):
    """Rows of a :class:`DataTable` as dict samples, decoded lazily (or read from an image cache).

    Args:
        table: the rows to serve, in order (usually ``table.subset("train")``).
        classes: class names fixing the label indices (default ``table.classes``).
        transform: reader output -> tensor, usually from :func:`~.transforms.build_transform`.
        window: DICOM window handed to the reader.
        seed: base seed of the augmentation (with the epoch and index of each sample).
        cache: an :class:`~.cache.ImageCache` built for these rows; then nothing is decoded.
        reader: the image reader (injectable for tests); called as
            ``reader(path, frame=..., window=..., size_hint=...)``. Left at ``read_image``, a transform
            with its own ``reader`` (a volume model's :class:`~.volumes.prepare.VolumeTransform`) supplies it.

    ``ds[i]`` (evaluation) and ``ds[(epoch, i)]`` (training, from :class:`EpochSampler`) both
    return ``{"image", "label", "path", "patient", "index"}`` or ``None`` for an unreadable file.
    ``skipped`` maps each path skipped in this process to its reason.

    Example::

        ds = ImageDataset(table, transform=build_transform("none", 64, 1, [0.5], [0.25], train=False))
        ds[0]["image"].shape  # torch.Size([1, 64, 64])
    """

    def __init__(self, table: DataTable, classes: Sequence[str] | None = None,
                 transform: Callable[[np.ndarray], torch.Tensor] | None = None, window: str = "",
                 seed: int = 0, cache: ImageCache | None = None, reader: Reader = read_image) -> None:
        if transform is None:
            raise TypeError("ImageDataset needs a transform; build one with medclass.data.transforms.build_transform.")
        self.classes = list(classes if classes is not None else table.classes)
        index = {c: i for i, c in enumerate(self.classes)}
        frame = table.frame
        self.multi_label = table.multi_label  # then "label" is a float (K,) tensor of 1 / 0 / NaN (masked)
        unknown = [] if self.multi_label else sorted(set(frame["label"]) - set(index))
        if unknown:
            raise DatasetError(f"Labels {unknown[:5]} of {table.root or 'the table'} are not among the classes "
                               f"{self.classes}; pass the table's full class list.")
        # numpy arrays, not lists of Python objects: forked workers then share the pages instead
        # of copying them on every reference-count update
        self._paths = frame["path"].to_numpy(dtype=str)
        self._patients = frame["patient"].to_numpy(dtype=str)
        self._frames = frame["frame"].to_numpy(dtype=np.int64)
        self._labels = (table.targets if self.multi_label else frame["label"].map(index).to_numpy(dtype=np.int64))
        if reader is read_image:
            reader = getattr(transform, "reader", read_image)
        self.transform, self.window, self.seed, self.reader = transform, window, int(seed), reader
        self.cache = cache
        if cache is not None:
            cache.check(table, window=window, image_size=getattr(transform, "image_size", None),
                        in_chans=getattr(transform, "in_chans", None))
        self.skipped: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._paths)

    @property
    def labels(self) -> np.ndarray:
        """Class index of every row (int64), e.g. for sample weights; multi-label: the (n, K) float matrix."""
        return self._labels.copy()

    def load(self, index: int) -> np.ndarray:
        """The image of row ``index`` before the transform (float32 HWC in [0, 1]); may raise ImageReadError."""
        if self.cache is not None:
            return self.cache.image(index)
        return self.reader(str(self._paths[index]), frame=int(self._frames[index]), window=self.window,
                           size_hint=getattr(self.transform, "image_size", None))

    def __getitem__(self, key: Key) -> dict[str, Any] | None:
        epoch, index = (int(key[0]), int(key[1])) if isinstance(key, tuple) else (0, int(key))
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} images")
        index %= len(self)
        path = str(self._paths[index])
        try:
            image = self.load(index)
        except ImageReadError as e:
            self._skip(path, e.reason)
            return None
        if getattr(self.transform, "random", True):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(sample_seed(self.seed, epoch, index))
                x = self.transform(image)
        else:
            x = self.transform(image)
        label = torch.from_numpy(self._labels[index].copy()) if self.multi_label else int(self._labels[index])
        return {"image": x, "label": label, "path": path,
                "patient": str(self._patients[index]), "index": index}

    def _skip(self, path: str, reason: str) -> None:
        if path in self.skipped:
            return
        self.skipped[path] = reason
        _PENDING_SKIPS.append(path)
        report_skip(path, reason)


def collate_skip(batch: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """Drop ``None`` samples, default-collate the rest, list skipped paths in ``batch["skipped"]``.

    Returns ``None`` when every sample of the batch was unreadable. The training loop must then
    skip the step (Lightning: return ``None`` from ``training_step``; under DDP, where every
    rank must run backward, return a zero loss such as ``sum(p.sum() * 0 for p in params)``
    instead). Skips seen in a fully unreadable batch are reported with the next batch of the
    same process; every skipped file is also logged once per process when it is met.

    >>> b = collate_skip([None, {"image": torch.zeros(1, 2, 2), "label": 1, "path": "a", "patient": "", "index": 3}])
    >>> b["image"].shape, b["label"]
    (torch.Size([1, 1, 2, 2]), tensor([1]))
    """
    good = [s for s in batch if s is not None]
    if not good:
        return None
    out = default_collate(good)
    out["skipped"] = list(_PENDING_SKIPS)
    _PENDING_SKIPS.clear()
    return out


class EpochSampler(Sampler[tuple[int, int]]):
    """Seeded, epoch-aware, optionally weighted and sharded sampler yielding ``(epoch, index)``.

    The order of an epoch is a pure function of ``(seed, epoch)``: a torch Generator seeded with
    ``seed * 1_000_003 + epoch`` draws a permutation (``shuffle``), or ``num_samples`` indices
    with replacement in proportion to ``weights`` (the weighted sampler for class imbalance;
    ``num_samples``, default ``n``, applies to it only).
    With ``num_replicas > 1`` the order is split like ``DistributedSampler``: padded with its
    first indices to a multiple of ``num_replicas`` (or cut with ``drop_last``), then rank ``r``
    takes every ``num_replicas``-th index from position ``r``.

    >>> s = EpochSampler(5, seed=1, shuffle=True)
    >>> s.set_epoch(2)
    >>> sorted(i for _, i in s)
    [0, 1, 2, 3, 4]
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True, weights: Sequence[float] | np.ndarray | None = None,
                 num_samples: int | None = None, num_replicas: int = 1, rank: int = 0, drop_last: bool = False) -> None:
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"rank must lie in [0, num_replicas={num_replicas}), got rank={rank}.")
        self.n, self.seed, self.shuffle = int(n), int(seed), shuffle
        self.weights = None
        if weights is not None:
            w = torch.as_tensor(np.asarray(weights, dtype=np.float64))
            if w.shape != (self.n,) or not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
                raise ValueError(f"weights must be {self.n} finite non-negative numbers with a positive sum "
                                 f"(one per sample), got shape {tuple(w.shape)}.")
            self.weights = w
        elif num_samples is not None:
            raise ValueError("num_samples applies to weighted sampling only; pass weights or leave num_samples=None.")
        self.num_samples_total = self.n if num_samples is None else int(num_samples)
        self.num_replicas, self.rank, self.drop_last = num_replicas, rank, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order the next iteration yields."""
        self.epoch = int(epoch)

    def order(self) -> list[int]:
        """The full (unsharded) order of the current epoch."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        if self.weights is not None:
            return torch.multinomial(self.weights, self.num_samples_total, replacement=True, generator=g).tolist()
        if self.shuffle:
            return torch.randperm(self.n, generator=g).tolist()
        return list(range(self.n))

    def __len__(self) -> int:
        total = self.num_samples_total if self.weights is not None else self.n
        if self.drop_last:
            return total // self.num_replicas
        return math.ceil(total / self.num_replicas)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = self.order()
        size = len(self) * self.num_replicas
        if size > len(order) and order:
            order = (order * math.ceil(size / len(order)))[:size]
        order = order[:size]
        return iter([(self.epoch, i) for i in order[self.rank:size:self.num_replicas]])
