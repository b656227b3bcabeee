"""REST API: every bad input is a clear 4xx; schema fuzzing and a bounded load test on a real server."""
from __future__ import annotations

import base64
import io
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from medclass.data.catalog import sample_path
from medclass.data.io import read_image
from medclass.errors import CheckpointError
from medclass.serving._batcher import MicroBatcher
from medclass.serving.api import create_api
from medclass.serving.predictor import Predictor
from _helpers import load_bench_api, make_checkpoint, xray_paths


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("api") / "m.safetensors",
                           metrics={"test_auc": 0.91, "test_auc_ci": [0.88, 0.94], "epoch": 3})


@pytest.fixture(scope="module")
def client(ckpt):
    with TestClient(create_api(ckpt, max_upload_mb=1, max_pixels=1_000_000)) as c:
        yield c


@pytest.fixture(scope="module")
def xray() -> Path:
    return xray_paths()[2]


def post(client, name: str, data: bytes, content_type: str | None = "image/jpeg", **params):
    file = (name, data, content_type) if content_type else (name, data)
    return client.post("/predict", files={"file": file}, params=params)


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_predict_real_xray_matches_predictor(client, ckpt, xray):
    r = post(client, xray.name, xray.read_bytes())
    assert r.status_code == 200, r.text
    body = r.json()
    expected = Predictor.from_checkpoint(ckpt).predict_proba(xray)[0]
    np.testing.assert_allclose([body["probabilities"]["NORMAL"], body["probabilities"]["PNEUMONIA"]], expected, atol=1e-5)
    assert body["decision"] == ("PNEUMONIA" if expected[1] >= 0.4 else "NORMAL")
    assert body["threshold"] == 0.4 and body["cam"] is None and "Not a medical device" in body["disclaimer"]


def test_predict_dicom_and_frames(client, shared_data):
    ct = (shared_data / "dicom" / "CT_small.dcm").read_bytes()
    assert post(client, "ct.dcm", ct, "application/dicom").status_code == 200
    assert post(client, "no_extension", ct, "application/octet-stream").status_code == 200  # DICM magic
    multi = (shared_data / "dicom" / "emri_small.dcm").read_bytes()
    r = post(client, "multi.dcm", multi, "application/dicom")
    assert r.status_code == 422 and "has 10 frames" in r.json()["detail"]
    assert post(client, "multi.dcm", multi, "application/dicom", frame=3).status_code == 200
    r = post(client, "multi.dcm", multi, "application/dicom", frame=10)
    assert r.status_code == 422 and "frame 10 requested" in r.json()["detail"]


def test_cam_overlay_is_a_png_of_the_image_size(client, ckpt, xray):
    r = post(client, xray.name, xray.read_bytes(), cam="true")
    assert r.status_code == 200, r.text
    body = r.json()
    overlay = Image.open(io.BytesIO(base64.b64decode(body["cam"])))
    assert overlay.format == "PNG" and overlay.mode == "RGB"
    image = read_image(xray, size_hint=64)  # the upload as decoded for a 64 px model (JPEG at 1/2 scale)
    assert overlay.size == (image.shape[1], image.shape[0]) and image.shape[0] > 64  # not the model input size
    gray = image.mean(axis=2) * 255
    assert np.abs(np.asarray(overlay.convert("L"), np.float32) - gray).mean() > 5  # a heat map was drawn
    expected = Predictor.from_checkpoint(ckpt).predict_proba(xray)[0]
    np.testing.assert_allclose(list(body["probabilities"].values()), expected, atol=1e-5)


@pytest.mark.parametrize("name, data, content_type, status, message", [
    ("notes.txt", b"hello", "text/plain", 415, "Unsupported content type 'text/plain'"),
    ("x.json", b"{}", "application/json", 415, "Unsupported content type"),
    ("x.png", b"hello world, not an image", "image/png", 422, "not an image"),
    ("x.png", b"", "image/png", 422, "empty"),
    ("x.dcm", b"DICM" * 40, "application/dicom", 422, "Cannot read the upload"),
])
def test_bad_uploads_are_clear_4xx(client, name, data, content_type, status, message):
    r = post(client, name, data, content_type)
    assert r.status_code == status, r.text
    assert message in r.json()["detail"]


def test_upload_file_names_are_never_used_as_server_paths(client, ckpt, xray):
    """The multipart file name may name a server file, ../ or /etc/passwd: only the uploaded bytes are read."""
    blank = png_bytes(np.full((64, 64), 128, np.uint8))
    expected = client.post("/predict", files={"file": ("blank.png", blank, "image/png")}).json()["probabilities"]
    for name in (str(xray), f"../../../..{xray}", "/etc/passwd", "..\\..\\x.png", f"{xray.parent}/./../{xray.parent.name}/{xray.name}"):
        r = client.post("/predict", files={"file": (name, blank, "image/png")})
        assert r.status_code == 200 and r.json()["probabilities"] == expected, (name, r.text)
        r = client.post("/predict", files={"file": (name, b"", "image/jpeg")})
        assert r.status_code == 422 and "empty" in r.json()["detail"], (name, r.text)
    operations = [op for path in client.get("/openapi.json").json()["paths"].values() for op in path.values()]
    assert {p["name"] for op in operations for p in op.get("parameters", [])} == {"cam", "frame"}  # no path-like option


def test_truncated_and_corrupt_images(client, xray):
    data = xray.read_bytes()
    r = post(client, "t.jpeg", data[: len(data) // 3])
    assert r.status_code == 422 and "truncated" in r.json()["detail"]
    png = png_bytes(np.zeros((64, 64), np.uint8))
    r = post(client, "c.png", png[:40] + b"\x00" * 40 + png[80:], "image/png")
    assert r.status_code == 422


def test_dicom_without_pixel_data(client, shared_data):
    data = (shared_data / "dicom" / "emri_small_jpeg_2k_lossless_too_short.dcm").read_bytes()
    r = post(client, "x.dcm", data, "application/dicom")
    assert r.status_code == 422 and "no pixel data" in r.json()["detail"]


def test_too_large_upload_is_413(client):
    r = post(client, "big.png", b"\x89PNG" + b"0" * (2 * 2**20), "image/png")
    assert r.status_code == 413 and "1 MiB" in r.json()["detail"]

    def chunks():  # no Content-Length: the limit is enforced while streaming
        yield b"--xx\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n"
        for _ in range(40):
            yield b"0" * 65536
    r = client.post("/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=xx"})
    assert r.status_code == 413


def test_too_many_pixels_and_decompression_bomb(client, monkeypatch):
    r = post(client, "wide.png", png_bytes(np.zeros((1000, 1001), np.uint8)), "image/png")  # 1,001,000 > 1,000,000
    assert r.status_code == 413 and "pixels" in r.json()["detail"]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # PIL's own bomb guard: > 2 x MAX raises
    r = post(client, "bomb.png", png_bytes(np.zeros((30, 30), np.uint8)), "image/png")
    assert r.status_code == 413 and "decompression bomb" in r.json()["detail"]


def test_missing_file_field_and_bad_parameters(client, xray):
    """The answer names the missing upload field and the bad parameter in plain words; GET is 405, not 404."""
    for r in (client.post("/predict"), client.post("/predict", data={"other": "1"}),
              client.post("/predict", files={"image": ("x.png", b"x", "image/png")})):
        assert r.status_code == 422 and r.json()["detail"].startswith("Missing the upload field 'file'"), r.text
    r = post(client, xray.name, xray.read_bytes(), frame=-5)
    assert r.status_code == 422 and "parameter 'frame'" in r.json()["detail"], r.text
    r = client.get("/predict")
    assert r.status_code == 405 and r.headers["allow"] == "POST" and "form field 'file'" in r.json()["detail"]


def test_errors_are_plain_words_and_docs_work_offline(client):
    """No `first bytes b'...'` in an answer; /docs loads Swagger UI from this server, not from a CDN."""
    r = post(client, "x.png", b"hello world, not an image", "image/png")
    assert "b'" not in r.json()["detail"] and "PNG, JPEG" in r.json()["detail"]
    page = client.get("/docs")
    assert page.status_code == 200 and "http" not in "".join(re.findall(r'(?:src|href)="([^"]*)"', page.text))
    for asset in re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', page.text):
        assert client.get(asset).status_code == 200 and len(client.get(asset).content) > 10_000, asset


def test_model_card_health_and_openapi(client):
    card = client.get("/model").json()
    assert card["classes"] == ["NORMAL", "PNEUMONIA"] and card["threshold"] == 0.4
    assert card["medical_device"] is False and "Not a medical device" in card["disclaimer"]
    assert card["metrics"]["test_auc_ci"] == [0.88, 0.94] and card["preprocessing"]["image_size"] == 64
    assert card["best_epoch"] == 4 and "epoch" not in card["metrics"]  # saved at index 3: `train` says epoch 4
    assert card["data"]["name"] == "chest_xray_sample" and card["data"]["patient_rule"] == "file names, rule 'chest_xray'"
    assert client.get("/health").json() == {"status": "ok", "model": "simple_cnn", "classes": ["NORMAL", "PNEUMONIA"],
                                            "backend": "torch"}
    schema = client.get("/openapi.json").json()
    assert {"/predict", "/model", "/health"} <= set(schema["paths"])
    assert {"413", "415", "422"} <= set(schema["paths"]["/predict"]["post"]["responses"])


def test_model_card_names_the_patient_rule_actually_used():
    """Issue 12: `/model` said patient_rule 'chest_xray' (the old default) although the ids came from a column."""
    from medclass.artifacts import build_meta
    from medclass.serving._card import model_card

    def card_rule(data: dict) -> str:
        meta = build_meta(classes=["a", "b"], model_name="simple_cnn", in_chans=1, image_size=32, mean=[0.5],
                          std=[0.25], config={"data": data})
        return model_card(meta)["data"]["patient_rule"]

    assert card_rule({"path": "x/labels.csv", "patient_column": "patient_id", "patient_regex": "chest_xray"}) \
        == "column 'patient_id'"
    assert card_rule({"path": "x", "preset": "kermany_chest_xray"}) \
        == "file names, rule 'chest_xray' (preset kermany_chest_xray)"
    assert card_rule({"path": "x"}).startswith("DICOM PatientID, else the file-name rule of a recognised public data set")
    assert card_rule({"path": "x", "split_by": "image"}).startswith("none: split by image (data.split_by=image)")


@pytest.mark.parametrize("suffix", [".pth", ".ckpt"])
def test_api_refuses_pickled_checkpoints(tmp_path, suffix):
    path = tmp_path / f"m{suffix}"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="pickled"):
        create_api(path)


def test_micro_batcher_batches_concurrent_calls_and_keeps_rows():
    calls = []

    def double(x: np.ndarray) -> np.ndarray:
        calls.append(len(x))
        time.sleep(0.01)
        return x * 2

    batcher = MicroBatcher(double, max_batch=4, max_wait_s=0.02)
    with ThreadPoolExecutor(8) as pool:
        out = list(pool.map(lambda i: batcher.submit(np.full(3, float(i))), range(16)))
    batcher.close()
    assert [o.tolist() for o in out] == [[2.0 * i] * 3 for i in range(16)]
    assert sum(calls) == 16 and max(calls) <= 4 and len(calls) < 16

    failing = MicroBatcher(lambda x: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        failing.submit(np.ones(1))
    failing.close()


# -- a real server -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(ckpt):
    """create_api under uvicorn in a subprocess on 127.0.0.1 and a free port."""
    bench = load_bench_api()
    port = bench.free_port()
    process = bench.start_api_server(ckpt, port)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=30)


@pytest.mark.slow
def test_schemathesis_finds_no_server_errors(server):
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_url(f"{server}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} == {"/predict", "/model", "/health"}
    statuses: set[int] = set()
    for op in operations:
        # valid requests; for /predict (the only operation with inputs) also requests that break the schema
        modes = list(schemathesis.GenerationMode) if op.path == "/predict" else [schemathesis.GenerationMode.POSITIVE]
        for mode in modes:
            @settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            @given(case=op.as_strategy(generation_mode=mode))
            def check(case):
                response = case.call(base_url=server, timeout=30)
                statuses.add(response.status_code)
                assert response.status_code < 500, f"{case.method} {case.path}: {response.status_code} {response.text[:300]}"

            check()
    assert 200 in statuses and statuses & {413, 415, 422}  # both kinds of answer were exercised


@pytest.mark.slow
def test_load_200_requests_8_concurrent_without_errors(server, capsys):
    bench = load_bench_api()
    result = bench.run_load(f"{server}/predict", bench.xray_payloads(8, root=sample_path()), n_requests=200, concurrency=8)
    with capsys.disabled():
        print(f"\nAPI load: {result['requests']} requests, {result['concurrency']} concurrent: "
              f"{result['rps']:.1f} req/s, p50 {result['p50_ms']:.0f} ms, p95 {result['p95_ms']:.0f} ms")
    assert result["errors"] == 0, result["statuses"]
    assert result["statuses"] == {200: 200}
