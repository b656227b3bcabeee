"""DICOM series -> one volume: slices grouped by SeriesInstanceUID, ordered along the slice normal, in HU.

A folder (searched recursively) may hold one series or many; ``frame`` picks series number ``frame``
of the sorted SeriesInstanceUIDs (:func:`series_uids`), and ``frame=-1`` on a folder of several series
is refused with their UIDs. The slices of a series are checked before any pixel is decoded, and each
problem is one :class:`~medclass.errors.ImageReadError` naming the files:

* one slice only; slices of different sizes (Rows x Columns) or orientations (ImageOrientationPatient);
* two slices at one position (duplicates), a gap of 1.5 or more times the usual slice distance
  (a missing slice); smaller unevenness (> 1 %) is logged and the mean distance used;
* no ImagePositionPatient / ImageOrientationPatient / PixelSpacing (geometry unknown).

Geometry: with row direction ``r`` and column direction ``c`` (ImageOrientationPatient), the
normal ``n = r x c``, and slices sorted by ``position . n``, voxel ``(i, j, k)`` (column, row, slice)
lies at ``P0 + i dc r + j dr c + k ds n`` in patient LPS; the affine returned is that mapping in RAS
(x and y negated), like nibabel's. Pixels become HU (or the modality's units) by RescaleSlope and
RescaleIntercept.

Example:
    >>> vol = read_series("ct_series/")
    >>> vol.shape, vol.spacing        # (columns, rows, slices), mm
    ((44, 44, 6), (0.703125, 0.703125, 2.5))
"""
from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import ImageReadError
from .._scan import is_hidden
from ..dicom import DICOM_EXTENSIONS, is_dicom, read_dataset
from .read import Volume, VolumeHeader, check_fits

log = logging.getLogger(__name__)

GAP_MISSING = 1.5  # a gap of this many usual slice distances or more means a missing slice
UNEVEN = 0.01  # relative spread of slice distances above which the series is reported as uneven


@dataclass(frozen=True)
class _Slice:
    path: str
    position: tuple[float, ...]  # ImagePositionPatient (mm, LPS)
    orientation: tuple[float, ...]  # ImageOrientationPatient (6 direction cosines)
    pixel_spacing: tuple[float, float]  # (row spacing, column spacing) mm
    size: tuple[int, int]  # (Rows, Columns)
    patient: str = ""  # PatientID


def _dicom_files(folder: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not is_hidden(d))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if not is_hidden(name) and (path.suffix.lower() in DICOM_EXTENSIONS or (not path.suffix and is_dicom(path))):
                files.append(path)
    return files


def _floats(ds, keyword: str) -> tuple[float, ...]:
    value = ds.get(keyword)
    return tuple(float(v) for v in value) if value is not None else ()


@functools.lru_cache(maxsize=64)
def _scan(folder: str, stamp: int) -> dict[str, tuple[_Slice, ...]]:
    """SeriesInstanceUID -> the slice headers of one folder (cached per folder and modification time)."""
    groups: dict[str, list[_Slice]] = {}
    for path in _dicom_files(Path(folder)):
        ds = read_dataset(path, stop_before_pixels=True)
        spacing = _floats(ds, "PixelSpacing")
        groups.setdefault(str(ds.get("SeriesInstanceUID", "") or ""), []).append(_Slice(
            str(path), _floats(ds, "ImagePositionPatient"), _floats(ds, "ImageOrientationPatient"),
            (spacing[0], spacing[1]) if len(spacing) == 2 else (0.0, 0.0),
            (int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)), str(ds.get("PatientID", "") or "")))
    return {uid: tuple(s) for uid, s in sorted(groups.items())}


def series_in(folder: str | Path) -> dict[str, tuple[_Slice, ...]]:
    """The series of a folder (recursive), keyed by SeriesInstanceUID in sorted order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageReadError(str(folder), "DICOM series folder does not exist")
    stamp = max((e.stat().st_mtime_ns for e in os.scandir(folder)), default=0)
    groups = _scan(str(folder.resolve()), stamp)
    if not groups:
        raise ImageReadError(str(folder), "folder holds no DICOM files (.dcm/.dicom or files with the DICM magic)")
    return groups


def series_uids(folder: str | Path) -> list[str]:
    """SeriesInstanceUIDs of a folder in the order ``frame`` numbers them."""
    return list(series_in(folder))


def series_patient(folder: str | Path, frame: int = -1) -> str:
    """The PatientID of series ``frame`` of a folder ('' when its first slice has none)."""
    return _pick(folder, frame)[1][0].patient


def _pick(folder: str | Path, frame: int) -> tuple[str, tuple[_Slice, ...]]:
    groups = series_in(folder)
    uids = list(groups)
    if frame < 0:
        if len(uids) > 1:
            raise ImageReadError(str(folder), f"folder mixes {len(uids)} DICOM series ({', '.join(u[-12:] for u in uids[:4])}"
                                 f"{'...' if len(uids) > 4 else ''}); give one series per folder, or pick one by its "
                                 "index as frame (a data source lists each series as its own row)")
        return uids[0], groups[uids[0]]
    if frame >= len(uids):
        raise ImageReadError(str(folder), f"series {frame} requested but the folder holds {len(uids)} series")
    return uids[frame], groups[uids[frame]]


def _ordered(folder: str | Path, slices: tuple[_Slice, ...]) -> tuple[list[_Slice], np.ndarray, float]:
    """Slices sorted along the normal, the 3x3 LPS direction matrix (r, c, n columns) and the slice distance."""
    where = str(folder)
    if len(slices) < 2:
        raise ImageReadError(where, f"DICOM series has 1 slice ({Path(slices[0].path).name}); a volume needs at least 2 "
                             "(a single image: read it as a 2-D image)")
    sizes = sorted({s.size for s in slices})
    if len(sizes) > 1:
        odd = [Path(s.path).name for s in slices if s.size != slices[0].size][:3]
        raise ImageReadError(where, f"DICOM series mixes slice sizes {sizes} (e.g. {odd}); one series has one size")
    if any(len(s.position) != 3 or len(s.orientation) != 6 or min(s.pixel_spacing) <= 0 for s in slices):
        bad = [Path(s.path).name for s in slices if len(s.position) != 3 or len(s.orientation) != 6][:3]
        raise ImageReadError(where, f"DICOM slices {bad or [Path(slices[0].path).name]} lack ImagePositionPatient, "
                             "ImageOrientationPatient or PixelSpacing; the geometry of the volume is unknown")
    orient = np.array([s.orientation for s in slices])
    if np.abs(orient - orient[0]).max() > 1e-3:
        odd = [Path(s.path).name for s, o in zip(slices, orient) if np.abs(o - orient[0]).max() > 1e-3][:3]
        raise ImageReadError(where, f"DICOM series mixes slice orientations (e.g. {odd} differ from "
                             f"{Path(slices[0].path).name}); one series has one orientation")
    r, c = np.array(slices[0].orientation[:3]), np.array(slices[0].orientation[3:])
    n = np.cross(r, c)
    depth = np.array([np.dot(s.position, n) for s in slices])
    order = np.argsort(depth, kind="stable")
    ordered, depth = [slices[i] for i in order], depth[order]
    gaps = np.diff(depth)
    if (gaps < 1e-3).any():
        i = int(np.argmax(gaps < 1e-3))
        raise ImageReadError(where, f"duplicate DICOM slices at one position ({depth[i]:.2f} mm): "
                             f"{Path(ordered[i].path).name} and {Path(ordered[i + 1].path).name}; remove one")
    usual = float(np.median(gaps))
    if (gaps >= GAP_MISSING * usual).any():
        i = int(np.argmax(gaps >= GAP_MISSING * usual))
        raise ImageReadError(where, f"missing DICOM slice: a gap of {gaps[i]:.2f} mm (usual {usual:.2f} mm) between "
                             f"{Path(ordered[i].path).name} and {Path(ordered[i + 1].path).name}")
    if gaps.max() - gaps.min() > UNEVEN * usual:
        log.warning("%s: uneven slice spacing %.3f..%.3f mm; the mean %.3f mm is used", where, gaps.min(), gaps.max(),
                    gaps.mean())
    return ordered, np.stack([r, c, n], axis=1), float(gaps.mean())


def series_header(folder: str | Path, frame: int = -1) -> VolumeHeader:
    """Shape ``(columns, rows, slices)`` and spacing of a series from its headers (checked, no pixels)."""
    uid, slices = _pick(folder, frame)
    ordered, _, distance = _ordered(folder, slices)
    rows, cols = ordered[0].size
    dr, dc = ordered[0].pixel_spacing
    return VolumeHeader((cols, rows, len(ordered)), (round(dc, 6), round(dr, 6), round(distance, 6)), "dicom", uid)


def read_series(folder: str | Path, frame: int = -1, limit: int | None = None) -> Volume:
    """The voxels ``(columns, rows, slices)`` of one series in HU and its RAS affine (see the module docstring)."""
    from pydicom.pixels import apply_modality_lut

    uid, slices = _pick(folder, frame)
    ordered, directions, distance = _ordered(folder, slices)
    rows, cols = ordered[0].size
    check_fits(folder, (cols, rows, len(ordered)), limit)
    out = np.empty((cols, rows, len(ordered)), dtype=np.float32)
    for k, s in enumerate(ordered):
        ds = read_dataset(s.path)
        try:
            pixels = apply_modality_lut(ds.pixel_array, ds)
        except Exception as e:  # pydicom/decoders raise many types; each becomes the reason
            raise ImageReadError(s.path, f"cannot decode the slice pixels ({type(e).__name__}: {e})") from None
        if pixels.shape != (rows, cols):
            raise ImageReadError(s.path, f"slice pixels of shape {pixels.shape}, expected {(rows, cols)} (one frame)")
        out[:, :, k] = pixels.T
    dr, dc = ordered[0].pixel_spacing
    lps = np.eye(4)
    lps[:3, :3] = directions * np.array([dc, dr, distance])
    lps[:3, 3] = ordered[0].position
    return Volume(out, np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps, "dicom")


__all__ = ["read_series", "series_header", "series_in", "series_uids"]
