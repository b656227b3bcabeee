"""Read any supported image file into the pixel convention: float32 ``(H, W, C)``, C in {1, 3}, [0, 1].

Formats: PNG (8/16 bit), JPEG, BMP, GIF, WebP, TIFF (tifffile first: 16-bit RGB, float; else
Pillow), ``.npz`` MedMNIST arrays (``frame`` = global image index, see :mod:`._npz`) and DICOM
(``.dcm``/``.dicom`` or the ``DICM`` magic; see :mod:`.dicom`). The format is found from the file
content where Pillow can sniff it, so a PNG named ``.jpg`` still reads.

Conversions: 8-bit / 255, 16-bit / 65535, grayscale stays 1 channel, palette -> RGB, RGBA and LA
composited on black, 32-bit integer ('I') and float ('F') images within [0, 65535] / [0, 1] are
scaled by that range, otherwise by their own min-max. Every failure raises
:class:`~medclass.errors.ImageReadError` with the path and a reason.

Guard: this module is the one door through which medclass reads pixels and header facts (size,
mode). Every format is checked against one pixel limit (:data:`MAX_PIXELS`, Pillow's own) from its
header before anything is decoded; a larger image (a decompression bomb, a DICOM header claiming
huge frames) raises :class:`~medclass.errors.ImageTooLargeError`, an ``ImageReadError``, so callers
skip it like any unreadable file, and report it with :func:`report_skip`. Library warnings met while
reading (Pillow, pydicom) are logged at DEBUG level, never printed.

Example:
    >>> img = read_image("NORMAL/IM-0001-0001.jpeg")
    >>> img.shape, img.dtype
    ((224, 224, 3), dtype('float32'))
    >>> read_image("big.jpeg", size_hint=256).shape   # JPEG decoded at 1/2, 1/4 or 1/8 scale
    (384, 512, 3)
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import ImageReadError, ImageTooLargeError
from . import _npz
from ._guard import MAX_PIXELS, check_pixels, library_warnings
from ._pixels import minmax, scale_unsigned, to_hwc, to_unit
from .dicom import DICOM_EXTENSIONS, dicom_header, is_dicom, read_dicom

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# in plain words (a file's first bytes mean nothing to a person)
NOT_AN_IMAGE = "not an image: the content is in none of the formats read here (PNG, JPEG, TIFF, BMP, GIF, WebP or DICOM)"
NPZ_EXTENSIONS = (".npz",)
SUPPORTED_EXTENSIONS = IMAGE_EXTENSIONS + DICOM_EXTENSIONS + NPZ_EXTENSIONS
_TIFF_EXTENSIONS = (".tif", ".tiff")
_TO_RGB_MODES = ("CMYK", "YCbCr", "LAB", "HSV", "RGBX")
_REPORTED: set[str] = set()  # paths already reported as skipped in this process
__all__ = ["IMAGE_EXTENSIONS", "MAX_PIXELS", "SUPPORTED_EXTENSIONS", "image_info", "read_image", "read_npz_item",
           "mark_reported", "report_skip"]


def report_skip(path: str | Path, reason: str, what: str = "Skipping unreadable image") -> bool:
    """Log ``"<what> <path>: <reason>"`` once per path and process (a warning); True the first time.

    Every step that skips an unreadable image (prediction, training, shift statistics, the cache)
    reports it through this one function, so a bad file gives the same line wherever it is met.
    """
    key = str(path)
    if key in _REPORTED:
        return False
    _REPORTED.add(key)
    log.warning("%s %s: %s", what, key, reason)
    return True


def mark_reported(paths: Iterable[str]) -> None:
    """Record paths reported by DataLoader worker processes (``batch["skipped"]``) in this process, so that
    the workers of a later pass, forked from it, do not report them again."""
    _REPORTED.update(map(str, paths))


def read_image(path: str | Path, frame: int = -1, window: str = "", size_hint: int | None = None,
               max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read one image as float32 ``(H, W, C)`` with C in {1, 3} and values in [0, 1].

    Args:
        path: image, DICOM or ``.npz`` file.
        frame: frame of a multi-frame DICOM, page of a multi-page TIFF/GIF, or the global image
            index in an ``.npz`` file; -1 = the only (or first) image.
        window: DICOM window spec ('' = the file's own, a preset such as 'lung', or 'C,W');
            ignored for other formats.
        size_hint: the side the caller will resize to. JPEGs are then decoded at a reduced scale
            (1/2, 1/4 or 1/8) as long as both sides stay >= ``size_hint``: much faster for small
            training sizes. Other formats ignore it.
        max_pixels: largest width x height decoded (checked from the header first).

    Raises:
        ImageReadError: missing, empty, truncated or non-image file, unsupported mode, bad frame;
            ImageTooLargeError (a subclass) beyond ``max_pixels``.

    >>> read_image("CT_small.dcm", window="lung").shape
    (128, 128, 1)
    """
    path = Path(path)
    _check_file(path)
    suffix = path.suffix.lower()
    with library_warnings():
        if suffix in NPZ_EXTENSIONS:
            return read_npz_item(path, frame, max_pixels)
        if _is_dicom(path):
            return read_dicom(path, frame=frame, window=window, max_pixels=max_pixels)
        if suffix in _TIFF_EXTENSIONS:
            tiff = _read_tiff(path, frame, max_pixels)
            if tiff is not None:
                return tiff
        return _read_pil(path, frame, window, size_hint, max_pixels)


def read_npz_item(path: str | Path, index: int, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Image number ``index`` of a MedMNIST-style npz (train, then val, then test numbering).

    The file is opened once per process (memory-mapped when stored uncompressed).

    >>> read_npz_item("pneumoniamnist.npz", 0).shape
    (28, 28, 1)
    """
    if index < 0:
        raise ImageReadError(str(path), "an .npz file holds many images; give its index as frame (0, 1, ...)")
    _npz_info(Path(path), max_pixels)
    try:
        item, _ = _npz.npz_item(path, index)
    except (IndexError, ValueError, OSError) as e:  # DatasetError is a ValueError
        raise ImageReadError(str(path), str(e)) from None
    if item.ndim not in (2, 3) or (item.ndim == 3 and item.shape[-1] not in (1, 2, 3, 4)):
        raise ImageReadError(
            str(path), f"image {index} has shape {item.shape}; expected (H, W) or (H, W, C) with C in 1..4 (a 3-D volume: the volume readers of medclass.data.volumes take it)"
        )
    return to_hwc(to_unit(item))


def image_info(path: str | Path, max_pixels: int = MAX_PIXELS) -> dict[str, Any]:
    """Width, height, mode and channels from the header only (no pixel decoding where possible).

    For DICOM ``mode`` is the PhotometricInterpretation; for npz the first image array decides.
    Raises :class:`ImageReadError` like :func:`read_image`, :class:`ImageTooLargeError` beyond ``max_pixels``.

    >>> image_info("NORMAL/IM-0001-0001.jpeg")
    {'width': 224, 'height': 224, 'mode': 'RGB', 'channels': 3}
    """
    path = Path(path)
    _check_file(path)
    suffix = path.suffix.lower()
    with library_warnings():
        if suffix in NPZ_EXTENSIONS:
            return _npz_info(path, max_pixels)
        if _is_dicom(path):
            return _dicom_info(path, max_pixels)
        try:
            with _open_pil(path, max_pixels) as im:
                mode, (width, height) = im.mode, im.size
        except UnidentifiedImageError:
            if is_dicom(path):
                return _dicom_info(path, max_pixels)
            raise ImageReadError(str(path), NOT_AN_IMAGE) from None
        except ImageReadError:
            raise
        except (OSError, SyntaxError, ValueError) as e:
            raise ImageReadError(str(path), f"unreadable image header ({e})") from None
    channels = 1 if mode in ("1", "L", "LA", "La", "F") or mode.startswith("I") else 3
    return {"width": width, "height": height, "mode": mode, "channels": channels}


def _is_dicom(path: Path) -> bool:
    """DICOM by extension, or by the DICM magic for files without an image extension (checked before
    Pillow, which may take the 128-byte preamble of a dual-format file for a TIFF)."""
    suffix = path.suffix.lower()
    return suffix in DICOM_EXTENSIONS or (suffix not in IMAGE_EXTENSIONS and is_dicom(path))


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ImageReadError(str(path), "file does not exist")
    if not path.is_file():
        raise ImageReadError(str(path), "is not a file (a folder?)")
    if path.stat().st_size == 0:
        raise ImageReadError(str(path), "file is empty (0 bytes)")


@contextlib.contextmanager
def _open_pil(path: Path, max_pixels: int) -> Iterator[Image.Image]:
    """``Image.open`` with the pixel limit checked on the header (before any decoding)."""
    try:
        with Image.open(path) as im:
            check_pixels(path, *im.size, max_pixels)
            yield im
    except Image.DecompressionBombError as e:  # Pillow refuses to even open beyond twice its limit
        raise ImageTooLargeError(str(path), f"image too large to decode safely ({e})") from None


def _read_pil(path: Path, frame: int, window: str, size_hint: int | None, max_pixels: int) -> np.ndarray:
    try:
        with _open_pil(path, max_pixels) as im:
            if frame > 0:
                n = getattr(im, "n_frames", 1)
                if frame >= n:
                    raise ImageReadError(str(path), f"frame {frame} requested but the image has {n} frame(s)")
                im.seek(frame)
                check_pixels(path, *im.size, max_pixels)
            if size_hint and im.format == "JPEG":
                im.draft(im.mode, (size_hint, size_hint))
            im.load()
            return _pil_to_array(im, path)
    except UnidentifiedImageError:
        if is_dicom(path):
            return read_dicom(path, frame=frame, window=window, max_pixels=max_pixels)
        raise ImageReadError(str(path), NOT_AN_IMAGE) from None
    except ImageReadError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        reason = str(e) or type(e).__name__
        if "truncated" in reason.lower() or isinstance(e, EOFError):
            reason = f"truncated or corrupt image data ({reason})"
        raise ImageReadError(str(path), reason) from None


def _pil_to_array(im: Image.Image, path: Path) -> np.ndarray:
    """A loaded PIL image -> float32 HWC in [0, 1] per the pixel convention."""
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode == "PA":
        im = im.convert("RGBA")
    elif mode == "1":
        im = im.convert("L")
    elif mode in ("La", "RGBa"):
        im = im.convert(mode.upper())  # un-premultiply, then composite like the others
    elif mode in _TO_RGB_MODES:
        im = im.convert("RGB")
    arr = np.asarray(im)
    if im.mode in ("L", "LA", "RGB", "RGBA") or im.mode.startswith("I;16"):
        unit = scale_unsigned(arr)
    elif im.mode == "I":
        unit = scale_unsigned(arr, 16) if arr.size and arr.min() >= 0 and arr.max() <= 65535 else minmax(arr)
    elif im.mode == "F":
        unit = to_unit(arr)
    else:
        raise ImageReadError(str(path), f"unsupported image mode {mode!r}; convert it to grayscale or RGB")
    return to_hwc(unit)


def _read_tiff(path: Path, frame: int, max_pixels: int) -> np.ndarray | None:
    """Grayscale / RGB TIFF pages with tifffile (16-bit RGB, float); None lets Pillow try instead."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            pages = tif.pages
            if frame >= len(pages):
                raise ImageReadError(str(path), f"frame {frame} requested but the TIFF has {len(pages)} page(s)")
            page = pages[max(frame, 0)]
            photometric = getattr(page.photometric, "name", "")
            if photometric not in ("MINISBLACK", "RGB"):
                return None
            check_pixels(path, page.imagewidth, page.imagelength, max_pixels)
            arr = page.asarray()
    except ImageReadError:
        raise
    except Exception:  # tifffile raises many types (missing imagecodecs, odd tags): let Pillow try
        return None
    if arr.ndim == 3 and photometric == "RGB" and arr.shape[0] in (3, 4) and arr.shape[-1] not in (3, 4):
        arr = np.moveaxis(arr, 0, -1)  # planar (separate) samples
    if arr.ndim != 2 and not (arr.ndim == 3 and arr.shape[-1] in (1, 2, 3, 4)):
        return None
    return to_hwc(to_unit(arr))


def _dicom_info(path: Path, max_pixels: int) -> dict[str, Any]:
    header = dicom_header(path)
    check_pixels(path, header["cols"], header["rows"], max_pixels)
    channels = 3 if header["photometric"] not in ("MONOCHROME1", "MONOCHROME2") else 1
    return {"width": header["cols"], "height": header["rows"], "mode": header["photometric"], "channels": channels}


def _npz_info(path: Path, max_pixels: int) -> dict[str, Any]:
    try:
        parts = _npz.npz_parts(path)
    except ValueError as e:  # DatasetError
        raise ImageReadError(str(path), str(e)) from None
    for part in parts:
        height, width = (tuple(part.item_shape) + (1, 1))[:2]
        check_pixels(path, width, height, max_pixels)
    shape = parts[0].item_shape
    channels = 1 if len(shape) < 3 or shape[2] == 1 else 3
    return {"width": shape[1] if len(shape) > 1 else 0, "height": shape[0] if shape else 0,
            "mode": "L" if channels == 1 else "RGB", "channels": channels}
