"""Data preparation: a data set that leaves nothing to train on is a clear error, not a crash deep in the audit."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medclass.config import DataConfig
from medclass.data.check import check_data
from medclass.data.prepare import prepare_data
from medclass.errors import DatasetError


def test_all_images_unreadable(tmp_path):
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for i in range(3):
            (tmp_path / label / f"p{i}_x.png").write_bytes(b"not a png at all")
    with pytest.raises(DatasetError) as e:
        prepare_data(DataConfig(path=str(tmp_path), split_by="image"), workers=1)
    assert f"None of the 6 images of {tmp_path} can be read" in str(e.value) and "6 x " in str(e.value)
    report = check_data(DataConfig(path=str(tmp_path)), workers=1)  # `data check` reports them instead
    assert report["source"]["images"] == 6 and len(report["unreadable"]) == 6


def test_quality_filter_flags_every_image(tmp_path):
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for i in range(3):
            Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / label / f"p{i}_x.png")
    with pytest.raises(DatasetError) as e:
        prepare_data(DataConfig(path=str(tmp_path), split_by="image"), workers=1)
    assert "quality filter flags all 6 images" in str(e.value) and "data.quality_filter=false" in str(e.value)
