"""Patient ids and sub-labels from file names.

A patient rule turns a file name into a patient id ('' when the name carries none):

* ``'chest_xray'`` (built in) — the Kermany paediatric chest X-ray names:
  ``person1234_bacteria_567.jpeg`` -> ``person1234``, ``IM-0115-0001.jpeg`` -> ``IM-0115``,
  ``IM-0033-0001-0002.jpeg`` -> ``IM-0033``, ``NORMAL2-IM-0012-0001.jpeg`` -> ``NORMAL2-IM-0012``;
* ``'none'`` — no patient from the name;
* any regular expression with exactly one capture group, searched in the file name
  (e.g. ``r'^(\\d+)_'``); the group is the patient id.

The three-class chest X-ray task uses the classes :data:`CHEST_XRAY_3CLASSES`
(``'normal'``, ``'bacterial'``, ``'viral'``), in that order.

Example:
    >>> patient_from_name("person1234_virus_890.jpeg")
    'person1234'
    >>> chest_xray_3class("person1234_virus_890.jpeg", "PNEUMONIA")
    'viral'
"""
from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import PurePath

from ..errors import ConfigError

BUILTIN_RULES = ("chest_xray", "none")
_CHEST_XRAY = re.compile(r"^(person\d+(?=_)|(?:NORMAL\d+-)?IM-\d+(?=-))", re.IGNORECASE)
_SUBLABEL = re.compile(r"_(bacteria|virus)(?:_|\.|$)", re.IGNORECASE)

CHEST_XRAY_3CLASSES = ("normal", "bacterial", "viral")  # class order of the 'chest_xray_3class' relabelling
_SUBLABEL_TO_CLASS = {"bacteria": "bacterial", "virus": "viral"}


@functools.lru_cache(maxsize=32)
def patient_rule(rule: str = "chest_xray") -> Callable[[str], str]:
    """Compile a patient rule once into a function ``name -> patient id``.

    Raises :class:`ConfigError` naming the regex when it is invalid or has not exactly one group.

    >>> patient_rule(r"^(\\d+)_")("0042_left.png")
    '0042'
    """
    if rule == "none" or rule == "":
        return lambda name: ""
    pattern = _CHEST_XRAY if rule == "chest_xray" else _compile_user_regex(rule)

    def find(name: str) -> str:
        match = pattern.search(PurePath(name).name)
        return match.group(1) if match and match.group(1) else ""

    return find


def _compile_user_regex(rule: str) -> re.Pattern[str]:
    try:
        pattern = re.compile(rule)
    except re.error as e:
        raise ConfigError(
            f"Patient rule {rule!r} is not a valid regular expression ({e}); use 'chest_xray', 'none' "
            "or a regex with one capture group such as '^(\\d+)_'."
        ) from None
    if pattern.groups != 1:
        raise ConfigError(
            f"Patient regex {rule!r} has {pattern.groups} capture groups; it needs exactly one, the patient id, "
            "e.g. '^(patient\\d+)_'. Use (?:...) for groups that are not the id."
        )
    return pattern


def patient_from_name(name: str, rule: str = "chest_xray") -> str:
    """Patient id of a file name (or path) under ``rule``; '' when the name matches nothing.

    >>> patient_from_name("NORMAL2-IM-0012-0001.jpeg")
    'NORMAL2-IM-0012'
    >>> patient_from_name("scan_17.png", r"scan_(\\d+)")
    '17'
    """
    return patient_rule(rule)(name)


def sublabel_from_name(name: str) -> str:
    """``'bacteria'`` / ``'virus'`` from a chest X-ray pneumonia file name, '' otherwise.

    >>> sublabel_from_name("person1_bacteria_1.jpeg"), sublabel_from_name("IM-0001-0001.jpeg")
    ('bacteria', '')
    """
    match = _SUBLABEL.search(PurePath(name).name)
    return match.group(1).lower() if match else ""


def chest_xray_3class(name: str, folder_label: str) -> str:
    """Three-class label (``'normal'``, ``'bacterial'``, ``'viral'``) of a chest X-ray image.

    ``folder_label`` is the two-class label (``NORMAL`` / ``PNEUMONIA``, any case). A pneumonia
    image whose name says neither bacteria nor virus gives ''.

    >>> chest_xray_3class("IM-0001-0001.jpeg", "NORMAL"), chest_xray_3class("person3_bacteria_9.jpeg", "PNEUMONIA")
    ('normal', 'bacterial')
    """
    if folder_label.strip().lower() == "normal":
        return "normal"
    return _SUBLABEL_TO_CLASS.get(sublabel_from_name(name), "")
