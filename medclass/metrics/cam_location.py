"""Where a class activation map lies relative to a lesion mask: pure functions over n-d numpy arrays.

Images (2-D) and volumes (3-D) alike: ``cam`` is a non-negative map and ``mask`` a same-shape array
whose non-zero entries are the lesion. The share of CAM mass inside the mask is compared with the
share a CAM spread evenly would have, the mask's fraction of the image (:func:`mask_fraction`).

>>> cam = np.zeros((4, 4, 4)); cam[1, 1, 1] = 3.0; cam[3, 3, 3] = 1.0
>>> mask = np.zeros((4, 4, 4), bool); mask[:2, :2, :2] = True
>>> cam_share_inside(cam, mask), cam_peak_inside(cam, mask), mask_fraction(mask)
(0.75, True, 0.125)
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .bootstrap import check_alpha, percentile_interval, resample_weights


def _pair(cam: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cam, mask = np.asarray(cam, dtype=np.float64), np.asarray(mask) != 0
    if cam.shape != mask.shape:
        raise ValueError(f"cam and mask must have the same shape (the mask prepared like the image), got {cam.shape} "
                         f"and {mask.shape}.")
    if cam.size and float(cam.min()) < 0:
        raise ValueError(f"cam must be non-negative (a CAM in [0, 1]), got a minimum of {float(cam.min()):.3g}.")
    return cam, mask


def cam_share_inside(cam: np.ndarray, mask: np.ndarray) -> float:
    """Share of the CAM's total mass on the mask's non-zero entries; NaN for an all-zero CAM.

    >>> cam_share_inside(np.array([[1.0, 3.0]]), np.array([[0, 1]]))
    0.75
    """
    cam, mask = _pair(cam, mask)
    total = float(cam.sum())
    return float(cam[mask].sum()) / total if total > 0 else float("nan")


def cam_peak_inside(cam: np.ndarray, mask: np.ndarray) -> bool:
    """Whether the CAM's maximum (the first one on ties) lies on the mask.

    >>> cam_peak_inside(np.array([[1.0, 3.0]]), np.array([[1, 0]]))
    False
    """
    cam, mask = _pair(cam, mask)
    return bool(mask.flat[int(np.argmax(cam))]) if cam.size else False


def mask_fraction(mask: np.ndarray) -> float:
    """The mask's share of all positions: the CAM share inside it expected from an evenly spread CAM.

    >>> mask_fraction(np.array([[0, 1, 1, 0]]))
    0.5
    """
    mask = np.asarray(mask) != 0
    return float(mask.mean()) if mask.size else float("nan")


def summarise_cam_location(shares: np.ndarray, peaks: np.ndarray, fractions: np.ndarray, groups: np.ndarray | None,
                           n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> dict[str, Any]:
    """Means over images of the share inside, the peak-inside rate and the chance share, with patient-bootstrap CIs.

    Images whose share is NaN (an all-zero CAM) are left out of all three and counted. Each value is
    ``{"value", "low", "high"}``; ``excess`` is share minus chance on the same resamples; ``n_boot=0``: no
    interval (``low``/``high`` None).

    >>> out = summarise_cam_location(np.array([0.6, 0.8, 0.7]), np.array([1, 1, 0]), np.array([0.1, 0.1, 0.2]),
    ...                              np.array(["a", "b", "c"]), n_boot=200)
    >>> round(out["share_inside"]["value"], 2), out["n"], out["n_empty_cam"]
    (0.7, 3, 0)
    """
    check_alpha(alpha)
    shares, peaks, fractions = (np.asarray(a, dtype=np.float64) for a in (shares, peaks, fractions))
    if not shares.shape == peaks.shape == fractions.shape:
        raise ValueError(f"shares, peaks and fractions need one value per image, got shapes {shares.shape}, "
                         f"{peaks.shape} and {fractions.shape}.")
    ok = ~np.isnan(shares)
    values = {"share_inside": shares[ok], "peak_inside": peaks[ok], "chance_share": fractions[ok]}
    values["excess"] = values["share_inside"] - values["chance_share"]
    out: dict[str, Any] = {"n": int(ok.sum()), "n_empty_cam": int((~ok).sum())}
    if not ok.any():
        return out | {k: {"value": None, "low": None, "high": None} for k in values}
    kept_groups = None if groups is None else np.asarray(groups)[ok]
    stacked = np.stack(list(values.values()), axis=1)  # (n, metrics)
    if n_boot < 1:
        return out | {name: {"value": float(stacked[:, j].mean()), "low": None, "high": None}
                      for j, name in enumerate(values)}
    reps = []
    for W in resample_weights(len(stacked), kept_groups, n_boot, seed):
        with np.errstate(invalid="ignore", divide="ignore"):
            reps.append((W @ stacked) / W.sum(axis=1, keepdims=True))
    reps = np.concatenate(reps, axis=0)
    for j, name in enumerate(values):
        low, high, _ = percentile_interval(reps[:, j], alpha, f"CAM {name}")
        out[name] = {"value": float(stacked[:, j].mean()), "low": low, "high": high}
    return out


__all__ = ["cam_peak_inside", "cam_share_inside", "mask_fraction", "summarise_cam_location"]
