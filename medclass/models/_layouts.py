"""Key mappings from foreign state-dict layouts to timm's names (used by ``weights.py``)."""
from __future__ import annotations

import re

import torch
from torch import nn

from ..errors import CheckpointError

# lukemelas/EfficientNet-PyTorch (``efficientnet_pytorch``) -> timm EfficientNet.
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# Block without expansion (timm DepthwiseSeparableConv) and with expansion (timm InvertedResidual).
_DEPTHWISE_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_se_reduce": "se.conv_reduce",
                        "_se_expand": "se.conv_expand", "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED_RESIDUAL = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                      "_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand", "_project_conv": "conv_pwl",
                      "_bn2": "bn3"}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)$")


def detect_layout(state: dict[str, torch.Tensor]) -> str:
    """``'efficientnet_pytorch'`` for lukemelas EfficientNet keys, else ``'timm'`` (names used as they are)."""
    return "efficientnet_pytorch" if "_conv_stem.weight" in state else "timm"


def efficientnet_pytorch_to_timm(state: dict[str, torch.Tensor], model: nn.Module, path: str) -> dict[str, torch.Tensor]:
    """Rename lukemelas ``_blocks.N._depthwise_conv...`` keys to timm's ``blocks.S.B.conv_dw...`` for ``model``.

    The flat block index ``N`` is matched to timm's ``(stage, block)`` by walking ``model.blocks``
    in order; a block is an inverted residual when the file has an ``_expand_conv`` for it.
    """
    stages = getattr(model, "blocks", None)
    if stages is None:
        raise CheckpointError(f"{path} holds EfficientNet weights (efficientnet_pytorch layout) but the model "
                              f"{type(model).__name__} is not an EfficientNet; choose an efficientnet model.")
    flat = [f"blocks.{s}.{b}" for s, stage in enumerate(stages) for b in range(len(stage))]
    found = {int(m[1]) for k in state if (m := _BLOCK_KEY.match(k))}
    if len(found) != len(flat):
        raise CheckpointError(f"{path} has {len(found)} EfficientNet blocks, the model {len(flat)}: "
                              "the file is for another EfficientNet size (b0, lite0, ...).")
    expanded = {int(m[1]) for k in state if (m := _BLOCK_KEY.match(k)) and m[2] == "_expand_conv"}
    out = {}
    for key, value in state.items():
        if m := _BLOCK_KEY.match(key):
            n, module, tensor = int(m[1]), m[2], m[3]
            table = _INVERTED_RESIDUAL if n in expanded else _DEPTHWISE_SEPARABLE
            new = f"{flat[n]}.{table[module]}.{tensor}" if module in table else key
        else:
            head, _, rest = key.partition(".")
            new = f"{_TOP[head]}.{rest}" if head in _TOP else key
        out[new] = value
    return out
