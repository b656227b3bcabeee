"""read_image / image_info on tiny generated files of every supported kind, and on broken files."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import tifffile
from PIL import Image

from medclass.data import _npz
from medclass.data.io import image_info, read_image, read_npz_item
from medclass.errors import ImageReadError

RNG = np.random.default_rng(0)
GRAY8 = RNG.integers(0, 256, (6, 5), dtype=np.uint8)
RGB8 = RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)


def check(img, shape):
    assert img.dtype == np.float32 and img.shape == shape
    assert 0.0 <= img.min() and img.max() <= 1.0


def test_gray_and_rgb_png_bmp(tmp_path):
    Image.fromarray(GRAY8).save(tmp_path / "g.png")
    Image.fromarray(RGB8).save(tmp_path / "c.bmp")
    g = read_image(tmp_path / "g.png")
    check(g, (6, 5, 1))
    np.testing.assert_allclose(g[..., 0], GRAY8 / 255.0, atol=1e-7)
    np.testing.assert_allclose(read_image(tmp_path / "c.bmp"), RGB8 / 255.0, atol=1e-7)


def test_16bit_png_uses_the_full_range(tmp_path):
    arr = np.array([[0, 1000, 65535]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "x16.png")
    assert Image.open(tmp_path / "x16.png").mode == "I;16"
    np.testing.assert_allclose(read_image(tmp_path / "x16.png")[0, :, 0], arr[0] / 65535.0, atol=1e-7)


def test_palette_rgba_la_and_1bit(tmp_path):
    pal = Image.fromarray(np.array([[0, 1], [2, 1]], dtype=np.uint8), mode="L").convert("P")
    pal.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    pal.save(tmp_path / "p.png")
    p = read_image(tmp_path / "p.png")
    check(p, (2, 2, 3))
    np.testing.assert_array_equal(p[0, 0], [1, 0, 0])
    np.testing.assert_array_equal(p[1, 0], [0, 0, 1])

    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (200, 100, 50, 255)
    rgba[0, 1] = (200, 100, 50, 0)
    rgba[1, 0] = (200, 100, 50, 102)  # 40 % opaque
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    a = read_image(tmp_path / "a.png")
    check(a, (2, 2, 3))
    np.testing.assert_allclose(a[0, 0], [200 / 255, 100 / 255, 50 / 255], atol=1e-6)
    np.testing.assert_array_equal(a[0, 1], [0, 0, 0])  # transparent composited on black
    np.testing.assert_allclose(a[1, 0], np.array([200, 100, 50]) / 255 * 0.4, atol=1e-6)

    la = np.array([[[200, 255], [200, 51]]], dtype=np.uint8)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    np.testing.assert_allclose(read_image(tmp_path / "la.png")[0, :, 0], [200 / 255, 200 / 255 * 0.2], atol=1e-6)

    Image.fromarray(GRAY8 > 127).save(tmp_path / "bits.png")
    np.testing.assert_array_equal(read_image(tmp_path / "bits.png")[..., 0], (GRAY8 > 127).astype(np.float32))


def test_tiff_16bit_rgb_float_and_pages(tmp_path):
    rgb16 = RNG.integers(0, 65536, (4, 3, 3), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "rgb16.tif", rgb16, photometric="rgb")
    np.testing.assert_allclose(read_image(tmp_path / "rgb16.tif"), rgb16 / 65535.0, atol=1e-6)
    gray = np.array([[0.0, 0.5], [0.25, 1.0]], dtype=np.float32)
    tifffile.imwrite(tmp_path / "f.tiff", gray)
    np.testing.assert_allclose(read_image(tmp_path / "f.tiff")[..., 0], gray)
    Image.fromarray(RGB8).save(tmp_path / "pil.tif")
    np.testing.assert_allclose(read_image(tmp_path / "pil.tif"), RGB8 / 255.0, atol=1e-7)
    pages = np.stack([GRAY8, 255 - GRAY8])
    tifffile.imwrite(tmp_path / "pages.tif", pages, photometric="minisblack", metadata=None)
    np.testing.assert_allclose(read_image(tmp_path / "pages.tif", frame=1)[..., 0], (255 - GRAY8) / 255.0, atol=1e-7)
    with pytest.raises(ImageReadError, match="frame 2 requested"):
        read_image(tmp_path / "pages.tif", frame=2)


def test_jpeg_and_size_hint(tmp_path):
    Image.fromarray(RNG.integers(0, 256, (600, 800, 3), dtype=np.uint8)).save(tmp_path / "big.jpeg", quality=90)
    check(read_image(tmp_path / "big.jpeg"), (600, 800, 3))
    check(read_image(tmp_path / "big.jpeg", size_hint=140), (150, 200, 3))  # 1/4 scale keeps both sides >= 140
    check(read_image(tmp_path / "big.jpeg", size_hint=600), (600, 800, 3))


def test_wrong_extension_is_read_from_content(tmp_path):
    Image.fromarray(GRAY8).save(tmp_path / "really_png.jpg", format="PNG")
    np.testing.assert_allclose(read_image(tmp_path / "really_png.jpg")[..., 0], GRAY8 / 255.0, atol=1e-7)


def test_dicom_dispatch_by_extension_and_magic(tmp_path, shared_data):
    src = shared_data / "dicom" / "CT_small.dcm"
    shutil.copy(src, tmp_path / "ct_no_ext")
    expected = read_image(src, window="lung")
    check(expected, (128, 128, 1))
    np.testing.assert_array_equal(read_image(tmp_path / "ct_no_ext", window="lung"), expected)
    assert image_info(tmp_path / "ct_no_ext") == {"width": 128, "height": 128, "mode": "MONOCHROME2", "channels": 1}


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_items(tmp_path, compressed):
    arrays = {"train_images": RNG.integers(0, 256, (5, 4, 4, 3), dtype=np.uint8),
              "test_images": RNG.integers(0, 256, (2, 4, 4, 3), dtype=np.uint8),
              "train_labels": np.zeros((5, 1)), "test_labels": np.ones((2, 1))}
    path = tmp_path / "m.npz"
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    _npz.clear_cache()
    np.testing.assert_allclose(read_image(path, frame=6), arrays["test_images"][1] / 255.0, atol=1e-7)
    np.testing.assert_allclose(read_npz_item(path, 0), arrays["train_images"][0] / 255.0, atol=1e-7)
    assert isinstance(_npz.npz_array(path, "train_images"), np.memmap) != compressed
    assert image_info(path) == {"width": 4, "height": 4, "mode": "RGB", "channels": 3}
    with pytest.raises(ImageReadError, match="outside 0..6"):
        read_image(path, frame=7)
    with pytest.raises(ImageReadError, match="give its index"):
        read_image(path)


def test_npz_volume_is_refused(tmp_path):
    np.savez(tmp_path / "v.npz", train_images=np.zeros((2, 8, 8, 8), np.uint8), train_labels=np.zeros(2))
    with pytest.raises(ImageReadError, match="a 3-D volume: the volume readers"):
        read_image(tmp_path / "v.npz", frame=0)


def test_image_info_from_header(tmp_path):
    Image.fromarray(RGB8).save(tmp_path / "c.png")
    Image.fromarray(np.zeros((3, 7), np.uint16)).save(tmp_path / "g16.png")
    assert image_info(tmp_path / "c.png") == {"width": 5, "height": 6, "mode": "RGB", "channels": 3}
    assert image_info(tmp_path / "g16.png") == {"width": 7, "height": 3, "mode": "I;16", "channels": 1}


def test_bad_files_raise_with_a_reason(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("this is not an image\n")
    Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    cases = {"empty.png": "empty (0 bytes)", "text.png": "not an image", "cut.png": "truncated",
             "missing.png": "does not exist"}
    for name, reason in cases.items():
        with pytest.raises(ImageReadError) as e:
            read_image(tmp_path / name)
        assert e.value.path == str(tmp_path / name) and reason in e.value.reason, (name, e.value.reason)
    for name in ("empty.png", "text.png"):
        with pytest.raises(ImageReadError):
            image_info(tmp_path / name)


def test_real_images(shared_data):
    xray = read_image(shared_data / "chest_xray" / "NORMAL" / "IM-0001-0001.jpeg")
    check(xray, (224, 224, 3))
    head = read_image(shared_data / "head_ct" / "000.png")
    info = image_info(shared_data / "head_ct" / "000.png")
    check(head, (info["height"], info["width"], 3))
