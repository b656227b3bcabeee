"""Volume uploads (NIfTI, zip of one DICOM series) through the REST API and the web app: a real CT gives the
Predictor's probabilities, and every hostile upload (tests/_hostile_volumes.py) is a clear 4xx that names the
problem, with no server error, nothing written outside a private temporary folder, and that folder removed."""
from __future__ import annotations

import base64
import io
import json
import logging
import re
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from medclass.serving._volume_upload import VolumeLimits, check_zip, extract_series
from medclass.serving._upload import UploadError
from medclass.serving.api import create_api
from medclass.serving.predictor import Predictor

from _helpers import make_checkpoint, xray_paths
from _hostile_volumes import LIMIT_MB, good_series_zip, hostile_uploads, zip_bytes
from _volumes import lidc_volume, make_volume_checkpoint


@pytest.fixture(scope="module")
def nodules(shared_data: Path) -> list[Path]:
    return [lidc_volume(shared_data, i)[0] for i in range(6)]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, nodules) -> Path:
    return make_volume_checkpoint(tmp_path_factory.mktemp("vol") / "v.safetensors", on=tuple(nodules))


@pytest.fixture(scope="module")
def predictor(ckpt) -> Predictor:
    return Predictor.from_checkpoint(ckpt)


@pytest.fixture(scope="module")
def client(predictor):
    with TestClient(create_api(predictor, max_volume_mb=LIMIT_MB)) as c:  # server errors raise here, not a 500
        yield c


@pytest.fixture
def private_tmp(tmp_path, monkeypatch) -> Path:
    """The system temporary folder, watched: every upload's private folder must be gone after its request."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def post(client, name: str, data: bytes, content_type: str = "application/octet-stream", **params):
    return client.post("/predict", files={"file": (name, data, content_type)}, params=params)


def test_nifti_and_zipped_series_of_one_real_ct_give_the_predictors_probabilities(client, predictor, shared_data,
                                                                                 tmp_path, private_tmp):
    """A real LIDC CT as .nii.gz and the same CT as a zip of a DICOM series (with a DICOMDIR, a README and a macOS
    fork beside it): both answer what `medclass predict` answers on the NIfTI file."""
    nifti = lidc_volume(shared_data, 3)[0]
    expected = predictor.predict_proba([nifti])[0]
    assert 0.02 < expected[1] < 0.98  # not saturated: the comparison means something
    for name, data, kind in [(nifti.name, nifti.read_bytes(), "application/gzip"),
                             ("ct.zip", good_series_zip(shared_data, tmp_path), "application/zip"),
                             ("upload", nifti.read_bytes(), "application/octet-stream")]:  # no name: sniffed
        r = post(client, name, data, kind)
        assert r.status_code == 200, (name, r.text)
        body = r.json()
        np.testing.assert_allclose([body["probabilities"]["benign"], body["probabilities"]["malignant"]], expected,
                                   atol=1e-5)
        assert body["decision"] == predictor.decide(expected[None])[0] and body["model"] == "resnet10_3d"
    assert list(private_tmp.iterdir()) == []


def test_hostile_volume_uploads_are_one_line_4xx_and_nothing_is_left(client, shared_data, tmp_path, private_tmp,
                                                                     caplog):
    caplog.set_level(logging.INFO)
    battery = hostile_uploads(shared_data, tmp_path / "fixtures")
    for case, name, data, status, phrase in battery:
        r = post(client, name, data)
        assert r.status_code == status, (case, r.status_code, r.text)
        detail = r.json()["detail"]
        assert phrase in detail and "\n" not in detail and str(private_tmp) not in detail, (case, detail)
        assert list(private_tmp.iterdir()) == [], (case, list(private_tmp.rglob("*")))  # removed after the request
    assert not (tmp_path / "fixtures" / "evil.dcm").exists() and not (tmp_path.parent / "x.dcm").exists()
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert len(battery) == 20


def test_a_second_series_of_a_zip_is_picked_by_frame(client, shared_data, tmp_path, predictor):
    """The reader's message for a zip of two series says to pick one by its index as frame: the API does."""
    from _hostile_volumes import series_files
    from _volumes import write_series

    _, a, spacing_a = lidc_volume(shared_data, 3)
    _, b, spacing_b = lidc_volume(shared_data, 0)
    data = zip_bytes({**series_files(write_series(a, spacing_a, tmp_path / "a"), "a/"),
                      **series_files(write_series(b, spacing_b, tmp_path / "b"), "b/")})
    answers = [post(client, "two.zip", data, frame=k).json()["probabilities"]["malignant"] for k in (0, 1)]
    expected = sorted(predictor.predict_proba([lidc_volume(shared_data, i)[0] for i in (3, 0)])[:, 1])
    assert sorted(answers) == pytest.approx(expected, abs=1e-5)
    r = post(client, "two.zip", data, frame=2)
    assert r.status_code == 422 and "series 2 requested but the folder holds 2 series" in r.json()["detail"]


def test_models_refuse_the_other_kind_of_upload_and_a_volume_gets_its_3d_cam(client, shared_data, tmp_path, predictor):
    xray = xray_paths()[0]
    r = post(client, xray.name, xray.read_bytes(), "image/jpeg")
    assert r.status_code == 415 and "upload a NIfTI file (.nii, .nii.gz) or a .zip" in r.json()["detail"]
    nifti = lidc_volume(shared_data, 3)[0]
    r = post(client, nifti.name, nifti.read_bytes(), cam="true")  # orthogonal slices through the 3-D CAM's peak
    assert r.status_code == 200, r.text
    views = np.asarray(Image.open(io.BytesIO(base64.b64decode(r.json()["cam"]))))
    assert views.shape == predictor.explain_volume(nifti).views.shape and views.shape[1] > 2 * views.shape[0]
    with TestClient(create_api(make_checkpoint(tmp_path / "xray.safetensors"))) as images:
        for name in (nifti.name, "series.zip"):
            r = post(images, name, nifti.read_bytes() if name.endswith("gz") else zip_bytes({"a.dcm": b"x"}))
            assert r.status_code == 415 and "This model classifies 2-D images" in r.json()["detail"], r.text
    r = post(client, "notes.txt", b"hello", "text/plain")
    assert r.status_code == 415 and "a zip of one DICOM series" in r.json()["detail"]


def test_zip_checks_come_before_extraction_and_names_stay_flat(tmp_path):
    """check_zip reads only the directory; extraction writes flat, server-chosen names and never follows a link."""
    limits = VolumeLimits.from_mb(1)
    bomb = zipfile.ZipFile(io.BytesIO(zip_bytes({"a.dcm": bytes(2 << 20)})))
    with pytest.raises(UploadError, match="expands to 2.0 MiB, more than the limit of 1 MiB"):
        check_zip(bomb.infolist(), VolumeLimits(1 << 20, max_ratio=10**9))
    dicm = b"\x00" * 128 + b"DICM" + b"\x00" * 16
    out = extract_series(zip_bytes({"x/IM1": dicm, "y/IM1": dicm, "z/IM1.dcm": dicm, "w/a b?.dcm": dicm,
                                    "notes.txt": b"n"}), tmp_path / "s", limits)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["00001_IM1.dcm", "00002.dcm", "00003.dcm", "IM1.dcm"], names  # notes.txt left out
    assert all(p.is_file() and not p.is_symlink() and p.parent == out for p in out.iterdir())
    assert oct(out.stat().st_mode & 0o777) == "0o700"


def test_web_app_takes_a_nifti_and_refuses_a_zip_slip_in_plain_words(predictor, shared_data, tmp_path, caplog):
    """Through the page's own upload route and event (Gradio's HTTP API, in process): a real CT shows the decision
    and the three mid-slices; a zip with '../' is an error message on the page, with no traceback logged."""
    from medclass.serving.webapp import create_app, private_upload_folder

    caplog.set_level(logging.INFO)
    nifti = lidc_volume(shared_data, 3)[0]
    slip = zip_bytes({"../../escape.dcm": b"\x00" * 128 + b"DICM"})
    with private_upload_folder(), TestClient(create_app(predictor, max_volume_mb=LIMIT_MB)) as web:
        page = web.get("/").text
        assert ".nii.gz" in page and "one DICOM series" in page
        done = _analyse(web, nifti.name, nifti.read_bytes())
        assert done[0] == "complete", done
        assert re.search(r"Decision:</strong> (benign|malignant): P\(malignant\)", done[1][1]), done[1][1]
        preview = done[1][2]
        assert preview and preview.get("path"), preview  # the orthogonal mid-slices, shown beside the decision
        event, answer = _analyse(web, "slip.zip", slip)
        assert event == "error" and "points outside the zip's folder" in json.dumps(answer), answer
    assert not (tmp_path.parent / "escape.dcm").exists()
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]


def _analyse(web: TestClient, name: str, data: bytes) -> tuple[str, object]:
    """Upload bytes as the page does and run its analysis event: (SSE event, its data)."""
    path = web.post("/gradio_api/upload", files={"files": (name, data, "application/octet-stream")}).json()[0]
    file = {"path": path, "orig_name": name, "meta": {"_type": "gradio.FileData"}}
    event_id = web.post("/gradio_api/call/analyse", json={"data": [file, 1]}).json()["event_id"]
    text = web.get(f"/gradio_api/call/analyse/{event_id}").text
    event = re.search(r"^event: (\w+)$", text, re.M).group(1)
    return event, json.loads(re.search(r"^data: (.*)$", text, re.M).group(1))


@pytest.mark.slow
def test_browser_upload_of_a_nifti_and_of_a_zip_slip(ckpt, shared_data, tmp_path):
    """`medclass serve` on a volume model, in Chromium: the page says which files it takes; a real CT as .nii.gz
    shows the decision and the three mid-slices, a zip with '../' an error in plain words, no traceback logged."""
    import os
    import subprocess
    import sys

    from playwright.sync_api import sync_playwright

    from _helpers import load_bench_api
    from test_webapp import ARTIFACTS, _browser, _upload_in_page

    bench = load_bench_api()
    port, log = bench.free_port(), tmp_path / "server.log"
    slip = tmp_path / "slip.zip"
    slip.write_bytes(zip_bytes({"../../escape.dcm": b"\x00" * 128 + b"DICM"}))
    nifti = lidc_volume(shared_data, 3)[0]
    with log.open("w") as out:
        server = subprocess.Popen([sys.executable, "-c", "from medclass.cli import main; main()", "serve", str(ckpt),
                                   "--port", str(port)], stdout=subprocess.DEVNULL, stderr=out,
                                  env={k: v for k, v in os.environ.items() if k != "GRADIO_TEMP_DIR"})
    try:
        base = f"http://127.0.0.1:{port}"
        bench.wait_ready(f"{base}/health", timeout=120, process=server)
        ARTIFACTS.mkdir(exist_ok=True)
        with sync_playwright() as pw:
            browser = _browser(pw)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.goto(base + "/", wait_until="networkidle")
                intro = page.locator("#intro").inner_text()
                frame_box = page.locator("#frame").is_visible()
                _upload_in_page(page, nifti)
                page.wait_for_selector("#preview img", timeout=90_000)
                decision = page.locator("#decision").inner_text()
                preview = page.locator("#preview img").evaluate("e => [e.naturalWidth, e.naturalHeight]")
                page.screenshot(path=str(ARTIFACTS / "webapp_volume.png"), full_page=True)
                page.goto(base + "/", wait_until="networkidle")
                _upload_in_page(page, slip)
                page.wait_for_selector("text=points outside the zip's folder", timeout=60_000)
                error_text = page.inner_text("body")
            finally:
                browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert "NIfTI file (.nii, .nii.gz)" in intro and "one DICOM series" in intro and not frame_box
    assert re.match(r"Decision: (benign|malignant): P\(malignant\) = ", decision), decision
    assert preview[0] > 2.5 * preview[1]  # three slices side by side
    assert "../../escape.dcm" in error_text and not (tmp_path.parent / "escape.dcm").exists()
    assert "Traceback" not in log.read_text(), log.read_text()[-4000:]
