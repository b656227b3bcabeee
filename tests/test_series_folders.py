"""DICOM series inside class folders: ROOT/<class>/<series folder>/<slice>.dcm is one volume per series folder
(not one 2-D image per slice), through `data check` and `train` as typed; 2-D DICOM files stay images."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from medclass.cli import _register_all, app
from medclass.data.sources import from_folders
from medclass.data.to_dicom import image_to_dataset

from _volumes import write_series

_register_all()
runner = CliRunner()


def _series_classes(root: Path, per_class: int = 6, shape: tuple[int, int, int] = (20, 20, 6)) -> Path:
    """Two class folders of real CT-style DICOM series (a bright blob in one class), one series per patient;
    the slices of the first series sit one folder deeper (a study folder around a series folder)."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(("benign", "malignant")):
        for i in range(per_class):
            hu = rng.normal(-700, 60, shape).astype(np.float32)
            if c:
                hu[6:14, 6:14, 1:5] += 600
            folder = root / name / f"case{c}{i}" / ("series1" if i == 0 else "")
            write_series(hu, (0.8, 0.8, 2.0), folder, patient=f"PAT-{c}{i}", seed=i)
    return root


def test_series_folders_in_class_folders_are_volumes(tmp_path: Path) -> None:
    root = _series_classes(tmp_path / "ct")
    (tmp_path / "ct" / "benign" / "case01" / "notes.txt").write_text("a note beside the slices")
    table = from_folders(root)
    assert len(table.frame) == 12 and table.spatial_dims == 3, table.frame
    folders = {Path(p).relative_to(root).as_posix() for p in table.frame["path"]}
    assert folders == {f"{name}/case{c}{i}" + ("/series1" if i == 0 else "") for c, name in enumerate(("benign", "malignant"))
                       for i in range(6)}  # the deepest folder holding the slices
    assert sorted(table.frame["patient"]) == sorted(f"PAT-{c}{i}" for c in (0, 1) for i in range(6))  # PatientID
    assert (table.frame["frame"] == -1).all() and table.frame["label"].value_counts().to_dict() == {"benign": 6, "malignant": 6}
    # 2-D DICOM files (no slice position: a radiograph, a secondary capture) in patient folders stay images
    flat = tmp_path / "xr"
    for c, name in enumerate(("NORMAL", "PNEUMONIA")):
        for i in range(2):
            (flat / name / f"p{c}{i}").mkdir(parents=True)
            image_to_dataset(np.full((8, 8), 0.2 + 0.5 * c, np.float32), f"X{c}{i}").save_as(
                flat / name / f"p{c}{i}" / "a.dcm", enforce_file_format=True)
    xr = from_folders(flat)
    assert len(xr.frame) == 4 and xr.spatial_dims == 2 and xr.frame["path"].str.endswith("a.dcm").all()


def test_data_check_and_train_on_class_folders_of_series(tmp_path: Path) -> None:
    root = _series_classes(tmp_path / "ct")
    broken = write_series(np.full((20, 20, 6), -700.0, np.float32), (0.8, 0.8, 2.0), root / "benign" / "gap",
                          patient="PAT-gap", drop=(2,))
    out = runner.invoke(app, ["data", "check", str(root)])
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    assert "12 images, source folders" in text and "Slices per volume: {6: 12}" in text, text
    assert "12 patients" in text and "missing DICOM slice" in text and str(broken.name) in text, text
    out = runner.invoke(app, ["train", "--data", str(root), "--model", "resnet10_3d", "--in-chans", "1",
                              "--image-size", "16", "--epochs", "1", "--batch-size", "4", "--experiment", "s",
                              "--quiet", "--set", f"workspace={tmp_path / 'ws'}", "--set", "train.num_workers=0",
                              "--set", "data.val_fraction=0.2", "--set", "data.test_fraction=0.2"])
    assert out.exit_code == 0, out.output
    split = (tmp_path / "ws" / "default" / "s" / "split.csv").read_text()
    assert "case01" in split and ".dcm" not in split  # one row per series folder, never a slice
