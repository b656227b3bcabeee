"""The layer contracts of pyproject.toml ([tool.importlinter]) hold: no module imports a layer above it.

``lint-imports`` (import-linter) reads every ``import`` of the package, at module level and inside
functions, and checks them against the contracts; an upward import fails this test with the chain
that breaks it.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint(*config: str | Path) -> subprocess.CompletedProcess:
    if not LINT_IMPORTS.is_file():
        pytest.fail(f"{LINT_IMPORTS} is missing; install the test extra: pip install -e '.[test]'")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo", *map(str, config)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_layer_contracts_are_kept() -> None:
    result = _lint()
    assert result.returncode == 0, f"an import breaks a layer contract:\n{result.stdout}\n{result.stderr}"
    assert "0 broken" in result.stdout


def test_an_upward_import_breaks_the_contract(tmp_path: Path) -> None:
    """The check can fail: with the data layer declared above config (data imports config), it reports the break."""
    config = tmp_path / "inverted.toml"
    config.write_text('[tool.importlinter]\nroot_package = "medclass"\n\n[[tool.importlinter.contracts]]\n'
                      'name = "inverted"\ntype = "layers"\nlayers = ["medclass.config", "medclass.data"]\n')
    result = _lint(config)
    assert result.returncode != 0 and "BROKEN" in result.stdout
    assert "medclass.data" in result.stdout and "medclass.config" in result.stdout
