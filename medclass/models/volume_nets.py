"""3-D networks for CT/MRI volumes: MONAI's 3-D ResNet and DenseNet behind the timm-like interface medclass uses.

Each wraps a MONAI backbone (``spatial_dims=3``) that ends in global average pooling, then dropout and
one linear layer (``get_classifier()``), with ``forward_features`` / ``forward_head(pre_logits=True)``
giving the pooled features (the out-of-distribution statistics read them). They are registered in
:mod:`.registry` as ``resnet10_3d``, ``resnet18_3d`` and ``densenet121_3d`` (from scratch: no
pretrained 3-D weights are shipped) and take ``(batch, channels, X, Y, Z)`` inputs.

>>> import torch
>>> model = build_3d("resnet10", num_outputs=1, in_chans=1)
>>> model(torch.zeros(2, 1, 16, 16, 16)).shape
torch.Size([2, 1])
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

VOLUME_MEAN, VOLUME_STD = 0.5, 0.25  # inputs are windowed to [0, 1] (medclass.data.volumes.prepare)


class Volume3DClassifier(nn.Module):
    """A pooled-feature 3-D backbone, dropout and a linear classifier."""

    def __init__(self, backbone: nn.Module, num_features: int, num_outputs: int, in_chans: int, drop_rate: float = 0.0,
                 stages: list[tuple[str, int]] | None = None) -> None:
        super().__init__()
        self.backbone, self.num_features, self.num_classes = backbone, num_features, num_outputs
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(num_features, num_outputs)
        # timm's feature_info: the stages whose map statistics the out-of-distribution check reads
        self.feature_info: list[dict[str, Any]] = [{"num_chs": c, "reduction": 2 ** (i + 2), "module": f"backbone.{name}"}
                                                   for i, (name, c) in enumerate(stages or [])]
        self.pretrained_cfg: dict[str, Any] = {"input_size": (in_chans, 32, 32, 32), "mean": (VOLUME_MEAN,) * in_chans,
                                               "std": (VOLUME_STD,) * in_chans}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features ``(batch, num_features)``."""
        return self.backbone(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Dropout and the classifier (``pre_logits``: the features before it)."""
        x = self.head_drop(x)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        """The final linear layer (the head of the freeze schedule)."""
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new linear layer with ``num_classes`` outputs."""
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes)


def build_3d(arch: str, num_outputs: int, in_chans: int, drop_rate: float = 0.0) -> Volume3DClassifier:
    """``arch``: resnet10 | resnet18 | densenet121 (MONAI, ``spatial_dims=3``)."""
    from monai.networks import nets

    if arch.startswith("resnet"):
        backbone = getattr(nets, arch)(spatial_dims=3, n_input_channels=in_chans, feed_forward=False)
        features, stages = 512, [(f"layer{i}", c) for i, c in enumerate((64, 128, 256, 512), start=1)]
    elif arch == "densenet121":
        backbone = nets.DenseNet121(spatial_dims=3, in_channels=in_chans, out_channels=1)
        features = backbone.class_layers.out.in_features
        backbone.class_layers.out = nn.Identity()
        stages = [(f"features.denseblock{i}", c) for i, c in enumerate((256, 512, 1024, 1024), start=1)]
    else:
        raise ValueError(f"unknown 3-D architecture {arch!r}; expected resnet10, resnet18 or densenet121")
    return Volume3DClassifier(backbone, features, num_outputs, in_chans, drop_rate, stages)


__all__ = ["Volume3DClassifier", "build_3d", "VOLUME_MEAN", "VOLUME_STD"]
