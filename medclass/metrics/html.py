"""Tiny HTML building blocks of the self-contained reports (evaluation and run comparison): escaped text,
tables, embedded PNGs, one inline style."""
from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable, Sequence
from typing import Any

CSS = """
body{font-family:-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;margin:0;color:#1d2733;background:#f4f6f8;line-height:1.45}
main{max-width:1180px;margin:0 auto;padding:24px}
header{background:#17324d;color:#fff;padding:20px 24px}
header h1{margin:0 0 4px 0;font-size:24px} header p{margin:0;opacity:.85}
nav{background:#fff;border-bottom:1px solid #dde3ea;padding:8px 24px;font-size:13px;position:sticky;top:0;z-index:1}
nav a{margin-right:14px;color:#17324d;text-decoration:none} nav a:hover{text-decoration:underline}
section{background:#fff;border:1px solid #dde3ea;border-radius:8px;padding:16px 20px;margin:18px 0}
h2{margin-top:0;font-size:19px;color:#17324d}
h3{font-size:15px;margin:14px 0 6px} h4{font-size:14px;margin:12px 0 4px} h5,h6{font-size:13px}
table{border-collapse:collapse;font-size:13px;margin:6px 0 10px}
th,td{border:1px solid #dde3ea;padding:4px 9px;text-align:left;vertical-align:top}
th{background:#eef2f6} td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;height:auto}
.figs{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
.ok{border-left:6px solid #2e7d32;background:#edf7ee;padding:10px 14px;border-radius:4px}
.bad{border-left:6px solid #c62828;background:#fdecea;padding:10px 14px;border-radius:4px;font-weight:600}
.warn{border-left:6px solid #ef8f00;background:#fff4e0;padding:10px 14px;border-radius:4px}
.muted{color:#5f6b7a;font-size:13px}
.tiles{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start;margin:8px 0 14px}
figure.tile{margin:0;padding:6px;border:3px solid #dde3ea;border-radius:6px;background:#fff}
figure.tile.right{border-color:#2e7d32} figure.tile.wrong{border-color:#c62828}
.tile .pics{display:flex;gap:6px} .tile img{display:block}
.tile figcaption{width:0;min-width:100%;font-size:12px;line-height:1.35;margin-top:5px;overflow-wrap:anywhere}
.tile figcaption .name{color:#5f6b7a}
.scale{display:flex;align-items:center;gap:8px;font-size:12px;color:#5f6b7a;margin:6px 0}
code{background:#eef2f6;padding:1px 4px;border-radius:3px;font-size:12px}
"""


def esc(value: Any) -> str:
    """HTML-escaped text of ``value``.

    >>> esc("<b>")
    '&lt;b&gt;'
    """
    return html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 3) -> str:
    """A number for people: floats to ``digits`` decimals, NaN/None as an en dash, others as text (escaped).

    >>> fmt(0.91234), fmt(None), fmt(float("nan")), fmt(12)
    ('0.912', '–', '–', '12')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return esc(value)


def table(header: Sequence[str] | None, rows: Iterable[Sequence[Any]], numeric_from: int = 1) -> str:
    """An HTML table; cells from column ``numeric_from`` on are right-aligned numbers (already formatted or not).
    ``header=None``: no header row (a key/value table).

    >>> table(["a", "b"], [["x", 1.0]])
    '<table><tr><th>a</th><th>b</th></tr><tr><td>x</td><td class="num">1.000</td></tr></table>'
    """
    head = f"<tr>{''.join(f'<th>{esc(h)}</th>' for h in header)}</tr>" if header is not None else ""
    body = []
    for row in rows:
        cells = []
        for i, v in enumerate(row):
            text = v if isinstance(v, Raw) else fmt(v)
            cells.append(f'<td class="num">{text}</td>' if i >= numeric_from and not isinstance(v, Raw) else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table>{head}{''.join(body)}</table>"


class Raw(str):
    """Trusted HTML that :func:`table` inserts as is."""


def img(png: bytes, alt: str, width: int | None = None) -> str:
    """An ``<img>`` with the PNG embedded as base64 (no external file).

    >>> img(b"x", "a")[:36]
    '<img alt="a" src="data:image/png;bas'
    """
    style = f' style="width:{width}px"' if width else ""
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}"{style}>'


def section(sid: str, title: str, body: str) -> str:
    """A report section with an ``id`` (for links and tests)."""
    return f'<section id="{esc(sid)}"><h2>{esc(title)}</h2>{body}</section>'


def page(title: str, subtitle: str, nav: Sequence[tuple[str, str]], body: str) -> str:
    """The whole document: inline CSS, a header, a navigation bar of ``(id, title)`` links and the sections."""
    links = "".join(f'<a href="#{esc(i)}">{esc(t)}</a>' for i, t in nav)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head><body>'
            f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header><nav>{links}</nav>"
            f"<main>{body}</main></body></html>")
