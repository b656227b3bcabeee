"""Grad-CAM targets and target layers for every registered model (used by ``cam.py``)."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError, did_you_mean

_PROBE_SIZE = 128  # dummy input side for the automatic search (>= inception_v3's 75 px, leaves maps > 1 x 1)
_PROBE_SIZE_3D = 32  # the same for 3-D networks (densenet121_3d needs >= 32 voxels)


class ClassTarget:
    """The score of one class, for one image's output vector.

    For a one-logit (binary) model class 1 is the logit itself and class 0 its negation, so that
    "evidence for NORMAL" is evidence against the positive class. pytorch-grad-cam's
    ``ClassifierOutputTarget`` would index ``output[1]`` of a one-element output and fail.

    >>> ClassTarget(0)(torch.tensor([2.5]))
    tensor(-2.5000)
    """

    def __init__(self, class_index: int) -> None:
        self.class_index = class_index

    def __call__(self, output: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if output.shape[-1] == 1:
            logit = output[..., 0]
            return logit if self.class_index == 1 else -logit
        return output[..., self.class_index]

    def __repr__(self) -> str:
        return f"ClassTarget({self.class_index})"


def find_target_layer(model: nn.Module, name: str | None = None) -> nn.Module:
    """The layer whose activations a CAM is computed on.

    ``name`` (a dotted module name such as ``"layer4.1"``) wins; otherwise the registry's choice for
    ``model.medclass_name`` (resnets: last block of ``layer4``; densenet: ``features.norm5``;
    inception_v3: ``Mixed_7c``; efficientnets: ``bn2``; convnext: the last stage; vgg16_bn: the
    last conv block's ReLU; simple_cnn: its last block; 3-D ResNets: ``backbone.layer4``;
    densenet121_3d: ``backbone.features.norm5``); otherwise the last module whose output is a spatial
    map (4-D, or 5-D for a 3-D network) larger than one position on a dummy input.

    >>> from medclass.models import create_model
    >>> find_target_layer(create_model("resnet18", 2)) is create_model("resnet18", 2).layer4[1]   # doctest: +SKIP
    """
    if not name:
        from ..models import model_info

        registered = getattr(model, "medclass_name", "")
        name = model_info(registered).cam_layer if registered else ""
    if name:
        try:
            return model.get_submodule(name)
        except AttributeError:
            names = [n for n, _ in model.named_modules() if n]
            raise ConfigError(
                f"Target layer {name!r} is not a module of {type(model).__name__}." + did_you_mean(name, names)
                + f" Top-level modules: {', '.join(n for n, _ in model.named_children())}."
                + f" Candidates (last spatial outputs): {', '.join(_spatial_modules(model)[-5:])}."
            ) from None
    return model.get_submodule(_spatial_modules(model)[-1])


MIN_CAM_SIDE = 3  # an automatically chosen CAM layer must give maps of at least 3 x 3 (x 3) on the real input


def _spatial_modules(model: nn.Module, x: torch.Tensor | None = None) -> list[str]:
    """Names of modules producing a spatial map (``(N, C, H, W)``, or ``(N, C, X, Y, Z)`` for a 3-D network)
    with more than one position, in order of completion."""
    return [n for n, shape in _map_sizes(model, x) if math.prod(shape) > 1]


def _probe(model: nn.Module) -> torch.Tensor:
    """One blank input for the automatic search: ``_PROBE_SIZE`` px for a 2-D network, ``_PROBE_SIZE_3D`` voxels a side
    for a 3-D one (its first convolution says which)."""
    conv = next(m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d)))
    side, dims = (_PROBE_SIZE_3D, 3) if isinstance(conv, nn.Conv3d) else (_PROBE_SIZE, 2)
    return torch.zeros(1, conv.in_channels, *(side,) * dims, device=next(model.parameters()).device)


def _map_sizes(model: nn.Module, x: torch.Tensor | None = None) -> list[tuple[str, tuple[int, ...]]]:
    """``(name, spatial shape)`` of every module whose output has the input's rank (4-D for images, 5-D for
    volumes), in order of completion, for input ``x`` (default: one blank probe, :func:`_probe`)."""
    if x is None:
        x = _probe(model)
    rank = x.dim()
    sizes: list[tuple[str, tuple[int, ...]]] = []
    handles = [m.register_forward_hook(lambda mod, inp, out, n=n: sizes.append((n, tuple(out.shape[2:])))
                                       if isinstance(out, torch.Tensor) and out.dim() == rank else None)
               for n, m in model.named_modules() if n]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return sizes


def layer_for_input(model: nn.Module, x: torch.Tensor, name: str | None = None) -> tuple[nn.Module, str]:
    """The CAM layer for inputs like ``x``, and a note when the default was replaced (else ``""``).

    An explicitly named layer is always used. The default layer (the registry's, or the last spatial
    one) is kept when its map on ``x`` is at least ``MIN_CAM_SIDE`` on each side; a smaller map (e.g.
    1 x 1 in inception_v3's ``Mixed_7c`` at 80 px, 2 x 2 in resnet18's ``layer4`` at 64 px) carries no
    spatial detail, so the last stage-level module (a child of the model or of a plain container, such
    as ``layer3``, ``features.denseblock3`` or ``Mixed_6e``, never a branch inside a block) whose map
    is large enough is used instead.

    >>> layer, note = layer_for_input(create_model("resnet18", 2), torch.zeros(1, 3, 64, 64))  # doctest: +SKIP
    >>> note                                                                                  # doctest: +SKIP
    'layer4 gives 2 x 2 maps for 64 x 64 inputs (no spatial detail); using layer3 (4 x 4) ...'
    """
    if name:
        return find_target_layer(model, name), ""
    default = find_target_layer(model)
    modules = dict(model.named_modules())
    default_name = next((n for n, m in modules.items() if m is default), "")
    sizes = _map_sizes(model, x)
    found = [shape for n, shape in sizes if n == default_name]
    if not found or min(found[-1]) >= MIN_CAM_SIDE:
        return default, ""
    # the model itself and the default layer's ancestors (e.g. the ``backbone`` of a 3-D network) hold stages too
    ancestors = {default_name.rsplit(".", i)[0] for i in range(1, default_name.count(".") + 1)}

    def is_stage(n: str) -> bool:  # a child of the model, of a plain container or of an ancestor; not a branch in a block
        parent_name = n.rpartition(".")[0]
        parent = modules[parent_name]
        return (parent is model or parent_name in ancestors
                or isinstance(parent, (nn.Sequential, nn.ModuleList, nn.ModuleDict)))

    candidates = [(n, shape) for n, shape in sizes if min(shape) >= MIN_CAM_SIDE and is_stage(n)]
    if not candidates:
        return default, ""
    n, shape = candidates[-1]
    note = (f"Grad-CAM: the default layer {default_name} gives {_side(found[-1])} maps for "
            f"{_side(tuple(x.shape[2:]))} inputs (no spatial detail); using {n} ({_side(shape)}) instead. "
            "Set model.target_layer (or --layer) to choose another layer, or train at a larger image size.")
    return model.get_submodule(n), note


def _side(shape: tuple[int, ...]) -> str:
    return " x ".join(str(s) for s in shape)
