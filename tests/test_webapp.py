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
import numpy as np
import pytest
from fastapi.testclient import TestClient

from medclass.serving.predictor import Predictor
from medclass.serving.webapp import create_app, create_webapp
from medclass.serving._verdict import decision_line, probability_text
from _helpers import add_xray_ood, load_bench_api, make_checkpoint, xray_paths

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A checkpoint with OOD statistics of chest X-rays and training-time figures (as the epoch callback saves them)."""
    return add_xray_ood(make_checkpoint(tmp_path_factory.mktemp("web") / "m.safetensors",
                                        metrics={"val_auc": 0.95, "train_loss_step": 0.31, "epoch_time_s": 12.5,
                                                 "epoch": 1}))


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


def _forward_batches(model) -> tuple[list[int], object]:
    """The batch size of every call of ``model`` itself (a forward pre-hook), and the hook's handle."""
    sizes: list[int] = []
    return sizes, model.register_forward_pre_hook(lambda module, args: sizes.append(len(args[0])))


def test_web_analysis_is_one_model_evaluation_plus_the_cam_and_shows_what_predict_gives(ckpt):
    """One image on the page: the probabilities and the OOD score from one model call (the image and its band-limited
    copy as one batch of 2), the Grad-CAM from one more (its forward and backward), no third; and what it shows is what
    `predict` gives for the same image."""
    from medclass.serving.webapp import analysis

    from dataclasses import replace

    from medclass.metrics.ood import LOWPASS

    predictor = Predictor.from_checkpoint(ckpt)
    predictor.ood = replace(predictor.ood, lowpass=LOWPASS)  # scored as a trained run scores: band-limited features
    images = [predictor.load(p) for p in xray_paths()[:3]]
    analysis(predictor, images[0])  # the first image of a shape also resolves the CAM layer (one probe)
    sizes, hook = _forward_batches(predictor.model)
    try:
        pages = [analysis(predictor, image) for image in images]
    finally:
        hook.remove()
    assert sizes == [2, 1] * len(images), sizes  # before: 5 calls per image (probe, probabilities, CAM, 2 for OOD)
    expected = predictor.predict_with_ood(images)
    for page, (_, row) in zip(pages, expected.iterrows()):
        shown = decision_line(predictor.decision_rule, row[["prob_NORMAL", "prob_PNEUMONIA"]].to_numpy(float))
        assert page.decision.startswith(shown) and shown.startswith(row["predicted"] + ":"), (page.decision, shown)
        assert page.flagged == bool(row["ood"])
    overlay, probs, score = predictor.explain_with_ood(images[0])
    assert probs == pytest.approx(expected.loc[0, ["prob_NORMAL", "prob_PNEUMONIA"]].to_numpy(float), abs=1e-6)
    assert score == pytest.approx(expected.loc[0, "ood_score"], rel=1e-5)
    assert np.array_equal(overlay, predictor.explain(images[0])[0])  # the same CAM as `medclass explain`


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
    if not Path(path).is_file():
        pytest.skip("Chromium not found (install the OS package 'chromium' to run the browser test)")
    return path


@pytest.fixture(scope="module")
def server_log(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("serve") / "server.log"


@pytest.fixture(scope="module")
def server(ckpt, server_log):
    """`medclass serve` in a subprocess on 127.0.0.1 and a free port."""
    bench = load_bench_api()
    port = bench.free_port()
    log = server_log.open("w")
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
    r = httpx.post(f"{base}/gradio_api/call/{endpoint}", json={"data": [file, 1]}, timeout=30)
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
    assert event == "complete" and re.search(r"Decision:</strong> (NORMAL|PNEUMONIA): ", out[1]), out
    uploaded = Path(_upload(server, "y.jpeg", xrays[1].read_bytes()))
    folder = uploaded.parents[1]  # <private folder>/<hash>/y.jpeg, private to this server
    assert folder.name.startswith("medclass-serve-") and folder.stat().st_mode & 0o777 == 0o700, folder
    secret = tmp_path / "secret.jpeg"
    secret.write_bytes(xrays[2].read_bytes())
    link = uploaded.parent / "link.jpeg"
    link.symlink_to(secret)
    attempts = [str(secret), "/etc/passwd", f"{uploaded.parent}/../../../..{secret}", str(link), out[2]["path"],
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


def _browser(pw):
    return pw.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)


def _upload_in_page(page, path: Path) -> None:
    page.locator("input[type=file]").first.set_input_files(str(path))


@pytest.mark.slow
def test_upload_xray_in_browser_shows_the_decision_first_and_bars_with_the_threshold(server, ckpt):
    """The decision in one line above everything; one bar, P(PNEUMONIA), with the threshold marked (the
    argmax-ordered bars of two classes contradicted a tuned threshold); no banner for a chest X-ray."""
    from playwright.sync_api import sync_playwright

    xray = xray_paths()[3]
    expected = Predictor.from_checkpoint(ckpt).predict_proba(xray)[0]
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = _browser(pw)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.goto(server + "/", wait_until="networkidle")
            assert "Not a medical device" in page.locator("#card").inner_text()
            assert "Analysis starts on upload" in page.locator("#intro").inner_text()
            _upload_in_page(page, xray)
            page.wait_for_selector("#overlay img", timeout=60_000)
            page.wait_for_selector("#preview img", timeout=10_000)
            decision = page.locator("#decision").inner_text()
            bars = page.locator("#probs").inner_text()
            marker = page.locator("#probs .medclass-threshold")
            assert marker.count() == 1 and "left:40.0%" in marker.get_attribute("style").replace(" ", "")
            assert not page.locator("#ood-banner").is_visible()
            top = {name: page.locator(sel).bounding_box()["y"] for name, sel in
                   (("decision", "#decision"), ("probs", "#probs"), ("overlay", "#overlay"))}
            page.screenshot(path=str(ARTIFACTS / "webapp.png"), full_page=True)
        finally:
            browser.close()
    shown = f"P(PNEUMONIA) = {probability_text(expected[1], 0.4)}"
    assert decision.startswith("Decision: " + ("PNEUMONIA" if expected[1] >= 0.4 else "NORMAL")), decision
    assert shown in decision and "threshold 0.400" in decision and "%" not in decision
    assert "P(PNEUMONIA)" in bars and "threshold 0.400" in bars and "NORMAL" in bars and "%" not in bars
    assert top["decision"] < top["probs"] < top["overlay"], top
    assert (ARTIFACTS / "webapp.png").stat().st_size > 10_000


@pytest.mark.slow
def test_browser_ood_banner_holds_back_probabilities_frames_errors_card_and_docs(server, server_log, shared_data,
                                                                                tmp_path):
    """A fundus photograph given to a chest X-ray model: a coloured banner first, the bars and the CAM held
    back until asked for. A multi-frame DICOM says "frame k of N"; a bad upload is explained in plain words
    without a server traceback; the card shows no training-time figures; /docs renders offline."""
    from playwright.sync_api import sync_playwright

    fundus = sorted((shared_data / "fundus_odir").rglob("*.jpg"))[0]
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"hello, these are notes and not an image")
    with sync_playwright() as pw:
        browser = _browser(pw)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.goto(server + "/", wait_until="networkidle")
            card = page.locator("#card").inner_text()
            footer = page.inner_text("body")
            _upload_in_page(page, fundus)
            page.wait_for_selector("#ood-banner .medclass-ood", timeout=60_000)
            banner = page.locator("#ood-banner")
            banner_text = banner.inner_text()
            colour = banner.locator(".medclass-ood").evaluate("e => getComputedStyle(e).backgroundColor")
            hidden = not page.locator("#probs").is_visible() and not page.locator("#overlay").is_visible()
            order = banner.bounding_box()["y"] < page.locator("#decision").bounding_box()["y"]
            decision = page.locator("#decision").inner_text()
            page.screenshot(path=str(ARTIFACTS / "webapp_ood.png"), full_page=True)
            page.locator("#show-anyway").click()
            page.wait_for_selector("#probs .medclass-bar", state="visible", timeout=10_000)
            shown_after = page.locator("#overlay").is_visible()

            page.goto(server + "/", wait_until="networkidle")
            _upload_in_page(page, shared_data / "dicom" / "emri_small.dcm")
            page.wait_for_function("document.querySelector('#frame-info')?.innerText.includes('Frame 1 of 10')",
                                   timeout=60_000)
            page.locator("#frame input").fill("3")
            page.locator("#frame input").press("Enter")
            page.wait_for_function("document.querySelector('#frame-info')?.innerText.includes('Frame 3 of 10')",
                                   timeout=60_000)

            page.goto(server + "/", wait_until="networkidle")
            logged = len(server_log.read_text())  # forged paths of other tests are logged by Gradio itself
            _upload_in_page(page, bad)
            page.wait_for_selector("text=not an image", timeout=60_000)
            error_text = page.inner_text("body")
            page.wait_for_timeout(500)
            log = server_log.read_text()[logged:]

            page.goto(server + "/docs", wait_until="networkidle")
            page.wait_for_selector(".opblock-summary-path", timeout=30_000)
            docs = page.inner_text("body")
        finally:
            browser.close()
    assert banner_text.startswith("Out-of-distribution: do not trust this prediction"), banner_text
    assert colour not in ("rgba(0, 0, 0, 0)", "rgb(255, 255, 255)") and hidden and order, (colour, hidden, order)
    assert "unreliable: out-of-distribution" in decision and shown_after
    assert "not an image" in error_text and "first bytes" not in error_text
    assert "Traceback" not in log, log[-4000:]  # a user's bad file is not a server fault
    assert "No held-out evaluation" in card and "train_loss_step" not in card and "epoch_time_s" not in card
    assert "chosen epoch 2" in card  # epochs counted from 1, as `medclass train` prints them
    assert "Use via API" not in footer
    assert "/predict" in docs and "/model" in docs
