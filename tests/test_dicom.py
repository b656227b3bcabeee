"""DICOM reading: windows, rescale, MONOCHROME1, frames, colour, broken files (real pydicom test files)."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import get_decoder, pixel_array
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, SecondaryCaptureImageStorage

from medclass.data.dicom import WINDOW_PRESETS, apply_window, dicom_header, parse_window, read_dicom
from medclass.errors import ConfigError, ImageReadError

# files of ../shared/data/dicom that cannot give pixels, and why
UNREADABLE = {
    "emri_small_jpeg_2k_lossless_too_short.dcm": "no pixel data",
    "liver_deflate.dcm": "cannot be decoded",
    "liver_nonbyte_aligned_deflate.dcm": "cannot be decoded",
    "liver_rle.dcm": "1 bits allocated",
    "liver_nonbyte_aligned_rle.dcm": "1 bits allocated",
}


def test_parse_window():
    assert parse_window("") is None
    assert parse_window("lung") == (-600.0, 1500.0)
    assert parse_window("Brain") == WINDOW_PRESETS["brain"] == (40.0, 80.0)
    assert parse_window(" 50 , 350 ") == (50.0, 350.0)
    with pytest.raises(ConfigError, match="Did you mean 'lung'"):
        parse_window("lugn")
    with pytest.raises(ConfigError, match="center,width"):
        parse_window("40;80")
    with pytest.raises(ConfigError, match="at least 1"):
        parse_window("40,0")


def test_apply_window_known_values():
    # DICOM linear: 0 at x <= c - 0.5 - (w-1)/2, 1 above c - 0.5 + (w-1)/2, (x - c + 0.5)/(w - 1) + 0.5 between
    x = np.array([-100.0, 0.0, 40.0, 79.0, 80.0, 500.0])
    expected = [0.0, 0.0, 0.5 + 0.5 / 79, 1.0, 1.0, 1.0]
    np.testing.assert_allclose(apply_window(x, 40, 80), expected, atol=1e-6)
    np.testing.assert_allclose(apply_window(np.array([0.0, 0.25, 1.0]), 0.5, 1.0, "LINEAR_EXACT"), [0.0, 0.25, 1.0], atol=1e-6)
    assert apply_window(np.array([40.0]), 40, 80, "SIGMOID")[0] == pytest.approx(0.5)


def test_all_real_files(shared_data):
    files = sorted((shared_data / "dicom").glob("*.dcm"))
    assert len(files) == 83  # plus LICENSE: the 84 files of the folder
    read = 0
    for path in files:
        n = dicom_header(path)["n_frames"]
        try:
            img = read_dicom(path, frame=n - 1 if n > 1 else -1)
        except ImageReadError as e:
            assert path.name in UNREADABLE, f"{path.name}: {e.reason}"
            assert UNREADABLE[path.name] in e.reason
            continue
        assert path.name not in UNREADABLE
        assert img.dtype == np.float32 and img.ndim == 3 and img.shape[2] in (1, 3), path.name
        assert 0.0 <= img.min() and img.max() <= 1.0 and img.max() > img.min(), path.name
        read += 1
    assert read == 83 - len(UNREADABLE)


def test_ct_rescale_to_hounsfield_and_presets(shared_data):
    path = shared_data / "dicom" / "CT_small.dcm"
    ds = pydicom.dcmread(path)
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert float(ds.RescaleIntercept) == -1024.0
    for name, (c, w) in WINDOW_PRESETS.items():
        np.testing.assert_allclose(read_dicom(path, window=name)[..., 0], apply_window(hu, c, w), atol=1e-6, err_msg=name)
    # no window in this file: min-max of the HU values
    np.testing.assert_allclose(read_dicom(path)[..., 0], (hu - hu.min()) / (hu.max() - hu.min()), atol=1e-6)


def test_file_window_is_used_and_first_of_several(shared_data):
    one = shared_data / "dicom" / "693_UNCR.dcm"  # WindowCenter 40, WindowWidth 100
    np.testing.assert_array_equal(read_dicom(one), read_dicom(one, window="40,100"))
    several = shared_data / "dicom" / "MR-SIEMENS-DICOM-WithOverlays.dcm"
    ds = pydicom.dcmread(several)
    c, w = float(ds.WindowCenter[0]), float(ds.WindowWidth[0])
    np.testing.assert_array_equal(read_dicom(several), read_dicom(several, window=f"{c},{w}"))


def _write(tmp_path, name, arr, photometric):
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.PatientID = "P7"
    ds.set_pixel_data(arr, photometric, 12)
    path = tmp_path / name
    ds.save_as(path, enforce_file_format=True)
    return path


def test_monochrome1_is_inverted(tmp_path):
    arr = np.array([[0, 1000], [2000, 4000]], dtype=np.uint16)
    mono2 = read_dicom(_write(tmp_path, "m2.dcm", arr, "MONOCHROME2"))
    mono1 = read_dicom(_write(tmp_path, "m1.dcm", arr, "MONOCHROME1"))
    np.testing.assert_allclose(mono2[..., 0], arr / 4000.0, atol=1e-6)
    np.testing.assert_allclose(mono1, 1.0 - mono2, atol=1e-6)
    assert dicom_header(tmp_path / "m1.dcm")["patient"] == "P7"


def test_real_monochrome1_file_is_bright_where_dense(shared_data):
    path = shared_data / "dicom" / "RG3_J2KR.dcm"
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    raw = ds.pixel_array.astype(np.float64)
    expected = 1.0 - apply_window(raw, float(ds.WindowCenter), float(ds.WindowWidth))
    np.testing.assert_allclose(read_dicom(path)[..., 0], expected, atol=1e-6)


def test_multi_frame_selection(shared_data):
    path = shared_data / "dicom" / "emri_small.dcm"
    assert dicom_header(path)["n_frames"] == 10
    frames = pixel_array(path).astype(np.float64)
    for i in (0, 3, 9):
        f = frames[i]
        np.testing.assert_allclose(read_dicom(path, frame=i)[..., 0], (f - f.min()) / (f.max() - f.min()), atol=1e-6)
    with pytest.raises(ImageReadError, match=r"has 10 frames; read one with frame=0\.\.9"):
        read_dicom(path)
    with pytest.raises(ImageReadError, match="frame 10 requested"):
        read_dicom(path, frame=10)


def test_colour_files(shared_data):
    d = shared_data / "dicom"
    rgb = read_dicom(d / "SC_rgb.dcm")
    assert rgb.shape == (100, 100, 3)
    np.testing.assert_allclose(rgb, pydicom.dcmread(d / "SC_rgb.dcm").pixel_array / 255.0, atol=1e-6)
    assert np.abs(read_dicom(d / "SC_ybr_full_uncompressed.dcm") - rgb).max() < 0.03  # YBR -> RGB
    np.testing.assert_allclose(read_dicom(d / "SC_rgb_16bit.dcm"), rgb, atol=1e-2)
    # palette colour; the big-endian copy gives the same pixels
    np.testing.assert_array_equal(read_dicom(d / "OBXXXX1A_expb.dcm"), read_dicom(d / "OBXXXX1A.dcm"))
    assert read_dicom(d / "OBXXXX1A_2frame.dcm", frame=1).shape == (600, 800, 3)


def test_file_without_meta_needs_force(shared_data):
    path = shared_data / "dicom" / "OT-PAL-8-face.dcm"
    with pytest.raises(pydicom.errors.InvalidDicomError):
        pydicom.dcmread(path)
    assert read_dicom(path).shape == (480, 640, 3)


def test_missing_codec_names_the_extra(shared_data, monkeypatch):
    monkeypatch.setattr(get_decoder(JPEG2000Lossless), "_available", {})
    path = shared_data / "dicom" / "MR2_J2KR.dcm"
    with pytest.raises(ImageReadError) as e:
        read_dicom(path)
    assert 'pip install "medclass[dicom-codecs]"' in e.value.reason
    assert "medclass[dicom-codecs]" in dicom_header(path)["decoder_problem"]


def test_header(shared_data):
    h = dicom_header(shared_data / "dicom" / "CT_small.dcm")
    assert (h["patient"], h["modality"], h["n_frames"], h["rows"], h["cols"], h["photometric"]) == ("1CT1", "CT", 1, 128, 128, "MONOCHROME2")
    assert h["has_pixels"] and h["decoder_problem"] == "" and h["study"] and h["series"] and h["instance"]


def test_not_dicom(tmp_path):
    path = tmp_path / "notes.dcm"
    path.write_text("hello, this is not DICOM\n" * 20)
    with pytest.raises(ImageReadError, match="no pixel data"):
        read_dicom(path)
