"""Patient ids from file names.

A patient rule turns a file name into a patient id ('' when the name carries none):

* a named rule of :data:`~medclass.data.presets.NAMED_RULES`, e.g. ``'chest_xray'`` (the Kermany
  chest X-ray names, used by the ``kermany_chest_xray`` preset): ``person1234_bacteria_567.jpeg``
  -> ``person1234``, ``IM-0115-0001.jpeg`` -> ``IM-0115``, ``NORMAL2-IM-0012-0001.jpeg`` -> ``NORMAL2-IM-0012``;
* ``'none'`` or ``''`` — no patient from the name;
* any regular expression with exactly one capture group, searched in the file name
  (e.g. ``r'^(\\d+)_'``); the group is the patient id.

Example:
    >>> patient_from_name("person1234_virus_890.jpeg", "chest_xray")
    'person1234'
    >>> patient_from_name("0042_left.png", r"^(\\d+)_")
    '0042'
"""
from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import PurePath

from ..errors import ConfigError
from .presets import NAMED_RULES


@functools.lru_cache(maxsize=32)
def patient_rule(rule: str = "none") -> Callable[[str], str]:
    """Compile a patient rule once into a function ``name -> patient id``.

    Raises :class:`ConfigError` naming the regex when it is invalid or has not exactly one group.

    >>> patient_rule(r"^(\\d+)_")("0042_left.png")
    '0042'
    """
    if rule == "none" or rule == "":
        return lambda name: ""
    pattern = NAMED_RULES[rule] if rule in NAMED_RULES else _compile_user_regex(rule)

    def find(name: str) -> str:
        match = pattern.search(PurePath(name).name)
        return match.group(1) if match and match.group(1) else ""

    return find


def _compile_user_regex(rule: str) -> re.Pattern[str]:
    try:
        pattern = re.compile(rule)
    except re.error as e:
        raise ConfigError(
            f"Patient rule {rule!r} is not a valid regular expression ({e}); use a named rule "
            f"({', '.join(NAMED_RULES)}), 'none' or a regex with one capture group such as '^(\\d+)_'."
        ) from None
    if pattern.groups != 1:
        raise ConfigError(
            f"Patient regex {rule!r} has {pattern.groups} capture groups; it needs exactly one, the patient id, "
            "e.g. '^(patient\\d+)_'. Use (?:...) for groups that are not the id."
        )
    return pattern


def patient_from_name(name: str, rule: str = "none") -> str:
    """Patient id of a file name (or path) under ``rule``; '' when the name matches nothing.

    >>> patient_from_name("NORMAL2-IM-0012-0001.jpeg", "chest_xray")
    'NORMAL2-IM-0012'
    >>> patient_from_name("scan_17.png", r"scan_(\\d+)")
    '17'
    """
    return patient_rule(rule)(name)

