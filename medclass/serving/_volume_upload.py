"""Uploaded CT/MRI volumes -> the prepared model input, every bad input a 4xx with a one-line message.

A volume upload is a NIfTI file (``.nii``, ``.nii.gz``) or a ``.zip`` holding one DICOM series.
A zip is judged from its directory *before* anything is extracted (:func:`check_zip`): at most
:data:`MAX_ZIP_ENTRIES` entries; no absolute path, no ``..``, no symbolic link, no encrypted entry
and no archive inside (422); uncompressed total within the volume limit and no entry or total
expanding more than :data:`MAX_ZIP_RATIO` times (413: a zip bomb). The DICOM files are then
written, under names the server chooses (the entry's base name when it is plain and unique), into
a private temporary folder (mode 0700) that is removed afterwards: no entry name is ever used as a
path, so nothing can be written outside it. The volume is read with the one volume reader
(:mod:`medclass.data.volumes`): its header first (a 4-D or one-slice volume, a missing slice, a
zip of several series: 422 with the reader's own words), its size against the limit (413 with the
size), then the voxels, prepared by the checkpoint's own preparation (the Predictor path of
``medclass predict``; a header whose voxel spacing would make the resampled volume exceed the
limit is a 413 too).

Example:
    >>> prepared = read_volume_upload(Path("scan.nii.gz").read_bytes(), "scan.nii.gz", predictor.load,
    ...                               limits=VolumeLimits.from_mb(512))  # doctest: +SKIP
    >>> prepared.shape
    (1, 32, 32, 32)
"""
from __future__ import annotations

import io
import os
import re
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from ..data.dicom import DICOM_EXTENSIONS
from ..data.volumes.read import NIFTI_EXTENSIONS, check_fits, check_shape, memory_limit, volume_header
from ..errors import ImageReadError, ImageTooLargeError
from ._upload import UploadError

VOLUME_SUFFIXES = (*NIFTI_EXTENSIONS, ".zip")  # what a volume model's upload may be
MAX_VOLUME_MB = 512  # default: float32 voxels of one uploaded volume, and the uncompressed total of a zip
MAX_ZIP_RATIO = 100  # an entry (or the whole zip) expanding more than this many times is a zip bomb
MAX_ZIP_ENTRIES = 5000  # entries of one zip (a thin-slice CT series has about 1000 files)
_RATIO_FLOOR = 1 << 20  # entries (and totals) below 1 MiB are not judged by their ratio
_ARCHIVES = (".zip", ".gz", ".tgz", ".tar", ".7z", ".rar", ".bz2", ".xz", ".zst")
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_GZIP_MAGIC = b"\x1f\x8b"
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,120}")
_SKIPPED_PARTS = ("__MACOSX",)  # macOS resource forks
_CHUNK = 1 << 20


@dataclass(frozen=True)
class VolumeLimits:
    """What one volume upload may take."""

    max_bytes: int  # float32 voxels of the volume, and the uncompressed total of a zip
    max_ratio: float = MAX_ZIP_RATIO  # uncompressed / compressed size of an entry or of the whole zip
    max_entries: int = MAX_ZIP_ENTRIES  # entries in a zip

    @classmethod
    def from_mb(cls, max_volume_mb: float) -> "VolumeLimits":
        """Limits for a volume of at most ``max_volume_mb`` MiB (float32 voxels)."""
        return cls(int(max_volume_mb * 2**20))


def volume_kind(data: bytes, filename: str | None) -> str:
    """``'zip'``, ``'nifti'`` or ``''`` (not a volume) from the client's file name and the first bytes.

    >>> volume_kind(b"PK\\x03\\x04...", "series.zip"), volume_kind(b"\\x89PNG", "x.png")
    ('zip', '')
    """
    name = (filename or "").lower()
    if name.endswith(".zip") or data[:4] in _ZIP_MAGIC:
        return "zip"
    nifti_magic = data[344:348] in (b"n+1\x00", b"ni1\x00") or data[4:8] == b"n+2\x00"
    if name.endswith(NIFTI_EXTENSIONS) or data[:2] == _GZIP_MAGIC or nifti_magic:
        return "nifti"
    return ""


def check_model_takes(kind: str, volume_model: bool) -> None:
    """415 when a volume reaches a 2-D model or an image reaches a volume model."""
    if volume_model and not kind:
        raise UploadError(415, "This model classifies CT/MRI volumes: upload a NIfTI file (.nii, .nii.gz) or a .zip "
                               "holding one DICOM series, not a 2-D image.")
    if kind and not volume_model:
        raise UploadError(415, f"This model classifies 2-D images, but the upload is a volume ({kind}); upload a PNG, "
                               "JPEG, TIFF or DICOM image, or serve a volume model.")


def read_volume_upload(data: bytes, filename: str | None, load: Callable[..., np.ndarray], *, frame: int = -1,
                       limits: VolumeLimits) -> np.ndarray:
    """The prepared volume of an uploaded NIfTI file or zip of one DICOM series, or :class:`UploadError`.

    ``load(path, frame=..., limit=...)`` reads and prepares a volume file or series folder (the serving
    :class:`~medclass.serving.predictor.Predictor`'s ``load``); ``frame`` picks a series of a zip holding
    several (-1: the zip must hold one).
    """
    kind = volume_kind(data, filename)
    check_model_takes(kind, volume_model=True)
    with tempfile.TemporaryDirectory(prefix="medclass-volume-") as tmp:  # mode 0700, removed on the way out
        if kind == "zip":
            path = extract_series(data, Path(tmp) / "series", limits)
        else:
            path = Path(tmp) / ("upload.nii.gz" if data[:2] == _GZIP_MAGIC else "upload.nii")
            path.write_bytes(data)
        shown = PurePosixPath((filename or "").replace("\\", "/")).name or path.name  # for messages, never a server path
        limit = min(limits.max_bytes, memory_limit())
        try:  # the header first: shape and size are refused before any voxel is read
            shape = volume_header(path, frame).shape
            check_shape("upload", shape)
            check_fits("upload", shape, limit)
            return load(str(path), frame=frame, limit=limit)  # resampling that would blow up is refused too
        except ImageTooLargeError as e:
            raise UploadError(413, f"Volume too large: {_words(e, path, shown)}.") from None
        except ImageReadError as e:
            raise UploadError(422, f"Cannot read the volume: {_words(e, path, shown)}.") from None


def _words(error: ImageReadError, path: Path, shown: str) -> str:
    """The reader's reason with the server's temporary path replaced by the client's file name."""
    return error.reason.replace(str(path), shown).replace(str(path.parent), "upload")


def check_zip(entries: list[zipfile.ZipInfo], limits: VolumeLimits) -> None:
    """Refuse a zip from its directory alone, before anything is extracted (see the module docstring)."""
    if len(entries) > limits.max_entries:
        raise UploadError(413, f"The zip holds {len(entries)} entries, more than the limit of {limits.max_entries}; "
                               "upload the files of one DICOM series.")
    for info in entries:
        name = info.filename.replace("\\", "/")
        if name.startswith("/") or re.match(r"[A-Za-z]:", name):
            raise UploadError(422, f"The zip entry {info.filename!r} has an absolute path; refused (a zip's paths must "
                                   "stay inside it).")
        if ".." in name.split("/"):
            raise UploadError(422, f"The zip entry {info.filename!r} points outside the zip's folder ('..'); refused.")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise UploadError(422, f"The zip entry {info.filename!r} is a symbolic link; refused (zip the files "
                                   "themselves).")
        if info.flag_bits & 0x1:
            raise UploadError(422, f"The zip entry {info.filename!r} is encrypted; upload an unencrypted zip.")
        if not info.is_dir() and name.lower().endswith(_ARCHIVES):
            raise UploadError(422, f"The zip holds another archive ({info.filename!r}); nested archives are refused: "
                                   "zip the DICOM files of one series themselves.")
        if info.file_size > _RATIO_FLOOR and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            raise UploadError(413, f"The zip entry {info.filename!r} expands {info.file_size / max(info.compress_size, 1):.0f}"
                                   f" times (to {info.file_size / 2**20:.1f} MiB), more than the limit of "
                                   f"{limits.max_ratio:g} times (a zip bomb?); refused.")
    total, packed = sum(i.file_size for i in entries), sum(i.compress_size for i in entries)
    if total > limits.max_bytes:
        raise UploadError(413, f"The zip expands to {total / 2**20:.1f} MiB, more than the limit of "
                               f"{limits.max_bytes / 2**20:g} MiB for one volume; refused.")
    if total > _RATIO_FLOOR and total > limits.max_ratio * max(packed, 1):
        raise UploadError(413, f"The zip expands {total / max(packed, 1):.0f} times (to {total / 2**20:.1f} MiB), more "
                               f"than the limit of {limits.max_ratio:g} times (a zip bomb?); refused.")


def extract_series(data: bytes, folder: Path, limits: VolumeLimits) -> Path:
    """The DICOM files of a zip, checked by :func:`check_zip`, written into the new folder ``folder``.

    Each file goes to ``folder/<name>`` where ``<name>`` is the entry's plain base name (unique, with a
    DICOM extension) or a number: the folder is flat and no entry name is used as a path. Directories,
    macOS resource forks, hidden files, a DICOMDIR and files that are not DICOM (no DICOM extension
    and no ``DICM`` marker) are left out.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as e:
        raise UploadError(422, f"The upload is not a readable zip archive ({e}).") from None
    with archive:
        entries = archive.infolist()
        check_zip(entries, limits)
        folder.mkdir(mode=0o700)
        used: set[str] = set()
        skipped: list[str] = []
        written = 0
        for number, info in enumerate(entries):
            parts = info.filename.replace("\\", "/").split("/")
            base = parts[-1]
            if info.is_dir() or not base or base.startswith(".") or any(p in _SKIPPED_PARTS for p in parts) \
                    or base.upper() == "DICOMDIR":
                continue
            try:
                with archive.open(info) as source:
                    head = source.read(132)
                    if head[:4] in _ZIP_MAGIC:
                        raise UploadError(422, f"The zip holds another archive ({info.filename!r}); nested archives "
                                               "are refused: zip the DICOM files of one series themselves.")
                    if Path(base).suffix.lower() not in DICOM_EXTENSIONS and head[128:132] != b"DICM":
                        skipped.append(base)
                        continue
                    name = _server_name(base, number, used)
                    written += _copy(source, head, folder / name, info, written, limits)
            except (zipfile.BadZipFile, NotImplementedError, zlib.error, EOFError, RuntimeError) as e:
                raise UploadError(422, f"The zip entry {info.filename!r} cannot be extracted ({e}).") from None
    if not used:
        found = f" (it holds {', '.join(skipped[:3])}{'...' if len(skipped) > 3 else ''})" if skipped else ""
        raise UploadError(422, f"The zip holds no DICOM files{found}; upload a .zip of the files of one DICOM series, "
                               "or a NIfTI file (.nii, .nii.gz) directly.")
    return folder


def _server_name(base: str, number: int, used: set[str]) -> str:
    """A flat file name chosen by the server: the plain, unused base name, else the entry's number; a DICOM extension."""
    name = base if _PLAIN_NAME.fullmatch(base) and base not in used else f"{number:05d}"
    if Path(name).suffix.lower() not in DICOM_EXTENSIONS:
        name += ".dcm"
    while name in used:  # 'IM1' and 'IM1.dcm' both become 'IM1.dcm'
        name = f"{number:05d}_{name}"
    used.add(name)
    return name


def _copy(source, head: bytes, target: Path, info: zipfile.ZipInfo, written: int, limits: VolumeLimits) -> int:
    """Stream one entry into a new file (never following or replacing a link); its bytes, within the limits."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    size = 0
    with os.fdopen(fd, "wb") as out:
        chunk = head
        while chunk:
            size += len(chunk)
            if size > info.file_size or written + size > limits.max_bytes:  # zipfile stops at the declared size too
                raise UploadError(413, f"The zip entry {info.filename!r} holds more than it declares; refused.")
            out.write(chunk)
            chunk = source.read(_CHUNK)
    return size
