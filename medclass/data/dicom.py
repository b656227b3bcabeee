"""DICOM reading: rescale to modality units (HU for CT), window into [0, 1], frames, colour.

Pipeline of :func:`read_dicom` (pydicom does the decoding):

1. ``dcmread``; a file without preamble/file meta is read again with ``force=True`` and its
   transfer syntax is inferred from how it was encoded;
2. the pixels of one frame are decoded (compressed syntaxes need the ``dicom-codecs`` extra);
3. grayscale: modality LUT or rescale slope/intercept (also from the enhanced multi-frame
   functional groups), then the window: an explicit ``window`` spec, else the file's own VOI
   window (the first one if several), else its VOI LUT, else min-max; ``MONOCHROME1`` is inverted
   so that bright = dense. Colour (RGB, YBR_*, PALETTE COLOR) becomes RGB divided by its bit range;
   windows do not apply to colour images.

Window specs are ``''`` (the file's own), a preset name from :data:`WINDOW_PRESETS`, or
``'center,width'`` in modality units; both live with the ``data.window`` field in :mod:`medclass.config`.

Example:
    >>> img = read_dicom("CT_small.dcm", window="mediastinum")   # (128, 128, 1) float32 in [0, 1]
    >>> parse_window("lung"), parse_window("40,80")
    ((-600.0, 1500.0), (40.0, 80.0))
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, get_decoder, pixel_array
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from ..config import WINDOW_PRESETS, parse_window
from ..errors import ImageReadError, ImageTooLargeError
from ._guard import MAX_PIXELS, check_pixels, library_warnings
from ._pixels import minmax, scale_unsigned

log = logging.getLogger(__name__)

DICOM_EXTENSIONS = (".dcm", ".dicom")
CODECS_HINT = 'install the decoders with: pip install "medclass[dicom-codecs]"'
NO_PIXELS = "no pixel data in this DICOM file (truncated file, or a non-image object)"
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_COLOR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420", "YBR_PARTIAL_422")


def apply_window(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """DICOM VOI window (PS3.3 C.11.2.1.2) mapped to float32 in [0, 1].

    ``function`` is the file's VOI LUT Function: ``LINEAR`` (the default, for integer pixels),
    ``LINEAR_EXACT`` (no half-pixel offsets, used for float pixel data) or ``SIGMOID``.

    >>> apply_window(np.array([-1000.0, 40.0, 1000.0]), 40, 80).round(2).tolist()
    [0.0, 0.51, 1.0]
    """
    function = (function or "LINEAR").upper()
    x = np.asarray(values, dtype=np.float64)
    if function == "SIGMOID":
        y = 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    elif function == "LINEAR_EXACT":
        y = (x - center) / width + 0.5
    elif width < 1:
        raise ValueError(f"a LINEAR window needs a width of at least 1, got {width}")
    else:
        y = (x - (center - 0.5)) / max(width - 1.0, 1e-6) + 0.5
    return np.clip(y, 0.0, 1.0).astype(np.float32)


@library_warnings()
def read_dataset(path: str | Path, **kwargs: Any) -> Dataset:
    """``pydicom.dcmread`` that retries with ``force=True`` and raises :class:`ImageReadError`.

    A forced read that finds no transfer syntax gets the one it was encoded with, so that its
    pixels can be decoded. Keyword arguments go to ``dcmread`` (``stop_before_pixels``...).
    """
    try:
        try:
            ds = pydicom.dcmread(path, **kwargs)
        except InvalidDicomError:
            ds = pydicom.dcmread(path, force=True, **kwargs)
    except FileNotFoundError:
        raise ImageReadError(str(path), "file does not exist") from None
    except Exception as e:  # pydicom raises many types on malformed files; each becomes a reason
        raise ImageReadError(str(path), f"not a readable DICOM file ({type(e).__name__}: {_first_line(e)})") from e
    if "TransferSyntaxUID" not in ds.file_meta:
        implicit, little = ds.original_encoding
        if little is not None:
            ds.file_meta.TransferSyntaxUID = (
                ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
            )
    return ds


@library_warnings()
def dicom_header(path: str | Path) -> dict[str, Any]:
    """Header facts of a DICOM file without decoding its pixels.

    Keys: ``patient`` (PatientID, '' if none), ``n_frames``, ``modality``, ``photometric``,
    ``rows``, ``cols``, ``study``, ``series``, ``instance`` (UIDs), ``has_pixels``,
    ``transfer_syntax`` (UID) and ``decoder_problem`` ('' when a decoder for it is installed, else
    the reason, e.g. the ``dicom-codecs`` extra to install).
    Raises :class:`ImageReadError` when the file cannot be parsed, and
    :class:`~medclass.errors.ImageTooLargeError` when its header claims more pixels than the readers'
    limit or more pixel data than the file holds (see :func:`check_claimed_size`).

    >>> dicom_header("CT_small.dcm")["modality"]
    'CT'
    """
    ds = read_dataset(path, defer_size="64 KB")  # large values (the pixels) are not loaded
    check_claimed_size(ds, path)
    return {
        "patient": str(ds.get("PatientID", "") or "").strip(),
        "n_frames": _n_frames(ds),
        "modality": str(ds.get("Modality", "") or ""),
        "photometric": str(ds.get("PhotometricInterpretation", "") or ""),
        "rows": int(ds.get("Rows", 0) or 0),
        "cols": int(ds.get("Columns", 0) or 0),
        "study": str(ds.get("StudyInstanceUID", "") or ""),
        "series": str(ds.get("SeriesInstanceUID", "") or ""),
        "instance": str(ds.get("SOPInstanceUID", "") or ""),
        "has_pixels": any(k in ds for k in _PIXEL_KEYWORDS),
        "transfer_syntax": str(ds.file_meta.get("TransferSyntaxUID", "")),
        "decoder_problem": _decoder_problem(ds),
    }


def is_dicom(path: str | Path) -> bool:
    """True when the file has a DICOM extension or the ``DICM`` magic at byte 128."""
    path = Path(path)
    if path.suffix.lower() in DICOM_EXTENSIONS:
        return True
    try:
        with path.open("rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


@library_warnings()
def read_dicom(path: str | Path, frame: int = -1, window: str = "", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """One DICOM image (or one frame) as float32 ``(H, W, C)`` in [0, 1], C = 1 or 3.

    ``frame`` selects a frame of a multi-frame file (required there: -1 raises); ``window`` is a
    spec for :func:`parse_window`. Any failure raises :class:`ImageReadError` with the reason
    (e.g. a missing JPEG 2000 decoder names the ``dicom-codecs`` extra); a header claiming frames of
    more than ``max_pixels`` pixels or more pixel data than the file holds raises
    :class:`~medclass.errors.ImageTooLargeError` before anything is decoded.

    >>> read_dicom("emri_small.dcm", frame=3).shape
    (64, 64, 1)
    """
    spec = parse_window(window)
    ds = read_dataset(path)
    if not any(k in ds for k in _PIXEL_KEYWORDS):
        raise ImageReadError(str(path), NO_PIXELS)
    check_claimed_size(ds, path, max_pixels)
    n = _n_frames(ds)
    if frame < 0 and n > 1:
        raise ImageReadError(
            str(path), f"has {n} frames; read one with frame=0..{n - 1} (data sources list each frame as its own row)"
        )
    if frame >= n:
        raise ImageReadError(str(path), f"frame {frame} requested but the file has {n} frame(s)")
    index = max(frame, 0)
    try:
        arr = pixel_array(ds, index=index if n > 1 else None)
    except Exception as e:  # decoders raise many types; each becomes a reason
        raise ImageReadError(str(path), _decode_failure(ds, e)) from e
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(arr, _native_endian_luts(ds))
        return np.ascontiguousarray(scale_unsigned(rgb))
    if photometric in _COLOR or int(ds.get("SamplesPerPixel", 1) or 1) == 3:
        if spec is not None:
            log.debug("%s: window %s ignored for a colour (%s) image", path, window, photometric)
        bits = int(ds.get("BitsStored", 0) or 0) or None
        return np.ascontiguousarray(scale_unsigned(arr, bits))
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ImageReadError(str(path), f"unsupported PhotometricInterpretation {photometric!r}")
    unit = _window_gray(ds, _rescale(arr, ds, index), index, spec)
    if photometric == "MONOCHROME1":
        unit = 1.0 - unit
    return np.ascontiguousarray(unit[..., None], dtype=np.float32)


def _window_gray(ds: Dataset, values: np.ndarray, index: int, spec: tuple[float, float] | None) -> np.ndarray:
    """Window modality values: the given spec, else the file's VOI window, else its VOI LUT, else min-max."""
    if spec is not None:
        return apply_window(values, *spec)
    window = _file_window(ds, index)
    if window is not None:
        return apply_window(values, *window)
    if ds.get("VOILUTSequence") and np.array_equal(values, np.round(values)):
        return minmax(apply_voi_lut(values.astype(np.int64), ds, index=0, prefer_lut=True))
    return minmax(values)


def _frame_groups(ds: Dataset, index: int) -> Iterator[Dataset]:
    """The per-frame then shared functional group items of an enhanced multi-frame file."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame and index < len(per_frame):
        yield per_frame[index]
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        yield shared[0]


def _group_value(ds: Dataset, index: int, sequence: str, keyword: str) -> Any:
    """``keyword`` at the top level, else inside ``sequence`` of the frame's functional groups."""
    if keyword in ds:
        return ds.get(keyword)
    for group in _frame_groups(ds, index):
        items = group.get(sequence)
        if items and keyword in items[0]:
            return items[0].get(keyword)
    return None


def _first(value: Any) -> float | None:
    """First number of a possibly multi-valued element (None when absent or not a number)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        value = value[0] if len(value) else None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _rescale(arr: np.ndarray, ds: Dataset, index: int) -> np.ndarray:
    """Stored values -> modality units (modality LUT, rescale slope/intercept, functional groups)."""
    if ds.get("ModalityLUTSequence") or "RescaleSlope" in ds or "RescaleIntercept" in ds:
        return np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)
    slope = _first(_group_value(ds, index, "PixelValueTransformationSequence", "RescaleSlope"))
    intercept = _first(_group_value(ds, index, "PixelValueTransformationSequence", "RescaleIntercept"))
    values = np.asarray(arr, dtype=np.float64)
    return values * (1.0 if slope is None else slope) + (0.0 if intercept is None else intercept)


def _file_window(ds: Dataset, index: int) -> tuple[float, float, str] | None:
    """The file's own first VOI window (center, width, function), or None when absent or invalid.

    Float pixel data get the ``LINEAR_EXACT`` function: the LINEAR offsets assume integer pixels.
    """
    center = _first(_group_value(ds, index, "FrameVOILUTSequence", "WindowCenter"))
    width = _first(_group_value(ds, index, "FrameVOILUTSequence", "WindowWidth"))
    function = str(_group_value(ds, index, "FrameVOILUTSequence", "VOILUTFunction") or "LINEAR").upper()
    if "PixelData" not in ds:
        function = "LINEAR_EXACT"
    if center is None or width is None or width <= 0 or (function == "LINEAR" and width < 1):
        return None
    return center, width, function


def _native_endian_luts(ds: Dataset) -> Dataset:
    """Byte-swap 16-bit palette LUT data of a big-endian file in place: pydicom 3.0.2's
    ``apply_color_lut`` reads non-segmented LUT data as little-endian whatever the transfer syntax."""
    if ds.file_meta.get("TransferSyntaxUID") != ExplicitVRBigEndian:
        return ds
    for color in ("Red", "Green", "Blue", "Alpha"):
        keyword = f"{color}PaletteColorLookupTableData"
        descriptor = ds.get(f"{color}PaletteColorLookupTableDescriptor")
        data = ds.get(keyword)
        if data and descriptor and len(data) == 2 * (descriptor[0] or 2**16):
            setattr(ds, keyword, np.frombuffer(data, dtype=">u2").astype("<u2").tobytes())
    return ds


def check_claimed_size(ds: Dataset, path: str | Path, max_pixels: int = MAX_PIXELS) -> None:
    """Refuse a header that claims frames larger than the readers' pixel limit, or more frames than the
    file can hold (native pixel data: every byte of them; compressed: at least one byte per frame), so
    that neither decoding nor listing one row per frame can be made to allocate without bound."""
    rows, cols, n = _int(ds.get("Rows", 0)), _int(ds.get("Columns", 0)), _n_frames(ds)
    check_pixels(path, cols, rows, max_pixels)
    if not any(k in ds for k in _PIXEL_KEYWORDS):
        return
    size = Path(path).stat().st_size
    uid = UID(str(ds.file_meta.get("TransferSyntaxUID", "")))
    native = uid.is_transfer_syntax and not (uid.is_encapsulated or uid.is_deflated)
    bits = max(_int(ds.get("BitsAllocated", 8)), 1) * max(_int(ds.get("SamplesPerPixel", 1)), 1)
    needed = (rows * cols * n * bits + 7) // 8 if native else n
    if needed > size:
        raise ImageTooLargeError(str(path), f"the header claims {n:,} frame(s) of {cols} x {rows} pixels ({needed:,} bytes "
                                            f"of pixel data) but the file holds {size:,} bytes (a truncated or forged header)")


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _n_frames(ds: Dataset) -> int:
    try:
        return max(int(ds.get("NumberOfFrames", 1) or 1), 1)
    except (TypeError, ValueError):
        return 1


def _first_line(e: BaseException, limit: int = 300) -> str:
    """The exception's message on one line (pydicom lists one cause per plugin on separate lines)."""
    text = " ".join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _syntax_name(ds: Dataset) -> str:
    uid = UID(str(ds.file_meta.get("TransferSyntaxUID", "")))
    return (f"{uid.name} ({uid})" if uid.name != str(uid) else str(uid)) if uid else "an unknown transfer syntax"


def _decoder_problem(ds: Dataset) -> str:
    """'' when pydicom can decode the file's transfer syntax here, else why not (without decoding)."""
    uid = str(ds.file_meta.get("TransferSyntaxUID", ""))
    if not uid:
        return ""
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        return f"pixel data in {_syntax_name(ds)} cannot be decoded by pydicom"
    if not decoder.is_available:
        return f"no decoder for {_syntax_name(ds)} is installed; {CODECS_HINT}"
    return ""


def _decode_failure(ds: Dataset, e: BaseException) -> str:
    """Reason for a decoding failure; a missing codec names the extra to install."""
    problem = _decoder_problem(ds)
    detail = f"{type(e).__name__}: {_first_line(e)}"
    return f"{problem} ({detail})" if problem else f"pixel data in {_syntax_name(ds)} cannot be decoded ({detail})"
