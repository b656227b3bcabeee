"""CT and MRI as 3-D volumes: NIfTI files, DICOM series folders and 3-D MedMNIST ``.npz`` arrays.

Volumes are rows of the same :class:`~medclass.data.table.DataTable` as 2-D images (``path`` a NIfTI
file or a series folder, ``frame`` a series index or an ``.npz`` item), so sources, patient ids,
splits and the leak audit work unchanged; :attr:`DataTable.spatial_dims` tells the two apart.

>>> from medclass.data.volumes import read_volume
>>> read_volume("../shared/data/lidc_nodules/images/LIDC-IDRI-0001_R_1.nii.gz").spacing
(0.703125, 0.703125, 2.5)
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd

from .read import NIFTI_EXTENSIONS, Volume, VolumeHeader, is_volume_path, npz_is_volume, read_volume, volume_header


def volume_mask(paths: pd.Series) -> np.ndarray:
    """Which rows are volumes: NIfTI names (vectorised), folders (series) and items of 3-D ``.npz`` files.

    Only the distinct paths without a NIfTI/image extension are looked at on disk.
    """
    lower = paths.astype(str).str.lower()
    named = lower.str.endswith(NIFTI_EXTENSIONS).to_numpy()
    npz = lower.str.endswith(".npz").to_numpy()
    no_suffix = ~named & ~npz & (lower.str.rsplit("/", n=1).str[-1].str.find(".") < 0).to_numpy()
    found = {p for p in paths[npz].unique() if npz_is_volume(p)} | {p for p in paths[no_suffix].unique() if os.path.isdir(p)}
    return named | paths.isin(found).to_numpy()


def is_volume(path: str, frame: int = -1) -> bool:
    """One path: a NIfTI file, a series folder or a 3-D ``.npz``."""
    return is_volume_path(path) or (str(path).lower().endswith(".npz") and npz_is_volume(path))


__all__ = ["Volume", "VolumeHeader", "is_volume", "read_volume", "volume_header", "volume_mask"]
