"""Parsers of the config's formatted string fields: DICOM window, threshold rule, class weights, devices.

Each parser is the one definition of its field's format: :mod:`medclass.config` declares it on the
field (``Annotated[str, Format(...)]``) so that ``RunConfig.validate()`` and ``medclass config``
use it, and the code that applies the value (DICOM reader, threshold choice, loss, trainer) calls
the same function. Every parser raises :class:`~medclass.errors.ConfigError` naming the field,
what was expected and what came.

>>> parse_window("lung"), parse_threshold_rule("sensitivity:0.95"), parse_class_weights("1,3"), parse_devices("0,1")
((-600.0, 1500.0), ('sensitivity', 0.95), [1.0, 3.0], [0, 1])
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError, did_you_mean

# (center, width) in modality units (Hounsfield units for CT)
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "abdomen": (40.0, 400.0),
    "liver": (60.0, 160.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "stroke": (40.0, 40.0),
}
THRESHOLD_RULES = ("youden", "f1", "sensitivity:<target>", "specificity:<target>", "<number in [0, 1]>")


@dataclass(frozen=True)
class Format:
    """Marker on an ``Annotated[str, Format(...)]`` config field: the parser that checks its text."""

    parse: Callable[[str], Any]  # raises ConfigError on a malformed value
    text: str  # the accepted forms, shown by `medclass config`


def parse_window(spec: str) -> tuple[float, float] | None:
    """``''`` -> None (use the file's window); a preset name or ``'C,W'`` -> ``(center, width)``.

    Raises :class:`ConfigError` (with a did-you-mean for presets) on anything else.

    >>> parse_window("brain"), parse_window(" -600, 1500 "), parse_window("")
    ((40.0, 80.0), (-600.0, 1500.0), None)
    """
    spec = (spec or "").strip()
    if not spec:
        return None
    if spec.lower() in WINDOW_PRESETS:
        return WINDOW_PRESETS[spec.lower()]
    parts = spec.split(",")
    try:
        center, width = (float(p) for p in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        center = width = None
    if center is None or width is None or not math.isfinite(center):
        raise ConfigError(
            f"Unknown DICOM window {spec!r} (data.window); expected '' (the file's own), a preset "
            f"({', '.join(WINDOW_PRESETS)}) or 'center,width' such as '40,80'." + did_you_mean(spec, WINDOW_PRESETS)
        )
    if not width >= 1 or not math.isfinite(width):
        raise ConfigError(f"DICOM window {spec!r} has width {width}; the width must be at least 1.")
    return center, width


def parse_threshold_rule(rule: str) -> tuple[str, float | None]:
    """Split a threshold rule into ``(name, value)``: ``"sensitivity:0.95"`` -> ``("sensitivity", 0.95)``.

    Raises :class:`~medclass.errors.ConfigError` with the accepted forms (and a near match) otherwise.

    >>> parse_threshold_rule("Youden"), parse_threshold_rule("specificity:0.9"), parse_threshold_rule("0.3")
    (('youden', None), ('specificity', 0.9), ('fixed', 0.3))
    """
    text = str(rule).strip().lower()
    name, sep, value = text.partition(":")
    expected = f"expected one of {', '.join(THRESHOLD_RULES)}"
    try:
        fixed = float(text)
    except ValueError:
        fixed = None
    if fixed is not None:
        if not 0.0 <= fixed <= 1.0:
            raise ConfigError(f"Fixed threshold {rule!r} (eval.threshold) is outside [0, 1]; {expected}.")
        return "fixed", fixed
    if name in ("youden", "f1") and not sep:
        return name, None
    if name in ("sensitivity", "specificity"):
        try:
            target = float(value)
        except ValueError:
            raise ConfigError(f"Threshold rule {rule!r} needs a target after ':', e.g. '{name}:0.95'; {expected}.") from None
        if not 0.0 < target <= 1.0:
            raise ConfigError(f"Threshold rule {rule!r}: the target must be in (0, 1], e.g. '{name}:0.95'.")
        return name, target
    raise ConfigError(f"Unknown threshold rule {rule!r} (eval.threshold); {expected}."
                      + did_you_mean(name, ["youden", "f1", "sensitivity", "specificity"]))


def parse_class_weights(spec: str) -> str | list[float] | None:
    """``'none'``/``''`` -> None, ``'balanced'`` -> ``'balanced'``, ``'1,3'`` -> ``[1.0, 3.0]`` (positive, finite).

    >>> parse_class_weights("none"), parse_class_weights("balanced"), parse_class_weights("1, 2.5")
    (None, 'balanced', [1.0, 2.5])
    """
    text = str(spec).strip()
    if text.lower() in ("", "none"):
        return None
    if text.lower() == "balanced":
        return "balanced"
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise ConfigError(f"train.class_weights={spec!r}: expected 'none', 'balanced' or positive numbers in class "
                          "order such as '1,3'." + did_you_mean(text, ["none", "balanced"]))
    return values


def parse_devices(spec: str) -> int | str | list[int]:
    """Lightning ``devices``: ``'auto'``, a count (``'2'``, ``'-1'`` = all) or indices ``'0,1'``.

    >>> parse_devices("auto"), parse_devices("2"), parse_devices("0, 1")
    ('auto', 2, [0, 1])
    """
    text = str(spec).strip().lower()
    if text == "auto":
        return "auto"
    try:
        if "," in text:
            ids = [int(d) for d in text.split(",") if d.strip()]
            if ids and min(ids) >= 0 and len(set(ids)) == len(ids):
                return ids
        elif int(text) >= 1 or int(text) == -1:
            return int(text)
    except ValueError:
        pass
    raise ConfigError(f"train.devices={spec!r}: expected 'auto', a device count such as 2 (-1 = all), or distinct "
                      "device indices such as '0,1'.")


def parse_switch(spec: Any) -> str:
    """An on/off setting with ``auto``: ``'auto'``, ``'true'`` or ``'false'``.

    YAML and ``--set`` turn on/off/yes/no into booleans, which arrive here as ``True``/``False`` text.

    >>> parse_switch("auto"), parse_switch("On"), parse_switch(False)
    ('auto', 'true', 'false')
    """
    low = str(spec).strip().lower()
    if low == "auto":
        return "auto"
    if low in {"1", "true", "yes", "on"}:
        return "true"
    if low in {"0", "false", "no", "off"}:
        return "false"
    raise ConfigError(f"Expected auto, true or false (also on/off, yes/no), got {spec!r}.")


def parse_mapping(name: str, value: Any) -> dict[str, str]:
    """A ``{str: str}`` field from a mapping or from ``"a=b,c=d"`` (the CLI form of ``data.label_map``).

    >>> parse_mapping("data.label_map", "covid=pneumonia, unknown=drop")
    {'covid': 'pneumonia', 'unknown': 'drop'}
    """
    if isinstance(value, dict):
        return {str(k).strip(): str(v).strip() for k, v in value.items()}
    pairs = [p.strip() for p in str(value or "").split(",") if p.strip()]
    bad = [p for p in pairs if "=" not in p or not p.split("=", 1)[0].strip() or not p.split("=", 1)[1].strip()]
    if bad:
        raise ConfigError(f"{name}: {bad[0]!r} is not old=new; write e.g. covid=pneumonia,other_pneumonia=pneumonia,"
                          "unknown=drop (a mapping in YAML).")
    return {k.strip(): v.strip() for k, v in (p.split("=", 1) for p in pairs)}


def parse_voxels(value: Any, what: str = "volume.size", integer: bool = True) -> list:
    """``[]`` (not set) or three positive numbers (x, y, z): a volume size in voxels or a spacing in mm.

    >>> parse_voxels([32, 32, 16]), parse_voxels([], "volume.spacing", integer=False)
    ([32, 32, 16], [])
    """
    values = list(value or [])
    kind = "whole numbers" if integer else "numbers (mm)"
    if values and (len(values) != 3 or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0
                                           or not math.isfinite(v) or (integer and v != int(v)) for v in values)):
        raise ConfigError(f"{what}={value!r}: expected [] or three positive {kind} for x, y, z, e.g. "
                          f"{'[32, 32, 32]' if integer else '[1.0, 1.0, 1.0]'}.")
    return [int(v) for v in values] if integer else [float(v) for v in values]


def parse_spacing(value: Any) -> list:
    """:func:`parse_voxels` for ``volume.spacing`` (mm)."""
    return parse_voxels(value, "volume.spacing", integer=False)


def parse_axcodes(value: str) -> str:
    """``''`` (as stored) or three orientation codes, one per axis, e.g. ``RAS`` or ``LPS``.

    >>> parse_axcodes("ras")
    'RAS'
    """
    codes = (value or "").strip().upper()
    axes = [{"L": 0, "R": 0, "P": 1, "A": 1, "I": 2, "S": 2}.get(c) for c in codes]
    if codes and (len(codes) != 3 or None in axes or len(set(axes)) != 3):
        raise ConfigError(f"volume.orientation={value!r}: expected '' (as stored) or three codes, one from each of "
                          "L/R, P/A, I/S, e.g. RAS (nibabel's and MONAI's default) or LPS (DICOM's).")
    return codes
