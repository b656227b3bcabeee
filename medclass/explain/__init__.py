"""Explanations: class activation maps (Grad-CAM, Grad-CAM++, Eigen-CAM) and overlays; for CT/MRI volumes
3-D maps, slice montages and orthogonal views (:mod:`.volume`).

>>> from medclass.explain import compute_cam, overlay_cam, save_overlay
>>> from medclass.explain import orthogonal_views, slice_montage, volume_cams
"""
from .cam import COLORMAPS, METHODS, ClassTarget, cam_layer, compute_cam, find_target_layer, overlay_cam, save_overlay
from .volume import orthogonal_views, slice_montage, volume_cams

__all__ = ["COLORMAPS", "METHODS", "ClassTarget", "cam_layer", "compute_cam", "find_target_layer", "orthogonal_views",
           "overlay_cam", "save_overlay", "slice_montage", "volume_cams"]
