"""Optional on-disk cache of resized uint8 images, memory-mapped, so later epochs skip decoding.

Files in the cache folder, all named by a key (sha256 of the rows' paths, frames, file sizes and
modification times, and of image size, channels, DICOM window and padding), so a changed table,
file or setting never reads a stale cache:

* ``images-<key>.npy``: uint8 array ``(N, C, S, S)`` (``numpy.lib.format``, memory-mapped);
* ``images-<key>.valid.npy``: bool ``(N,)``, False for rows that could not be read;
* ``images-<key>.json``: settings, the rows' hash and the reason of every unreadable row.

The build streams rows into the memory map (constant memory), writes the two side files, and
renames ``.npy.partial`` to ``.npy`` last: an interrupted build never leaves a file that looks
complete. One process builds a given cache at a time (a file lock ``images-<key>.lock`` beside it,
:mod:`._lock`): a second builder, on this machine or another node of a shared file system, waits and
then maps the finished file. Pixels are :func:`~.transforms.prepare_image` output rounded to 1/255, so a cached
image differs from a fresh decode by at most half a grey level.

Memory: the mapped pages belong to the kernel's page cache, shared by all DataLoader workers
and reclaimable; they show up in RSS as *shared file-backed* memory, not as private memory of a
process (``bench/bench_memory.py`` measures both).

Example::

    cache = build_cache(table, image_size=64, in_chans=1, window="", folder="workspace/.cache")
    ds = ImageDataset(table, transform=tf, cache=cache)
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import TrainConfig
from ..errors import ConfigError, DatasetError, ImageReadError
from ..utils import write_json
from ._lock import building
from ._pool import decode_pool, watched_imap
from .fingerprint import default_workers
from .table import DataTable
from .transforms import prepare_image, quantize_uint8

log = logging.getLogger(__name__)

FORMAT = "medclass-image-cache/1"
_WINDOW_ROWS = 64  # rows per worker held in memory at once while building
_DISK_MARGIN = 64 * 2**20  # bytes left free on the disk after the cache is written


def rows_hash(table: DataTable) -> str:
    """sha256 of the rows' ``(path, frame)`` sequence: what a dataset checks against its cache."""
    digest = hashlib.sha256()
    for path, frame in zip(table.frame["path"], table.frame["frame"]):
        digest.update(f"{path}\0{int(frame)}\n".encode())
    return digest.hexdigest()


def cache_key(table: DataTable, image_size: int, in_chans: int, window: str = "", keep_aspect: bool = False) -> str:
    """The key naming a cache: rows, file sizes and times, and every setting that changes pixels.

    Example::

        cache_key(table, 64, 1) != cache_key(table, 128, 1)  # True
    """
    digest = hashlib.sha256(f"{FORMAT}|{rows_hash(table)}|{image_size}|{in_chans}|{window}|{keep_aspect}\n".encode())
    for path in table.frame["path"]:
        try:
            st = os.stat(path)
            digest.update(f"{st.st_size}:{st.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(b"missing\n")
    return digest.hexdigest()


@dataclass(eq=False)
class ImageCache:
    """A built cache; the memory map is opened lazily in each process (never pickled)."""

    path: Path  # the images-<key>.npy file
    image_size: int  # side S of the cached images
    in_chans: int  # channels C
    window: str  # DICOM window the images were read with
    keep_aspect: bool  # padded to square (True) or stretched (False)
    rows: str  # rows_hash of the table it was built for
    valid: np.ndarray  # bool (N,): False where the row could not be read
    reasons: dict[int, str] = field(default_factory=dict)  # row -> why it could not be read
    _images: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def open(cls, path: str | Path) -> "ImageCache":
        """Open a complete cache from its ``.npy`` file (its two side files must exist)."""
        path = Path(path)
        meta_file, valid_file = path.with_suffix(".json"), path.with_suffix(".valid.npy")
        if not (path.is_file() and meta_file.is_file() and valid_file.is_file()):
            raise DatasetError(f"Image cache {path} is incomplete (needs {meta_file.name} and {valid_file.name}); "
                               "delete it and build it again.")
        meta = json.loads(meta_file.read_text())
        if meta.get("format") != FORMAT:
            raise DatasetError(f"Image cache {path} has format {meta.get('format')!r}, expected {FORMAT!r}; rebuild it.")
        return cls(path, meta["image_size"], meta["in_chans"], meta["window"], meta["keep_aspect"], meta["rows"],
                   np.load(valid_file), {int(k): v for k, v in meta["reasons"].items()})

    @property
    def images(self) -> np.ndarray:
        """The read-only memory map ``(N, C, S, S)`` uint8."""
        if self._images is None:
            self._images = np.load(self.path, mmap_mode="r")
        return self._images

    def __len__(self) -> int:
        return len(self.valid)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_images": None}  # spawned workers map the file themselves

    def pixels(self, index: int) -> np.ndarray:
        """Row ``index`` as stored: uint8 ``(C, S, S)`` (a view of the map); raises ImageReadError for an unreadable row."""
        if not self.valid[index]:
            raise ImageReadError(f"{self.path}[{index}]", self.reasons.get(index, "unreadable when the cache was built"))
        return self.images[index]

    def image(self, index: int) -> np.ndarray:
        """Row ``index`` as float32 ``(S, S, C)`` in [0, 1]; raises ImageReadError for an unreadable row."""
        return np.moveaxis(self.pixels(index), 0, -1).astype(np.float32) / np.float32(255)

    def check(self, table: DataTable, window: str, image_size: int | None = None, in_chans: int | None = None) -> None:
        """Raise :class:`DatasetError` unless this cache was built for ``table`` and these settings."""
        wanted = {"rows": rows_hash(table), "window": window, "image_size": image_size, "in_chans": in_chans}
        have = {"rows": self.rows, "window": self.window, "image_size": self.image_size, "in_chans": self.in_chans}
        wrong = [k for k, v in wanted.items() if v is not None and v != have[k]]
        if wrong or len(self) != len(table):
            raise DatasetError(f"Image cache {self.path} was built for other rows or settings ({', '.join(wrong) or 'length'} "
                               f"differ: {len(self)} cached rows vs {len(table)}); build it with build_cache for this table.")


def _encode(args: tuple[str, int, str, int, int, bool]) -> tuple[np.ndarray | None, str]:
    """Read and prepare one image as uint8 CHW; ``(None, reason)`` when it cannot be read."""
    from .io import read_image

    path, frame, window, size, chans, keep_aspect = args
    try:
        image = read_image(path, frame=frame, window=window, size_hint=size)
    except ImageReadError as e:
        return None, e.reason
    x = prepare_image(image, size, chans, keep_aspect)
    return quantize_uint8(x).numpy(), ""


def _check_disk(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    log.info("Image cache needs %.1f MiB on disk, %.1f MiB free in %s", needed / 2**20, free / 2**20, folder)
    if needed + _DISK_MARGIN > free:
        raise ConfigError(f"The image cache needs {needed / 2**20:.1f} MiB but {folder} has only {free / 2**20:.1f} MiB "
                          "free; point data.cache at a larger disk, lower model.image_size, or set data.cache=''.")


def build_cache(table: DataTable, image_size: int, in_chans: int, window: str = "", folder: str | Path = ".cache",
                workers: int | None = None, progress: bool = False, keep_aspect: bool = False,
                stall_timeout: float = TrainConfig.stall_timeout, cluster: str = "") -> ImageCache:
    """Build (or reuse) the memory-mapped cache of ``table`` at ``image_size`` and ``in_chans``.

    Reuses a complete cache with the same key. Unreadable rows are marked invalid, listed in the
    side JSON and reported in one warning; the dataset skips them like unreadable files. Workers run
    torch single-threaded (a forked worker could otherwise wait forever on the parent's thread pool)
    and a build that gets no image for ``stall_timeout`` seconds stops with a :class:`DatasetError`.
    ``cluster`` (``tcp://HOST:8786`` or ``local:N``, :mod:`medclass.data.cluster`): decode on a Dask cluster's workers
    instead; this process writes the same file (put ``folder`` on storage the training nodes read).

    Example::

        cache = build_cache(table, 64, 1, folder="workspace/.cache", workers=2)
        cache.images.shape  # (4979, 1, 64, 64) for chest_xray
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = cache_key(table, image_size, in_chans, window, keep_aspect)
    final = folder / f"images-{key[:32]}.npy"
    with building(final.with_suffix(".lock"), f"the image cache {final.name}"):  # a second builder waits, then reuses
        if final.is_file():
            log.info("Using image cache %s", final)
            return ImageCache.open(final)
        _build(table, final, key, window, image_size, in_chans, keep_aspect, workers, progress, stall_timeout, cluster)
    return ImageCache.open(final)


def _build(table: DataTable, final: Path, key: str, window: str, image_size: int, in_chans: int, keep_aspect: bool,
           workers: int | None, progress: bool, stall_timeout: float, cluster: str) -> None:
    """Write the cache ``final`` (and its side files); ``.npy.partial`` becomes ``final`` last."""
    folder = final.parent
    n = len(table)
    shape = (n, in_chans, image_size, image_size)
    _check_disk(folder, int(np.prod(shape)))
    partial = final.with_suffix(".npy.partial")
    images = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=shape)
    valid = np.zeros(n, dtype=bool)
    reasons: dict[int, str] = {}
    tasks = [(str(p), int(f), window, image_size, in_chans, keep_aspect)
             for p, f in zip(table.frame["path"], table.frame["frame"])]
    workers = min(workers or default_workers(), max(1, n))
    try:
        with decode_pool(workers, cluster) as pool:
            _fill(images, valid, reasons, tasks, pool, workers, progress, stall_timeout)
        images.flush()
        del images
        np.save(final.with_suffix(".valid.npy"), valid)
        write_json(final.with_suffix(".json"), {
            "format": FORMAT, "key": key, "rows": rows_hash(table), "n": n, "image_size": image_size,
            "in_chans": in_chans, "window": window, "keep_aspect": keep_aspect,
            "reasons": {str(i): r for i, r in reasons.items()}})
        os.replace(partial, final)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if reasons:
        log.warning("Image cache: %d of %d rows could not be read and will be skipped, e.g. %s", len(reasons), n,
                    "; ".join(f"{tasks[i][0]}: {r}" for i, r in list(reasons.items())[:3]))
    log.info("Built image cache %s (%d rows, %.1f MiB)", final, n, final.stat().st_size / 2**20)


def _fill(images: np.ndarray, valid: np.ndarray, reasons: dict[int, str], tasks: list[tuple], pool: Any,
          workers: int, progress: bool, stall_timeout: float) -> None:
    """Decode ``tasks`` window by window into ``images`` (at most ``_WINDOW_ROWS * workers`` rows in flight)."""
    step = _WINDOW_ROWS * workers
    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress()
        bar.start()
        job = bar.add_task("Caching images", total=len(tasks))
    try:
        for start in range(0, len(tasks), step):
            window = tasks[start:start + step]
            results = watched_imap(pool, _encode, window, stall_timeout=stall_timeout, what="The image cache build",
                                   chunksize=8)
            for i, (pixels, reason) in enumerate(results, start):
                if pixels is None:
                    reasons[i] = reason
                else:
                    images[i] = pixels
                    valid[i] = True
            if bar is not None:
                bar.advance(job, len(window))
    finally:
        if bar is not None:
            bar.stop()
