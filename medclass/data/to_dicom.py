"""Wrap labelled 2-D images as DICOM files that carry their real patient ids.

Used by ``examples/5_dicom_per_patient`` to build a labelled DICOM input from real images: each row of a
:class:`~medclass.data.table.DataTable` becomes one Secondary Capture dataset (modality ``CR``) with
8-bit ``MONOCHROME2`` pixels taken from the image itself, ``PatientID`` set to the row's patient and a
proper file meta header (Explicit VR Little Endian), so ``pydicom.dcmread`` reads it without
``force=True``. Files are written as ``<out_dir>/<label>/<file stem>.dcm`` (a folder of class folders,
which :func:`medclass.data.sources.from_folders` reads back with the patient from ``PatientID``).

Example:
    >>> from medclass.data.sources import from_folders
    >>> table = from_folders("../shared/data/chest_xray")          # doctest: +SKIP
    >>> dicoms = images_to_dicom(table.subset(table.frame.index < 50), "dicom_xray")  # doctest: +SKIP
    >>> dicoms.frame["path"].iloc[0]                                # doctest: +SKIP
    '.../dicom_xray/NORMAL/IM-0115-0001.dcm'
"""
from __future__ import annotations

import datetime
import os
from pathlib import Path

import numpy as np
import pandas as pd
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, SecondaryCaptureImageStorage, generate_uid

from ..errors import DatasetError
from .io import read_image
from .table import DataTable

__all__ = ["file_meta", "images_to_dicom", "image_to_dataset"]


def file_meta(sop_class: str) -> FileMetaDataset:
    """File meta of a new uncompressed (explicit VR little endian) instance of ``sop_class``, with a fresh UID."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return meta


def image_to_dataset(image: np.ndarray, patient: str, *, modality: str = "CR", description: str = "") -> Dataset:
    """One Secondary Capture DICOM dataset holding ``image`` as 8-bit ``MONOCHROME2`` pixels.

    Args:
        image: float array ``(H, W)`` or ``(H, W, C)`` in [0, 1] (the reader convention); colour is
            averaged to grey.
        patient: written to ``PatientID`` (and ``PatientName``).
        modality: DICOM ``Modality`` (``CR`` for computed radiography).
        description: ``SeriesDescription`` (e.g. the source file name).

    Example:
        >>> ds = image_to_dataset(np.zeros((8, 8), np.float32), "person1")
        >>> ds.PatientID, ds.PhotometricInterpretation, ds.pixel_array.shape
        ('person1', 'MONOCHROME2', (8, 8))
    """
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim == 3:
        arr = arr.mean(axis=2)
    if arr.ndim != 2:
        raise ValueError(f"image_to_dataset expects an (H, W) or (H, W, C) image, got shape {arr.shape}.")
    pixels = np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)

    meta = file_meta(SecondaryCaptureImageStorage)
    ds = Dataset()
    ds.file_meta = meta
    today = datetime.date.today().strftime("%Y%m%d")
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = patient
    ds.PatientName = patient
    ds.Modality = modality
    ds.ConversionType = "WSD"  # workstation: converted from a non-DICOM image
    ds.SeriesDescription = description
    ds.StudyDate = ds.ContentDate = today
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.tobytes()
    return ds


def images_to_dicom(table: DataTable, out_dir: str | Path, *, modality: str = "CR") -> DataTable:
    """Write every image of ``table`` as ``<out_dir>/<label>/<stem>.dcm`` and return the new table.

    Each file carries the row's ``patient`` as ``PatientID`` and the real pixels of the image
    (read through :func:`medclass.data.io.read_image`, 8-bit grey). The returned table has the same
    labels, patients and classes, with ``path`` pointing at the DICOM files.

    Raises:
        DatasetError: a row has no patient id (a per-patient analysis needs one), or two rows of one
            class share a file stem (their DICOM files would overwrite each other).

    Example:
        >>> dicoms = images_to_dicom(table, "dicom_xray")   # doctest: +SKIP
        >>> pydicom.dcmread(dicoms.frame["path"][0]).PatientID   # doctest: +SKIP
        'person1234'
    """
    df = table.frame
    out_dir = Path(out_dir)
    no_patient = df.loc[df["patient"] == "", "path"].tolist()
    if no_patient:
        raise DatasetError(f"{len(no_patient)} rows have no patient id (e.g. {no_patient[0]}); images_to_dicom "
                           "writes it as PatientID. Give the table a patient column or a file-name rule.")
    targets = [out_dir / label / (Path(path).stem + ".dcm") for path, label in zip(df["path"], df["label"])]
    clashes = pd.Series([str(t) for t in targets]).duplicated(keep=False)
    if clashes.any():
        raise DatasetError(f"Rows {df.loc[clashes.values, 'path'].tolist()[:4]} map to the same DICOM file name; "
                           "give them distinct file names before converting.")
    rows = []
    for (_, row), target in zip(df.iterrows(), targets):
        image = read_image(row["path"], frame=int(row["frame"]))
        ds = image_to_dataset(image, row["patient"], modality=modality, description=Path(row["path"]).name)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        ds.save_as(tmp, enforce_file_format=True)
        os.replace(tmp, target)
        rows.append({**row.to_dict(), "path": str(target.resolve()), "frame": -1, "split": ""})
    return DataTable(pd.DataFrame(rows), list(table.classes), [], "dicom", str(out_dir))
