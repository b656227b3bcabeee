"""Export a checkpoint to ONNX or TorchScript, with its preprocessing, classes and threshold inside.

* **ONNX**: input ``image`` ``(batch, in_chans, size, size)`` float32 already normalised by the
  checkpoint's mean/std, output ``logits`` ``(batch, num_outputs)``; the batch axis is dynamic.
  A volume model takes ``(batch, 1, X, Y, Z)`` (3-D) or ``(batch, in_chans, X, Y)`` (2.5-D: the slices
  around the centre as channels), the prepared volume of ``preprocessing.volume`` (spacing, size,
  orientation, HU window, normalisation) that :func:`input_shape` reads.
  The metadata (classes, model, preprocessing, threshold, temperature) is stored as JSON under the
  key ``"medclass"`` of the model's ``metadata_props``; read it back with :func:`onnx_metadata`.
* **TorchScript**: a traced module; the same JSON is stored in ``_extra_files["medclass.json"]``.
  (``torch.jit`` is deprecated upstream in favour of ``torch.export`` but still works in torch 2.x.)

Probabilities are ``sigmoid(logits / T)`` (binary, the probability of ``classes[1]``) or
``softmax(logits / T)`` — exactly what :class:`~medclass.serving.predictor.Predictor` does with
either backend.

Example:
    >>> onnx_path = export_model("workspace/default/resnet18/best.safetensors", "onnx")  # doctest: +SKIP
    >>> onnx_metadata(onnx_path)["classes"]  # doctest: +SKIP
    ['NORMAL', 'PNEUMONIA']
"""
from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..artifacts import CheckpointMeta, RunDir, load_checkpoint
from ..errors import CheckpointError, check_choice
from ..utils import atomic_write_bytes

FORMATS = ("onnx", "torchscript")
META_KEY = "medclass"
TORCHSCRIPT_META_FILE = "medclass.json"
INPUT_NAME, OUTPUT_NAME = "image", "logits"
_SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}


def export_model(checkpoint: str | Path, format: str = "onnx", out: str | Path | None = None, opset: int = 17) -> Path:
    """Write ``checkpoint`` as an ONNX or TorchScript file and return its path.

    Args:
        checkpoint: a ``.safetensors`` checkpoint or a run folder (its best checkpoint).
        format: ``'onnx'`` or ``'torchscript'``.
        out: output file; default next to the checkpoint (``best.onnx``, ``best.torchscript.pt``).
        opset: ONNX opset version.

    >>> export_model("runs/best.safetensors", "onnx", out="model.onnx")  # doctest: +SKIP
    PosixPath('model.onnx')
    """
    check_choice("export format", format, FORMATS)
    source = Path(checkpoint)
    source = RunDir(source).best_checkpoint() if source.is_dir() else source
    model, meta = load_checkpoint(source)
    out = Path(out) if out is not None else source.with_suffix(_SUFFIX[format])
    if out.suffix == ".safetensors":
        raise CheckpointError(f"Export target {out} ends in .safetensors; name it .onnx or .pt (--out).")
    example = torch.zeros(2, *input_shape(meta))
    data = _onnx_bytes(model, example, meta, opset) if format == "onnx" else _torchscript_bytes(model, example, meta)
    atomic_write_bytes(out, data)
    return out


def input_shape(meta: CheckpointMeta) -> tuple[int, ...]:
    """The shape of one model input (no batch axis): ``(C, H, W)`` for images, ``(1, X, Y, Z)`` for a 3-D volume
    model, ``(in_chans, X, Y)`` for a 2.5-D one (the shape the checkpoint's own volume transform gives).

    >>> input_shape(load_checkpoint("best.safetensors")[1])  # doctest: +SKIP
    (1, 16, 16, 16)
    """
    pre = meta.preprocessing
    if not pre.volume:
        return (pre.in_chans, pre.image_size, pre.image_size)
    from ..data.volumes.prepare import VolumePrep, VolumeTransform

    prep = VolumePrep.from_dict(dict(pre.volume))
    return tuple(VolumeTransform(prep)(np.zeros((1, *prep.size), np.float32)).shape)


def _onnx_bytes(model: torch.nn.Module, example: torch.Tensor, meta: CheckpointMeta, opset: int) -> bytes:
    import onnx

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # the dynamo exporter needs onnxscript (not installed); the TorchScript-based one, deprecated
        # upstream but still shipped, is exact for these CNNs (tests/test_export.py)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*legacy TorchScript-based ONNX export.*")
        torch.onnx.export(model, (example,), buffer, dynamo=False, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}, opset_version=opset)
    proto = onnx.load_from_string(buffer.getvalue())
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta.exported())
    proto.doc_string = f"medclass {meta.model.name} classifier of {', '.join(meta.classes)}"
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def _torchscript_bytes(model: torch.nn.Module, example: torch.Tensor, meta: CheckpointMeta) -> bytes:
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit.*deprecated")  # still supported in 2.x
        traced = torch.jit.trace(model, example, check_trace=False)
        torch.jit.save(traced, buffer, _extra_files={TORCHSCRIPT_META_FILE: json.dumps(meta.exported())})
    return buffer.getvalue()


def onnx_metadata(path: str | Path) -> dict[str, Any]:
    """The medclass metadata stored in an exported ONNX file (raises if it has none).

    >>> onnx_metadata("model.onnx")["preprocessing"]["image_size"]  # doctest: +SKIP
    224
    """
    import onnx

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX file {path} does not exist.")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf raises DecodeError and others for a non-ONNX file
        raise CheckpointError(f"{path} is not a readable ONNX model ({type(e).__name__}: {e}).") from None
    props = {p.key: p.value for p in proto.metadata_props}
    if META_KEY not in props:
        raise CheckpointError(f"{path} has no medclass metadata; export it with `medclass export CKPT --format onnx`.")
    return json.loads(props[META_KEY])


def torchscript_metadata(path: str | Path) -> dict[str, Any]:
    """The medclass metadata stored in an exported TorchScript file.

    >>> torchscript_metadata("model.torchscript.pt")["classes"]  # doctest: +SKIP
    ['NORMAL', 'PNEUMONIA']
    """
    files = {TORCHSCRIPT_META_FILE: ""}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit.*deprecated")
        torch.jit.load(str(path), map_location="cpu", _extra_files=files)
    if not files[TORCHSCRIPT_META_FILE]:
        raise CheckpointError(f"{path} has no {TORCHSCRIPT_META_FILE}; export it with `medclass export CKPT --format torchscript`.")
    return json.loads(files[TORCHSCRIPT_META_FILE])
