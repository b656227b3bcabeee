"""Explain single images with a checkpoint: prediction plus a CAM overlay PNG per image (``medclass explain``).

Each image is read with :func:`~medclass.data.io.read_image` and preprocessed exactly as the
checkpoint says (size, channels, mean/std, DICOM window); the prediction uses the checkpoint's
temperature and decision threshold; the CAM explains the predicted class unless a class is named.

Example:
    >>> rows = explain_images("workspace/default/resnet18-1", ["person1_virus_6.jpeg"], "cams")  # doctest: +SKIP
    >>> rows[0]["predicted"], rows[0]["overlay"]                                               # doctest: +SKIP
    ('PNEUMONIA', 'cams/person1_virus_6_gradcam.png')
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from ..errors import ImageReadError, check_choice

log = logging.getLogger(__name__)


def _free_name(out: Path, stem: str, method: str, used: set[str]) -> Path:
    name, n = f"{stem}_{method}.png", 1
    while name in used:
        n += 1
        name = f"{stem}-{n}_{method}.png"
    used.add(name)
    return out / name


def explain_images(checkpoint: str | Path, paths: Sequence[str | Path], out: str | Path, method: str | None = None,
                   target_class: str | None = None, layer: str | None = None, device: str | None = None) -> list[dict]:
    """Predict and explain each image; write ``<out>/<stem>_<method>.png`` overlays; return one dict per image.

    Args:
        checkpoint: a checkpoint file or a run folder.
        paths: image, DICOM or npz files.
        out: folder for the overlay PNGs (created).
        method: ``gradcam``, ``gradcam++`` or ``eigencam`` (default: the run's ``eval.cam_method``).
        target_class: class name to explain (default: each image's predicted class; multi-label: a finding,
            default the most probable one; its Grad-CAM target is that finding's logit).
        layer: dotted target layer name (default: the run's ``model.target_layer`` or found automatically).
        device: ``cuda``/``cpu`` (default: CUDA when available).

    Returns:
        ``{"path", "predicted", "probability", "probs": {class: p}, "explained_class", "overlay"}`` per image,
        or ``{"path", "error"}`` for an image that cannot be read. For a volume model (NIfTI files, DICOM
        series folders) ``overlay`` shows the axial, coronal and sagittal slices through the CAM's peak and
        ``montage`` (``<stem>_<method>_montage.png``) evenly spaced axial slices with the CAM.

    Example:
        >>> explain_images("run/best.safetensors", ["a.png"], "out", method="gradcam++")  # doctest: +SKIP
        [{'path': 'a.png', 'predicted': 'NORMAL', 'probability': 0.93, ...}]
    """
    from ..serving.predictor import Predictor

    predictor = Predictor.from_checkpoint(checkpoint, device=device or ("cuda" if torch.cuda.is_available() else "cpu"))
    classes = predictor.classes
    method = method or predictor.meta.run_config.eval.cam_method
    target = None
    if target_class is not None:
        target = classes.index(check_choice("target class", target_class, classes))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results, used = [], set()
    for path in paths:
        montage = None
        try:
            if predictor.volume is not None:  # CT/MRI: orthogonal views through the CAM peak, and a slice montage
                found = predictor.explain_volume(path, target_class=target, method=method, target_layer=layer)
                overlay, probs, montage = found.views, found.probs, found.montage
            else:
                overlay, probs = predictor.explain(path, target_class=target, method=method, target_layer=layer)
        except ImageReadError as e:
            log.warning("Cannot explain %s: %s", e.path, e.reason)
            results.append({"path": str(path), "error": e.reason})
            continue
        decision = predictor.decide(probs[None])[0]
        # multi-label: the decision lists the present findings; the CAM explains one finding (default the most probable)
        predicted = int(probs.argmax()) if predictor.multi_label else classes.index(decision)
        explained = target if target is not None else predicted
        name = Path(path).name
        stem = name[:-len(".nii.gz")] if name.lower().endswith(".nii.gz") else Path(path).stem  # v1.nii.gz -> v1
        file = _free_name(out, stem, method.replace("+", "p"), used)
        Image.fromarray(overlay).save(file)
        row = {"path": str(path), "predicted": decision, "probability": float(probs[explained]),
               "probs": {c: float(p) for c, p in zip(classes, probs)}, "explained_class": classes[explained],
               "overlay": str(file)}
        if montage is not None:
            row["montage"] = str(file.with_name(f"{file.stem}_montage.png"))
            Image.fromarray(montage).save(row["montage"])
        results.append(row)
    return results


__all__ = ["explain_images"]
