"""The reading guard shared by every image and DICOM reader: one pixel limit, checked from the header
before decoding, and library warnings (Pillow, pydicom) turned into DEBUG log lines."""
from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

from ..errors import ImageTooLargeError

#: most pixels (width x height of one image or frame) any reader decodes: Pillow's own bomb limit
#: (``PIL.Image.MAX_IMAGE_PIXELS``), applied to every format, header facts included
MAX_PIXELS = 89_478_485


def check_pixels(path: object, width: int, height: int, max_pixels: int = MAX_PIXELS) -> None:
    """Raise :class:`ImageTooLargeError` when ``width x height`` exceeds ``max_pixels`` (checked before decoding).

    >>> check_pixels("a.png", 40_000, 40_000)
    Traceback (most recent call last):
    ...
    medclass.errors.ImageTooLargeError: a.png: image of 40000 x 40000 = 1,600,000,000 pixels is too large to decode safely (the limit is 89,478,485 pixels)
    """
    pixels = int(width) * int(height)
    if pixels > max_pixels:
        raise ImageTooLargeError(str(path), f"image of {width} x {height} = {pixels:,} pixels is too large to decode "
                                            f"safely (the limit is {max_pixels:,} pixels)")


log = logging.getLogger("medclass.data.io")


@contextlib.contextmanager
def library_warnings() -> Iterator[None]:
    """Warnings raised by the libraries while reading one file (pydicom's non-conforming header values,
    Pillow's EXIF or bomb warnings) become DEBUG log lines: a data set of thousands of files would repeat
    them thousands of times, and a file that cannot be read is reported once, with its reason, by the
    caller. ``medclass --debug`` shows them."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        log.debug("%s: %s", w.category.__name__, w.message)
