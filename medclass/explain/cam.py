"""Class activation maps (Grad-CAM, Grad-CAM++, Eigen-CAM) through ``pytorch-grad-cam``, and overlays.

Arrays first, pictures second: :func:`compute_cam` returns ``(N, H, W)`` maps in [0, 1];
:func:`overlay_cam` is a pure function that draws one of them on its image.

Volumes: pytorch-grad-cam (>= 1.5) handles 3-D convolutions itself (5-D activations, channel weights
averaged over all three axes, maps upsampled to the volume by ``scipy.ndimage.zoom``), so a
``(N, C, X, Y, Z)`` batch into a 3-D network gives ``(N, X, Y, Z)`` maps through the same call;
:func:`volume_cams` also covers 2.5-D inputs and :mod:`.montage` draws the maps.

>>> import torch
>>> from medclass.models import create_model
>>> model = create_model("simple_cnn", num_classes=2, in_chans=1)
>>> cams = compute_cam(model, torch.randn(2, 1, 64, 64), target_class=1)
>>> cams.shape
(2, 64, 64)
>>> overlay_cam(np.zeros((64, 64, 1), np.float32), cams[0]).shape
(64, 64, 3)
"""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus
from torch import nn

from ..config import CamMethod, choices
from ..errors import ConfigError, check_choice
from ..utils import PIXEL_TOLERANCE
from ._targets import ClassTarget, find_target_layer, layer_for_input

log = logging.getLogger(__name__)
_NOTED: set[str] = set()  # each layer substitution is logged once per process

#: the class of each ``eval.cam_method`` choice (``medclass.config.CamMethod``)
METHODS: dict[CamMethod, type] = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "eigencam": EigenCAM}
COLORMAPS = sorted(name[len("COLORMAP_"):].lower() for name in dir(cv2) if name.startswith("COLORMAP_"))

__all__ = ["METHODS", "COLORMAPS", "ClassTarget", "cam_layer", "compute_cam", "find_target_layer", "overlay_cam",
           "save_overlay"]


def compute_cam(model: nn.Module, images: torch.Tensor, target_class: int | list[int] | None = None,
                method: str = "gradcam", target_layer: str | nn.Module | None = None) -> np.ndarray:
    """Class activation maps of ``images`` (normalised model input, ``(N, C, H, W)``, or ``(N, C, X, Y, Z)`` volumes
    into a 3-D network).

    Args:
        model: a registry model (one logit for binary tasks, N logits otherwise).
        images: the normalised input batch, on the model's device.
        target_class: class index explained, one per image or one for all; ``None`` explains each
            image's predicted class. For a one-logit model class 1 is the logit and class 0 its negation.
        method: ``gradcam`` | ``gradcam++`` | ``eigencam`` (Eigen-CAM ignores the class).
        target_layer: a dotted module name (``"layer4.1"``), a module, or ``None`` for the model's
            default layer (:func:`find_target_layer`), replaced by an earlier stage when its maps would
            be smaller than 3 x 3 (x 3) for these images (:func:`~medclass.explain._targets.layer_for_input`).

    Returns:
        ``float32`` array ``(N, H, W)`` (volumes: ``(N, X, Y, Z)``), each map scaled to [0, 1]. The model's hooks are removed and
        its train/eval mode restored afterwards.

    >>> cams = compute_cam(model, images, target_class=[0, 1], method="gradcam++")   # doctest: +SKIP
    """
    cam_class = METHODS[check_choice("explain method", method, choices(CamMethod))]
    if images.dim() not in (4, 5):
        raise ValueError(f"images must be a batch (N, C, H, W) or of volumes (N, C, X, Y, Z), got shape "
                         f"{tuple(images.shape)}.")
    layer = cam_layer(model, images, target_layer)
    was_training = model.training
    model.eval()
    try:
        targets = _targets(model, images, target_class)
        # An input that requires grad keeps gradients flowing to the layer when the backbone is frozen.
        with cam_class(model=model, target_layers=[layer]) as cam:
            maps = cam(input_tensor=images.detach().requires_grad_(True), targets=targets)
    finally:
        model.train(was_training)
    empty = int((maps.reshape(len(maps), -1).max(axis=1) <= 0).sum())
    if empty:
        log.warning("%s: %d of %d maps are empty (no positive class evidence at the target layer; common for an "
                    "untrained model or a class the model does not predict for the image): their overlays show no "
                    "heat.", method, empty, len(maps))
    # the 3-D upsampling (cubic spline zoom) over- and undershoots a little; maps stay in [0, 1]
    return np.clip(maps, 0.0, 1.0).astype(np.float32)


def cam_layer(model: nn.Module, images: torch.Tensor, target_layer: str | nn.Module | None = None) -> nn.Module:
    """The layer :func:`compute_cam` explains for inputs shaped like ``images``: ``target_layer`` itself when it is a
    module, else the named or default layer, replaced by an earlier stage when its maps would be too small (each
    substitution logged once). Resolving it probes the model with one forward pass: a caller explaining many
    inputs of one shape may resolve it once and pass the module on.
    """
    if isinstance(target_layer, nn.Module):
        return target_layer
    layer, note = layer_for_input(model, images, target_layer)
    if note and note not in _NOTED:
        _NOTED.add(note)
        log.warning(note)
    return layer


def overlay_cam(image: np.ndarray, cam: np.ndarray, alpha: float = 0.4, colormap: str = "jet") -> np.ndarray:
    """Draw ``cam`` (``H x W`` in [0, 1]) over ``image`` (``H x W x C`` float in [0, 1], C = 1 or 3).

    Returns a ``uint8`` RGB array ``H x W x 3``; ``alpha`` is the heatmap's weight. A cam of another
    size is resized to the image.

    >>> overlay_cam(np.ones((8, 8, 3), np.float32) * 0.5, np.zeros((8, 8))).dtype
    dtype('uint8')
    """
    from pytorch_grad_cam.utils.image import show_cam_on_image

    colormap = check_choice("colormap", colormap, COLORMAPS)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3):
        raise ValueError(f"image must be H x W x C with C in {{1, 3}}, got shape {image.shape}.")
    lo, hi = float(image.min()), float(image.max())
    if not (lo >= -PIXEL_TOLERANCE and hi <= 1.0 + PIXEL_TOLERANCE):  # float rounding passes, as in check_image
        raise ValueError(f"image values must be in [0, 1] (the pixel convention), got [{lo:.3g}, {hi:.3g}].")
    image = np.clip(image, 0.0, 1.0)
    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
    cam = np.clip(np.asarray(cam, dtype=np.float32), 0.0, 1.0)
    if cam.shape != rgb.shape[:2]:
        cam = cv2.resize(cam, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)
    return show_cam_on_image(rgb, cam, use_rgb=True, colormap=getattr(cv2, f"COLORMAP_{colormap.upper()}"),
                             image_weight=1.0 - alpha)


def save_overlay(path: str | Path, image: np.ndarray, cam: np.ndarray, alpha: float = 0.4,
                 colormap: str = "jet") -> Path:
    """Write :func:`overlay_cam` of ``image`` and ``cam`` to ``path`` (PNG/JPEG by suffix); returns the path.

    >>> save_overlay("cam.png", image, cams[0])   # doctest: +SKIP
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(overlay_cam(image, cam, alpha=alpha, colormap=colormap)).save(path)
    return path


def _targets(model: nn.Module, images: torch.Tensor, target_class: int | list[int] | None) -> list[ClassTarget]:
    if target_class is None:
        with torch.no_grad():
            logits = model(images)
        n_out = logits.shape[1]
        chosen = (logits[:, 0] >= 0).long() if n_out == 1 else logits.argmax(dim=1)
        return [ClassTarget(int(c)) for c in chosen]
    classes = [target_class] * len(images) if isinstance(target_class, int) else list(target_class)
    if len(classes) != len(images):
        raise ValueError(f"target_class has {len(classes)} entries for {len(images)} images; give one per image or one int.")
    n_classes = _n_classes(model)
    bad = sorted({int(c) for c in classes if not 0 <= int(c) < n_classes})
    if bad:
        raise ConfigError(f"target_class {bad} out of range: the model has {n_classes} classes (0..{n_classes - 1}).")
    return [ClassTarget(int(c)) for c in classes]


def _n_classes(model: nn.Module) -> int:
    n_out = model.get_classifier().out_features
    return 2 if n_out == 1 else n_out
