"""Forward passes behind the predictor: eager PyTorch or ONNX Runtime, same input, same logits.

A backend is a callable ``(batch float32 NCHW, already normalised) -> logits (N, num_outputs)``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..artifacts import CheckpointMeta
from ..errors import CheckpointError

_MUST_MATCH = ("classes", "preprocessing", "model")


class TorchBackend:
    """Eager PyTorch inference with the checkpoint's model (eval mode, no gradients)."""

    name = "torch"

    def __init__(self, model: torch.nn.Module, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.model(torch.from_numpy(batch).to(self.device)).float().cpu().numpy()


class OnnxBackend:
    """ONNX Runtime inference with a model written by :func:`~medclass.serving.export.export_model`.

    The file's stored metadata must agree with the checkpoint (classes, model, preprocessing), so an
    ONNX file from another run is refused instead of silently mislabelling images.
    """

    name = "onnx"

    def __init__(self, path: str | Path, meta: CheckpointMeta, device: str = "cpu") -> None:
        import onnxruntime as ort

        from .export import INPUT_NAME, onnx_metadata

        stored, expected = onnx_metadata(path), meta.exported()
        for key in _MUST_MATCH:
            if stored.get(key) != expected.get(key):
                raise CheckpointError(
                    f"ONNX file {path} does not belong to this checkpoint: its {key} {stored.get(key)!r} differs from "
                    f"the checkpoint's {expected.get(key)!r}; export it again with `medclass export CKPT --format onnx`."
                )
        providers = ["CPUExecutionProvider"]
        if str(device).startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(path), providers=providers)
        self.input_name = INPUT_NAME

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]
