"""Hostile volume uploads, tried as a careless or hostile user would (tests/test_volume_upload.py).

``hostile_uploads(shared_data, folder)`` gives ``(name, file name, bytes, expected status, phrase of the
message)``: zip bombs (by ratio, by total size, by entry count), zip slip (``../``, absolute paths),
a symlink entry, nested zips (by name and by content), an encrypted entry, a zip of two series, a
series with one slice and one with a missing slice, a zip without DICOM files, bytes that are no
zip, a 4-D NIfTI, NIfTI files with a broken header, a truncated ``.nii.gz``, a NIfTI whose voxel
spacing would make the resampled volume enormous and one whose header declares a volume far over
the limit. Real DICOM slices come from a real LIDC CT crop
(:func:`_volumes.write_series`). Every fixture is small (the largest, 9 MiB of random bytes).
"""
from __future__ import annotations

import gzip
import io
import stat
import zipfile
from pathlib import Path

import numpy as np

from _volumes import lidc_volume, write_series

LIMIT_MB = 8  # the max_volume_mb of the test server


def zip_bytes(entries: dict[str, bytes | zipfile.ZipInfo | tuple[zipfile.ZipInfo, bytes]],
              method: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip in memory: name -> bytes, or a prepared ZipInfo with its bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, value in entries.items():
            if isinstance(value, tuple):
                archive.writestr(*value)
            else:
                archive.writestr(name, value)
    return buffer.getvalue()


def series_files(folder: Path, prefix: str = "") -> dict[str, bytes]:
    """The files of a written series as zip entries (under ``prefix``)."""
    return {f"{prefix}{p.name}": p.read_bytes() for p in sorted(folder.iterdir())}


def good_series_zip(shared_data: Path, folder: Path, index: int = 3) -> bytes:
    """A real CT crop as one DICOM series in a subfolder of a zip, with the litter real zips carry
    (a DICOMDIR, a README, a macOS resource fork) that must be left out."""
    _, voxels, spacing = lidc_volume(shared_data, index)
    series = write_series(voxels, spacing, folder / f"series{index}")
    litter = {"study/DICOMDIR": b"\x00" * 128 + b"DICM", "study/README.txt": b"exported by a PACS",
              "__MACOSX/study/._IM0001.dcm": b"\x00\x05\x16\x07"}
    return zip_bytes({**series_files(series, "study/CT/"), **litter})


def _link() -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo("study/link.dcm")
    info.create_system = 3  # Unix: the mode bits below are read
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, b"/etc/passwd"


def _encrypted() -> bytes:
    """A zip of one entry marked encrypted (general purpose flag bit 0, in the local and the central header)."""
    data = bytearray(zip_bytes({"secret.dcm": b"\x00" * 64}))
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        data[data.index(signature) + offset] |= 0x1
    return bytes(data)


def _nifti(shape: tuple[int, ...], spacing: tuple[float, float, float] = (0.7, 0.7, 2.5)) -> bytes:
    import nibabel as nib

    image = nib.Nifti1Image(np.zeros(shape, np.int16), np.diag([*spacing, 1.0]))
    return image.to_bytes()


def _declared(shape: tuple[int, int, int]) -> bytes:
    """A .nii.gz whose header declares ``shape`` int16 voxels over 1 KiB of data."""
    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.int16)
    header["vox_offset"] = 352
    return gzip.compress(header.binaryblock + b"\x00" * 4 + b"\x00" * 1024)


def hostile_uploads(shared_data: Path, folder: Path) -> list[tuple[str, str, bytes, int, str]]:
    """The battery: (case, file name, bytes, expected HTTP status, phrase the message must hold)."""
    nifti_path, voxels, spacing = lidc_volume(shared_data, 3)
    one = series_files(write_series(voxels, spacing, folder / "a"), "a/")
    other = series_files(write_series(*lidc_volume(shared_data, 0)[1:], folder / "b", patient="P2"), "b/")
    single = series_files(write_series(voxels[:, :, :1], spacing, folder / "single"))
    gap = series_files(write_series(voxels, spacing, folder / "gap", drop=(2,)))
    rng = np.random.default_rng(0)
    broken = bytearray(_nifti((8, 8, 8)))
    broken[70:72] = (999).to_bytes(2, "little")  # datatype: no such NIfTI data code
    no_magic = bytearray(_nifti((8, 8, 8)))
    no_magic[344:348] = b"xyz\x00"  # neither NIfTI-1 nor NIfTI-2
    real = nifti_path.read_bytes()
    return [
        ("zip bomb (ratio)", "bomb.zip", zip_bytes({"IM1.dcm": bytes(4 << 20)}), 413, "times (a zip bomb?)"),
        ("zip bomb (total size)", "big.zip",
         zip_bytes({f"IM{i}.dcm": rng.bytes(3 << 20) for i in range(3)}, zipfile.ZIP_STORED), 413,
         f"more than the limit of {LIMIT_MB} MiB"),
        ("zip bomb (entries)", "many.zip", zip_bytes({f"IM{i}.dcm": b"" for i in range(5001)}, zipfile.ZIP_STORED), 413,
         "5001 entries, more than the limit of 5000"),
        ("zip slip (..)", "slip.zip", zip_bytes({**one, "../../x.dcm": b"DICM"}), 422, "points outside the zip's folder"),
        ("zip slip (absolute)", "abs.zip", zip_bytes({**one, str(folder / "evil.dcm"): b"DICM"}), 422,
         "has an absolute path"),
        ("symlink entry", "link.zip", zip_bytes({**one, "link": _link()}), 422, "is a symbolic link"),
        ("nested zip (name)", "nested.zip", zip_bytes({"inner.zip": zip_bytes(one)}), 422, "holds another archive"),
        ("nested zip (content)", "nested2.zip", zip_bytes({"IM9.dcm": zip_bytes(one)}), 422, "holds another archive"),
        ("encrypted entry", "locked.zip", _encrypted(), 422, "is encrypted"),
        ("two series", "two.zip", zip_bytes({**one, **other}), 422, "folder mixes 2 DICOM series"),
        ("one slice", "single.zip", zip_bytes(single), 422, "DICOM series has 1 slice"),
        ("missing slice", "gap.zip", zip_bytes(gap), 422, "missing DICOM slice"),
        ("no DICOM inside", "notes.zip", zip_bytes({"notes.txt": b"hello"}), 422, "holds no DICOM files (it holds notes.txt)"),
        ("not a zip", "fake.zip", b"PK\x03\x04" + bytes(200), 422, "not a readable zip archive"),
        ("4-D NIfTI", "dwi.nii", _nifti((8, 8, 8, 3)), 422, "4-D image of shape (8, 8, 8, 3); expected one 3-D volume"),
        ("broken NIfTI header", "broken.nii", bytes(broken), 422, "broken header: HeaderDataError: data code 999"),
        ("NIfTI without its magic", "nomagic.nii", bytes(no_magic), 422,
         "not a readable NIfTI file (broken header: ImageFileError: Cannot work out file type of \"nomagic.nii\")"),
        ("truncated .nii.gz", "cut.nii.gz", real[: len(real) // 2], 422, "truncated or corrupt NIfTI voxel data"),
        ("absurd voxel spacing", "giant.nii", _nifti((8, 8, 8), (1000.0, 1000.0, 1000.0)), 413,
         "resampled from 1000x1000x1000 mm voxels to 2x2x2 mm, the volume of 4000x4000x4000 voxels needs"),
        ("huge declared volume", "huge.nii.gz", _declared((2000, 2000, 2000)), 413,
         "2000x2000x2000 voxels needs 30517.6 MiB as float32, more than the 8.0 MiB"),
    ]
