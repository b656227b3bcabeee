"""Architectures: one registry over timm plus our SimpleCNN, local weights, freeze helpers.

>>> from medclass.models import create_model, list_models, model_info
>>> model = create_model("simple_cnn", num_classes=2, in_chans=1)
"""
from .registry import (
    ModelInfo,
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
from .simple_cnn import SimpleCNN
from .weights import load_local_weights, packaged_weights, read_state_dict

__all__ = [
    "ModelInfo", "SimpleCNN", "count_parameters", "create_model", "freeze_backbone_bn", "list_models",
    "load_local_weights", "model_info", "num_outputs", "packaged_weights", "read_state_dict", "register_model",
    "set_backbone_trainable", "split_parameters",
]
