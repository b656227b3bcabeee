"""Grad-CAM targets and target layers for every registered model (used by ``cam.py``)."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError, did_you_mean

_PROBE_SIZE = 128  # dummy input side for the automatic search (>= inception_v3's 75 px, leaves maps > 1 x 1)


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
    last conv block's ReLU; simple_cnn: its last block); otherwise the last module whose output is
    a 4-D map larger than 1 x 1 on a dummy input.

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
                + f" Candidates (last 4-D outputs): {', '.join(_spatial_modules(model)[-5:])}."
            ) from None
    return model.get_submodule(_spatial_modules(model)[-1])


def _spatial_modules(model: nn.Module) -> list[str]:
    """Names of modules producing an ``(N, C, H, W)`` output with ``H * W > 1``, in order of completion."""
    in_chans = next(m for m in model.modules() if isinstance(m, nn.Conv2d)).in_channels
    names: list[str] = []
    handles = [m.register_forward_hook(lambda mod, inp, out, n=n: names.append(n)
                                       if isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[-2] * out.shape[-1] > 1
                                       else None)
               for n, m in model.named_modules() if n]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, in_chans, _PROBE_SIZE, _PROBE_SIZE, device=next(model.parameters()).device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return names
