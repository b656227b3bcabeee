"""Class activation maps for every registered model, known-answer Grad-CAM, targets, layers, overlays."""
from __future__ import annotations

from functools import cache

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from medclass.errors import ConfigError
from medclass.explain import ClassTarget, compute_cam, find_target_layer, overlay_cam, save_overlay
from medclass.models import create_model, list_models, model_info, set_backbone_trainable

HEAVY = {"vgg16_bn", "convnext_tiny", "inception_v3", "densenet121", "resnet50"}


@cache
def _binary_gray(name: str) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, num_classes=2, in_chans=1)


def _size(name: str) -> int:
    return 107 if name == "inception_v3" else 64  # inception_v3's last map is 2 x 2 from 107 px


def _n_hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in list_models(spatial_dims=2)])  # 3-D: test_volume_cam.py
def test_cam_for_every_registered_model(name: str) -> None:
    model = _binary_gray(name).train()
    assert find_target_layer(model) is model.get_submodule(model_info(name).cam_layer)
    hooks = _n_hooks(model)
    torch.manual_seed(1)
    cams = compute_cam(model, torch.randn(2, 1, _size(name), _size(name)), target_class=[0, 1])
    assert cams.shape == (2, _size(name), _size(name)) and cams.dtype == np.float32
    assert np.isfinite(cams).all() and cams.min() >= 0.0 and cams.max() <= 1.0
    assert _n_hooks(model) == hooks == 0  # every hook removed
    assert model.training  # mode restored


def _hand_gradcam(model: nn.Module, layer: nn.Module, x: torch.Tensor, sign: float) -> np.ndarray:
    """Grad-CAM from its definition (Selvaraju et al.): ReLU(sum_k mean(dS/dA_k) A_k), upsampled, min-max scaled."""
    store = {}
    handle = layer.register_forward_hook(lambda m, i, o: store.update(a=o))
    try:
        score = sign * model(x)[:, 0]
    finally:
        handle.remove()
    grads = torch.autograd.grad(score.sum(), store["a"])[0]
    cam = F.relu((grads.mean(dim=(2, 3), keepdim=True) * store["a"]).sum(dim=1)).detach().numpy()
    out = []
    for c in cam:
        c = c - c.min()
        c = c / (1e-7 + c.max())
        out.append(np.asarray(Image.fromarray(c).resize(x.shape[-2:][::-1], Image.BILINEAR)))
    return np.stack(out)


def test_gradcam_matches_its_definition_for_both_binary_classes() -> None:
    model = _binary_gray("resnet18").eval()
    torch.manual_seed(0)
    x = torch.randn(2, 1, 96, 96)
    ours = {}
    for cls, sign in ((1, 1.0), (0, -1.0)):
        ours[cls] = compute_cam(model, x, target_class=cls)
        ref = _hand_gradcam(model, model.layer4[1], x, sign)
        assert np.abs(ours[cls] - ref).mean() < 0.02  # same maps; only the bilinear resize implementation differs
    assert np.abs(ours[1] - ours[0]).max() > 0.5


def test_class_target_semantics() -> None:
    three = torch.tensor([0.5, -1.0, 2.0])
    for c in range(3):
        assert ClassTarget(c)(three) == ClassifierOutputTarget(c)(three)
    one = torch.tensor([1.5])
    assert ClassTarget(1)(one) == 1.5 and ClassTarget(0)(one) == -1.5
    with pytest.raises(IndexError):  # why the library's target is not used for one-logit models
        ClassifierOutputTarget(1)(one)


def test_three_class_targets_and_predicted_default() -> None:
    torch.manual_seed(0)
    model = create_model("simple_cnn", 3, in_chans=1).eval()
    x = torch.randn(3, 1, 64, 64)
    predicted = model(x).argmax(dim=1).tolist()
    np.testing.assert_array_equal(compute_cam(model, x), compute_cam(model, x, target_class=predicted))
    per_class = [compute_cam(model, x, target_class=c) for c in range(3)]
    assert any(np.abs(per_class[0] - p).max() > 0.1 for p in per_class[1:])
    with pytest.raises(ConfigError, match=r"target_class \[3\] out of range: the model has 3 classes"):
        compute_cam(model, x, target_class=3)
    with pytest.raises(ValueError, match="2 entries for 3 images"):
        compute_cam(model, x, target_class=[0, 1])


@pytest.mark.parametrize("method", ["gradcam++", "eigencam"])
def test_other_methods(method: str) -> None:
    model = _binary_gray("resnet18")
    cams = compute_cam(model, torch.randn(2, 1, 64, 64), method=method)
    assert cams.shape == (2, 64, 64) and 0.0 <= cams.min() and cams.max() <= 1.0 and cams.max() > 0.5
    assert _n_hooks(model) == 0


def test_unknown_method_suggests() -> None:
    with pytest.raises(ConfigError, match=r"Unknown explain method 'gradcampp'.*Did you mean .*'gradcam\+\+'"):
        compute_cam(_binary_gray("simple_cnn"), torch.randn(1, 1, 64, 64), method="gradcampp")


def test_explicit_and_wrong_target_layers() -> None:
    model = _binary_gray("resnet18")
    assert find_target_layer(model, "layer4.0") is model.layer4[0]
    cams = compute_cam(model, torch.randn(1, 1, 64, 64), target_layer="layer3")
    assert cams.shape == (1, 64, 64)
    with pytest.raises(ConfigError, match=r"'layer5' is not a module of ResNet\. Did you mean 'layer4'.*Candidates .*layer4\.1"):
        find_target_layer(model, "layer5")


def test_automatic_layer_for_an_unregistered_model() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 1))
    model.get_classifier = lambda: model[6]
    assert find_target_layer(model) is model[3]  # the last module with a spatial 4-D output
    assert compute_cam(model, torch.randn(2, 1, 32, 32)).shape == (2, 32, 32)
    assert _n_hooks(model) == 0


def test_cam_with_frozen_backbone() -> None:
    model = create_model("simple_cnn", 2, in_chans=1)
    set_backbone_trainable(model, False)
    torch.manual_seed(0)
    cams = compute_cam(model, torch.randn(2, 1, 128, 128), method="gradcam", target_class=1)
    assert np.isfinite(cams).all() and cams.shape == (2, 128, 128)


def test_overlay_is_a_pure_rgb_uint8_picture(tmp_path) -> None:
    gray = np.linspace(0, 1, 32 * 48, dtype=np.float32).reshape(32, 48, 1)
    cam = np.zeros((32, 48), np.float32)
    cam[:16] = 1.0
    out = overlay_cam(gray, cam)
    assert out.shape == (32, 48, 3) and out.dtype == np.uint8
    plain = overlay_cam(gray, cam, alpha=0.0)  # no heatmap: the grey image as RGB
    np.testing.assert_array_equal(plain, np.repeat(np.uint8(255 * gray), 3, axis=2))
    hot = overlay_cam(np.zeros((4, 4, 3), np.float32), np.ones((4, 4)), alpha=1.0)
    assert (hot[..., 0] == 255).all() and (hot[..., 2] == 0).all()  # jet at 1 is red
    assert overlay_cam(gray, np.ones((8, 12)), colormap="viridis").shape == (32, 48, 3)  # cam resized
    with pytest.raises(ConfigError, match="Did you mean 'jet'"):
        overlay_cam(gray, cam, colormap="jte")
    with pytest.raises(ValueError, match=r"values must be in \[0, 1\]"):
        overlay_cam(gray * 255, cam)
    path = save_overlay(tmp_path / "sub" / "cam.png", gray, cam)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), out)


def test_small_maps_fall_back_to_an_earlier_stage(caplog, monkeypatch) -> None:
    """resnet18's layer4 is 2 x 2 at 64 px (a flat, useless map): layer3 (4 x 4) is used, and said so."""
    import medclass.explain.cam as cam_module
    from medclass.explain._targets import layer_for_input

    monkeypatch.setattr(cam_module, "_NOTED", set())  # each substitution is logged once per process

    model = _binary_gray("resnet18")
    x = torch.randn(2, 1, 64, 64)
    layer, note = layer_for_input(model, x)
    assert layer is model.layer3 and "layer4.1 gives 2 x 2 maps for 64 x 64 inputs" in note and "using layer3" in note
    assert layer_for_input(model, torch.randn(1, 1, 128, 128)) == (model.layer4[1], "")  # 4 x 4: kept
    assert layer_for_input(model, x, "layer4.1") == (model.layer4[1], "")  # a named layer is always used
    with caplog.at_level("WARNING", logger="medclass.explain.cam"):
        auto = compute_cam(model, x, target_class=1)
    np.testing.assert_array_equal(auto, compute_cam(model, x, target_class=1, target_layer=model.layer3))
    assert any("using layer3" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_inception_at_80_px_explains_with_mixed_6e() -> None:
    """inception_v3's Mixed_7c is 1 x 1 at 80 px (recipe 4's size): every map would be constant."""
    from medclass.explain._targets import layer_for_input

    model = _binary_gray("inception_v3")
    x = torch.randn(2, 1, 80, 80)
    layer, note = layer_for_input(model, x)
    assert layer is model.Mixed_6e and "Mixed_7c gives 1 x 1 maps" in note
    flat = compute_cam(model, x, target_class=[0, 1], target_layer="Mixed_7c")
    assert all(np.ptp(c) == 0 for c in flat)  # what users got before: no spatial information at all
    cams = compute_cam(model, x, target_class=[0, 1])
    assert any(np.ptp(c) > 0.5 for c in cams)


def test_overlay_of_a_resized_view_with_rounding_above_one() -> None:
    """Issue 12 crash: the report's views (resize, 3 -> 1 luma) came out at 1 + 1e-7 and overlay_cam refused them."""
    from medclass.data.transforms import prepare_image

    rng = np.random.default_rng(0)
    image = rng.random((97, 131, 3)).astype(np.float32)
    image[image > 0.5] = 1.0  # bright regions: the antialiased resize rounds a few pixels above 1
    view = prepare_image(image, 64, 3).permute(1, 2, 0).numpy()
    assert overlay_cam(view, np.ones((8, 8), np.float32)).shape == (64, 64, 3)
    # a reader's own rounding (accepted by the transform's check) is accepted by the overlay too
    assert overlay_cam(np.full((4, 4, 1), 1 + 1e-6, np.float32), np.zeros((4, 4))).shape == (4, 4, 3)
