"""One pass over the images: content hashes and pixel statistics for the leak audit and quality filter.

Per row of a :class:`DataTable` :func:`fingerprint` computes

==========  ====================================================================================
column      meaning
==========  ====================================================================================
sha256      hex digest of the file bytes; for rows with ``frame >= 0`` (a frame of a multi-frame
            DICOM, an index into a .npz array) of the decoded frame instead: its shape and float32
            pixel bytes, so two frames of one file differ and equal frames in two files match
phash       256-bit perceptual hash (``imagehash.phash`` with ``hash_size=16``) of the decoded image,
            as 64 hex digits. 256 rather than 64 bits: on chest_xray the 64-bit hash puts 12 pairs
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

Images are read in worker processes one at a time (never all in memory). With ``cache_dir`` the
results are kept in ``fingerprints.csv`` keyed by absolute path, size, mtime_ns, frame and window,
so that a second pass over unchanged files only stats them. While a pass runs, every
:data:`FLUSH_ROWS` new results are written to a part file (``fingerprints.part-*.csv``, atomically),
so that an interrupted data check resumes where it stopped; the parts are merged into
``fingerprints.csv`` at the end of a pass.

Example:
    >>> fp = fingerprint(table, workers=2, cache_dir=".medclass-cache", progress=True)
    >>> fp[fp["error"] != ""][["path", "error"]]
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import TrainConfig
from ..utils import atomic_write_text
from ._pool import decode_pool, watched_imap
from .table import DataTable

log = logging.getLogger(__name__)

CACHE_FILE = "fingerprints.csv"
PART_GLOB = "fingerprints.part-*.csv"  # results of a pass still running, or interrupted
FLUSH_ROWS = 2048  # new results written to the cache at a time
FIELDS = ("sha256", "phash", "width", "height", "channels", "mode", "mean", "std", "error")
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


def _cache_key(path: str, frame: int, window: str) -> str:
    """``abs path|size|mtime_ns|frame|window``, or '' when the file cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return ""
    return f"{Path(path).resolve()}|{st.st_size}|{st.st_mtime_ns}|{frame}|{window}"


def _read_cache(cache_dir: Path | None) -> pd.DataFrame:
    files = [cache_dir / CACHE_FILE, *sorted(cache_dir.glob(PART_GLOB), key=os.path.getmtime)] if cache_dir else []
    parts = [pd.read_csv(f, dtype={c: str for c in ("key", *_TEXT_FIELDS)}, keep_default_na=False)
             for f in files if f.is_file()]
    if not parts:
        return pd.DataFrame(columns=["key", *FIELDS]).set_index("key")
    cache = pd.concat(parts, ignore_index=True)
    cache["mean"] = pd.to_numeric(cache["mean"], errors="coerce")
    cache["std"] = pd.to_numeric(cache["std"], errors="coerce")
    return cache.drop_duplicates("key", keep="last").set_index("key")


def _write_part(cache_dir: Path, keys: list[str], results: list[dict[str, Any]]) -> None:
    """Append results to the cache as one new part file (written atomically: a kill leaves no half file)."""
    part = pd.DataFrame(results, columns=list(FIELDS)).assign(key=keys)
    part = part[part["key"] != ""]
    if len(part):
        cache_dir.mkdir(parents=True, exist_ok=True)
        name = PART_GLOB.replace("*", f"{time.time_ns()}-{os.getpid()}")
        atomic_write_text(cache_dir / name, part[["key", *FIELDS]].to_csv(index=False))


def _run(tasks: list[tuple[str, int, str]], workers: int, progress: bool, cluster: str = "") -> Iterator[dict[str, Any]]:
    if not tasks:
        return
    with decode_pool(min(workers, len(tasks)) if len(tasks) > 1 else 1, cluster) as pool:
        results = watched_imap(pool, _task, tasks, stall_timeout=TrainConfig.stall_timeout,
                               what="Fingerprinting images", chunksize=max(1, min(64, len(tasks) // (4 * workers))))
        if progress:
            from rich.progress import track

            results = track(results, total=len(tasks), description="Fingerprinting images")
        yield from results


def _fingerprint_new(todo: list[tuple[str, int]], key_of: dict[tuple[str, int], str], window: str, workers: int,
                     progress: bool, cache_dir: Path | None, cluster: str = "") -> pd.DataFrame:
    """Fingerprint ``todo`` (columns ``path, frame`` and :data:`FIELDS`, in its order), writing every
    :data:`FLUSH_ROWS` results to a cache part as they come; results are kept as tables of that many rows, not
    one dict per row (a quarter of the memory)."""
    chunks: list[pd.DataFrame] = []
    results = _run([(p, f, window) for p, f in todo], workers, progress, cluster)
    try:
        for start in range(0, len(todo), FLUSH_ROWS):
            items = todo[start:start + FLUSH_ROWS]
            pending = [next(results) for _ in items]
            if cache_dir is not None:
                _write_part(cache_dir, [key_of[i] for i in items], pending)
            chunk = pd.DataFrame(pending, columns=list(FIELDS))
            chunks.append(chunk.assign(path=[p for p, _ in items], frame=[f for _, f in items]))
    finally:
        results.close()  # the worker pool (or the cluster connection) ends here, not at garbage collection
    return pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame(columns=["path", "frame", *FIELDS])


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
        cache_dir: folder of the on-disk cache ``fingerprints.csv`` (``None`` = no cache).
        progress: show a rich progress bar.
        window: DICOM window passed to the reader (part of the cache key).
        cluster: a Dask cluster to read the images on instead of local processes (``tcp://HOST:8786`` or
            ``local:N``, see :mod:`medclass.data.cluster`); the results and the cache are the same.

    Returns:
        Columns ``path, frame`` and the fields of the module docstring, one row per table row.

    Example:
        >>> fp = fingerprint(table, cache_dir="cache")
        >>> fp["sha256"].duplicated(keep=False).sum()
    """
    workers = default_workers() if workers is None else int(workers)
    cache_dir = Path(cache_dir) if cache_dir else None
    paths = table.frame["path"].tolist()
    frames = table.frame["frame"].astype(int).tolist()
    keys = [_cache_key(p, f, window) for p, f in zip(paths, frames)]
    parts = sorted(cache_dir.glob(PART_GLOB)) if cache_dir is not None else []  # merged below, then removed
    cache = _read_cache(cache_dir)
    todo = sorted({(p, f) for p, f, k in zip(paths, frames, keys) if not k or k not in cache.index})
    if todo:
        log.info("Fingerprinting %d image(s) with %d worker(s); %d from the cache.", len(todo), workers, len(paths) - len(todo))
    fresh = _fingerprint_new(todo, dict(zip(zip(paths, frames), keys)), window, workers, progress, cache_dir, cluster)
    out = cache.reindex(keys).reset_index(drop=True)[list(FIELDS)]
    at = pd.MultiIndex.from_frame(fresh[["path", "frame"]].astype({"frame": int})).get_indexer(
        pd.MultiIndex.from_arrays([paths, frames])) if len(fresh) else np.full(len(paths), -1)
    is_fresh = at >= 0
    if is_fresh.any():
        new_rows = fresh.iloc[at[is_fresh]][list(FIELDS)]
        out.loc[is_fresh, list(FIELDS)] = new_rows.set_axis(out.index[is_fresh])
    out.insert(0, "frame", frames)
    out.insert(0, "path", paths)
    out = out.astype({"width": int, "height": int, "channels": int, "mean": float, "std": float})
    out[list(_TEXT_FIELDS)] = out[list(_TEXT_FIELDS)].fillna("").astype(str)
    if cache_dir is not None and (len(fresh) or parts):  # one file again: the cache read plus this pass
        new = out.assign(key=keys)[is_fresh]
        merged = pd.concat([cache.reset_index(), new[new["key"] != ""]]).drop_duplicates("key", keep="last")
        atomic_write_text(cache_dir / CACHE_FILE, merged[["key", *FIELDS]].to_csv(index=False))
        for part in {*parts, *cache_dir.glob(PART_GLOB.replace("*", f"*-{os.getpid()}"))}:  # not other passes' parts
            part.unlink(missing_ok=True)
    return out


__all__ = ["CACHE_FILE", "FIELDS", "FLUSH_ROWS", "PHASH_SIZE", "default_workers", "fingerprint", "fingerprint_image"]
