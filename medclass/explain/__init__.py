"""Explanations: class activation maps (Grad-CAM, Grad-CAM++, Eigen-CAM) and overlays.

>>> from medclass.explain import compute_cam, overlay_cam, save_overlay
"""
from .cam import COLORMAPS, METHODS, ClassTarget, compute_cam, find_target_layer, overlay_cam, save_overlay

__all__ = ["COLORMAPS", "METHODS", "ClassTarget", "compute_cam", "find_target_layer", "overlay_cam", "save_overlay"]
