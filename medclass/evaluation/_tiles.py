"""The report's example images as HTML tiles: gallery, top losses and Grad-CAM.

Each image is embedded at :data:`TILE_PX` pixels (small model inputs are enlarged for display), with its
caption *below* it as HTML text in the tile's own width: lines wrap at spaces and at the separators of a
file name (``/ _ - .``), so no caption runs into its neighbour and no name is cut in the middle; the full
path is in the tile's tooltip (``title``). A Grad-CAM tile shows the image the model saw beside its
overlay, and every Grad-CAM grid has one colour scale (the overlay's colour map, low to high evidence).
The PDF keeps the matplotlib grids of :mod:`.sections.examples`.
"""
from __future__ import annotations

import io
import re

import numpy as np

from ..metrics.html import esc, img
from ._examples import Example

TILE_PX = 224  # displayed side of every example image (and of each half of a Grad-CAM tile)
_BREAKS = re.compile(r"([/\\_\-.])")


def png(image: np.ndarray, side: int = TILE_PX) -> bytes:
    """PNG bytes of an ``HxW``, ``HxWx1`` or ``HxWx3`` image (float in [0, 1] or uint8), its longer side resized to ``side``.

    >>> from PIL import Image
    >>> Image.open(io.BytesIO(png(np.zeros((32, 16, 1))))).size
    (112, 224)
    """
    from PIL import Image

    a = np.asarray(image)
    if a.dtype.kind == "f":
        a = (np.clip(a, 0.0, 1.0) * 255).round().astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    pic = Image.fromarray(a)
    scale = side / max(pic.size)
    pic = pic.resize((max(1, round(pic.width * scale)), max(1, round(pic.height * scale))),
                     Image.Resampling.NEAREST if scale >= 4 else Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    pic.save(buf, format="PNG")
    return buf.getvalue()


def breakable(text: str) -> str:
    """Escaped ``text`` with a line-break opportunity (``<wbr>``) after every path separator, ``_``, ``-`` and ``.``.

    >>> breakable("NORMAL2-IM_0095.jpeg")
    'NORMAL2-<wbr>IM_<wbr>0095.<wbr>jpeg'
    """
    return "".join(esc(part) + ("<wbr>" if _BREAKS.fullmatch(part) else "") for part in _BREAKS.split(text) if part)


def short_name(name: str, width: int = 24) -> str:
    """``name`` shortened to about ``width`` characters at a separator (``… `` before the extension), never inside a word.

    >>> short_name("person1_bacteria_12345_virus_extra.jpeg"), short_name("IM-0001.jpeg")
    ('person1_bacteria_….jpeg', 'IM-0001.jpeg')
    """
    if len(name) <= width:
        return name
    stem, dot, ext = name.rpartition(".")
    stem, ext = (stem, dot + ext) if stem else (name, "")
    kept = ""
    for part in _BREAKS.split(stem):
        if len(kept) + len(part) + len(ext) + 1 > width:
            break
        kept += part
    return (kept or stem[: max(1, width - len(ext) - 1)]) + "…" + ext


def _caption_html(ex: Example, lines: list[str], name: bool) -> str:
    from pathlib import Path

    rows = [f"<div>{esc(line)}</div>" for line in lines]
    if name:
        rows.append(f'<div class="name">{breakable(Path(ex.path).name)}</div>')
    return "<figcaption>" + "".join(rows) + "</figcaption>"


def tile(ex: Example, lines: list[str], cam: bool = False) -> str:
    """One ``<figure>``: the image (with a Grad-CAM: the image, then its overlay), caption lines and the file name."""
    outcome = "right" if ex.correct else "wrong"
    pictures = img(png(ex.image), f"{outcome}: {ex.path}", TILE_PX)
    if cam and ex.overlay is not None:
        pictures += img(png(ex.overlay), f"Grad-CAM of {ex.path}", TILE_PX)
    return (f'<figure class="tile {outcome}" title="{esc(ex.path)}"><div class="pics">{pictures}</div>'
            f"{_caption_html(ex, lines, True)}</figure>")


def colour_scale(colormap: str = "jet") -> str:
    """The Grad-CAM colour scale: a gradient drawn by :func:`medclass.explain.cam.overlay_cam` itself, labelled low to high."""
    from ..explain.cam import overlay_cam

    ramp = overlay_cam(np.zeros((14, 256, 1), np.float32), np.tile(np.linspace(0.0, 1.0, 256), (14, 1)), alpha=1.0,
                       colormap=colormap)
    return ('<div class="scale"><span>low</span>' + img(png(ramp, 256), "Grad-CAM colour scale, low to high", 256)
            + "<span>high evidence for the explained class</span></div>")


def tiles(examples: list[Example], captions: list[list[str]], cam: bool = False) -> str:
    """A wrapping row of :func:`tile` figures (with a colour scale above Grad-CAM tiles); ``''`` without examples."""
    if not examples:
        return ""
    body = "".join(tile(ex, lines, cam) for ex, lines in zip(examples, captions))
    return (colour_scale() if cam else "") + f'<div class="tiles">{body}</div>'


__all__ = ["TILE_PX", "breakable", "colour_scale", "png", "short_name", "tile", "tiles"]
