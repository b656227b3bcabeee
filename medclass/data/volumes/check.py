"""What ``medclass data check`` says about volumes: shapes, spacings, slice counts, thin and inconsistent ones.

Read from the headers only (NIfTI header, DICOM slice headers without pixels; one file at a time).

* **thin**: fewer than :data:`THIN_SLICES` slices along the slice axis. A 3-D network padded to its
  input size then sees mostly padding, and the resampling to ``volume.spacing`` invents the missing
  depth by interpolation: such volumes are listed so that a user can decide (LIDC crops of 2-6
  slices are the case in point).
* **inconsistent**: a volume whose header cannot be read or whose series fails its checks
  (:mod:`.series`: missing or duplicate slices, mixed sizes or orientations), with the reason; and,
  for the data set, slice spacings that differ by more than :data:`SPACING_SPREAD` times between
  volumes (then ``volume.spacing`` must resample them to one grid: it does by default).

>>> summary = volume_summary(load_source(DataConfig(path="labels.csv", path_column="image")))  # doctest: +SKIP
>>> summary["slices"]["median"]                                                                    # doctest: +SKIP
6.0
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ...errors import ImageReadError
from ..table import DataTable
from .read import volume_header

THIN_SLICES = 4  # fewer slices than this is a thin volume
SPACING_SPREAD = 2.0  # max / min slice spacing above which the data set's spacings are called inconsistent


def _stats(values: pd.Series) -> dict[str, float]:
    return {"min": float(values.min()), "median": float(values.median()), "max": float(values.max())}


def volume_summary(table: DataTable) -> dict[str, Any]:
    """Shapes, spacings, slice counts, thin and inconsistent volumes of a volume table (JSON-able)."""
    rows, problems = [], []
    for path, frame in zip(table.frame["path"], table.frame["frame"]):
        try:
            header = volume_header(path, int(frame))
        except ImageReadError as e:
            problems.append({"path": path, "frame": int(frame), "reason": e.reason})
            continue
        shape = tuple(header.shape[:3]) + (0,) * (3 - len(header.shape[:3]))
        spacing = tuple(header.spacing[:3]) + (0.0,) * (3 - len(header.spacing[:3]))
        rows.append({"path": path, "frame": int(frame), "x": shape[0], "y": shape[1], "z": shape[2],
                     "sx": spacing[0], "sy": spacing[1], "sz": spacing[2]})
    df = pd.DataFrame(rows, columns=["path", "frame", "x", "y", "z", "sx", "sy", "sz"])
    out: dict[str, Any] = {"readable": len(df), "inconsistent": problems, "thin": [], "notes": []}
    if df.empty:
        return out
    out.update(shape={a: _stats(df[a]) for a in ("x", "y", "z")}, spacing_mm={a: _stats(df[f"s{a}"]) for a in ("x", "y", "z")},
               slices={**_stats(df["z"]), "counts": {int(k): int(v) for k, v in df["z"].value_counts().sort_index().items()}})
    thin = df[df["z"] < THIN_SLICES]
    out["thin"] = [{"path": p, "frame": f, "reason": f"{z} slice(s) (< {THIN_SLICES}): mostly padding for a 3-D network"}
                   for p, f, z in zip(thin["path"], thin["frame"], thin["z"])]
    positive = df["sz"][df["sz"] > 0]
    if len(positive) and positive.max() > SPACING_SPREAD * positive.min():
        out["notes"].append(f"slice spacing varies from {positive.min():g} to {positive.max():g} mm between volumes; "
                            "volume.spacing resamples them to one grid (default 1 mm)")
    if np.any(df[["sx", "sy"]].max(axis=1) * 3 < df["sz"]):
        n = int((df[["sx", "sy"]].max(axis=1) * 3 < df["sz"]).sum())
        out["notes"].append(f"{n} volume(s) have slices more than 3 times thicker than their pixels (anisotropic); "
                            "a 2.5-D input (volume.input=2.5d) or resampling copes with that")
    return out


__all__ = ["volume_summary", "THIN_SLICES", "SPACING_SPREAD"]
