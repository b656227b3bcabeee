"""Uploaded files -> unit images, with every bad input mapped to a 4xx status and a clear message.

An upload is checked in this order: declared content type (415), size (413), emptiness (422),
image header and pixel count (413 for too many pixels / decompression bombs, 422 for non-image
bytes), then full decoding with the checkpoint's DICOM window (422 for corrupt or truncated
data, DICOM without pixels, a multi-frame DICOM without ``frame``...). The bytes go to a private
temporary file named by the server; nothing in the request is ever used as a server path
(only the extension of the client's file name, when it is a known image extension).
"""
from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePath

import numpy as np

from ..data.dicom import DICOM_EXTENSIONS, dicom_header, is_dicom
from ..data.io import IMAGE_EXTENSIONS, read_image
from ..errors import ImageReadError, ImageTooLargeError

VOLUME_TYPES = ("application/zip", "application/x-zip-compressed", "application/gzip", "application/x-gzip")
ACCEPTED_TYPES = ("image/", "application/dicom", "application/octet-stream", *VOLUME_TYPES)
DICOM_TYPES = ("application/dicom", "application/dicom+octet-stream")
_CHUNK = 1 << 20
MAX_UPLOAD_MB = 20  # default upload limit of the API and the web app
MAX_VOLUME_UPLOAD_MB = 256  # the same for a volume model (a zipped CT series is often 50-200 MiB)


class UploadError(Exception):
    """A rejected upload: HTTP ``status`` and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        self.status, self.message = status, message
        super().__init__(message)


def check_content_type(content_type: str | None) -> None:
    """Refuse declared types that cannot be images (415); a missing type is sniffed from the bytes.

    >>> check_content_type("text/plain")
    Traceback (most recent call last):
    ...
    medclass.serving._upload.UploadError: ...
    """
    base = (content_type or "").split(";")[0].strip().lower()
    if base and not base.startswith(ACCEPTED_TYPES):
        raise UploadError(415, f"Unsupported content type {base!r}; upload an image (image/png, image/jpeg, ...), "
                               "a DICOM file (application/dicom) or, for a volume model, a NIfTI file or a zip of one "
                               "DICOM series (application/gzip, application/zip).")


def default_upload_mb(volume_model: bool) -> float:
    """The upload limit (MiB) when none is given: larger for a volume model than for 2-D images."""
    return MAX_VOLUME_UPLOAD_MB if volume_model else MAX_UPLOAD_MB


def read_limited(stream, max_bytes: int) -> bytes:
    """Read at most ``max_bytes`` from a file object; 413 when there is more, 422 when there is nothing."""
    chunks, size = [], 0
    while chunk := stream.read(_CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise UploadError(413, f"Upload larger than the limit of {max_bytes / 2**20:g} MiB.")
        chunks.append(chunk)
    if size == 0:
        raise UploadError(422, "The uploaded file is empty (0 bytes).")
    return b"".join(chunks)


def decode_upload(data: bytes, filename: str | None, content_type: str | None, *, window: str = "",
                  frame: int = -1, max_pixels: int = 50_000_000, size_hint: int | None = None) -> np.ndarray:
    """Decode uploaded bytes (image or DICOM) into float32 HWC in [0, 1] or raise :class:`UploadError`.

    ``window`` and ``size_hint`` are handed to :func:`~medclass.data.io.read_image` (the checkpoint's
    DICOM window and input size, so an upload is read exactly like a file in training).

    >>> decode_upload(Path("IM-0001-0001.jpeg").read_bytes(), "x.jpeg", "image/jpeg").shape  # doctest: +SKIP
    (224, 224, 3)
    """
    with _as_file(data, filename, content_type) as path:
        try:  # the one guarded reader: the pixel limit is checked on the header before decoding
            return read_image(path, frame=frame, window=window, size_hint=size_hint, max_pixels=max_pixels)
        except ImageTooLargeError as e:
            raise UploadError(413, f"Cannot read the upload: {e.reason} (decompression bomb guard).") from None
        except ImageReadError as e:
            raise UploadError(422, f"Cannot read the upload: {e.reason}.") from None


def upload_frames(data: bytes, filename: str | None, content_type: str | None = None) -> int:
    """How many frames an uploaded DICOM holds (1 for other files and for DICOM headers that cannot be read:
    :func:`decode_upload` then says what is wrong).

    >>> upload_frames(Path("emri_small.dcm").read_bytes(), "x.dcm")  # doctest: +SKIP
    10
    """
    with _as_file(data, filename, content_type) as path:
        if not is_dicom(path):
            return 1
        try:
            return max(int(dicom_header(path)["n_frames"]), 1)
        except ImageReadError:
            return 1


@contextlib.contextmanager
def _as_file(data: bytes, filename: str | None, content_type: str | None) -> Iterator[Path]:
    """The bytes in a private temporary file named by the server (only a known extension is kept)."""
    with tempfile.TemporaryDirectory(prefix="medclass-upload-") as tmp:
        path = Path(tmp) / f"upload{_suffix(filename, content_type)}"
        path.write_bytes(data)
        yield path


def _suffix(filename: str | None, content_type: str | None) -> str:
    """A known extension of the client's file name, '.dcm' for DICOM types, else '' (content is sniffed)."""
    suffix = PurePath(filename or "").suffix.lower()
    if suffix in IMAGE_EXTENSIONS + DICOM_EXTENSIONS:
        return suffix
    return ".dcm" if (content_type or "").split(";")[0].strip().lower() in DICOM_TYPES else ""
