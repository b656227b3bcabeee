"""Allowed values of every choice field of the run config, declared once.

:mod:`medclass.config` uses these as its fields' types; the code that acts on a field reads its
values with :func:`choices` (e.g. ``OPTIMIZERS = choices(Optimizer)``); ``medclass config`` prints
them. They live in this small module, below the model registry and the metrics, so that those
layers can read them without importing the config above them.
"""
from __future__ import annotations

from typing import Any, Literal

Source = Literal["auto", "folders", "csv", "npz", "dicom"]
DuplicatePolicy = Literal["fail", "drop", "merge", "warn"]
SplitBy = Literal["patient", "image"]  # image: each image without a patient id is its own patient (said in every report)
Pool = Literal["avg", "max", "avgmax"]
InChans = Literal[1, 3]
Optimizer = Literal["adamw", "sgd"]
Scheduler = Literal["none", "plateau", "cosine", "onecycle"]
Monitor = Literal["val_loss", "val_auc", "val_acc"]
Sampler = Literal["shuffle", "weighted"]
Augment = Literal["none", "light", "xray", "fundus"]
AugmentOn = Literal["auto", "cpu", "device"]
Precision = Literal["auto", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true",
                    "32", "16", "bf16", "64"]  # the last four: Lightning's short names
Accelerator = Literal["auto", "cpu", "gpu", "cuda", "mps"]
CamMethod = Literal["gradcam", "gradcam++", "eigencam"]
Task = Literal["auto", "single_label", "multi_label"]  # auto: multi_label when data.labels_from/label_columns is set or an .npz has (n, K>1) labels
VolumeInput = Literal["auto", "3d", "2.5d"]  # how a prepared CT/MRI volume feeds the network (volume.input)
Uncertain = Literal["ignore", "ones", "zeros"]  # multi-label: uncertain (-1) and blank labels masked out, or read as 1 / 0
ShortcutCheck = Literal["occlusion", "cam"]  # medclass evaluate --shortcuts: occlusion tests, where Grad-CAM looks


def choices(alias: Any) -> tuple:
    """The allowed values of a choice type declared here.

    >>> choices(Optimizer)
    ('adamw', 'sgd')
    """
    return alias.__args__
