"""The machinery behind :mod:`medclass.config`: types, choices, ranges and formats read from the field declarations.

A config field declares what it accepts in its annotation: a plain type (``str``, ``int``, ``bool``,
``list[str]``), a ``Literal[...]`` of choices, ``Annotated[...]`` with annotated-types bounds
(``Ge(0)``, ``Interval(ge=0, lt=1)``) or a :class:`~medclass._formats.Format` parser. Three things
read those declarations here, so each rule is written once:

- :func:`coerce_section`: a nested dict (YAML, ``--set``) -> dataclasses, converting text to the
  declared type and refusing what cannot be converted (a mapping where a list belongs...);
- :func:`check_config`: every field's value against its choices, bounds and format;
- :func:`describe` and :func:`field_docs`: what ``medclass config`` prints.
"""
from __future__ import annotations

import dataclasses
import inspect
import io
import math
import tokenize
import typing
from pathlib import Path
from typing import Any

import annotated_types as at
import yaml

from ._formats import Format, parse_mapping
from .errors import ConfigError, check_choice, did_you_mean

_TYPE_WORDS = {bool: "true or false", int: "a whole number", float: "a finite number", str: "text"}


def _unwrap(hint: Any) -> tuple[Any, tuple]:
    """``Annotated[T, m1, m2]`` -> ``(T, (m1, m2))``; anything else -> ``(hint, ())``."""
    if typing.get_origin(hint) is typing.Annotated:
        base, *meta = typing.get_args(hint)
        return base, tuple(meta)
    return hint, ()


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def coerce_section(cls: type, d: Any, prefix: str) -> Any:
    """Build the dataclass ``cls`` from the mapping ``d`` (``prefix`` names it in errors; None = all defaults)."""
    d = {} if d is None else d
    if not isinstance(d, dict):
        raise ConfigError(f"Config section {prefix.rstrip('.') or 'root'!r} must be a mapping of fields, got "
                          f"{_kind(d)}; write it as 'field: value' lines under '{prefix.rstrip('.')}:'.")
    hints = _hints(cls)
    kwargs = {}
    for key, value in d.items():
        if key not in hints:
            raise ConfigError(f"Unknown config key {prefix + str(key)!r}." + did_you_mean(str(key), hints)
                              + " See `medclass config` for every field.")
        base, _ = _unwrap(hints[key])
        if dataclasses.is_dataclass(base):
            kwargs[key] = coerce_section(base, value, prefix + key + ".")
        else:
            kwargs[key] = coerce_value(prefix + key, value, hints[key])
    return cls(**kwargs)


def coerce_value(name: str, value: Any, hint: Any) -> Any:
    """Convert ``value`` (possibly CLI text) to the type declared by ``hint``; refuse what does not fit."""
    base, _ = _unwrap(hint)
    if typing.get_origin(base) is typing.Literal:
        options = typing.get_args(base)
        kind = type(options[0])
        if isinstance(value, dict | list | tuple | bool) or value is None:
            raise ConfigError(f"{name}={value!r}: expected one of {', '.join(map(repr, options))}, got {_kind(value)}.")
        if kind is int and isinstance(value, float) and not value.is_integer():
            return value  # check_config names the choices
        try:
            return kind(value)
        except (TypeError, ValueError):
            return value
    if typing.get_origin(base) is list:
        items = _list_of_text(name, value)
        item_type = (typing.get_args(base) or (str,))[0]
        return [coerce_value(f"{name}[{i}]", v, item_type) for i, v in enumerate(items)] if item_type in (int, float) else items
    if typing.get_origin(base) is dict:
        return parse_mapping(name, value)
    if isinstance(value, dict | list | tuple):
        raise ConfigError(f"{name}={value!r}: expected {_TYPE_WORDS.get(base, base)}, got {_kind(value)}. "
                          f"Fix: give one value, e.g. --set {name}=VALUE (quote text that contains ':' or braces).")
    try:
        if base is bool:
            return _bool(value)
        if base is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if base is float:
            if isinstance(value, bool):
                raise ValueError(value)
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(value)
            return number
        if base is str:
            return "" if value is None else str(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{name}={value!r} is not a valid {base.__name__}: expected {_TYPE_WORDS[base]}, "
                          f"got {_kind(value)}.") from None
    return value


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        low = value.strip().lower()
        if low in {"1", "true", "yes", "on"}:
            return True
        if low in {"0", "false", "no", "off"}:
            return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueError(value)


def _list_of_text(name: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list | tuple) and all(not isinstance(v, dict | list | tuple) and v is not None for v in value):
        return [str(v) for v in value]
    raise ConfigError(f"{name}={value!r}: expected a list of names, e.g. [NORMAL, PNEUMONIA] or NORMAL,PNEUMONIA; got "
                      f"{_kind(value) if not isinstance(value, list | tuple) else 'a list holding mappings or lists'}.")


def check_config(cfg: Any, prefix: str = "") -> None:
    """Check every field of the (nested) dataclass ``cfg`` against its declared type, choices, bounds and format."""
    for key, hint in _hints(type(cfg)).items():
        value = getattr(cfg, key)
        base, meta = _unwrap(hint)
        name = prefix + key
        if dataclasses.is_dataclass(base):
            check_config(value, name + ".")
            continue
        value = coerce_value(name, value, hint)  # a value set in code gets the same type checks as YAML
        if typing.get_origin(base) is typing.Literal:
            options = typing.get_args(base)
            if value not in options:
                check_choice(name, str(value), [str(o) for o in options])
        for m in meta:
            if isinstance(m, Format):
                m.parse(value)
            elif not _within(value, m):
                default = next(f.default for f in dataclasses.fields(cfg) if f.name == key)
                raise ConfigError(f"{name}={value!r} is out of range: expected a value {_bounds_text(meta)} "
                                  f"(the default is {default!r}).")


def _within(value: Any, marker: Any) -> bool:
    checks = {at.Gt: lambda m: value > m.gt, at.Ge: lambda m: value >= m.ge,
              at.Lt: lambda m: value < m.lt, at.Le: lambda m: value <= m.le}
    if isinstance(marker, at.Interval):
        return all(_within(value, part) for part in marker)
    return checks[type(marker)](marker) if type(marker) in checks else True


def _bounds_text(meta: tuple) -> str:
    words = {at.Gt: "> {}", at.Ge: ">= {}", at.Lt: "< {}", at.Le: "<= {}"}
    parts = []
    for m in meta:
        for part in (m if isinstance(m, at.Interval) else [m]):
            if type(part) in words:
                parts.append(words[type(part)].format(next(iter(dataclasses.astuple(part)))))
    return " and ".join(parts)


def describe(hint: Any) -> str:
    """What a field accepts, in words: its choices, bounds or format (``''`` for plain text/flags)."""
    base, meta = _unwrap(hint)
    if typing.get_origin(base) is typing.Literal:
        return " | ".join(str(o) if o != "" else "''" for o in typing.get_args(base))
    for m in meta:
        if isinstance(m, Format):
            return m.text
    if meta:
        return _bounds_text(meta)
    if typing.get_origin(base) is list:
        return "a list of names"
    return ""


def field_docs(cls: type) -> dict[str, str]:
    """The ``# comment`` written after each field of the dataclass ``cls`` in its source."""
    docs: dict[str, str] = {}
    source = inspect.getsource(cls)
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    first_name: dict[int, str] = {}
    for tok in tokens:
        if tok.type == tokenize.NAME and tok.start[1] == 4 and tok.start[0] not in first_name:
            first_name[tok.start[0]] = tok.string
        if tok.type == tokenize.COMMENT and tok.start[0] in first_name:
            docs.setdefault(first_name[tok.start[0]], tok.string.lstrip("#").strip())
    return {f.name: docs.get(f.name, "") for f in dataclasses.fields(cls)}


def load_yaml_mapping(path: Path, what: str) -> dict:
    """Read ``path`` as a YAML mapping; binary files, tabs and syntax errors become :class:`ConfigError`."""
    raw = path.read_bytes()
    try:
        if b"\0" in raw:
            raise UnicodeDecodeError("utf-8", raw, raw.index(b"\0"), raw.index(b"\0") + 1, "NUL byte")
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a YAML text file (it holds binary data); pass a .yaml config written "
                          "with `medclass config > run.yaml`.") from None
    try:
        d = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        line = text.splitlines()[mark.line] if mark is not None and mark.line < len(text.splitlines()) else ""
        hint = ("YAML indents with spaces, not tabs: replace the tab(s) with spaces" if "\t" in line
                else "check the indentation and quote values that contain ':' or '#'")
        raise ConfigError(f"{path} is not valid YAML{where}: {getattr(e, 'problem', None) or e}. Fix: {hint}.") from None
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: expected a YAML mapping of {what}, got {_kind(d)}.")
    return d


def commented_yaml(cfg: Any) -> str:
    """``cfg`` as YAML with each field's meaning and allowed values as comments (it loads back unchanged)."""
    lines: list[str] = []
    _commented(cfg, "", lines)
    return "\n".join(lines) + "\n"


def _commented(cfg: Any, indent: str, lines: list[str]) -> None:
    docs, hints = field_docs(type(cfg)), _hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            doc = (type(value).__doc__ or "").strip().splitlines()[0]
            lines.append(f"{indent}{f.name}:  # {doc}")
            _commented(value, indent + "  ", lines)
            continue
        flow = yaml.safe_dump([value], default_flow_style=True, width=10**6).strip()[1:-1]  # [v] -> v
        allowed = describe(hints[f.name])
        note = "; ".join(part for part in (docs[f.name], f"allowed: {allowed}" if allowed else "") if part)
        lines.append(f"{indent}{f.name}: {flow}" + (f"  # {note}" if note else ""))
