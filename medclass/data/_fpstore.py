"""Fingerprints as fixed-width columns, in memory and in the on-disk cache (no Python object per row).

:class:`Columns` holds the fields of :mod:`~medclass.data.fingerprint` for ``n`` rows as numpy arrays: the
two hashes as ``(n, 4)`` uint64 (32 bytes each, not 64 hex characters in a Python string), sizes as int32,
mean/std as float64, and the few distinct ``mode`` and ``error`` texts as int32 codes into small lists.

The cache folder holds parts ``fingerprints.part-<time>-<pid>.npz``, each one :class:`Columns` with a
128-bit key per row (blake2b of ``abs path|size|mtime_ns|frame|window``), written atomically as a pass
goes (every :data:`~medclass.data.fingerprint.FLUSH_ROWS` results), so an interrupted pass keeps what it
did. A pass that leaves more than :data:`COMPACT_PARTS` parts merges them into one. The cache of earlier
versions (``fingerprints.csv`` and its ``.part-*.csv``) is converted once, in chunks, and removed.
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

from ..utils import atomic_write_bytes

log = logging.getLogger(__name__)

PART_GLOB = "fingerprints.part-*.npz"
LOCK_FILE = "fingerprints.lock"
LEGACY_GLOBS = ("fingerprints.csv", "fingerprints.part-*.csv")  # the cache before fixed-width parts
COMPACT_PARTS = 64  # more parts than this after a pass are merged into one
HASH_WORDS = 4  # 256-bit hashes as four uint64
_NO_HASH = "0" * 16 * HASH_WORDS
_LEGACY_CHUNK = 1 << 16  # rows of an old CSV converted at a time


def hex_words(hex_hashes: Any, words: int = HASH_WORDS) -> np.ndarray:
    """Hex digests (``''`` = none: zeros) as an ``(n, words)`` uint64 array, big-endian words as printed.

    >>> hex_words(["00" * 31 + "ff", ""])[:, 3]
    array([255,   0], dtype=uint64)
    """
    text = pd.Series(hex_hashes, dtype=object).fillna("").astype(str)
    text = text.where(text != "", "0" * 16 * words)
    lengths = set(text.str.len().unique().tolist())
    if lengths and lengths != {16 * words}:
        raise ValueError(f"Hashes of {sorted(lengths)} hex digits where {16 * words} were expected; "
                         "recompute the fingerprints.")
    raw = bytes.fromhex("".join(text.tolist()))
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(len(text), words)


def words_hex(words: np.ndarray) -> list[str]:
    """The inverse of :func:`hex_words` (all-zero rows as ``''`` only where ``empty`` says so is the caller's job)."""
    raw = np.ascontiguousarray(words, dtype=np.uint64).astype(">u8").tobytes().hex()
    width = 16 * words.shape[1]
    return [raw[i:i + width] for i in range(0, len(raw), width)]


def _codes(values: list[str], vocab: dict[str, int]) -> np.ndarray:
    return np.fromiter((vocab.setdefault(v, len(vocab)) for v in values), dtype=np.int32, count=len(values))


@dataclass
class Columns:
    """Fingerprint fields of ``n`` rows (see the module docstring); ``key`` is zero where a row has no cache key."""

    key: np.ndarray  # (n, 2) uint64: the row's cache key, hashed
    sha256: np.ndarray  # (n, 4) uint64
    phash: np.ndarray  # (n, 4) uint64
    width: np.ndarray  # (n,) int32
    height: np.ndarray  # (n,) int32
    channels: np.ndarray  # (n,) int32
    mean: np.ndarray  # (n,) float64
    std: np.ndarray  # (n,) float64
    mode: np.ndarray  # (n,) int32 codes into modes
    error: np.ndarray  # (n,) int32 codes into errors
    modes: list[str]
    errors: list[str]

    @classmethod
    def empty(cls, n: int) -> "Columns":
        """``n`` rows of nothing (zeros, NaN, mode and error '')."""
        return cls(np.zeros((n, 2), np.uint64), np.zeros((n, HASH_WORDS), np.uint64),
                   np.zeros((n, HASH_WORDS), np.uint64), *(np.zeros(n, np.int32) for _ in range(3)),
                   np.full(n, np.nan), np.full(n, np.nan), np.zeros(n, np.int32), np.zeros(n, np.int32), [""], [""])

    @classmethod
    def from_results(cls, results: list[dict[str, Any]], key: np.ndarray) -> "Columns":
        """Columns of :func:`~medclass.data.fingerprint.fingerprint_image` results (one chunk of a pass)."""
        modes: dict[str, int] = {}
        errors: dict[str, int] = {}
        return cls(
            np.asarray(key, np.uint64).reshape(-1, 2), hex_words([r["sha256"] for r in results]),
            hex_words([r["phash"] for r in results]),
            *(np.array([r[f] for r in results], dtype=np.int32).reshape(-1) for f in ("width", "height", "channels")),
            *(np.array([r[f] for r in results], dtype=np.float64).reshape(-1) for f in ("mean", "std")),
            _codes([r["mode"] for r in results], modes), _codes([r["error"] for r in results], errors),
            list(modes), list(errors))

    def __len__(self) -> int:
        return len(self.key)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("modes", "errors")}

    def take(self, rows: np.ndarray) -> "Columns":
        """The rows ``rows`` (positions)."""
        return Columns(**{k: v[rows] for k, v in self._arrays().items()}, modes=self.modes, errors=self.errors)

    def put(self, rows: np.ndarray, other: "Columns") -> None:
        """Write ``other``'s rows into the rows ``rows`` of this one (the texts' codes translated)."""
        for name, values in other._arrays().items():
            getattr(self, name)[rows] = values
        for name, names in (("mode", "modes"), ("error", "errors")):
            mine = getattr(self, names)
            vocab = {v: i for i, v in enumerate(mine)}
            remap = _codes(getattr(other, names), vocab)
            mine.extend(list(vocab)[len(mine):])
            getattr(self, name)[rows] = remap[getattr(other, name)]

    @classmethod
    def concat(cls, parts: list["Columns"]) -> "Columns":
        """One table of all ``parts``, in order."""
        out = cls.empty(sum(len(p) for p in parts))
        start = 0
        for part in parts:
            out.put(np.arange(start, start + len(part)), part)
            start += len(part)
        return out

    def frame(self, paths: pd.Series, frames: np.ndarray) -> pd.DataFrame:
        """The public table: ``path, frame``, the hash words, sizes, ``mode`` and ``error`` (shared text objects)."""
        cols: dict[str, Any] = {"path": paths.to_numpy(), "frame": np.asarray(frames, dtype=np.int64)}
        for name in ("sha256", "phash"):
            cols.update({f"{name}_{w}": getattr(self, name)[:, w] for w in range(HASH_WORDS)})
        cols.update(width=self.width, height=self.height, channels=self.channels,
                    mode=np.asarray(self.modes, dtype=object)[self.mode], mean=self.mean, std=self.std,
                    error=np.asarray(self.errors, dtype=object)[self.error])
        return pd.DataFrame(cols, copy=False)  # the arrays as they are: no second copy of every column

    def save(self, file: BinaryIO) -> None:
        """Write as ``.npz`` (numbers and two short text arrays; no pickle)."""
        np.savez(file, **self._arrays(), modes=np.asarray(self.modes, dtype=str), errors=np.asarray(self.errors, dtype=str))

    @classmethod
    def load(cls, path: Path) -> "Columns":
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        return cls(**{k: v for k, v in arrays.items() if k not in ("modes", "errors")},
                   modes=arrays["modes"].tolist(), errors=arrays["errors"].tolist())


def row_keys(paths: Any, frames: Any, window: str) -> np.ndarray:
    """``(n, 2)`` uint64: the 128-bit cache key of each row, zeros where the file cannot be stat'ed."""
    n = len(frames)
    raw = bytearray(16 * n)
    for i, (path, frame) in enumerate(zip(paths, frames)):
        try:
            st = os.stat(path)
        except OSError:
            continue
        raw[16 * i:16 * i + 16] = _key_digest(f"{Path(path).resolve()}|{st.st_size}|{st.st_mtime_ns}|{frame}|{window}")
    return np.frombuffer(bytes(raw), dtype="<u8").reshape(n, 2).copy()


def _key_digest(key: str) -> bytes:
    return hashlib.blake2b(key.encode(), digest_size=16).digest()


class Store:
    """The cache folder: look rows up, append parts, compact (no table kept in between)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        _convert_legacy(folder)

    def _latest(self) -> Columns:
        """Every cached row, the newest entry of each key only, sorted by key."""
        table = Columns.concat([Columns.load(p) for p in sorted(self.folder.glob(PART_GLOB))])
        keys = table.key.view("V16").ravel()
        return table.take(len(keys) - 1 - np.unique(keys[::-1], return_index=True)[1])

    def read_into(self, keys: np.ndarray, out: Columns) -> np.ndarray:
        """Copy the cached rows of ``keys`` (``(n, 2)`` uint64 of :func:`row_keys`) into the same rows of ``out``;
        their positions. Only the parts' keys are held at once, then one part at a time."""
        files = sorted(self.folder.glob(PART_GLOB))
        part_keys = [np.load(f, allow_pickle=False)["key"] for f in files]
        bounds = np.cumsum([0, *(len(k) for k in part_keys)])
        every = np.concatenate(part_keys or [np.zeros((0, 2), np.uint64)]).view("V16").ravel()
        del part_keys
        newest = len(every) - 1 - np.unique(every[::-1], return_index=True)[1]  # sorted by key
        cached = every[newest]
        query = np.ascontiguousarray(keys, dtype=np.uint64).view("V16").ravel()
        pos = np.searchsorted(cached, query)
        hit = keys.any(axis=1) & (pos < len(cached))
        hit[hit] = cached[pos[hit]] == query[hit]
        rows = np.flatnonzero(hit)
        source = newest[pos[rows]]  # index into all parts, in order
        part_of = np.searchsorted(bounds, source, side="right") - 1
        for i, file in enumerate(files):
            mine = part_of == i
            if mine.any():
                out.put(rows[mine], Columns.load(file).take(source[mine] - bounds[i]))
        return rows

    def append(self, part: Columns) -> None:
        """Write the rows of ``part`` that have a key as one new part."""
        _write_part(self.folder, part.take(np.flatnonzero(part.key.any(axis=1))))

    def compact(self) -> None:
        """Merge all parts into one when there are more than :data:`COMPACT_PARTS` (call with the lock held)."""
        parts = sorted(self.folder.glob(PART_GLOB))
        if len(parts) <= COMPACT_PARTS:
            return
        latest = self._latest()
        name = _write_part(self.folder, latest)
        for part in parts:
            part.unlink(missing_ok=True)
        log.info("Merged %d fingerprint cache parts into %s (%d rows).", len(parts), name, len(latest))


def _write_part(folder: Path, part: Columns) -> str:
    """``part`` as a new part file (atomically: a kill leaves no half file); its name ('' when empty)."""
    if not len(part):
        return ""
    name = PART_GLOB.replace("*", f"{time.time_ns()}-{os.getpid()}")
    atomic_write_bytes(folder / name, part.save)
    return name


def _convert_legacy(folder: Path) -> None:
    """Turn the CSV cache of earlier versions into parts, a chunk of rows at a time, and remove it."""
    old = [f for pattern in LEGACY_GLOBS for f in sorted(folder.glob(pattern)) if f.is_file()]
    if not old:
        return
    log.info("Converting the fingerprint cache %s from CSV to fixed-width parts (once).", ", ".join(f.name for f in old))
    text = ("key", "sha256", "phash", "mode", "error")
    for file in old:
        try:
            for chunk in pd.read_csv(file, dtype={c: str for c in text}, keep_default_na=False, chunksize=_LEGACY_CHUNK):
                key = np.frombuffer(b"".join(_key_digest(k) for k in chunk["key"]), dtype="<u8").reshape(-1, 2)
                chunk = chunk.assign(mean=pd.to_numeric(chunk["mean"], errors="coerce"),
                                     std=pd.to_numeric(chunk["std"], errors="coerce"))
                _write_part(folder, Columns.from_results(chunk.to_dict(orient="records"), key))
        except (ValueError, KeyError, pd.errors.ParserError) as e:
            log.warning("The old fingerprint cache %s cannot be read (%s); its images are fingerprinted again.", file, e)
        file.unlink()


__all__ = ["COMPACT_PARTS", "Columns", "HASH_WORDS", "LOCK_FILE", "PART_GLOB", "Store", "hex_words", "row_keys",
           "words_hex"]
