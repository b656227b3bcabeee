"""Read a CT/MRI volume as it is: voxels in the file's units (HU for CT), a RAS affine, and its spacing.

Formats:

* **NIfTI** (``.nii``, ``.nii.gz``) with nibabel: the orientation from the affine (``qform``/``sform``),
  the spacing from the header (``pixdim``); 4-D images are refused (one volume per file).
* **DICOM series** (a folder): see :mod:`.series` (slices ordered along the slice normal, rescaled
  to HU, the spacing from ``PixelSpacing`` and the slice positions).
* **MedMNIST-style 3-D** ``.npz`` (``train_images`` of shape ``(N, D, H, W)``): item ``frame`` of the
  global numbering of :mod:`medclass.data._npz`; no geometry is stored, so 1 mm isotropic voxels.

A volume's array axes follow its affine (NIfTI voxel order ``i, j, k``; for DICOM ``column, row,
slice``); :func:`medclass.data.volumes.prepare` orients it to one convention. Every failure raises
:class:`~medclass.errors.ImageReadError` (path and a one-line reason), so the datasets skip the file
and report it like an unreadable 2-D image. A volume whose float32 voxels would not fit in memory is
refused with its size before any voxel is read.

Example:
    >>> vol = read_volume("../shared/data/lidc_nodules/images/LIDC-IDRI-0001_R_1.nii.gz")
    >>> vol.shape, vol.spacing, vol.axcodes
    ((53, 64, 11), (0.703125, 0.703125, 2.5), ('L', 'P', 'S'))
"""
from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import ImageReadError, ImageTooLargeError

NIFTI_EXTENSIONS = (".nii", ".nii.gz")
DEFAULT_MEMORY_SHARE = 0.5  # a volume may take at most this share of the available memory (float32 voxels)
MIN_SLICES = 2  # fewer slices than this along any axis is not a volume


@dataclass(frozen=True)
class Volume:
    """Voxels ``(X, Y, Z)`` float32 (HU for CT) and the 4x4 voxel -> RAS world (mm) affine."""

    array: np.ndarray
    affine: np.ndarray
    source: str = ""  # 'nifti' | 'dicom' | 'npz'

    @property
    def shape(self) -> tuple[int, int, int]:
        """Voxels along the three array axes."""
        return tuple(int(s) for s in self.array.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the three array axes (the affine's column norms)."""
        return tuple(round(float(v), 6) for v in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    @property
    def axcodes(self) -> tuple[str, str, str]:
        """Where each array axis points, e.g. ``('L', 'P', 'S')`` (nibabel's orientation codes)."""
        import nibabel as nib

        return tuple(nib.aff2axcodes(self.affine))  # type: ignore[return-value]


@dataclass(frozen=True)
class VolumeHeader:
    """What a volume is, from its header only (no voxels read): for data checks and the memory guard."""

    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    source: str
    series: str = ""  # DICOM SeriesInstanceUID


def is_volume_path(path: str | Path) -> bool:
    """A NIfTI file or a folder (a DICOM series); 3-D ``.npz`` files are told by :func:`npz_is_volume`."""
    name = str(path).lower()
    return name.endswith(NIFTI_EXTENSIONS) or os.path.isdir(path)


def npz_is_volume(path: str | Path) -> bool:
    """True when the first image array of an ``.npz`` holds 3-D items ``(N, D, H, W)`` (W > 4 is not channels)."""
    from .. import _npz

    try:
        shape = _npz.npz_parts(path)[0].item_shape
    except ValueError:
        return False
    return len(shape) == 3 and shape[-1] > 4


def memory_limit(share: float = DEFAULT_MEMORY_SHARE) -> int:
    """Bytes one volume may take: ``share`` of the memory available now."""
    import psutil

    return int(psutil.virtual_memory().available * share)


def check_fits(path: str | Path, shape: tuple[int, ...], limit: int | None = None) -> None:
    """Refuse a volume whose float32 voxels exceed ``limit`` bytes (default :func:`memory_limit`) with
    :class:`~medclass.errors.ImageTooLargeError` (an :class:`ImageReadError`)."""
    need = 4 * int(np.prod(np.asarray(shape, dtype=np.int64)))
    why = "" if limit is not None else " (half the memory available now)"
    limit = memory_limit() if limit is None else int(limit)
    if need > limit:
        raise ImageTooLargeError(str(path), f"volume of {'x'.join(map(str, shape))} voxels needs {need / 2**20:.1f} MiB "
                             f"as float32, more than the {limit / 2**20:.1f} MiB one volume may take{why}; crop or "
                             "downsample it first")


def check_shape(path: str | Path, shape: tuple[int, ...]) -> None:
    """A volume is 3-D with at least :data:`MIN_SLICES` voxels along every axis."""
    if len(shape) == 4 and shape[3] == 1:
        return
    if len(shape) != 3:
        what = f"{len(shape)}-D image of shape {shape}"
        fix = " (a time series or several channels: give one 3-D volume per file)" if len(shape) > 3 else \
              " (a 2-D image: read it as an image, not a volume)"
        raise ImageReadError(str(path), f"{what}; expected one 3-D volume{fix}")
    if min(shape) < 1:
        raise ImageReadError(str(path), f"header declares a volume of shape {shape}; sizes must be positive (a broken "
                             "header)")
    if min(shape) < MIN_SLICES:
        raise ImageReadError(str(path), f"volume of shape {shape} has a single slice along one axis; a volume "
                             f"needs at least {MIN_SLICES} slices (a 2-D image: read it as an image)")


def nifti_header(path: str | Path) -> VolumeHeader:
    """Shape and spacing of a NIfTI file from its header."""
    img = _load_nifti(path)
    shape = tuple(int(s) for s in img.shape)
    return VolumeHeader(shape, tuple(round(float(z), 6) for z in img.header.get_zooms()[:3]), "nifti")


def read_nifti(path: str | Path, limit: int | None = None) -> Volume:
    """A NIfTI volume (float32 in the file's units after its scl_slope/inter) and its affine."""
    img = _load_nifti(path)
    shape = tuple(int(s) for s in img.shape)
    check_shape(path, shape)
    check_fits(path, shape, limit)
    try:
        data = np.asarray(img.dataobj, dtype=np.float32)
    except (OSError, ValueError, EOFError, zlib.error) as e:
        raise ImageReadError(str(path), f"truncated or corrupt NIfTI voxel data ({type(e).__name__}: {e})") from None
    if data.ndim == 4:
        data = data[..., 0]
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise ImageReadError(str(path), f"NIfTI header has no usable orientation (affine {affine[:3, :3].tolist()}); "
                             "fix its qform/sform")
    return Volume(data, affine, "nifti")


def _load_nifti(path: str | Path):
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError
    from nibabel.spatialimages import HeaderDataError

    path = Path(path)
    if not path.is_file():
        raise ImageReadError(str(path), "file does not exist")
    try:
        img = nib.load(str(path))
        img.header.get_zooms()
    except (ImageFileError, HeaderDataError, OSError, EOFError, ValueError) as e:
        raise ImageReadError(str(path), f"not a readable NIfTI file (broken header: {type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''})") from None
    return img


def read_npz_volume(path: str | Path, index: int) -> Volume:
    """Item ``index`` (global numbering) of a 3-D ``.npz``: ``(D, H, W)`` as stored, 1 mm voxels."""
    from .. import _npz

    if index < 0:
        raise ImageReadError(str(path), "an .npz file holds many volumes; give its index as frame (0, 1, ...)")
    try:
        item, _ = _npz.npz_item(path, index)
    except (IndexError, ValueError, OSError) as e:
        raise ImageReadError(str(path), str(e)) from None
    if item.ndim == 4 and item.shape[-1] == 1:
        item = item[..., 0]
    check_shape(f"{path} (item {index})", tuple(item.shape))
    return Volume(np.asarray(item, dtype=np.float32), np.eye(4), "npz")


def read_volume(path: str | Path, frame: int = -1, limit: int | None = None) -> Volume:
    """Any supported volume: a NIfTI file, a DICOM series folder (``frame`` = which series when it holds
    several) or item ``frame`` of a 3-D ``.npz``. Raises :class:`ImageReadError` with the reason.

    >>> read_volume("ct_series/").source
    'dicom'
    """
    name = str(path).lower()
    if name.endswith(".npz"):
        return read_npz_volume(path, frame)
    if os.path.isdir(path):
        from .series import read_series

        return read_series(path, frame, limit=limit)
    if name.endswith(NIFTI_EXTENSIONS):
        return read_nifti(path, limit)
    raise ImageReadError(str(path), "not a volume: expected a .nii/.nii.gz file, a DICOM series folder or a 3-D .npz")


def volume_header(path: str | Path, frame: int = -1) -> VolumeHeader:
    """Shape and spacing from the header alone (a DICOM series: every slice header, no pixels)."""
    name = str(path).lower()
    if name.endswith(".npz"):
        from .. import _npz

        try:
            shape = _npz.npz_item(path, frame)[1].item_shape
        except (IndexError, ValueError, OSError) as e:
            raise ImageReadError(str(path), str(e)) from None
        return VolumeHeader(tuple(shape), (1.0, 1.0, 1.0), "npz")
    if os.path.isdir(path):
        from .series import series_header

        return series_header(path, frame)
    return nifti_header(path)


__all__ = ["Volume", "VolumeHeader", "NIFTI_EXTENSIONS", "read_volume", "read_nifti", "read_npz_volume", "volume_header",
           "is_volume_path", "npz_is_volume", "check_fits", "check_shape", "memory_limit"]
