"""The real-data fixture: skipped locally with the missing folder named, a failure under CI."""
from __future__ import annotations

from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py").read_text()
USES_REAL_DATA = "def test_needs_real_data(shared_data):\n    assert shared_data.is_dir()\n"


@pytest.fixture
def without_shared_data(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("MEDCLASS_SHARED_DATA", str(pytester.path / "no" / "shared" / "data"))
    monkeypatch.delenv("CI", raising=False)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(USES_REAL_DATA)
    return pytester


def test_missing_real_data_is_skipped_locally_with_the_folder_named(without_shared_data: pytest.Pytester) -> None:
    result = without_shared_data.runpytest_subprocess("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*real data folder*no/shared/data not found*MEDCLASS_SHARED_DATA*"])


def test_missing_real_data_fails_under_ci(without_shared_data: pytest.Pytester,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    result = without_shared_data.runpytest_subprocess()
    result.assert_outcomes(errors=1)
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*CI is set and real data folder*no/shared/data not found*"])
