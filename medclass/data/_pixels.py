"""Pixel-range helpers shared by the image and DICOM readers (see the pixel convention)."""
from __future__ import annotations

import numpy as np

def minmax(arr: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] by the array's own min and max (a constant array becomes zeros)."""
    arr = np.asarray(arr, dtype=np.float32)
    finite = np.isfinite(arr)
    if not finite.any():
        return np.zeros_like(arr)
    lo, hi = float(arr[finite].min()), float(arr[finite].max())
    out = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    return np.nan_to_num(out, nan=0.0, posinf=1.0, neginf=0.0).astype(np.float32, copy=False)


def scale_unsigned(arr: np.ndarray, bits: int | None = None) -> np.ndarray:
    """Integer pixels divided by ``2**bits - 1`` (default: the dtype's maximum), clipped to [0, 1]."""
    if bits is None:
        bits = np.dtype(arr.dtype).itemsize * 8
    out = np.asarray(arr, dtype=np.float64) / float(2**bits - 1)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def to_unit(arr: np.ndarray) -> np.ndarray:
    """Any numeric array to float32 [0, 1]: unsigned ints by dtype range, floats kept if already in
    [0, 1], anything else (signed ints, other floats) by min-max."""
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.unsignedinteger):
        return scale_unsigned(arr)
    if np.issubdtype(arr.dtype, np.floating) and arr.size and 0.0 <= np.nanmin(arr) and np.nanmax(arr) <= 1.0:
        return np.nan_to_num(arr.astype(np.float32))
    return minmax(arr)


def composite_on_black(arr: np.ndarray) -> np.ndarray:
    """(H, W, 2) gray+alpha or (H, W, 4) RGB+alpha in [0, 1] -> colour times alpha, alpha dropped."""
    return (arr[..., :-1] * arr[..., -1:]).astype(np.float32)


def to_hwc(arr: np.ndarray) -> np.ndarray:
    """(H, W) -> (H, W, 1); (H, W, 2|4) composited on black; (H, W, 1|3) as is; float32, contiguous."""
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[-1] in (2, 4):
        arr = composite_on_black(arr)
    return np.ascontiguousarray(arr, dtype=np.float32)
