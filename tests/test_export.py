"""Export: ONNX Runtime and TorchScript give PyTorch's probabilities on real chest X-rays and real CT volumes
(3-D and 2.5-D models); metadata inside. Skipped cleanly without the optional `onnx` extra."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx", reason="ONNX export needs the optional extra: pip install medclass[onnx]")
ort = pytest.importorskip("onnxruntime", reason="ONNX checks need the optional extra: pip install medclass[onnx]")

from medclass.errors import CheckpointError, ConfigError
from medclass.inference import to_probs
from medclass.serving.export import export_model, onnx_metadata, torchscript_metadata
from medclass.serving.predictor import Predictor
from _helpers import make_checkpoint, xray_paths as sample_xrays
from _volumes import make_volume_checkpoint

CASES = [("simple_cnn", 1, 64), ("resnet18", 3, 64)]


@pytest.fixture(scope="module")
def xray_paths():
    return sample_xrays()


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def exported(request, tmp_path_factory):
    name, in_chans, size = request.param
    folder = tmp_path_factory.mktemp(name)
    ckpt = make_checkpoint(folder / "best.safetensors", model_name=name, in_chans=in_chans, image_size=size, threshold=0.3)
    return ckpt, export_model(ckpt, "onnx")


def test_onnx_matches_pytorch_on_real_xrays(exported, xray_paths):
    ckpt, onnx_path = exported
    torch_pred = Predictor.from_checkpoint(ckpt)
    onnx_pred = Predictor.from_checkpoint(ckpt, onnx=onnx_path)
    assert (torch_pred.backend, onnx_pred.backend) == ("torch", "onnx")
    expected = torch_pred.predict_proba(xray_paths)
    got = onnx_pred.predict_proba(xray_paths)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    assert onnx_pred.predict(xray_paths) == torch_pred.predict(xray_paths)


def test_onnx_batch_axis_is_dynamic_and_metadata_is_stored(exported, xray_paths):
    ckpt, onnx_path = exported
    pred = Predictor.from_checkpoint(ckpt)
    x = pred.preprocess([pred.load(p) for p in xray_paths])
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    for n in (1, 4):  # exported with a batch of 2
        logits = session.run(None, {"image": x[:n]})[0]
        np.testing.assert_allclose(to_probs(torch.from_numpy(logits)).numpy(), pred.probabilities(x[:n]), atol=1e-4)
    proto = onnx.load(str(onnx_path))
    stored = json.loads({p.key: p.value for p in proto.metadata_props}["medclass"])
    assert stored == onnx_metadata(onnx_path)
    assert stored["classes"] == ["NORMAL", "PNEUMONIA"] and stored["threshold"] == 0.3
    assert stored["preprocessing"] == pred.meta.preprocessing.to_dict()
    assert "config" not in stored
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_torchscript_matches_pytorch_and_carries_meta(xray_paths, tmp_path):
    ckpt = make_checkpoint(tmp_path / "m.safetensors")
    path = export_model(ckpt, "torchscript")
    assert path == tmp_path / "m.torchscript.pt"
    pred = Predictor.from_checkpoint(ckpt)
    x = torch.from_numpy(pred.preprocess([pred.load(p) for p in xray_paths]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated upstream, still supported
        scripted = torch.jit.load(str(path))
    with torch.no_grad():
        np.testing.assert_allclose(to_probs(scripted(x)).numpy(), pred.probabilities(x.numpy()), atol=1e-5)
    assert torchscript_metadata(path)["preprocessing"] == pred.meta.preprocessing.to_dict()


def test_onnx_of_another_checkpoint_is_refused(exported, tmp_path):
    _, onnx_path = exported
    other = make_checkpoint(tmp_path / "c3.safetensors", classes=("a", "b", "c"))
    with pytest.raises(CheckpointError, match="does not belong to this checkpoint.*classes"):
        Predictor.from_checkpoint(other, onnx=onnx_path)


def test_bad_format_and_foreign_onnx(tmp_path):
    ckpt = make_checkpoint(tmp_path / "m.safetensors")
    with pytest.raises(ConfigError, match="Did you mean 'onnx'"):
        export_model(ckpt, "onxx")
    bare = tmp_path / "bare.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(torch.nn.Linear(2, 1), (torch.zeros(1, 2),), str(bare), dynamo=False)
    with pytest.raises(CheckpointError, match="no medclass metadata"):
        onnx_metadata(bare)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not onnx at all")
    with pytest.raises(CheckpointError, match="not a readable ONNX model"):
        onnx_metadata(junk)


def test_cli_export(tmp_path):
    from typer.testing import CliRunner

    from medclass.cli import _register_all, app

    ckpt = make_checkpoint(tmp_path / "m.safetensors")
    _register_all()
    result = CliRunner().invoke(app, ["export", str(ckpt), "--format", "onnx", "--out", str(tmp_path / "x.onnx")])
    assert result.exit_code == 0, result.output
    assert onnx_metadata(tmp_path / "x.onnx")["model"]["name"] == "simple_cnn"
    result = CliRunner().invoke(app, ["export", str(ckpt), "--format", "tflite"])
    assert result.exit_code == 2 and "Unknown export format 'tflite'" in result.output


@pytest.mark.parametrize("model_name, input, in_chans, size, shape", [
    ("resnet10_3d", "3d", 1, 16, ["batch", 1, 16, 16, 16]), ("simple_cnn", "2.5d", 3, 32, ["batch", 3, 32, 32])])
def test_volume_models_export_with_their_preparation_and_match_pytorch_on_real_ct(shared_data, tmp_path, model_name,
                                                                                  input, in_chans, size, shape):
    """`medclass export` as typed, on a 3-D network and on a 2-D network fed 2.5-D slices: the ONNX input is the
    prepared volume, the metadata carries the volume preparation, and the logits on real LIDC CT nodules
    (prepared by the checkpoint's own spacing, window and size) match PyTorch's."""
    from typer.testing import CliRunner

    from medclass.cli import _register_all, app

    files = sorted((shared_data / "lidc_nodules" / "images").glob("*.nii.gz"))[:5]
    ckpt = make_volume_checkpoint(tmp_path / "v.safetensors", model_name, input, in_chans, size, on=tuple(files))
    _register_all()
    result = CliRunner().invoke(app, ["export", str(ckpt), "--format", "onnx"])
    assert result.exit_code == 0, result.output
    onnx_path = tmp_path / "v.onnx"
    stored = onnx_metadata(onnx_path)
    assert stored["preprocessing"]["volume"]["input"] == input and stored["preprocessing"]["volume"]["window"] == "lung"
    dims = onnx.load(str(onnx_path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == shape
    torch_pred, onnx_pred = Predictor.from_checkpoint(ckpt), Predictor.from_checkpoint(ckpt, onnx=onnx_path)
    x = torch_pred.preprocess([torch_pred.load(f) for f in files])
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": x})[0]
    with torch.no_grad():
        expected = torch_pred.model(torch.from_numpy(x)).numpy()
    assert np.ptp(expected, axis=0).max() > 1.0  # the five nodules give different logits: the comparison means something
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(onnx_pred.predict_proba(files), torch_pred.predict_proba(files), atol=1e-5)
