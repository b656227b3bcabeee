"""One pass over the images: content hashes and pixel statistics for the leak audit and quality filter.

Per row of a :class:`DataTable` :func:`fingerprint` computes

==========  ====================================================================================
column      meaning
==========  ====================================================================================
sha256_0-3  sha256 of the file bytes as four uint64 words (:func:`hex_digests` prints it); for rows with ``frame >= 0`` (a frame of a multi-frame
            DICOM, an index into a .npz array) of the decoded frame instead: its shape and float32
            pixel bytes, so two frames of one file differ and equal frames in two files match
phash_0-3   256-bit perceptual hash (``imagehash.phash`` with ``hash_size=16``) of the decoded image,
            as four uint64 words (``hash_words(fp, "phash")`` gives the ``(n, 4)`` array). 256 rather than 64 bits: on chest_xray the 64-bit hash puts 12 pairs
            of different X-rays at distance 2 and 138 at 4, while JPEG re-encoding or resizing
            moves a hash by 0-2 bits; with 256 bits different X-rays are >= 38 bits apart and
            re-encoded, resized or brightened copies <= 16
width       pixels
height      pixels
channels    1 or 3 (after the reader's conversion, see the pixel convention)
mode        the file's own mode from ``io.image_info`` (Pillow mode, DICOM photometric
            interpretation), else 'L'/'RGB' from the channels
mean, std   of the [0, 1] pixels
error       '' or the reason the image cannot be read (then the other fields are empty)
==========  ====================================================================================

Every field is fixed-width in memory (hashes as uint64 words, not hex text; ``mode`` and ``error`` share
one text object per distinct value): the returned table takes about 125 bytes a row, see :mod:`._fpstore`.
Images are read in worker processes one at a time (never all in memory). With ``cache_dir`` the
results are kept in parts ``fingerprints.part-*.npz`` keyed by absolute path, size, mtime_ns, frame
and window, so that a second pass over unchanged files only stats them. While a pass runs, every
:data:`FLUSH_ROWS` new results are written as a new part (atomically), so that an interrupted data
check resumes where it stopped. The cache of earlier versions (``fingerprints.csv``) is converted once.

Example:
    >>> fp = fingerprint(table, workers=2, cache_dir=".medclass-cache", progress=True)
    >>> fp[fp["error"] != ""][["path", "error"]]
    >>> hex_digests(fp, "phash")[:1]
    ['c3d4...']
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import TrainConfig
from ._fpstore import HASH_WORDS, LOCK_FILE, PART_GLOB, Columns, Store, hex_words, row_keys, words_hex
from ._lock import building
from ._pool import decode_pool, watched_imap
from .table import DataTable

log = logging.getLogger(__name__)

FLUSH_ROWS = 2048  # new results written to the cache at a time
_TEXT_FIELDS = ("sha256", "phash", "mode", "error")
_CHUNK = 1 << 20
PHASH_SIZE = 16  # imagehash hash_size: a 16 x 16 = 256-bit hash


def default_workers() -> int:
    """CPU cores this process may use (``os.sched_getaffinity`` where available, else ``os.cpu_count``)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint_image(path: str, frame: int = -1, window: str = "") -> dict[str, Any]:
    """Fingerprint one image (see the module docstring for the fields); never raises on a bad file.

    >>> fingerprint_image("NORMAL/IM-0001-0001.jpeg")["width"]
    224
    """
    import imagehash
    from PIL import Image

    from .io import image_info, read_image
    from .volumes import is_volume

    if is_volume(path, frame):
        from .volumes.fingerprint import fingerprint_volume

        return fingerprint_volume(path, frame, window)

    out: dict[str, Any] = {name: "" for name in _TEXT_FIELDS}
    out.update(width=0, height=0, channels=0, mean=np.nan, std=np.nan)
    try:
        img = read_image(path, frame=frame, window=window)
        if frame >= 0:
            pixels = np.ascontiguousarray(img, dtype=np.float32)
            out["sha256"] = hashlib.sha256(repr(pixels.shape).encode() + pixels.tobytes()).hexdigest()
        else:
            out["sha256"] = _file_sha256(path)
        out["mode"] = str(image_info(path)["mode"] or "")
    except OSError as e:  # ImageReadError is an OSError, so are missing or unreadable files
        out["error"] = getattr(e, "reason", None) or str(e)
        return out
    height, width, channels = img.shape
    gray_or_rgb = img[..., 0] if channels == 1 else img
    as_uint8 = Image.fromarray(np.clip(np.rint(gray_or_rgb * 255), 0, 255).astype(np.uint8))
    out.update(
        phash=str(imagehash.phash(as_uint8, hash_size=PHASH_SIZE)),
        width=width,
        height=height,
        channels=channels,
        mode=out["mode"] or ("L" if channels == 1 else "RGB"),
        mean=float(img.mean()),
        std=float(img.std()),
    )
    return out


def _task(args: tuple[str, int, str]) -> dict[str, Any]:
    return fingerprint_image(*args)


def _run(tasks: list[tuple[str, int, str]], pool: Any, workers: int) -> Iterator[dict[str, Any]]:
    return watched_imap(pool, _task, tasks, stall_timeout=TrainConfig.stall_timeout, what="Fingerprinting images",
                        chunksize=max(1, min(64, len(tasks) // (4 * workers))))


def _fingerprint_new(out: Columns, rows: np.ndarray, tasks: Sequence[tuple[str, int, str]], keys: np.ndarray,
                     workers: int, progress: bool, store: Store | None, cluster: str = "") -> None:
    """Fingerprint ``tasks`` into the rows ``rows`` of ``out``, :data:`FLUSH_ROWS` at a time, each such chunk
    appended to the cache as it comes (an interrupted pass keeps what it did)."""
    if not len(rows):
        return
    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress()
        bar.start()
        job = bar.add_task("Fingerprinting images", total=len(rows))
    try:
        with decode_pool(min(workers, len(rows)) if len(rows) > 1 else 1, cluster) as pool:
            for start in range(0, len(rows), FLUSH_ROWS):
                chunk = [tasks[i] for i in range(start, min(start + FLUSH_ROWS, len(rows)))]
                part = Columns.from_results(list(_run(chunk, pool, workers)), keys[start:start + len(chunk)])
                if store is not None:
                    store.append(part)
                out.put(rows[start:start + len(chunk)], part)
                if bar is not None:
                    bar.advance(job, len(chunk))
    finally:
        if bar is not None:
            bar.stop()


def fingerprint(
    table: DataTable,
    workers: int | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = False,
    window: str = "",
    cluster: str = "",
) -> pd.DataFrame:
    """Fingerprint every row of ``table``; returns a DataFrame aligned with ``table.frame``.

    Args:
        table: the images (``path`` and ``frame`` columns are used).
        workers: processes (``None`` = the usable CPU cores; 1 = in this process).
        cache_dir: folder of the on-disk cache (``None`` = no cache); one process at a time uses it, a second
            one waits for the first (:mod:`~medclass.data._lock`) and then reads its results.
        progress: show a rich progress bar.
        window: DICOM window passed to the reader (part of the cache key).
        cluster: a Dask cluster to read the images on instead of local processes (``tcp://HOST:8786`` or
            ``local:N``, see :mod:`medclass.data.cluster`); the results and the cache are the same.

    Returns:
        Columns :data:`FIELDS` (the module docstring), one row per table row; the hashes as uint64 words
        (:func:`hash_words`, :func:`hex_digests`).

    Example:
        >>> fp = fingerprint(table, cache_dir="cache")
        >>> fp.duplicated(list(SHA256_COLUMNS), keep=False).sum()
    """
    workers = default_workers() if workers is None else int(workers)
    cache_dir = Path(cache_dir) if cache_dir else None
    paths, frames = table.frame["path"], table.frame["frame"].to_numpy(dtype=np.int64)
    with building(cache_dir / LOCK_FILE, "the fingerprint cache") if cache_dir else contextlib.nullcontext():
        store = Store(cache_dir) if cache_dir is not None else None
        keys = row_keys(paths, frames, window)
        out = Columns.empty(len(table))
        cached = store.read_into(keys, out) if store is not None else np.zeros(0, dtype=np.int64)
        todo = np.setdiff1d(np.arange(len(table)), cached, assume_unique=True)
        keyed = todo[keys[todo].any(axis=1)]  # rows without a key (no such file) are each tried
        _, at, same = np.unique(keys[keyed].view("V16").ravel(), return_index=True, return_inverse=True)
        source = keyed[at][same]  # the row whose file is read for each keyed row: a file listed twice is read once
        first = np.union1d(np.setdiff1d(todo, keyed, assume_unique=True), keyed[at])
        if len(todo):
            log.info("Fingerprinting %d image(s) with %d worker(s); %d from the cache.", len(first), workers, len(cached))
        _fingerprint_new(out, first, _Tasks(paths, frames, first, window), keys[first], workers, progress, store, cluster)
        copies = source != keyed
        if copies.any():
            out.put(keyed[copies], out.take(source[copies]))
        if store is not None:
            store.compact()
    return out.frame(paths, frames)


class _Tasks(Sequence):
    """``(path, frame, window)`` of the rows ``rows``, made when asked (not a million tuples at once)."""

    def __init__(self, paths: pd.Series, frames: np.ndarray, rows: np.ndarray, window: str) -> None:
        self.paths, self.frames, self.rows, self.window = paths.to_numpy(), frames, rows, window

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[str, int, str]:  # type: ignore[override]
        row = self.rows[i]
        return str(self.paths[row]), int(self.frames[row]), self.window


def hash_words(fp: pd.DataFrame, name: str) -> np.ndarray:
    """``(n, 4)`` uint64: the ``sha256`` or ``phash`` of every row of a :func:`fingerprint` table."""
    return np.ascontiguousarray(fp[[f"{name}_{w}" for w in range(HASH_WORDS)]].to_numpy(dtype=np.uint64))


def hex_digests(fp: pd.DataFrame, name: str) -> list[str]:
    """The ``sha256`` or ``phash`` of every row as hex text, as ``hashlib``/``imagehash`` print it ('' if unreadable).

    >>> hex_digests(fingerprint(table), "sha256")[0] == hashlib.sha256(open(path, "rb").read()).hexdigest()
    True
    """
    text = words_hex(hash_words(fp, name))
    return [t if e == "" else "" for t, e in zip(text, fp["error"])]


def from_hex(frame: pd.DataFrame) -> pd.DataFrame:
    """A table with hex ``sha256``/``phash`` text columns (hand-made, or saved by an earlier version) as
    :func:`fingerprint` returns it: the hash words in their place, ``frame`` -1 and ``error`` '' where absent."""
    out = frame.drop(columns=["sha256", "phash"])
    for name in ("sha256", "phash"):
        words = hex_words(frame[name]) if name in frame else np.zeros((len(frame), HASH_WORDS), np.uint64)
        out = out.assign(**{f"{name}_{w}": words[:, w] for w in range(HASH_WORDS)})
    return out.assign(frame=frame.get("frame", -1), error=frame.get("error", ""))


SHA256_COLUMNS = tuple(f"sha256_{w}" for w in range(HASH_WORDS))
PHASH_COLUMNS = tuple(f"phash_{w}" for w in range(HASH_WORDS))
FIELDS = ("path", "frame", *SHA256_COLUMNS, *PHASH_COLUMNS, "width", "height", "channels", "mode", "mean", "std",
          "error")


__all__ = ["FIELDS", "FLUSH_ROWS", "PART_GLOB", "PHASH_COLUMNS", "PHASH_SIZE", "SHA256_COLUMNS", "default_workers",
           "fingerprint", "fingerprint_image", "from_hex", "hash_words", "hex_digests"]
