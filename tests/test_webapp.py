"""Web app: the Gradio UI and the API on one server, driven in a real browser like a person would."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import gradio as gr
import pytest
from fastapi.testclient import TestClient

from medclass.serving.predictor import Predictor
from medclass.serving.webapp import create_app, create_webapp
from _helpers import XRAYS, load_bench_api, make_checkpoint

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
def server(ckpt):
    """`medclass serve` in a subprocess on 127.0.0.1 and a free port."""
    bench = load_bench_api()
    port = bench.free_port()
    process = subprocess.Popen([sys.executable, "-c", "from medclass.cli import main; main()", "serve", str(ckpt),
                                "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        bench.wait_ready(f"http://127.0.0.1:{port}/health", timeout=120, process=process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.slow
def test_upload_xray_in_browser_shows_probabilities_decision_overlay_and_card(server, ckpt, shared_data):
    from playwright.sync_api import sync_playwright

    xray = shared_data / "chest_xray" / XRAYS[3]
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
