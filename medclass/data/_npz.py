"""Lazy access to MedMNIST-style ``.npz`` files: one image per call, the file opened once per process.

Layout: ``{train,val,test}_images`` with ``{train,val,test}_labels`` (MedMNIST), or a single
``images`` / ``labels`` pair (no split). Rows address an image by its *global index*: the image
arrays in the order train, val, test are numbered one after the other, so a row needs only
``path`` and ``frame`` (the global index), whatever split it is later assigned to.

Members stored without compression (``np.savez``) are memory-mapped; compressed members
(``np.savez_compressed``, as MedMNIST ships them) are decompressed once per process and kept in a
small cache, so reading item after item never reloads the file.
"""
from __future__ import annotations

import functools
import struct
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import DatasetError

NPZ_SPLITS = ("train", "val", "test")
_LOCAL_HEADER = 30  # bytes of a zip local file header before the name and extra field


class NpzPart(NamedTuple):
    """One image array of an npz file and where its rows start in the global numbering."""

    split: str  # 'train' | 'val' | 'test' | '' (single 'images' array)
    images_key: str
    labels_key: str
    start: int  # global index of its first image
    length: int
    item_shape: tuple[int, ...]  # shape of one image, e.g. (28, 28) or (224, 224, 3)


def _stamp(path: str | Path) -> tuple[str, int, int]:
    """Cache key: the resolved path, its size and modification time (a rewritten file is re-read)."""
    path = Path(path).resolve()
    st = path.stat()
    return str(path), st.st_size, st.st_mtime_ns


@functools.lru_cache(maxsize=16)
def _members(stamp: tuple[str, int, int]) -> dict[str, tuple[tuple[int, ...], np.dtype, bool, int | None]]:
    """``key -> (shape, dtype, fortran_order, data offset in the file or None if compressed)``."""
    path = stamp[0]
    out = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as raw:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with zf.open(info) as f:
                version = np.lib.format.read_magic(f)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, fortran, dtype = read_header(f)
                npy_header = f.tell()
            offset = None
            if info.compress_type == zipfile.ZIP_STORED and not dtype.hasobject:
                raw.seek(info.header_offset + 26)
                name_len, extra_len = struct.unpack("<HH", raw.read(4))
                offset = info.header_offset + _LOCAL_HEADER + name_len + extra_len + npy_header
            out[info.filename[: -len(".npy")]] = (tuple(shape), dtype, fortran, offset)
    return out


def npz_parts(path: str | Path) -> list[NpzPart]:
    """The image arrays of an npz file in global-index order; :class:`DatasetError` if none.

    >>> [p.split for p in npz_parts("pneumoniamnist.npz")]
    ['train', 'val', 'test']
    """
    try:
        members = _members(_stamp(path))
    except (OSError, zipfile.BadZipFile, ValueError) as e:
        raise DatasetError(f"{path}: not a readable .npz file ({e}).") from None
    candidates = [(s, f"{s}_images", f"{s}_labels") for s in NPZ_SPLITS] + [("", "images", "labels")]
    parts, start = [], 0
    for split, images_key, labels_key in candidates:
        if images_key in members:
            shape, dtype = members[images_key][0] or (0,), members[images_key][1]
            _check_images(path, images_key, shape, dtype)
            if labels_key in members:
                _check_labels(path, labels_key, members[labels_key][1])
            parts.append(NpzPart(split, images_key, labels_key, start, shape[0], tuple(shape[1:])))
            start += shape[0]
    if not parts:
        raise DatasetError(
            f"{path} holds arrays {sorted(members)}; expected MedMNIST keys train_images/train_labels, "
            "val_images/val_labels, test_images/test_labels (or a single images/labels pair)."
        )
    return parts


def _check_images(path: str | Path, key: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Images must be numbers of shape (n, H, W) or (n, H, W, C) with C in 1..4, or 3-D volumes (n, D, H, W)
    with W > 4 (MedMNIST 3-D; read with :mod:`medclass.data.volumes`), from the header only."""
    if dtype.hasobject or not (np.issubdtype(dtype, np.number) or dtype == np.bool_) or \
            np.issubdtype(dtype, np.complexfloating):
        raise DatasetError(f"{path}: {key} holds {_dtype_name(dtype)} values; images must be numbers (uint8, uint16 "
                           "or float). Object arrays are never loaded: they would need unpickling.")
    if len(shape) not in (3, 4) and not (len(shape) == 5 and shape[4] == 1):
        raise DatasetError(f"{path}: {key} has shape {shape}; expected (n, H, W) or (n, H, W, C) with C in 1..4 "
                           "(2-D images), or (n, D, H, W) (3-D volumes); flattened images are not supported.")


def _check_labels(path: str | Path, key: str, dtype: np.dtype) -> None:
    """Labels must be numbers or strings; object (pickled) arrays are refused unread."""
    if dtype.hasobject or np.issubdtype(dtype, np.complexfloating) or not (
            np.issubdtype(dtype, np.number) or dtype == np.bool_ or dtype.kind in "US"):
        raise DatasetError(f"{path}: {key} holds {_dtype_name(dtype)} values; labels must be integers or strings. "
                           "Object arrays are never loaded: they would need unpickling.")


def _dtype_name(dtype: np.dtype) -> str:
    return "Python object (pickled)" if dtype.hasobject else str(dtype)


@functools.lru_cache(maxsize=8)
def _array(stamp: tuple[str, int, int], key: str) -> np.ndarray:
    """One member: memory-mapped when stored uncompressed, else decompressed once (cached)."""
    shape, dtype, fortran, offset = _members(stamp)[key]
    if offset is not None:
        return np.memmap(stamp[0], dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")
    with np.load(stamp[0], allow_pickle=False) as npz:
        return npz[key]


def npz_array(path: str | Path, key: str) -> np.ndarray:
    """The array ``key`` of an npz file (memory-mapped or cached; do not modify it)."""
    return _array(_stamp(path), key)


def npz_item(path: str | Path, index: int) -> tuple[np.ndarray, NpzPart]:
    """Image number ``index`` (global numbering) as stored, and the part it comes from."""
    parts = npz_parts(path)
    for part in parts:
        if part.start <= index < part.start + part.length:
            return np.asarray(npz_array(path, part.images_key)[index - part.start]), part
    total = parts[-1].start + parts[-1].length
    raise IndexError(f"image index {index} is outside 0..{total - 1}")


def clear_cache() -> None:
    """Forget opened npz files (e.g. after rewriting one in place within the same second)."""
    _members.cache_clear()
    _array.cache_clear()

