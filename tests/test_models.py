"""The model registry, SimpleCNN, freeze helpers and the `medclass models` command."""
from __future__ import annotations

import huggingface_hub.constants
import pytest
import timm
import torch
import typer
from typer.testing import CliRunner

from medclass.errors import ConfigError
from medclass.models import (
    ModelInfo,
    SimpleCNN,
    count_parameters,
    create_model,
    freeze_backbone_bn,
    list_models,
    model_info,
    num_outputs,
    register_model,
    set_backbone_trainable,
    split_parameters,
)
from medclass.models import registry

REQUIRED = ["resnet18", "resnet34", "resnet50", "densenet121", "inception_v3", "efficientnet_b0",
            "efficientnet_lite0", "convnext_tiny", "vgg16_bn", "simple_cnn"]


def test_every_required_model_is_registered() -> None:
    assert set(REQUIRED) <= set(list_models())
    assert list_models("resnet*", spatial_dims=2) == ["resnet18", "resnet34", "resnet50"]
    assert list_models("resnet*", spatial_dims=3) == ["resnet10_3d", "resnet18_3d"]
    assert list_models("nothing*") == []


@pytest.mark.parametrize("name", list_models())
def test_model_info_is_consistent_with_timm(name: str) -> None:
    info = model_info(name)
    assert info.name == name
    assert len(info.mean) == len(info.std) == 3
    mean1, std1 = info.mean_std(1)
    assert mean1 == pytest.approx([sum(info.mean) / 3], abs=1e-4)
    assert std1 == pytest.approx([sum(info.std) / 3], abs=1e-4)
    assert info.mean_std(3) == (list(info.mean), list(info.std))
    if info.family == "timm":
        cfg = timm.get_pretrained_cfg(info.timm_name)
        assert info.mean == tuple(cfg.mean) and info.default_image_size == cfg.input_size[-1]
        assert info.has_pretrained and info.pretrained_source
    else:
        assert info.family in ("medclass", "monai") and not info.has_pretrained
        assert (info.family == "monai") == (info.spatial_dims == 3)


def test_specific_model_facts() -> None:
    lite = model_info("efficientnet_lite0")
    assert lite.timm_name == "tf_efficientnet_lite0"  # the weights package fits TF 'same' padding
    assert lite.mean == (0.5, 0.5, 0.5) and "installed package" in lite.pretrained_source
    assert model_info("inception_v3").min_input_size == 75
    assert model_info("inception_v3").default_image_size == 299
    assert model_info("resnet18").mean_std(1) == ([0.449], [0.226])
    assert model_info("simple_cnn").mean_std(1) == ([0.5], [0.25])
    with pytest.raises(ConfigError, match="in_chans must be 1"):
        model_info("resnet18").mean_std(4)


def test_unknown_name_suggests_near_matches() -> None:
    with pytest.raises(ConfigError, match=r"Unknown model 'resnet81'.*Did you mean 'resnet18'"):
        model_info("resnet81")
    with pytest.raises(ConfigError, match="efficientnet_lite0"):
        create_model("efficientnet-lite0", 2)


@pytest.mark.parametrize(("num_classes", "expected"), [(2, 1), (3, 3), (10, 10)])
def test_num_outputs(num_classes: int, expected: int) -> None:
    assert num_outputs(num_classes) == expected


def test_num_outputs_refuses_one_class() -> None:
    with pytest.raises(ConfigError, match="at least 2 classes"):
        num_outputs(1)


@pytest.mark.parametrize("name", ["simple_cnn", "resnet18"])
@pytest.mark.parametrize(("num_classes", "in_chans"), [(2, 1), (3, 3), (5, 1)])
def test_create_model_outputs(name: str, num_classes: int, in_chans: int) -> None:
    model = create_model(name, num_classes=num_classes, in_chans=in_chans).eval()
    out = model(torch.randn(2, in_chans, 64, 64))
    assert out.shape == (2, num_outputs(num_classes))
    assert model.medclass_name == name
    assert model.get_classifier().out_features == num_outputs(num_classes)


def test_create_model_head_options() -> None:
    model = create_model("resnet18", 3, dropout=0.3, pool="avgmax")
    assert model.drop_rate == 0.3 and model.global_pool.pool_type == "avgmax"
    cnn = create_model("simple_cnn", 3, in_chans=1, dropout=0.25, pool="max")
    assert cnn.global_pool.pool_type == "max" and cnn.head_drop.p == 0.25
    with pytest.raises(ConfigError, match="Did you mean 'avgmax'"):
        create_model("resnet18", 2, pool="avg_max")
    with pytest.raises(ConfigError, match="dropout"):
        create_model("resnet18", 2, dropout=1.0)


def test_pretrained_errors_are_clear(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="no pretrained weights"):
        create_model("simple_cnn", 2, pretrained=True)
    with pytest.raises(ConfigError, match="choose one"):
        create_model("resnet18", 2, pretrained=True, weights=tmp_path / "w.safetensors")
    # No network here: the hub download fails at once offline, with an empty cache.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ConfigError, match=r"could not download pretrained weights timm/resnet18.*--weights PATH"):
        create_model("resnet18", 2, pretrained=True)


def test_count_parameters_matches_the_built_model() -> None:
    for name in ("resnet18", "simple_cnn"):
        built = sum(p.numel() for p in create_model(name, 3, in_chans=1).parameters())
        assert count_parameters(name, num_classes=3, in_chans=1) == built


def test_simple_cnn_interface() -> None:
    model = SimpleCNN(num_classes=1, in_chans=1).eval()
    assert sum(p.numel() for p in model.parameters()) < 1.5e6
    x = torch.randn(2, 1, 37, 50)  # any size >= 32 works thanks to global pooling
    feats = model.forward_features(x)
    assert feats.shape == (2, model.num_features, 1, 1)
    assert model.forward_head(feats, pre_logits=True).shape == (2, model.head_hidden_size)
    torch.testing.assert_close(model.forward_head(feats), model(x))
    assert model.get_classifier() is model.fc
    model.reset_classifier(4)
    assert model(x).shape == (2, 4) and model.pretrained_cfg["num_classes"] == 4
    assert model.pretrained_cfg["mean"] == (0.5,) and model.pretrained_cfg["std"] == (0.25,)
    assert isinstance(model.get_submodule(model.pretrained_cfg["first_conv"]), torch.nn.Conv2d)


def test_split_parameters_separates_the_classifier() -> None:
    model = create_model("resnet18", 3)
    backbone, head = split_parameters(model)
    assert [id(p) for p in head] == [id(model.fc.weight), id(model.fc.bias)]
    assert len(backbone) + len(head) == len(list(model.parameters()))
    assert not {id(p) for p in backbone} & {id(p) for p in head}


def test_frozen_backbone_keeps_weights_and_bn_statistics() -> None:
    torch.manual_seed(0)
    model = create_model("resnet18", 2, in_chans=1).train()
    set_backbone_trainable(model, False)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["fc.weight", "fc.bias"]
    assert not model.bn1.training and not model.layer4[1].bn2.training and model.training
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(torch.randn(4, 1, 64, 64)).sum().backward()
    opt.step()
    after = model.state_dict()
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed == ["fc.bias", "fc.weight"]  # BN running stats did not move either

    set_backbone_trainable(model, True)
    assert all(p.requires_grad for p in model.parameters()) and model.bn1.training
    model.eval()
    assert freeze_backbone_bn(model, frozen=False) == 20 and not model.bn1.training  # follows the model's mode


def test_register_model_function_and_decorator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    info = ModelInfo("tiny_cnn", "medclass", "", (0.5,) * 3, (0.25,) * 3, 32, 64, "test net", False)

    @register_model("tiny_cnn", info=info)
    def tiny(n_out: int, in_chans: int, pretrained: bool, dropout: float, pool: str) -> torch.nn.Module:
        return SimpleCNN(n_out, in_chans, channels=(4,) * 5, double_conv=(False,) * 5, hidden=8, global_pool=pool)

    assert "tiny_cnn" in list_models() and model_info("tiny_cnn") is info
    assert create_model("tiny_cnn", 3, in_chans=1)(torch.randn(1, 1, 32, 32)).shape == (1, 3)
    with pytest.raises(ConfigError, match="already registered"):
        register_model("tiny_cnn", tiny, info=info)
    with pytest.raises(ValueError, match="must be equal"):
        register_model("other", tiny, info=info)


def test_models_command_prints_a_table() -> None:
    from medclass.cli import models as models_cli

    app = typer.Typer()
    app.callback()(lambda: None)  # a group, so that `models` is a subcommand as in the real app
    models_cli.register(app)
    result = CliRunner().invoke(app, ["models", "resnet1*"])
    assert result.exit_code == 0, result.output
    assert "resnet18" in result.output and "resnet34" not in result.output
    assert "11.2" in result.output and "timm hub" in result.output
    result = CliRunner().invoke(app, ["models", "simple*"])
    assert "simple_cnn" in result.output and "0.9" in result.output and "none" in result.output
    result = CliRunner().invoke(app, ["models", "xyz*"])
    assert result.exit_code == 2 and "No registered model matches" in result.output
