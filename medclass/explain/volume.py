"""Grad-CAM of CT/MRI volumes and its pictures: a slice montage and three orthogonal views.

Arrays first, pictures second. :func:`volume_cams` gives one ``(X, Y, Z)`` map per prepared volume
for both volume inputs:

* ``volume.input=3d``: the 3-D network's own Grad-CAM (:func:`~medclass.explain.cam.compute_cam` on
  the ``(N, 1, X, Y, Z)`` batch; pytorch-grad-cam handles the 5-D activations).
* ``volume.input=2.5d``: the 2-D network sees the ``in_chans`` axial slices around the centre as the
  channels of one image, so its CAM is one in-plane ``(X, Y)`` map over that channel stack; it says
  where in the plane, not on which of the stacked slices, the evidence lies. It is placed on the
  slices the model saw (:func:`~medclass.data.volumes.prepare.stack_slices`) and is zero on the
  slices it never saw. A CAM per slice would need the slices one at a time, which is not what the
  model was trained on.

Display convention (the default ``volume.orientation=RAS``): slices are shown as radiologists read
them, the patient's right on the left of the picture; axial with anterior up, coronal and sagittal
with superior up (sagittal: anterior on the left). Axial slices are along the last array axis.

>>> import numpy as np
>>> volume = np.zeros((16, 16, 16), np.float32); volume[4:12, 4:12, 2:14] = 1.0
>>> slice_montage(volume, volume, k=4, tile=32).shape    # 2 rows of 4 captioned tiles, a colour bar
(92, 164, 3)
>>> orthogonal_views(volume, volume, tile=64).shape
(78, 228, 3)
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import nn

from ..data.volumes.prepare import VolumePrep, stack_slices
from ..errors import check_choice
from .cam import COLORMAPS, compute_cam, overlay_cam

MONTAGE_SLICES = 8  # axial slices in a montage
TILE = 96  # pixels per displayed slice (small prepared volumes are upscaled)
LABEL_HEIGHT = 14  # pixels of the caption strip above each row of tiles
BAR_WIDTH = 36  # pixels of the colour scale on the right
EMPTY_TOLERANCE = 1e-3  # a slice whose intensities span less than this is empty (padding)
VIEWS = ("axial", "coronal", "sagittal")


def volume_cams(model: nn.Module, inputs: torch.Tensor, prep: VolumePrep, target_class: int | list[int] | None = None,
                method: str = "gradcam", target_layer: str | nn.Module | None = None) -> np.ndarray:
    """Grad-CAM maps ``(N, X, Y, Z)`` in [0, 1] of a batch of model inputs built by ``VolumeTransform(prep)``.

    ``inputs`` is ``(N, 1, X, Y, Z)`` for ``prep.input == '3d'`` and ``(N, in_chans, X, Y)`` for
    ``'2.5d'`` (whose map is spread over the stacked slices only; see the module docstring).
    ``target_class``, ``method`` and ``target_layer`` are those of :func:`compute_cam`.
    """
    maps = compute_cam(model, inputs, target_class=target_class, method=method, target_layer=target_layer)
    return stack_cam(maps, prep)


def stack_cam(maps: np.ndarray, prep: VolumePrep) -> np.ndarray:
    """CAMs of model inputs as volume maps ``(N, X, Y, Z)``: 3-D ones unchanged, 2.5-D in-plane maps ``(N, X, Y)``
    placed on the stacked slices (zero on the others).

    >>> stack_cam(np.ones((1, 4, 4)), VolumePrep(size=(4, 4, 8), input="2.5d", in_chans=3))[0, 0, 0].tolist()
    [0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    """
    if prep.input != "2.5d":
        return maps
    out = np.zeros((len(maps), *maps.shape[1:], prep.size[2]), np.float32)
    out[..., stack_slices(prep.size[2], prep.in_chans)] = maps[..., None]
    return out


def cam_peak(cam: np.ndarray) -> tuple[int, ...]:
    """Index of the CAM's maximum (the first one on ties).

    >>> cam_peak(np.eye(3)[None] * np.arange(3))
    (0, 2, 2)
    """
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(cam)), cam.shape))


def montage_slices(volume: np.ndarray, k: int = MONTAGE_SLICES) -> list[int]:
    """``k`` evenly spaced axial slice indices between the first and last non-empty slice (fewer if there are fewer).

    Empty slices (constant intensity, e.g. the padding of a crop) at both ends are skipped.

    >>> v = np.zeros((4, 4, 10)); v[1, 1, 2:8] = 1
    >>> montage_slices(v, 3)
    [2, 4, 7]
    """
    volume = np.asarray(volume)
    flat = volume.reshape(-1, volume.shape[-1])
    filled = np.flatnonzero(flat.max(axis=0) - flat.min(axis=0) > EMPTY_TOLERANCE)
    lo, hi = (int(filled[0]), int(filled[-1])) if len(filled) else (0, volume.shape[-1] - 1)
    return sorted({int(round(z)) for z in np.linspace(lo, hi, min(k, hi - lo + 1))})


def slice_montage(volume: np.ndarray, cam: np.ndarray | None = None, k: int = MONTAGE_SLICES, tile: int = TILE,
                  alpha: float = 0.4, colormap: str = "jet") -> np.ndarray:
    """A volume's axial slices and, under them, the same slices with the CAM overlaid, and a colour scale.

    Args:
        volume: ``(X, Y, Z)`` in [0, 1] (a prepared volume; ``(1, X, Y, Z)`` is accepted).
        cam: ``(X, Y, Z)`` map in [0, 1] of the same shape, or ``None`` for the slices only.
        k: slices shown, evenly spaced over the non-empty ones (:func:`montage_slices`).
        tile: pixel side of each shown slice.

    Returns:
        ``uint8`` RGB ``(rows * (LABEL_HEIGHT + tile), len(slices) * tile + BAR_WIDTH, 3)``, rows = 2 with a CAM.
    """
    volume, cam = _check(volume, cam)
    zs = montage_slices(volume, k)
    rows = [_row([_tile(volume[:, :, z], None, tile, alpha, colormap) for z in zs], [f"z={z}" for z in zs])]
    if cam is not None:
        rows.append(_row([_tile(volume[:, :, z], cam[:, :, z], tile, alpha, colormap) for z in zs],
                         [f"CAM z={z}" for z in zs]))
    grid = np.concatenate(rows, axis=0)
    return np.concatenate([grid, colour_bar(grid.shape[0], colormap)], axis=1) if cam is not None else grid


def orthogonal_views(volume: np.ndarray, cam: np.ndarray | None = None, point: tuple[int, int, int] | None = None,
                     tile: int = TILE * 2, alpha: float = 0.4, colormap: str = "jet") -> np.ndarray:
    """Axial, coronal and sagittal slices through the CAM's peak (without a CAM: the centre), side by side.

    ``point`` (an ``(x, y, z)`` voxel) overrides the choice. Returns ``uint8`` RGB ``(LABEL_HEIGHT + tile,
    3 * tile (+ BAR_WIDTH with a CAM), 3)``; each caption names the view and the slice index.
    """
    volume, cam = _check(volume, cam)
    if point is None:
        point = cam_peak(cam) if cam is not None else tuple(s // 2 for s in volume.shape)
    x, y, z = (int(np.clip(p, 0, s - 1)) for p, s in zip(point, volume.shape))
    cuts = dict(zip(VIEWS, [(np.s_[:, :, z], f"z={z}"), (np.s_[:, y, :], f"y={y}"), (np.s_[x, :, :], f"x={x}")]))
    tiles = [_tile(volume[cut], None if cam is None else cam[cut], tile, alpha, colormap) for cut, _ in cuts.values()]
    row = _row(tiles, [f"{view} {where}" for view, (_, where) in cuts.items()])
    return np.concatenate([row, colour_bar(row.shape[0], colormap)], axis=1) if cam is not None else row


def colour_bar(height: int, colormap: str = "jet", width: int = BAR_WIDTH) -> np.ndarray:
    """A vertical colour scale (CAM 1 at the top, 0 at the bottom) with its end values written on it; ``uint8`` RGB."""
    colormap = check_choice("colormap", colormap, COLORMAPS)
    ramp = np.linspace(255, 0, max(height - 2 * LABEL_HEIGHT, 1)).astype(np.uint8)[:, None].repeat(width // 2, axis=1)
    bar = cv2.cvtColor(cv2.applyColorMap(ramp, getattr(cv2, f"COLORMAP_{colormap.upper()}")), cv2.COLOR_BGR2RGB)
    out = np.full((height, width, 3), 255, np.uint8)
    out[LABEL_HEIGHT:LABEL_HEIGHT + len(bar), width // 4:width // 4 + bar.shape[1]] = bar
    _text(out, "1", (width // 4, LABEL_HEIGHT - 3))
    _text(out, "0", (width // 4, height - 3))
    return out


def _check(volume: np.ndarray, cam: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    volume = np.asarray(volume, dtype=np.float32)
    if volume.ndim == 4 and volume.shape[0] == 1:
        volume = volume[0]
    if volume.ndim != 3:
        raise ValueError(f"volume must be (X, Y, Z) or (1, X, Y, Z), got shape {volume.shape}.")
    if cam is not None:
        cam = np.asarray(cam, dtype=np.float32)
        if cam.shape != volume.shape:
            raise ValueError(f"cam must have the volume's shape {volume.shape}, got {cam.shape}; resize it to the "
                             "prepared volume (volume_cams does).")
    return np.clip(volume, 0.0, 1.0), cam


def display_plane(plane: np.ndarray) -> np.ndarray:
    """A 2-D cut in radiological display: rotated so the second array axis runs upwards, then mirrored left-right."""
    return np.ascontiguousarray(np.rot90(plane)[:, ::-1])


def _tile(plane: np.ndarray, cam: np.ndarray | None, tile: int, alpha: float, colormap: str) -> np.ndarray:
    image = cv2.resize(display_plane(plane), (tile, tile), interpolation=cv2.INTER_LINEAR)
    if cam is None:
        return (np.repeat(image[..., None], 3, axis=2) * 255).round().astype(np.uint8)
    heat = cv2.resize(display_plane(cam), (tile, tile), interpolation=cv2.INTER_LINEAR)
    return overlay_cam(image, heat, alpha=alpha, colormap=colormap)


def _row(tiles: list[np.ndarray], captions: list[str]) -> np.ndarray:
    side = tiles[0].shape[0]
    row = np.full((LABEL_HEIGHT + side, side * len(tiles), 3), 255, np.uint8)
    for i, (t, caption) in enumerate(zip(tiles, captions)):
        row[LABEL_HEIGHT:, i * side:(i + 1) * side] = t
        _text(row, caption, (i * side + 2, LABEL_HEIGHT - 3))
    return row


def _text(image: np.ndarray, text: str, origin: tuple[int, int]) -> None:
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)


__all__ = ["MONTAGE_SLICES", "VIEWS", "cam_peak", "colour_bar", "display_plane", "montage_slices", "orthogonal_views",
           "slice_montage", "stack_cam", "volume_cams"]
