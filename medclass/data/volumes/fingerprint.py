"""Fingerprints of volumes for the leak audit and the quality filter (same fields as 2-D images).

* ``sha256``: of the voxels (shape and float32 values as read, HU for CT), not of the file bytes, so a
  volume saved again (another compression, header or format: NIfTI vs DICOM series) is still an
  exact duplicate.
* ``phash``: the 256-bit perceptual hash (:data:`~medclass.data.fingerprint.PHASH_SIZE`) of the
  **mean projection** along the slice axis, in the window of the run (else the volume's own 0.5-99.5th
  percentiles). Why: a projection sees the whole volume (a middle slice misses a copy cropped or
  padded by a few slices); the mean, unlike a maximum-intensity projection, is not dominated by a
  few bright voxels (bone, contrast) that many CT crops share; and averaging over the slices makes
  it insensitive to noise, to resampling along z and to slice order, which are what a re-exported
  copy of one scan changes. Different nodules of one patient project differently.
* ``width`` / ``height``: the first two axes; ``mode``: ``volume`` (shapes, spacings and slice
  counts are in the data check's volume summary, :mod:`.check`); ``mean`` / ``std``: of the windowed
  voxels in [0, 1].
"""
from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from .read import read_volume


def unit_window(array: np.ndarray, window: str = "") -> np.ndarray:
    """Voxels mapped to [0, 1]: through a window (preset or 'C,W' in HU), else the 0.5-99.5th percentiles."""
    from ...config import parse_window

    spec = parse_window(window) if window else None
    if spec is not None:
        low, high = spec[0] - spec[1] / 2, spec[0] + spec[1] / 2
    else:
        low, high = (float(v) for v in np.percentile(array, [0.5, 99.5]))
    return np.clip((array - low) / max(high - low, 1e-6), 0.0, 1.0).astype(np.float32)


def fingerprint_volume(path: str, frame: int = -1, window: str = "") -> dict[str, Any]:
    """The fingerprint fields of one volume; never raises on a bad file (``error`` holds the reason)."""
    import imagehash
    from PIL import Image

    from ..fingerprint import PHASH_SIZE

    out: dict[str, Any] = {"sha256": "", "phash": "", "mode": "", "error": "", "width": 0, "height": 0, "channels": 0,
                           "mean": np.nan, "std": np.nan}
    try:
        vol = read_volume(path, frame)
    except OSError as e:  # ImageReadError included
        out["error"] = getattr(e, "reason", None) or str(e)
        return out
    voxels = np.ascontiguousarray(vol.array, dtype=np.float32)
    unit = unit_window(voxels, window)
    projection = unit.mean(axis=2)
    as_uint8 = Image.fromarray(np.clip(np.rint(projection * 255), 0, 255).astype(np.uint8))
    x, y, _ = vol.shape
    out.update(sha256=hashlib.sha256(repr(voxels.shape).encode() + voxels.tobytes()).hexdigest(),
               phash=str(imagehash.phash(as_uint8, hash_size=PHASH_SIZE)), width=x, height=y, channels=1,
               mode="volume", mean=float(unit.mean()), std=float(unit.std()))
    return out
