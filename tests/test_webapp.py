"""Web app: the Gradio UI and the API on one server, driven in a real browser like a person would."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import gradio as gr
import httpx
import pytest
from fastapi.testclient import TestClient

from medclass.serving.predictor import Predictor
from medclass.serving.webapp import create_app, create_webapp
from _helpers import load_bench_api, make_checkpoint, xray_paths

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("web") / "m.safetensors",
                           metrics={"test_auc": 0.91, "test_auc_ci": [0.88, 0.94], "val_auc": 0.95})


def test_create_webapp_and_app_routes(ckpt):
    predictor = Predictor.from_checkpoint(ckpt)
    assert isinstance(create_webapp(predictor), gr.Blocks)
    with TestClient(create_app(predictor)) as client:  # API routes beside the UI at /
        assert client.get("/health").json()["status"] == "ok"
        assert client.get("/model").json()["classes"] == ["NORMAL", "PNEUMONIA"]
        page = client.get("/")
        assert page.status_code == 200 and "gradio" in page.text.lower() and "PNEUMONIA" in page.text
    with TestClient(create_app(predictor, api=False)) as client:  # --no-api: the UI only
        assert client.get("/health").status_code == 404 and client.get("/model").status_code == 404
        assert client.get("/").status_code == 200


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
    if not Path(path).is_file():
        pytest.skip("Chromium not found (install the OS package 'chromium' to run the browser test)")
    return path


@pytest.fixture(scope="module")
def server(ckpt, tmp_path_factory):
    """`medclass serve` in a subprocess on 127.0.0.1 and a free port."""
    bench = load_bench_api()
    port = bench.free_port()
    log = (tmp_path_factory.mktemp("serve") / "server.log").open("w")
    process = subprocess.Popen([sys.executable, "-c", "from medclass.cli import main; main()", "serve", str(ckpt),
                                "--port", str(port)], stdout=subprocess.DEVNULL, stderr=log,
                               env={k: v for k, v in os.environ.items() if k != "GRADIO_TEMP_DIR"})
    try:
        bench.wait_ready(f"http://127.0.0.1:{port}/health", timeout=120, process=process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _upload(base: str, name: str, data: bytes) -> str:
    """Upload bytes the way the page does; the server answers the path it stored them at."""
    r = httpx.post(f"{base}/gradio_api/upload", files={"files": (name, data, "image/jpeg")}, timeout=30)
    r.raise_for_status()
    return r.json()[0]


def _analyse(base: str, path: str, endpoint: str = "analyse") -> tuple[str, object]:
    """Call the upload's event with a file reference naming ``path``: (SSE event, its data)."""
    file = {"path": path, "orig_name": Path(path).name, "meta": {"_type": "gradio.FileData"}}
    r = httpx.post(f"{base}/gradio_api/call/{endpoint}", json={"data": [file, 0]}, timeout=30)
    r.raise_for_status()
    text = httpx.get(f"{base}/gradio_api/call/{endpoint}/{r.json()['event_id']}", timeout=60).text
    event = re.search(r"^event: (\w+)$", text, re.M).group(1)
    data = re.search(r"^data: (.*)$", text, re.M).group(1)
    return event, json.loads(data)


def test_web_client_can_analyse_only_bytes_it_uploaded(server, tmp_path):
    """A request naming a server path (absolute, ../, a symlink, the app's own preview) is refused:
    no prediction, nothing copied into the server's folders, nothing served."""
    xrays = xray_paths()
    event, out = _analyse(server, _upload(server, "x.jpeg", xrays[0].read_bytes()))
    assert event == "complete" and out[1]["label"] in ("NORMAL", "PNEUMONIA"), out
    uploaded = Path(_upload(server, "y.jpeg", xrays[1].read_bytes()))
    folder = uploaded.parents[1]  # <private folder>/<hash>/y.jpeg, private to this server
    assert folder.name.startswith("medclass-serve-") and folder.stat().st_mode & 0o777 == 0o700, folder
    secret = tmp_path / "secret.jpeg"
    secret.write_bytes(xrays[2].read_bytes())
    link = uploaded.parent / "link.jpeg"
    link.symlink_to(secret)
    attempts = [str(secret), "/etc/passwd", f"{uploaded.parent}/../../../..{secret}", str(link), out[0]["path"],
                f"{uploaded}/../../{uploaded.parent.name}/../../..{secret}"]
    for path in attempts:
        for endpoint in ("analyse", "analyse_1"):
            event, answer = _analyse(server, path, endpoint)
            assert event == "error" and "PNEUMONIA" not in json.dumps(answer), (path, endpoint, answer)
    copies = [f for f in folder.rglob("*") if f.is_file() and not f.is_symlink() and f.read_bytes() == secret.read_bytes()]
    assert copies == []
    for path in (secret, "/etc/passwd", link, f"{uploaded.parent}/../../../..{secret}"):
        r = httpx.get(f"{server}/gradio_api/file={path}", timeout=30)  # httpx drops the ../ itself: 404
        assert r.status_code in (403, 404) and secret.read_bytes() not in r.content, path
    event, out = _analyse(server, str(uploaded), "analyse_1")  # the real upload still works
    assert event == "complete", out


@pytest.mark.slow
def test_upload_xray_in_browser_shows_probabilities_decision_overlay_and_card(server, ckpt):
    from playwright.sync_api import sync_playwright

    xray = xray_paths()[3]
    expected = Predictor.from_checkpoint(ckpt).predict_proba(xray)[0]
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.goto(server + "/", wait_until="networkidle")
            assert "Not a medical device" in page.locator("#card").inner_text()
            page.locator("input[type=file]").first.set_input_files(str(xray))
            page.wait_for_selector("#overlay img", timeout=60_000)
            page.wait_for_selector("#preview img", timeout=10_000)
            probs_text = page.locator("#probs").inner_text()
            decision = page.locator("#decision textarea").input_value()
            page.screenshot(path=str(ARTIFACTS / "webapp.png"), full_page=True)
        finally:
            browser.close()
    shown = {name: int(pct) for name, pct in re.findall(r"(NORMAL|PNEUMONIA)\s+(\d+)%", probs_text)}
    assert shown == {"NORMAL": round(expected[0] * 100), "PNEUMONIA": round(expected[1] * 100)}, probs_text
    assert decision.startswith("PNEUMONIA" if expected[1] >= 0.4 else "NORMAL")
    assert f"P(PNEUMONIA) = {expected[1]:.3f}" in decision and "threshold 0.400" in decision
    assert (ARTIFACTS / "webapp.png").stat().st_size > 10_000
