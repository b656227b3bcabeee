"""Volume -> model input with MONAI dictionary transforms, in two halves: a cached deterministic one and a random one.

* :func:`prepare` (deterministic, cached by :class:`VolumeCache`): ``Orientationd`` to one axis
  convention, ``Spacingd`` to the chosen voxel size (bilinear), ``ScaleIntensityRanged`` through
  the HU window (``data.window``: the presets of :data:`medclass.config.WINDOW_PRESETS`; '' = the
  volume's 0.5-99.5th percentiles, ``ScaleIntensityRangePercentilesd``) to [0, 1] with clipping,
  ``ResizeWithPadOrCropd`` to the fixed size (centred; padding 0 = the bottom of the window, air in
  the lung window). Output: float32 ``(1, X, Y, Z)``.
* :class:`VolumeTransform` (per sample): the 3-D augmentation when training (``RandFlipd`` on each
  axis, ``RandAffined`` with rotations up to 15 degrees and scaling by up to 10 %,
  ``RandScaleIntensityd``, ``RandShiftIntensityd``, ``RandGaussianNoised``), the model's
  normalisation ``(x - mean) / std``, and for ``input='2.5d'`` the ``in_chans`` axial slices around
  the centre as channels ``(in_chans, X, Y)``. Its random draws are seeded from torch's RNG, which
  :class:`~medclass.data.dataset.ImageDataset` seeds per sample and epoch (same augmentation
  whatever the number of workers).

Example:
    >>> prep = VolumePrep(spacing=(1.0, 1.0, 1.0), size=(32, 32, 32), window="lung")
    >>> prepare(read_volume("nodule.nii.gz"), prep).shape
    (1, 32, 32, 32)
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...config import RunConfig, parse_window
from ...errors import ConfigError, ImageTooLargeError
from .read import Volume, check_fits, read_volume

log = logging.getLogger(__name__)

PERCENTILES = (0.5, 99.5)  # intensity range of a volume without a window


@dataclass(frozen=True)
class VolumePrep:
    """Everything that turns a volume into the model input; stored in the checkpoint (``preprocessing.volume``)."""

    spacing: tuple[float, ...] = (1.0, 1.0, 1.0)  # mm per voxel after resampling (() = as stored)
    size: tuple[int, int, int] = (32, 32, 32)  # voxels after crop/pad
    orientation: str = "RAS"  # axis codes ('' = as stored)
    window: str = ""  # HU window (preset or 'C,W'; '' = percentiles)
    input: str = "3d"  # '3d' | '2.5d'
    in_chans: int = 1  # model input channels (2.5d: the number of slices)
    mean: float = 0.5  # normalisation after the window
    std: float = 0.25

    def __post_init__(self) -> None:
        if self.input == "2.5d" and self.size[2] < self.in_chans:
            raise ConfigError(f"volume.input=2.5d takes {self.in_chans} slices (model.in_chans) but volume.size has "
                              f"{self.size[2]} along z; give at least {self.in_chans}.")
        if self.input == "3d" and self.in_chans != 1:
            raise ConfigError(f"volume.input=3d feeds one channel (the volume), but model.in_chans={self.in_chans}; set "
                              "model.in_chans=1 (or volume.input=2.5d for slices as channels).")

    @classmethod
    def from_config(cls, cfg: RunConfig, mean: float, std: float) -> "VolumePrep":
        """The preparation a run's config describes (``volume.*``, ``data.window``, ``model.image_size/in_chans``)."""
        v, m = cfg.volume, cfg.model
        size = tuple(v.size) if v.size else (m.image_size,) * 3
        return cls(tuple(float(s) for s in v.spacing), size, v.orientation.upper(), cfg.data.window, v.input,  # type: ignore[arg-type]
                   m.in_chans, float(mean), float(std))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "VolumePrep":
        """From :meth:`to_dict` (a checkpoint's ``preprocessing.volume``)."""
        return cls(tuple(d["spacing"]), tuple(d["size"]), d["orientation"], d["window"], d["input"], int(d["in_chans"]),
                   float(d["mean"]), float(d["std"]))

    def to_dict(self) -> dict[str, Any]:
        """JSON layout (lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def key(self) -> str:
        """A digest of the deterministic half (what a cached prepared volume depends on)."""
        parts = {"spacing": list(self.spacing), "size": list(self.size), "orientation": self.orientation,
                 "window": self.window, "version": 1}
        return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _deterministic(prep: VolumePrep, mask: bool = False):
    """The cached half; ``mask``: the same geometry for a label mask (nearest neighbour, no intensity window)."""
    from monai.transforms import (Compose, Orientationd, ResizeWithPadOrCropd, ScaleIntensityRanged,
                                  ScaleIntensityRangePercentilesd, Spacingd)

    steps: list = []
    if prep.orientation:
        steps.append(Orientationd("image", axcodes=prep.orientation, labels=(("L", "R"), ("P", "A"), ("I", "S"))))
    if prep.spacing:
        steps.append(Spacingd("image", pixdim=prep.spacing, mode="nearest" if mask else "bilinear"))
    if mask:
        return Compose([*steps, ResizeWithPadOrCropd("image", spatial_size=prep.size, mode="constant")])
    spec = parse_window(prep.window)
    if spec is not None:
        center, width = spec
        steps.append(ScaleIntensityRanged("image", a_min=center - width / 2, a_max=center + width / 2, b_min=0.0,
                                          b_max=1.0, clip=True))
    else:
        steps.append(ScaleIntensityRangePercentilesd("image", lower=PERCENTILES[0], upper=PERCENTILES[1], b_min=0.0,
                                                     b_max=1.0, clip=True))
    steps.append(ResizeWithPadOrCropd("image", spatial_size=prep.size, mode="constant"))
    return Compose(steps)


def prepare(volume: Volume, prep: VolumePrep) -> np.ndarray:
    """The deterministic half: oriented, resampled, windowed to [0, 1], cropped/padded; float32 ``(1, X, Y, Z)``."""
    return _apply(_deterministic(prep), volume)


def prepare_mask(mask: Volume, prep: VolumePrep) -> np.ndarray:
    """A lesion mask brought onto its prepared image's voxels: the same orientation, resampling (nearest neighbour)
    and crop/pad as :func:`prepare`, no window; bool ``(X, Y, Z)`` (non-zero = lesion).

    >>> prepare_mask(read_volume("masks/nodule.nii.gz"), prep).shape   # doctest: +SKIP
    (32, 32, 32)
    """
    return _apply(_deterministic(prep, mask=True), mask)[0] > 0.5


def _apply(transform, volume: Volume) -> np.ndarray:
    from monai.data import MetaTensor

    image = MetaTensor(torch.from_numpy(np.ascontiguousarray(volume.array, dtype=np.float32))[None],
                       affine=torch.from_numpy(volume.affine))
    out = transform({"image": image})["image"]
    return np.ascontiguousarray(out.as_tensor().numpy() if hasattr(out, "as_tensor") else np.asarray(out), dtype=np.float32)


def _augmentation():
    from monai.transforms import (Compose, RandAffined, RandFlipd, RandGaussianNoised, RandScaleIntensityd,
                                  RandShiftIntensityd)

    return Compose([
        RandFlipd("image", prob=0.5, spatial_axis=0), RandFlipd("image", prob=0.5, spatial_axis=1),
        RandFlipd("image", prob=0.5, spatial_axis=2),
        RandAffined("image", prob=0.5, rotate_range=(math.pi / 12,) * 3, scale_range=(0.1,) * 3, padding_mode="zeros"),
        RandScaleIntensityd("image", factors=0.1, prob=0.5), RandShiftIntensityd("image", offsets=0.05, prob=0.5),
        RandGaussianNoised("image", prob=0.3, std=0.02),
    ])


class VolumeTransform:
    """Prepared ``(1, X, Y, Z)`` -> model input tensor: augmentation (``train``), normalisation, 2.5-D slicing.

    ``image_size`` / ``in_chans`` / ``random`` are read by :class:`~medclass.data.dataset.ImageDataset`.
    """

    def __init__(self, prep: VolumePrep, train: bool = False, augment: bool = True) -> None:
        self.prep, self.random = prep, bool(train and augment)
        self.augment = _augmentation() if self.random else None
        self.image_size, self.in_chans = None, prep.in_chans
        self.reader = functools.partial(read_prepared, prep=prep)  # ImageDataset's reader when none is given

    def __call__(self, prepared: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.array(prepared, dtype=np.float32))
        if self.augment is not None:
            self.augment.set_random_state(seed=int(torch.randint(0, 2**31 - 1, ()).item()))
            x = self.augment({"image": x})["image"]
            x = x.as_tensor() if hasattr(x, "as_tensor") else torch.as_tensor(x)
        x = (x.float() - self.prep.mean) / self.prep.std
        if self.prep.input == "2.5d":
            x = x[0, :, :, stack_slices(x.shape[-1], self.prep.in_chans)].permute(2, 0, 1)
        return x.contiguous()


def stack_slices(depth: int, k: int) -> slice:
    """The ``k`` axial slices around the centre of a ``depth``-slice volume that a 2.5-D input stacks as channels.

    >>> stack_slices(32, 3)
    slice(14, 17, None)
    """
    start = (depth - k) // 2
    return slice(start, start + k)


class VolumeCache:
    """Prepared volumes, one ``.npy`` each under ``folder/<prep key>/``, read back memory-mapped.

    The file name is a digest of the absolute path, size, modification time and frame (a changed
    file is prepared again). Memory stays flat in the number of volumes: nothing is held in the
    process, the page cache serves repeated reads.
    """

    def __init__(self, folder: str | Path, prep: VolumePrep) -> None:
        self.folder = Path(folder) / prep.key()
        self.prep = prep

    def file(self, path: str, frame: int) -> Path:
        """Where the prepared volume of ``(path, frame)`` lives."""
        st = os.stat(path)
        digest = hashlib.sha1(f"{Path(path).resolve()}|{st.st_size}|{st.st_mtime_ns}|{frame}".encode()).hexdigest()
        return self.folder / digest[:2] / f"{digest}.npy"

    def __call__(self, path: str, frame: int = -1, **_: Any) -> np.ndarray:
        """The reader interface of :class:`~medclass.data.dataset.ImageDataset` (window and size come from ``prep``)."""
        try:
            target = self.file(path, frame)
        except OSError:
            return read_prepared(path, frame, self.prep)  # raises the reader's ImageReadError
        if target.is_file():
            return np.load(target, mmap_mode="r")
        out = read_prepared(path, frame, self.prep)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, out.astype(np.float16))
        os.replace(tmp, target)
        return np.load(target, mmap_mode="r")  # the cached values (float16) from the first epoch on


def _prepare_one(job: tuple[str, VolumePrep, str, int]) -> str:
    """Prepare one volume into the cache (on a worker); '' or why it cannot be read."""
    folder, prep, path, frame = job
    try:
        VolumeCache(folder, prep)(path, frame)
    except OSError as e:  # ImageReadError, ImageTooLargeError, a missing file
        return getattr(e, "reason", None) or str(e)
    return ""


def prepare_volumes(table, prep: VolumePrep, folder: str | Path, *, workers: int | None = None, progress: bool = False,
                    stall_timeout: float = 0, cluster: str = "") -> dict[str, int]:
    """Fill the :class:`VolumeCache` in ``folder`` for every row of ``table`` before training, on ``workers`` local
    processes or the Dask cluster ``cluster`` (``tcp://HOST:8786`` / ``local:N``, :mod:`medclass.data.cluster`),
    the same path as the 2-D image cache. Workers write the prepared ``.npy`` files themselves (atomically), so
    ``folder`` must be on storage they and the training nodes share; one builder at a time (a second waits, then
    finds the files). Unreadable volumes are counted and left to the dataset, which skips them.

    Returns ``{"volumes": n, "unreadable": k}``.

    >>> prepare_volumes(table, VolumePrep(size=(32, 32, 32)), "/shared/cache/volumes", cluster="local:2")
    {'volumes': 120, 'unreadable': 0}
    """
    from .._lock import building
    from .._pool import decode_pool, watched_imap
    from ..fingerprint import default_workers

    folder = Path(folder)
    jobs = [(str(folder), prep, str(p), int(f)) for p, f in zip(table.frame["path"], table.frame["frame"])]
    workers = min(workers or default_workers(), max(1, len(jobs)))
    with building(folder / f"{prep.key()}.lock", "the prepared-volume cache"), decode_pool(workers, cluster) as pool:
        results = watched_imap(pool, _prepare_one, jobs, stall_timeout=stall_timeout, what="Preparing volumes",
                               chunksize=max(1, min(16, len(jobs) // (4 * workers))))
        if progress:
            from rich.progress import track

            results = track(results, total=len(jobs), description="Preparing volumes")
        unreadable = sum(bool(reason) for reason in results)
    if unreadable:
        log.warning("%d of %d volume(s) could not be prepared; training skips them.", unreadable, len(jobs))
    return {"volumes": len(jobs), "unreadable": unreadable}


def read_prepared(path: str, frame: int = -1, prep: VolumePrep | None = None, limit: int | None = None,
                  **_: Any) -> np.ndarray:
    """Read and prepare one volume (no cache); the reader interface of ``ImageDataset``. ``limit``: the most bytes
    its float32 voxels may take (default half the memory available, :func:`~.read.check_fits`)."""
    prep = prep or VolumePrep()
    volume = read_volume(path, frame, limit=limit)
    check_resampled(path, volume, prep, limit)
    return prepare(volume, prep)


def check_resampled(path: str | Path, volume: Volume, prep: VolumePrep, limit: int | None = None) -> None:
    """Refuse a volume that resampling to ``prep.spacing`` would blow up past ``limit`` bytes (float32), e.g. a
    header claiming 1,000 mm voxels; :class:`~medclass.errors.ImageTooLargeError` with the sizes."""
    if not prep.spacing:
        return
    shape = tuple(math.ceil(n * s / t) for n, s, t in zip(volume.shape, volume.spacing, prep.spacing))
    try:
        check_fits(path, shape, limit)
    except ImageTooLargeError as e:
        raise ImageTooLargeError(str(path), f"resampled from {'x'.join(f'{s:g}' for s in volume.spacing)} mm voxels to "
                                 f"{'x'.join(f'{s:g}' for s in prep.spacing)} mm, the {e.reason} (check the spacing "
                                 "in its header)") from None


def volume_dataset(table, prep: VolumePrep, *, train: bool = False, augment: bool = True, seed: int = 0,
                   cache_dir: str | Path | None = None, classes=None):
    """An :class:`~medclass.data.dataset.ImageDataset` over volume rows: same dict samples, per-sample seeding
    and skips of unreadable files, with the volume reader (cached under ``cache_dir`` when given) and
    :class:`VolumeTransform`.

    >>> ds = volume_dataset(table.subset("train"), VolumePrep(size=(16, 16, 16)), train=True, cache_dir="cache")
    >>> ds[0]["image"].shape
    torch.Size([1, 16, 16, 16])
    """
    from ..dataset import ImageDataset

    transform = VolumeTransform(prep, train, augment)
    return ImageDataset(table, classes=classes, transform=transform, window=prep.window, seed=seed,
                        reader=VolumeCache(cache_dir, prep) if cache_dir else transform.reader)


__all__ = ["volume_dataset", "VolumePrep", "VolumeTransform", "VolumeCache", "prepare", "prepare_volumes", "read_prepared",
           "stack_slices", "prepare_mask"]
