"""Transform factory: shapes, channels, normalisation, input checks, presets, eval determinism."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from medclass.data.transforms import PRESETS, AugmentParams, augmentations, build_transform, check_image, prepare_image
from medclass.errors import ConfigError


def _img(h: int = 40, w: int = 50, c: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((h, w, c), dtype=np.float32)


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("in_chans", [1, 3])
@pytest.mark.parametrize("src_chans", [1, 3])
def test_every_preset_gives_normalised_chw(preset: str, in_chans: int, src_chans: int) -> None:
    tf = build_transform(preset, 16, in_chans, [0.5] * in_chans, [0.25] * in_chans, train=True)
    out = tf(_img(c=src_chans))
    assert out.shape == (in_chans, 16, 16) and out.dtype == torch.float32
    assert out.min() >= (0 - 0.5) / 0.25 - 1e-5 and out.max() <= (1 - 0.5) / 0.25 + 1e-5


def test_normalisation_known_values() -> None:
    tf = build_transform("none", 8, 1, [0.5], [0.25], train=False)
    assert torch.allclose(tf(np.full((10, 10, 1), 0.5, np.float32)), torch.zeros(1, 8, 8), atol=1e-5)
    assert torch.allclose(tf(np.ones((10, 10, 1), np.float32)), torch.full((1, 8, 8), 2.0), atol=1e-5)


def test_channel_conversion_luma_and_repeat() -> None:
    red = np.zeros((4, 4, 3), np.float32)
    red[..., 0] = 1.0
    gray = prepare_image(red, 4, 1)
    assert gray.shape == (1, 4, 4) and torch.allclose(gray, torch.full((1, 4, 4), 0.2989), atol=1e-3)  # ITU-R 601
    one = _img(4, 4, 1)
    rgb = prepare_image(one, 4, 3)
    assert rgb.shape == (3, 4, 4) and all(torch.equal(rgb[k], rgb[0]) for k in range(3))
    assert torch.allclose(rgb[0], torch.from_numpy(one[..., 0]))


def test_resize_is_plain_by_default_and_keep_aspect_pads() -> None:
    tall = np.ones((100, 50, 1), np.float32)
    assert torch.allclose(prepare_image(tall, 32, 1), torch.ones(1, 32, 32))  # stretched, no border
    padded = prepare_image(tall, 32, 1, keep_aspect=True)
    assert padded.shape == (1, 32, 32)
    assert torch.allclose(padded[0, :, 8:24], torch.ones(32, 16)) and padded[0, :, :8].abs().max() == 0
    assert padded[0, :, 24:].abs().max() == 0


def test_input_range_and_dtype_are_checked() -> None:
    tf = build_transform("none", 8, 1, [0.5], [0.25], train=False)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        tf(np.full((4, 4, 1), 255.0, np.float32))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        tf(np.full((4, 4, 1), -0.5, np.float32))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        tf(np.full((4, 4, 1), np.nan, np.float32))
    with pytest.raises(ValueError, match="255"):
        tf(np.zeros((4, 4, 1), np.uint8))
    with pytest.raises(ValueError, match="C in"):
        tf(np.zeros((4, 4, 4), np.float32))
    assert check_image(np.zeros((4, 5), np.float64)).shape == (1, 4, 5)  # 2-D gray and float64 accepted


def test_transform_does_not_modify_its_input() -> None:
    img = np.full((8, 8, 1), 1.0 + 1e-5, np.float32)  # within tolerance, clamped on a copy
    build_transform("xray", 8, 1, [0.5], [0.25], train=True)(img)
    assert np.all(img == np.float32(1.0 + 1e-5))


def test_eval_is_deterministic_and_identical_across_presets() -> None:
    img = _img()
    outs = []
    for preset in PRESETS:
        tf = build_transform(preset, 24, 1, [0.4], [0.2], train=False)
        assert not tf.random
        torch.manual_seed(1)
        a = tf(img)
        torch.manual_seed(2)
        outs += [a, tf(img)]
    assert all(torch.equal(outs[0], o) for o in outs)


def test_train_augments_and_is_fixed_by_torch_seed() -> None:
    img = _img(64, 64, 1)
    tf = build_transform("xray", 32, 1, [0.5], [0.25], train=True)
    ev = build_transform("xray", 32, 1, [0.5], [0.25], train=False)(img)
    torch.manual_seed(3)
    a = tf(img)
    torch.manual_seed(3)
    b = tf(img)
    torch.manual_seed(4)
    c = tf(img)
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, ev)


def test_explicit_params_flip() -> None:
    img = _img(8, 8, 1)
    tf = build_transform("none", 8, 1, [0.0], [1.0], train=True, params=AugmentParams(hflip=1.0))
    assert torch.allclose(tf(img)[0], torch.from_numpy(img[:, ::-1, 0].copy()))


def test_presets_match_the_documented_values() -> None:
    x = PRESETS["xray"]
    assert (x.rotation, x.shear, x.scale, x.hflip, x.brightness, x.contrast) == (10.0, 10.0, (0.9, 1.1), 0.5, 0.2, 0.2)
    assert PRESETS["fundus"].vflip == 0.5 and (PRESETS["fundus"].brightness, PRESETS["fundus"].contrast) == (0.3, 0.2)
    assert augmentations(PRESETS["none"]) == [] and PRESETS["none"].is_identity


def test_bad_options_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'xray'"):
        build_transform("xrya", 8, 1, [0.5], [0.25], train=True)
    with pytest.raises(ConfigError, match="in_chans"):
        build_transform("none", 8, 2, [0.5] * 2, [0.25] * 2, train=True)
    with pytest.raises(ConfigError, match="mean and std"):
        build_transform("none", 8, 3, [0.5], [0.25], train=True)


def test_prepared_image_stays_inside_the_unit_range() -> None:
    """The antialiased resize rounds bright pixels to 1 + 1e-7; prepare_image promises [0, 1] (issue 12 crash)."""
    rng = np.random.default_rng(0)
    for trial in range(6):
        image = rng.random((97, 131, 3)).astype(np.float32)
        image[image > 0.5] = 1.0
        for chans in (1, 3):
            x = prepare_image(image, 64, chans)
            assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0, (trial, chans, float(x.max()) - 1)
