"""Read any supported image file into the pixel convention: float32 ``(H, W, C)``, C in {1, 3}, [0, 1].

Formats: PNG (8/16 bit), JPEG, BMP, GIF, WebP, TIFF (tifffile first: 16-bit RGB, float; else
Pillow), ``.npz`` MedMNIST arrays (``frame`` = global image index, see :mod:`._npz`) and DICOM
(``.dcm``/``.dicom`` or the ``DICM`` magic; see :mod:`.dicom`). The format is found from the file
content where Pillow can sniff it, so a PNG named ``.jpg`` still reads.

Conversions: 8-bit / 255, 16-bit / 65535, grayscale stays 1 channel, palette -> RGB, RGBA and LA
composited on black, 32-bit integer ('I') and float ('F') images within [0, 65535] / [0, 1] are
scaled by that range, otherwise by their own min-max. Every failure raises
:class:`~medclass.errors.ImageReadError` with the path and a reason.

Example:
    >>> img = read_image("NORMAL/IM-0001-0001.jpeg")
    >>> img.shape, img.dtype
    ((224, 224, 3), dtype('float32'))
    >>> read_image("big.jpeg", size_hint=256).shape   # JPEG decoded at 1/2, 1/4 or 1/8 scale
    (384, 512, 3)
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import ImageReadError
from . import _npz
from ._pixels import minmax, scale_unsigned, to_hwc, to_unit
from .dicom import DICOM_EXTENSIONS, dicom_header, is_dicom, read_dicom

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".gif", ".webp", ".tif", ".tiff")
NPZ_EXTENSIONS = (".npz",)
SUPPORTED_EXTENSIONS = IMAGE_EXTENSIONS + DICOM_EXTENSIONS + NPZ_EXTENSIONS
_TIFF_EXTENSIONS = (".tif", ".tiff")
_TO_RGB_MODES = ("CMYK", "YCbCr", "LAB", "HSV", "RGBX")


def read_image(path: str | Path, frame: int = -1, window: str = "", size_hint: int | None = None) -> np.ndarray:
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

    Raises:
        ImageReadError: missing, empty, truncated or non-image file, unsupported mode, bad frame.

    >>> read_image("CT_small.dcm", window="lung").shape
    (128, 128, 1)
    """
    path = Path(path)
    _check_file(path)
    suffix = path.suffix.lower()
    if suffix in NPZ_EXTENSIONS:
        return read_npz_item(path, frame)
    if _is_dicom(path):
        return read_dicom(path, frame=frame, window=window)
    if suffix in _TIFF_EXTENSIONS:
        tiff = _read_tiff(path, frame)
        if tiff is not None:
            return tiff
    return _read_pil(path, frame, window, size_hint)


def read_npz_item(path: str | Path, index: int) -> np.ndarray:
    """Image number ``index`` of a MedMNIST-style npz (train, then val, then test numbering).

    The file is opened once per process (memory-mapped when stored uncompressed).

    >>> read_npz_item("pneumoniamnist.npz", 0).shape
    (28, 28, 1)
    """
    if index < 0:
        raise ImageReadError(str(path), "an .npz file holds many images; give its index as frame (0, 1, ...)")
    try:
        item, _ = _npz.npz_item(path, index)
    except (IndexError, ValueError, OSError) as e:  # DatasetError is a ValueError
        raise ImageReadError(str(path), str(e)) from None
    if item.ndim not in (2, 3) or (item.ndim == 3 and item.shape[-1] not in (1, 2, 3, 4)):
        raise ImageReadError(
            str(path), f"image {index} has shape {item.shape}; expected (H, W) or (H, W, C) with C in 1..4 (a 3-D volume: the volume readers of medclass.data.volumes take it)"
        )
    return to_hwc(to_unit(item))


def image_info(path: str | Path) -> dict[str, Any]:
    """Width, height, mode and channels from the header only (no pixel decoding where possible).

    For DICOM ``mode`` is the PhotometricInterpretation; for npz the first image array decides.

    >>> image_info("NORMAL/IM-0001-0001.jpeg")
    {'width': 224, 'height': 224, 'mode': 'RGB', 'channels': 3}
    """
    path = Path(path)
    _check_file(path)
    suffix = path.suffix.lower()
    if suffix in NPZ_EXTENSIONS:
        return _npz_info(path)
    if _is_dicom(path):
        return _dicom_info(path)
    try:
        with Image.open(path) as im:
            mode, (width, height) = im.mode, im.size
    except UnidentifiedImageError:
        if is_dicom(path):
            return _dicom_info(path)
        raise ImageReadError(str(path), _not_an_image(path)) from None
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


def _not_an_image(path: Path) -> str:
    with path.open("rb") as f:
        head = f.read(16)
    return f"not an image: the content is no known image format (first bytes {head!r})"


def _read_pil(path: Path, frame: int, window: str, size_hint: int | None) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if frame > 0:
                    n = getattr(im, "n_frames", 1)
                    if frame >= n:
                        raise ImageReadError(str(path), f"frame {frame} requested but the image has {n} frame(s)")
                    im.seek(frame)
                if size_hint and im.format == "JPEG":
                    im.draft(im.mode, (size_hint, size_hint))
                im.load()
                return _pil_to_array(im, path)
    except UnidentifiedImageError:
        if is_dicom(path):
            return read_dicom(path, frame=frame, window=window)
        raise ImageReadError(str(path), _not_an_image(path)) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageReadError(str(path), f"image too large to decode safely ({e})") from None
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


def _read_tiff(path: Path, frame: int) -> np.ndarray | None:
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


def _dicom_info(path: Path) -> dict[str, Any]:
    header = dicom_header(path)
    channels = 3 if header["photometric"] not in ("MONOCHROME1", "MONOCHROME2") else 1
    return {"width": header["cols"], "height": header["rows"], "mode": header["photometric"], "channels": channels}


def _npz_info(path: Path) -> dict[str, Any]:
    try:
        shape = _npz.npz_parts(path)[0].item_shape
    except ValueError as e:  # DatasetError
        raise ImageReadError(str(path), str(e)) from None
    channels = 1 if len(shape) < 3 or shape[2] == 1 else 3
    return {"width": shape[1] if len(shape) > 1 else 0, "height": shape[0] if shape else 0,
            "mode": "L" if channels == 1 else "RGB", "channels": channels}
