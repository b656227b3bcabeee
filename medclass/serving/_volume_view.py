"""What the web app shows of an uploaded volume: its axial, coronal and sagittal mid-slices side by side.

This is the one display call site for volumes. The explain layer's ``orthogonal_views(volume, cam=None)``
(3-D Grad-CAM drawn on the same three slices) replaces :func:`orthogonal_slices` here when it lands;
until then the page shows the slices without a CAM.
"""
from __future__ import annotations

import numpy as np


def orthogonal_slices(prepared: np.ndarray, gap: int = 2) -> np.ndarray:
    """RGB uint8 image of the three mid-slices of a prepared volume ``(1, X, Y, Z)`` in [0, 1] (RAS axes, as
    :func:`medclass.data.volumes.prepare` gives it): axial (anterior up), coronal and sagittal (superior up),
    separated by ``gap`` black columns.

    >>> orthogonal_slices(np.zeros((1, 16, 16, 16), np.float32)).shape
    (16, 52, 3)
    """
    volume = np.asarray(prepared, np.float32)[0]
    x, y, z = (s // 2 for s in volume.shape)
    views = [volume[:, :, z].T[::-1], volume[:, y, :].T[::-1], volume[x, :, :].T[::-1]]
    height = max(v.shape[0] for v in views)
    padded = [np.pad(v, ((0, height - v.shape[0]), (0, gap))) for v in views]
    gray = np.concatenate(padded, axis=1)[:, :-gap] if gap else np.concatenate(padded, axis=1)
    return np.repeat((np.clip(gray, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)[..., None], 3, axis=2)
