"""Quality flags on generated images (constant, black, white, tiny, corrupt) and on real data."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medclass.data.fingerprint import fingerprint
from medclass.data.quality import QualityThresholds, filter_quality, quality_report
from medclass.data.table import DataTable


@pytest.fixture
def images(tmp_path) -> DataTable:
    rng = np.random.default_rng(0)
    arrays = {
        "good": (rng.random((48, 40)) * 255).astype(np.uint8),
        "gray": np.full((48, 48), 128, np.uint8),
        "black": np.zeros((48, 48), np.uint8),
        "white": np.full((48, 48), 255, np.uint8),
        "tiny": (rng.random((20, 64)) * 255).astype(np.uint8),
        "rgb": (rng.random((40, 40, 3)) * 255).astype(np.uint8),
    }
    for name, arr in arrays.items():
        Image.fromarray(arr).save(tmp_path / f"{name}.png")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a PNG")
    names = [*arrays, "corrupt"]
    df = pd.DataFrame({"path": [str(tmp_path / f"{n}.png") for n in names], "label": "x"})
    return DataTable(df, ["x"])


def test_generated_images_are_flagged_with_reasons(images):
    fp = fingerprint(images, workers=1)
    report = quality_report(images, fp)
    reason = {Path(p).stem: r for p, r in zip(report["path"], report["reason"])}
    assert set(reason) == {"gray", "black", "white", "tiny", "corrupt"}
    assert reason["gray"] == "near-constant (std 0.000 < 0.01)"
    assert reason["black"] == "near-constant (std 0.000 < 0.01); very dark (mean 0.000 < 0.02)"
    assert reason["white"] == "near-constant (std 0.000 < 0.01); very bright (mean 1.000 > 0.98)"
    assert reason["tiny"] == "64x20 px is tiny (min side < 32; the median is 44)"
    assert reason["corrupt"].startswith("unreadable: ") and len(reason["corrupt"]) > len("unreadable: ")
    assert (report["frame"] == -1).all()

    clean = filter_quality(images, report)
    assert sorted(Path(p).stem for p in clean.frame["path"]) == ["good", "rgb"]
    assert {Path(s["path"]).stem for s in clean.skipped} == set(reason)
    assert all(s["reason"].startswith("quality: ") for s in clean.skipped)


def test_thresholds_are_configurable(images):
    fp = fingerprint(images, workers=1)
    loose = QualityThresholds(min_std=0.0, dark_mean=-1.0, bright_mean=2.0, min_side=16)
    assert [Path(p).stem for p in quality_report(images, fp, loose)["path"]] == ["corrupt"]
    strict = quality_report(images, fp, QualityThresholds(min_side=45))
    assert {Path(p).stem for p in strict["path"]} >= {"good", "rgb", "tiny"}


def test_a_data_set_small_throughout_is_not_tiny(tmp_path):
    """MedMNIST-style 28 px images: every one was dropped as tiny, leaving nothing to train on."""
    rng = np.random.default_rng(1)
    paths = []
    for i in range(6):
        Image.fromarray((rng.random((28, 28)) * 255).astype(np.uint8)).save(tmp_path / f"m{i}.png")
        paths.append(str(tmp_path / f"m{i}.png"))
    Image.fromarray((rng.random((8, 8)) * 255).astype(np.uint8)).save(tmp_path / "thumb.png")  # smaller than the rest
    table = DataTable(pd.DataFrame({"path": [*paths, str(tmp_path / "thumb.png")], "label": "x"}), ["x"])
    report = quality_report(table, fingerprint(table, workers=1))
    assert [Path(p).stem for p in report["path"]] == ["thumb"]


def test_misaligned_fingerprints_are_refused(images):
    fp = fingerprint(images, workers=1)
    with pytest.raises(ValueError, match="do not line up"):
        quality_report(images, fp.iloc[::-1])


@pytest.mark.slow
@pytest.mark.parametrize("name, pattern, flagged", [("chest_xray", "*/*.jpeg", 0), ("head_ct", "*.png", 0)])
def test_real_data_quality(shared_data, request, name, pattern, flagged):
    root = shared_data / name
    paths = sorted(str(p) for p in root.glob(pattern))
    table = DataTable(pd.DataFrame({"path": paths, "label": "x"}), ["x"])
    fp = fingerprint(table, cache_dir=request.config.cache.mkdir("medclass-fingerprints"))
    report = quality_report(table, fp)
    assert (fp["error"] == "").all()
    assert len(report) == flagged, report.to_string()
