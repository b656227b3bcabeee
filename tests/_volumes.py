"""Test helpers for volumes: write a real CT volume as a DICOM series (slices as separate files)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, generate_uid

from medclass.data.to_dicom import file_meta

INTERCEPT = -2048.0  # stored = HU - INTERCEPT (uint16), so the reader must apply RescaleIntercept


def lidc_volume(shared_data: Path, index: int = 0) -> tuple[Path, np.ndarray, tuple[float, float, float]]:
    """A real LIDC nodule crop: its path, HU voxels (x, y, z) and spacing (mm)."""
    import nibabel as nib

    path = sorted((shared_data / "lidc_nodules" / "images").glob("*.nii.gz"))[index]
    img = nib.load(str(path))
    return path, np.asarray(img.dataobj, dtype=np.float32), tuple(float(z) for z in img.header.get_zooms()[:3])


def write_series(volume: np.ndarray, spacing: tuple[float, float, float], folder: Path, *, patient: str = "P1",
                 series_uid: str = "", drop: tuple[int, ...] = (), duplicate: int = -1,
                 orientation: tuple[float, ...] = (1, 0, 0, 0, 1, 0), odd_orientation: int = -1,
                 odd_size: int = -1, seed: int = 0) -> Path:
    """Write ``volume`` (HU, axes column x row x slice) as one CT series of files in ``folder``.

    Files are named in a shuffled order (the reader must sort by position); ``drop`` leaves slices
    out (a missing slice), ``duplicate`` writes slice k twice, ``odd_orientation`` / ``odd_size``
    give one slice another orientation or size.
    """
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study = generate_uid()
    n = volume.shape[2]
    names = np.random.default_rng(seed).permutation(n + 1)
    slices = [k for k in range(n) if k not in drop] + ([duplicate] if duplicate >= 0 else [])
    for i, k in enumerate(slices):
        pixels = np.clip(np.rint(volume[:, :, k].T - INTERCEPT), 0, 65535).astype(np.uint16)
        if k == odd_size:
            pixels = pixels[:-1]
        meta = file_meta(CTImageStorage)
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series_uid
        ds.PatientID = ds.PatientName = patient
        ds.Modality = "CT"
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = 1, INTERCEPT
        ds.PixelSpacing = [spacing[1], spacing[0]]  # row spacing (y), column spacing (x)
        ds.SliceThickness = spacing[2]
        ds.ImageOrientationPatient = list((0, 1, 0, 1, 0, 0) if k == odd_orientation else orientation)
        ds.ImagePositionPatient = [-100.0, -120.0, 10.0 + k * spacing[2]]
        ds.InstanceNumber = k + 1
        ds.PixelData = pixels.tobytes()
        ds.save_as(folder / f"IM{names[i]:04d}.dcm", enforce_file_format=True)
    return folder


def make_volume_checkpoint(path: Path, model_name: str = "resnet10_3d", input: str = "3d", in_chans: int = 1,
                           size: int = 16, seed: int = 0, on: tuple[Path, ...] = ()) -> Path:
    """A volume checkpoint with seeded random weights: the lung window, 2 mm voxels, ``size`` voxels a side; its
    BatchNorm statistics and head are conditioned on the volumes ``on`` (e.g. real CT; default smooth random
    volumes) so that their logits spread (probabilities neither all 0.5 nor all 0 or 1)."""
    import torch

    from medclass.artifacts.checkpoint import build_meta, save_checkpoint
    from medclass.data.volumes.prepare import VolumePrep, VolumeTransform, read_prepared
    from medclass.models import create_model

    from _helpers import condition

    torch.manual_seed(seed)
    model = create_model(model_name, num_classes=2, in_chans=in_chans)
    prep = VolumePrep(spacing=(2.0, 2.0, 2.0), size=(size,) * 3, window="lung", input=input, in_chans=in_chans)
    volumes = [read_prepared(str(p), prep=prep) for p in on] or \
        torch.nn.functional.avg_pool3d(torch.rand(16, 1, size, size, size), 5, 1, 2).numpy()
    condition(model, torch.stack([VolumeTransform(prep)(v) for v in volumes]))
    meta = build_meta(classes=["benign", "malignant"], model_name=model_name, in_chans=in_chans, image_size=size,
                      mean=[prep.mean] * in_chans, std=[prep.std] * in_chans, window="lung", threshold=0.5,
                      config={"data": {"path": "lidc_nodules"}}, volume=prep.to_dict())
    return save_checkpoint(path, model, meta)
