"""Shared test fixtures: the real data folder (read-only).

Locally, tests that need ``../shared/data`` are skipped when it is absent, with the missing folder
named in the skip reason. Under CI (the ``CI`` environment variable is set) they fail instead: a
run without its real data must not pass green by skipping what it should check.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

SHARED_DATA = Path(os.environ.get("MEDCLASS_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def missing_shared_data(root: Path = SHARED_DATA) -> str:
    """Why the real data cannot be used ('' when it is there): the folder that is missing and how to provide it."""
    if root.is_dir():
        return ""
    return (f"real data folder {root} not found: the real-data tests need it (the development data sets, "
            "e.g. chest_xray/, beside the project as ../shared/data); set MEDCLASS_SHARED_DATA to its path")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder (``../shared/data`` or ``$MEDCLASS_SHARED_DATA``).

    Skips the test when it is absent, except under CI (``$CI`` set), where the test fails.
    """
    reason = missing_shared_data()
    if reason and os.environ.get("CI"):
        pytest.fail(f"CI is set and {reason}. CI must run the real-data tests, not skip them.", pytrace=False)
    if reason:
        pytest.skip(reason)
    return SHARED_DATA
