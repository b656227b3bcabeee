"""Volumes read as they are: NIfTI, DICOM series (built from real LIDC CT crops), 3-D .npz; bad input refused."""
from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from medclass.config import DataConfig
from medclass.data.fingerprint import fingerprint_image
from medclass.data.sources import load_source
from medclass.data.volumes import read_volume, volume_header
from medclass.data.volumes.read import read_nifti
from medclass.errors import DatasetError, ImageReadError

from _volumes import lidc_volume, write_series


def _one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert "\n" not in text, text
    return text


def test_nifti_geometry_from_header_and_affine(shared_data):
    path, voxels, spacing = lidc_volume(shared_data)
    vol = read_volume(path)
    assert vol.shape == voxels.shape and vol.source == "nifti" and vol.array.dtype == np.float32
    assert vol.spacing == pytest.approx(spacing)
    assert vol.axcodes == ("L", "P", "S")  # LIDC crops are stored LPS; prepare() orients them
    np.testing.assert_array_equal(vol.array, voxels)
    row = pd.read_csv(shared_data / "lidc_nodules" / "labels.csv").set_index("image").loc[f"images/{path.name}"]
    assert "x".join(str(s) for s in vol.shape) == row["shape_xyz"]
    assert volume_header(path).spacing == pytest.approx([float(v) for v in row["spacing_mm"].split("x")], abs=1e-4)


def test_dicom_series_round_trip_from_real_ct(shared_data, tmp_path):
    """A real CT crop written as a series of shuffled files reads back voxel for voxel, in HU, with its spacing."""
    _, voxels, spacing = lidc_volume(shared_data, 3)
    folder = write_series(voxels, spacing, tmp_path / "series")
    vol = read_volume(folder)
    assert vol.source == "dicom" and vol.shape == voxels.shape
    np.testing.assert_array_equal(vol.array, voxels)  # sorted by position, RescaleIntercept applied
    assert vol.spacing == pytest.approx(spacing, abs=1e-5)
    assert volume_header(folder).shape == voxels.shape
    # the voxel hash makes the NIfTI and its DICOM copy exact duplicates for the leak audit
    nifti = fingerprint_image(str(lidc_volume(shared_data, 3)[0]))
    assert fingerprint_image(str(folder))["sha256"] == nifti["sha256"] and nifti["mode"] == "volume"


def test_folder_of_several_series(shared_data, tmp_path):
    _, a, spacing = lidc_volume(shared_data, 0)
    _, b, _ = lidc_volume(shared_data, 1)
    folder = tmp_path / "study"
    write_series(a, spacing, folder / "s1", series_uid="1.2.3.1")
    write_series(b, spacing, folder / "s2", series_uid="1.2.3.2")
    with pytest.raises(ImageReadError, match="mixes 2 DICOM series") as e:
        read_volume(folder)
    _one_line(e)
    assert read_volume(folder, 0).shape == a.shape and read_volume(folder, 1).shape == b.shape
    (tmp_path / "m.csv").write_text("path,label,patient\nstudy,benign,P1\nstudy/s1,malignant,P2\n")
    table = load_source(DataConfig(path=str(tmp_path / "m.csv"), patient_column="patient"))
    assert table.spatial_dims == 3
    assert table.frame[["frame", "patient"]].values.tolist() == [[0, "P1"], [1, "P1"], [-1, "P2"]]


@pytest.mark.parametrize("case, message", [
    ("one_slice", "DICOM series has 1 slice"),
    ("missing", "missing DICOM slice: a gap of 5.00 mm"),
    ("duplicate", "duplicate DICOM slices at one position"),
    ("orientation", "mixes slice orientations"),
    ("size", "mixes slice sizes"),
])
def test_broken_series_are_one_line_errors(shared_data, tmp_path, case, message):
    _, voxels, _ = lidc_volume(shared_data, 3)
    spacing = (0.7, 0.7, 2.5)
    kwargs = {"one_slice": {}, "missing": {"drop": (3,)}, "duplicate": {"duplicate": 2},
              "orientation": {"odd_orientation": 4}, "size": {"odd_size": 1}}[case]
    folder = write_series(voxels[:, :, :1] if case == "one_slice" else voxels, spacing, tmp_path / case, **kwargs)
    with pytest.raises(ImageReadError, match=message) as e:
        read_volume(folder)
    assert str(folder) in _one_line(e)
    # as a manifest row the same series is a reported skip, not a crash
    (tmp_path / "m.csv").write_text(f"path,label\n{case},a\n")
    with pytest.raises(DatasetError, match=message):  # nothing else is left: the error lists the skip
        load_source(DataConfig(path=str(tmp_path / "m.csv")))


def test_bad_nifti_files(tmp_path):
    import nibabel as nib

    four_d = tmp_path / "dwi.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8, 3), np.int16), np.eye(4)), four_d)
    with pytest.raises(ImageReadError, match=r"4-D image of shape \(8, 8, 8, 3\); expected one 3-D volume") as e:
        read_volume(four_d)
    _one_line(e)
    flat = tmp_path / "slice.nii"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 1), np.int16), np.eye(4)), flat)
    with pytest.raises(ImageReadError, match="single slice"):
        read_volume(flat)
    broken = tmp_path / "broken.nii.gz"
    with gzip.open(broken, "wb") as f:
        f.write(b"not a nifti header" * 4)
    with pytest.raises(ImageReadError, match="not a readable NIfTI file") as e:
        read_volume(broken)
    _one_line(e)
    big = tmp_path / "big.nii"
    nib.save(nib.Nifti1Image(np.zeros((128, 64, 32), np.int16), np.eye(4)), big)
    with pytest.raises(ImageReadError, match=r"128x64x32 voxels needs 1.0 MiB as float32, more than the 0.0 MiB one volume may take; crop") as e:
        read_nifti(big, limit=1000)
    _one_line(e)


def test_npz_3d_is_a_volume_source(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "organ3d.npz", train_images=rng.integers(0, 255, (6, 12, 12, 12), dtype=np.uint8),
             train_labels=np.array([[0], [1]] * 3), test_images=rng.integers(0, 255, (2, 12, 12, 12), dtype=np.uint8),
             test_labels=np.array([[0], [1]]))
    table = load_source(DataConfig(path=str(tmp_path / "organ3d.npz"), class_names=["a", "b"]))
    assert len(table) == 8 and table.spatial_dims == 3 and table.classes == ["a", "b"]
    vol = read_volume(table.frame["path"][7], int(table.frame["frame"][7]))
    assert vol.shape == (12, 12, 12) and vol.spacing == (1.0, 1.0, 1.0)


def test_lidc_manifest_with_every_flag(shared_data, tmp_path):
    """The shared manifest read as a user types it: path and patient columns, --where, --label-map, --image-root."""
    csv = shared_data / "lidc_nodules" / "labels.csv"
    cfg = DataConfig(path=str(csv), path_column="image", patient_column="patient_id", where="diameter_mm > 20",
                     label_map={"benign": "low", "malignant": "high"})
    table = load_source(cfg)
    manifest = pd.read_csv(csv)
    assert len(table) == (manifest["diameter_mm"] > 20).sum() and set(table.classes) == {"low", "high"}
    assert table.spatial_dims == 3 and table.frame["patient"].str.startswith("LIDC-IDRI-").all()
    moved = manifest.head(6).assign(image=lambda d: d["image"].str.replace("images/", "", regex=False))
    moved.to_csv(tmp_path / "m.csv", index=False)
    table = load_source(DataConfig(path=str(tmp_path / "m.csv"), path_column="image", patient_column="patient_id",
                                   image_root=str(csv.parent / "images")))
    assert len(table) == 6 and table.spatial_dims == 3


def test_a_table_mixing_volumes_and_images_is_refused(shared_data, tmp_path):
    image = next((shared_data / "chest_xray" / "NORMAL").glob("*.jpeg"))
    nifti = lidc_volume(shared_data)[0]
    (tmp_path / "m.csv").write_text(f"path,label\n{image},a\n{nifti},b\n")
    with pytest.raises(DatasetError, match="mixes 1 volumes .* and 1 2-D images"):
        load_source(DataConfig(path=str(tmp_path / "m.csv")))


def test_data_check_and_leak_audit_on_volumes(shared_data, tmp_path):
    """Shapes, spacings, slice counts, thin volumes; a NIfTI re-saved as a DICOM series under another patient is an
    exact duplicate (voxel hash), a noisy copy a near duplicate (phash of the mean projection)."""
    import nibabel as nib

    from medclass.data.check import check_data

    lidc = pd.read_csv(shared_data / "lidc_nodules" / "labels.csv")
    thin = lidc[lidc["shape_xyz"].str.endswith("x2")].iloc[0]
    deep = lidc[lidc["shape_xyz"].str.endswith("x12")].iloc[:2]
    rows = [(str(shared_data / "lidc_nodules" / r["image"]), "malignant", f"P{i}")
            for i, (_, r) in enumerate(pd.concat([thin.to_frame().T, deep]).iterrows())]
    path, voxels, spacing = lidc_volume(shared_data, 3)
    write_series(voxels, spacing, tmp_path / "copy_as_dicom")
    noisy = voxels + np.random.default_rng(0).normal(0, 5, voxels.shape).astype(np.float32)
    nib.save(nib.Nifti1Image(noisy, nib.load(str(path)).affine), tmp_path / "noisy.nii.gz")
    rows += [(str(path), "benign", "A"), (str(tmp_path / "copy_as_dicom"), "benign", "B"),
             (str(tmp_path / "noisy.nii.gz"), "benign", "C")]
    pd.DataFrame(rows, columns=["path", "label", "patient"]).to_csv(tmp_path / "m.csv", index=False)
    report = check_data(DataConfig(path=str(tmp_path / "m.csv"), patient_column="patient", window="lung"), workers=1)
    v = report["volumes"]
    assert v["readable"] == 6 and v["slices"]["min"] == 2 and v["shape"]["z"]["max"] >= 12
    assert [t["path"] for t in v["thin"]] == [rows[0][0]]
    assert v["spacing_mm"]["z"]["min"] > 0
    exact = report["audit"]["exact_groups"]
    assert len(exact) == 1 and sorted(exact[0]["patients"]) == ["A", "B"]
    near = report["audit"]["near_groups"]
    assert any({"A", "C"} <= set(g["patients"]) for g in near), near
