"""Where a model looks: pure functions on maps and regions of any number of spatial dimensions.

A class activation map (2-D ``(H, W)`` or 3-D ``(D, H, W)``, non-negative) is compared with a region (a
boolean array of the same shape: a lung or lesion mask, or :func:`border_band`):

- :func:`cam_share_inside`: the share of the map's mass inside the region (1.0 = all of it);
- :func:`cam_peak_inside`: whether the map's maximum lies inside the region (a "hit");
- :func:`border_band`: the outer band of an image or volume, ``BORDER_FRACTION`` of each side wide, where
  text markers, collimation edges and rulers sit; the occlusion tests keep or remove it;
- :func:`mean_ci`: a mean over images (a share, a hit rate) with a patient-bootstrap interval;
- :func:`mask_fraction` and :func:`summarise_cam_location`: the share an evenly spread map would have, and the
  share inside / peak-inside rate / chance share of a set of volumes with paired patient-bootstrap CIs.

A map spread evenly has a share equal to the region's area share (``region.mean()``): a border share well
above the band's area means the map concentrates on the border.

>>> band = border_band((8, 8), 0.25)
>>> int(band.sum()), bool(band[0, 0]), bool(band[4, 4])
(48, True, False)
>>> cam = np.zeros((8, 8)); cam[0, 0] = 3.0; cam[4, 4] = 1.0
>>> cam_share_inside(cam, band), cam_peak_inside(cam, band)
(0.75, True)
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .bootstrap import check_alpha, percentile_interval, resample_weights
from .metrics import ArrayLike

BORDER_FRACTION = 1 / 8  # width of the border band on each side, as a share of that side (occlusion and CAM share)


def border_band(shape: Sequence[int], fraction: float = BORDER_FRACTION) -> np.ndarray:
    """Boolean array of ``shape``: True in the outer band, ``max(1, round(fraction * side))`` wide on each axis.

    Every axis of ``shape`` is a spatial one (pass ``(H, W)`` or ``(D, H, W)``, not the channels). An axis too
    short to keep a centre (``2 * width >= side``) is all band.

    >>> border_band((4, 8), 0.25).astype(int).tolist()[1]
    [1, 1, 0, 0, 0, 0, 1, 1]
    >>> int(border_band((3, 4, 4), 0.25).sum()), bool(border_band((3, 4, 4), 0.25)[1, 1:3, 1:3].any())
    (44, False)
    """
    if not 0 < fraction < 0.5:
        raise ValueError(f"the border fraction must be in (0, 0.5) (a share of each side), got {fraction}.")
    if not len(shape) or min(shape) < 1:
        raise ValueError(f"shape must list the spatial sizes of an image or volume, got {tuple(shape)}.")
    centre = np.ones(tuple(int(s) for s in shape), dtype=bool)
    for axis, side in enumerate(centre.shape):
        width = max(1, round(fraction * side))
        index = [slice(None)] * centre.ndim
        if 2 * width >= side:
            index[axis] = slice(None)
            centre[tuple(index)] = False
            continue
        for part in (slice(0, width), slice(side - width, side)):
            index[axis] = part
            centre[tuple(index)] = False
    return ~centre


def _checked(cam: ArrayLike, mask: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    c, m = np.asarray(cam, dtype=np.float64), np.asarray(mask)
    if c.shape != m.shape:
        raise ValueError(f"the map has shape {c.shape} but the mask {m.shape}; resample one onto the other's grid first.")
    if (c < 0).any() or not np.isfinite(c).all():
        raise ValueError("the map must be finite and non-negative (a CAM scaled to [0, 1]).")
    return c, m.astype(bool)


def cam_share_inside(cam: ArrayLike, mask: ArrayLike) -> float:
    """Share of the map's mass inside ``mask`` (same shape, any number of dimensions); NaN for an empty map.

    >>> cam_share_inside([[0.0, 1.0], [1.0, 2.0]], [[False, False], [True, True]])
    0.75
    >>> import math; math.isnan(cam_share_inside(np.zeros((2, 2, 2)), np.ones((2, 2, 2))))
    True
    """
    c, m = _checked(cam, mask)
    total = c.sum()
    return float(c[m].sum() / total) if total > 0 else float("nan")


def cam_peak_inside(cam: ArrayLike, mask: ArrayLike) -> bool:
    """Whether the map's maximum lies inside ``mask`` (ties: the first maximum in C order); False for an empty map.

    >>> cam_peak_inside([[0.0, 1.0], [0.2, 0.5]], [[False, True], [False, False]])
    True
    >>> cam_peak_inside(np.zeros((2, 3)), np.ones((2, 3)))
    False
    """
    c, m = _checked(cam, mask)
    if c.max(initial=0.0) <= 0:
        return False
    return bool(m.reshape(-1)[int(np.argmax(c))])


def mean_ci(values: ArrayLike, groups: ArrayLike | None = None, n_boot: int = 1000, alpha: float = 0.05,
            seed: int = 0) -> dict[str, float | int | None]:
    """``{"value", "low", "high", "n"}``: the mean of ``values`` (NaN ones left out) with a percentile interval
    that resamples patients (``groups``; images without groups); ``low``/``high`` are None with ``n_boot=0``.

    >>> mean_ci([1.0, 0.0, 1.0, 1.0], ["a", "a", "b", "c"], n_boot=0)
    {'value': 0.75, 'low': None, 'high': None, 'n': 4}
    """
    v = np.asarray(values, dtype=np.float64)
    ok = ~np.isnan(v)
    g = None if groups is None else np.asarray(groups)[ok]
    v = v[ok]
    out: dict[str, float | int | None] = {"value": float(v.mean()) if len(v) else float("nan"), "low": None,
                                          "high": None, "n": int(len(v))}
    if n_boot < 1 or len(v) < 2:
        return out
    reps = []
    for W in resample_weights(len(v), g, n_boot, seed):
        with np.errstate(invalid="ignore", divide="ignore"):
            reps.append(W @ v / W.sum(axis=1))
    low, high, _ = percentile_interval(np.concatenate(reps), alpha, "mean")
    return out | {"low": low, "high": high}


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


__all__ = ["BORDER_FRACTION", "border_band", "cam_peak_inside", "cam_share_inside", "mask_fraction", "mean_ci",
           "summarise_cam_location"]
