"""SimpleCNN: the classic from-scratch chest X-ray CNN, small enough to train on a CPU.

Five blocks of ``conv3x3 -> BN -> ReLU [-> conv3x3 -> BN -> ReLU] -> maxpool`` (channels
32-64-128-128-256), global pooling (so any input of at least 32 px works), dropout, a dense hidden
layer and the output layer. It exposes the part of timm's model interface that medclass uses
(``num_features``, ``forward_features``, ``forward_head``, ``get_classifier``, ``feature_info``,
``reset_classifier``, ``pretrained_cfg``), so the registry, the freeze schedule, the weight loader
and Grad-CAM treat it like any timm model.

>>> import torch
>>> model = SimpleCNN(num_classes=1, in_chans=1)
>>> model(torch.zeros(2, 1, 64, 64)).shape
torch.Size([2, 1])
"""
from __future__ import annotations

from typing import Any

import torch
from timm.layers import SelectAdaptivePool2d
from torch import nn

#: Input statistics for grayscale X-rays scaled to [0, 1] (roughly centred, unit-ish spread).
SIMPLE_CNN_MEAN = 0.5
SIMPLE_CNN_STD = 0.25


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SimpleCNN(nn.Module):
    """A 5-block conv-pool CNN with a dense head; about 0.9 M parameters with the defaults.

    Args:
        num_classes: number of outputs (1 for a binary task, see ``medclass.models.num_outputs``).
        in_chans: input channels (1 grayscale, 3 RGB).
        channels: output channels of the five blocks.
        double_conv: per block, whether a second conv3x3 -> BN -> ReLU follows the first.
        hidden: width of the dense hidden layer of the head.
        drop_rate: dropout before the hidden layer and before the output layer.
        global_pool: ``avg``, ``max`` or ``avgmax`` (timm's ``SelectAdaptivePool2d``).
    """

    def __init__(
        self,
        num_classes: int = 1,
        in_chans: int = 1,
        channels: tuple[int, ...] = (32, 64, 128, 128, 256),
        double_conv: tuple[bool, ...] = (True, True, True, True, False),
        hidden: int = 128,
        drop_rate: float = 0.0,
        global_pool: str = "avg",
    ) -> None:
        super().__init__()
        if len(channels) != len(double_conv):
            raise ValueError(f"channels ({len(channels)} blocks) and double_conv ({len(double_conv)}) must have the same length.")
        blocks = []
        cin = in_chans
        for cout, double in zip(channels, double_conv):
            layers = _conv_bn_relu(cin, cout) + (_conv_bn_relu(cout, cout) if double else [])
            blocks.append(nn.Sequential(*layers, nn.MaxPool2d(2)))
            cin = cout
        self.features = nn.Sequential(*blocks)
        # timm's feature_info: the output of every block (read by the out-of-distribution statistics)
        self.feature_info = [{"num_chs": c, "reduction": 2 ** (i + 1), "module": f"features.{i}"}
                             for i, c in enumerate(channels)]
        self.hidden = hidden
        self.drop_rate = drop_rate
        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=True)
        self.num_features = channels[-1] * self.global_pool.feat_mult()
        self.pre_logits = nn.Sequential(nn.Dropout(drop_rate), nn.Linear(self.num_features, hidden), nn.ReLU(inplace=True))
        self.head_hidden_size = hidden
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(hidden, num_classes)
        self.num_classes = num_classes
        self.pretrained_cfg: dict[str, Any] = {
            "input_size": (in_chans, 224, 224),
            "min_input_size": (in_chans, 32, 32),
            "mean": (SIMPLE_CNN_MEAN,) * in_chans,
            "std": (SIMPLE_CNN_STD,) * in_chans,
            "first_conv": "features.0.0",
            "classifier": "fc",
            "num_classes": num_classes,
        }

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last conv block's feature map ``(N, 256, H/32, W/32)``."""
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool, dropout, hidden dense layer (and the output layer unless ``pre_logits``)."""
        x = self.pre_logits(self.global_pool(x))
        return x if pre_logits else self.fc(self.head_drop(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        """The output layer (timm convention: the last linear layer)."""
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the output layer with a fresh one of ``num_classes`` outputs."""
        self.num_classes = num_classes
        self.fc = nn.Linear(self.hidden, num_classes)
        self.pretrained_cfg["num_classes"] = num_classes
