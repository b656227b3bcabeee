"""Installs are pinned: every dependency in pyproject.toml has an exact version, and constraints.txt (what the README's
and CI's installs use with ``pip install -c``) pins the same version of each, plus every package they pull in."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_REQ = re.compile(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*(.*)$")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += [r for r in extra if not r.startswith("medclass[")]
    return reqs


def test_every_dependency_is_pinned_exactly_and_constraints_agree() -> None:
    constraints = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not pinned with =="
            constraints[_norm(name)] = version.strip()
    for req in _requirements():
        name, _, spec = _REQ.match(req).groups()
        assert spec.startswith("==") and "," not in spec, f"pyproject.toml: {req!r} is not pinned exactly (==)"
        assert constraints.get(_norm(name)) == spec[2:].strip(), (
            f"constraints.txt pins {name} at {constraints.get(_norm(name))}, pyproject.toml at {spec[2:]}: regenerate it")
