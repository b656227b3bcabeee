"""The server log of `medclass serve`: a user's bad upload and a client that leaves mid-request are one warning
line each, never a traceback; a fault of the server still logs its traceback (real servers on 127.0.0.1)."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from starlette.requests import ClientDisconnect

from medclass.data.catalog import sample_path
from medclass.serving._server_log import FirstOnlyFilter, UserFaultFilter, uvicorn_log_config

from _helpers import load_bench_api

REPO = Path(__file__).resolve().parents[1]


def _bench(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _start(code: str, port: int, log: Path, *args: str) -> subprocess.Popen:
    """``python -c code args`` (a server on 127.0.0.1:port) with its stdout and stderr in ``log``, once it answers."""
    env = {k: v for k, v in os.environ.items() if k != "GRADIO_TEMP_DIR"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-c", code, *args], stdout=out, stderr=subprocess.STDOUT, env=env)
    load_bench_api().wait_ready(f"http://127.0.0.1:{port}/health", timeout=240, process=process)
    return process


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=30)


def _wait_for_text(log: Path, text: str, count: int = 1, limit: float = 30.0) -> str:
    deadline = time.monotonic() + limit
    while log.read_text().count(text) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    return log.read_text()


def _leave_mid_upload(bench, port: int, path: str, field: str) -> None:
    """A client that declares a 1 MiB upload to ``path``, sends a few bytes and closes its connection."""
    stop, result = threading.Event(), []
    client = threading.Thread(target=bench.slow_client, args=(port, stop, result, path, field))
    client.start()
    time.sleep(1.0)
    stop.set()
    client.join()
    assert result == ["held"], result


def test_medclass_serve_logs_a_bad_upload_and_a_client_that_leaves_in_one_line_each(tmp_path: Path) -> None:
    """`medclass serve` as typed: a .txt file and a truncated PNG uploaded the way the page does, and clients that
    disconnect mid-upload from the page's upload route and from /predict. The page shows why each file was
    refused, the server log has one warning line for each bad file and for the disconnect from the page's route
    and no traceback, and the server still analyses the next X-ray."""
    bench = _bench("bench_webapp_load")
    ckpt, port, log = bench._random_checkpoint(tmp_path, "simple_cnn", 32), bench.free_port(), tmp_path / "serve.log"
    server = _start("from medclass.cli import main; main()", port, log, "serve", str(ckpt), "--port", str(port))
    base, xray = f"http://127.0.0.1:{port}", next(sample_path().glob("NORMAL/*.jpeg"))
    try:
        with httpx.Client(timeout=120) as client:
            txt = bench.analyse(client, base, "notes.txt", b"not an image", "text/plain")
            truncated = bench.analyse(client, base, "cut.png", b"\x89PNG\r\n\x1a\n" + bytes(40), "image/png")
            _leave_mid_upload(bench, port, "/gradio_api/upload", "files")
            _leave_mid_upload(bench, port, "/predict", "file")
            _wait_for_text(log, "a client disconnected")
            valid = bench.analyse(client, base, xray.name, xray.read_bytes(), "image/jpeg")
    finally:
        _stop(server)
    text = log.read_text()
    assert txt[0] == "error" and "Invalid file type" in txt[1], txt
    assert truncated[0] == "error" and truncated[1], truncated
    assert valid[0] == "complete", valid
    assert "Traceback" not in text and "ERROR" not in text, text[-4000:]
    assert text.count("WARNING: refused the upload 'notes.txt': Invalid file type") == 1, text[-4000:]
    assert text.count("WARNING: refused the upload 'cut.png': ") == 1, text[-4000:]
    # Gradio's upload route lets uvicorn log the disconnect (now one line); FastAPI's /predict logs nothing for it
    assert text.count("a client disconnected before its request was complete") == 1, text[-4000:]


def test_a_server_fault_still_logs_its_traceback(tmp_path: Path) -> None:
    """What `medclass serve` runs (`serve`, its log setup included) with a model whose Grad-CAM fails: the
    page's analysis and the API's `/predict?cam=true` each log the fault with its traceback (not one line)."""
    bench = _bench("bench_webapp_load")
    ckpt, port, log = bench._random_checkpoint(tmp_path, "simple_cnn", 32), bench.free_port(), tmp_path / "serve.log"
    server = _start("from medclass.serving.predictor import Predictor\n"
                    "def broken(*args, **kwargs): raise RuntimeError('a deliberate server fault')\n"
                    "Predictor.explain = Predictor.explain_with_ood = broken\n"
                    f"from medclass.serving.webapp import serve; serve({str(ckpt)!r}, port={port})", port, log)
    base, xray = f"http://127.0.0.1:{port}", next(sample_path().glob("NORMAL/*.jpeg"))
    try:
        with httpx.Client(timeout=120) as client:
            page = bench.analyse(client, base, xray.name, xray.read_bytes(), "image/jpeg")
            api = client.post(f"{base}/predict?cam=true", files={"file": (xray.name, xray.read_bytes(), "image/jpeg")})
        text = _wait_for_text(log, "RuntimeError: a deliberate server fault", count=2)
    finally:
        _stop(server)
    assert page[0] != "complete" and api.status_code == 500, (page, api.status_code)
    assert text.count("Traceback (most recent call last)") >= 2, text[-4000:]
    assert text.count("RuntimeError: a deliberate server fault") == 2, text[-4000:]
    assert "ERROR:    Exception in ASGI application" in text and "refused the upload" not in text, text[-4000:]


def _record(exc: BaseException) -> logging.LogRecord:
    try:
        raise exc
    except BaseException:
        return logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, "Exception in ASGI application\n", (),
                                 sys.exc_info())


@pytest.mark.parametrize("debug", [False, True])
def test_user_fault_filter_rewrites_only_what_a_client_caused(debug: bool) -> None:
    """A client's disconnect (alone or in a task group) becomes one warning line, its traceback kept only with
    ``debug``; any other exception, or a group holding one, passes unchanged."""
    keep = UserFaultFilter(debug)
    for exc in (ClientDisconnect(), BaseExceptionGroup("tasks", [ClientDisconnect(), ClientDisconnect()])):
        record = _record(exc)
        assert keep.filter(record) and record.levelno == logging.WARNING
        assert record.getMessage().startswith("a client disconnected") and (record.exc_info is not None) == debug
    for exc in (RuntimeError("fault"), BaseExceptionGroup("tasks", [ClientDisconnect(), RuntimeError("fault")])):
        record = _record(exc)
        assert keep.filter(record) and record.levelno == logging.ERROR and record.exc_info[1] is exc
        assert record.getMessage() == "Exception in ASGI application\n"
    assert uvicorn_log_config(debug)["loggers"]["uvicorn.error"]["filters"] == ["user_faults"]


@pytest.mark.parametrize("debug", [False, True])
def test_a_warning_every_request_can_give_is_logged_once_by_the_server(debug: bool,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """Grad-CAM's "maps are empty" (a model without evidence for the decided class: every analysis) was one
    warning per analysis in the server log (6,694 in a 10,000-analysis run): now the first, marked, and the rest
    only with --debug; other warnings of the same logger pass."""
    config = uvicorn_log_config(debug)
    (name,) = config["loggers"]["medclass.explain.cam"]["filters"]
    spec = {k: v for k, v in config["filters"][name].items() if k != "()"}
    logger, keep = logging.getLogger("medclass.explain.cam"), config["filters"][name]["()"](**spec)
    assert isinstance(keep, FirstOnlyFilter)
    logger.addFilter(keep)
    try:
        with caplog.at_level(logging.WARNING, logger="medclass.explain.cam"):
            for _ in range(3):
                logger.warning("%s: %d of %d maps are empty (no positive class evidence...)", "gradcam", 1, 1)
            logger.warning("something else")
    finally:
        logger.removeFilter(keep)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[-1] == "something else" and len(lines) == (4 if debug else 2), lines
    assert ("logged once" in lines[0]) != debug


def test_a_refused_upload_is_one_line_with_its_traceback_only_at_debug(caplog: pytest.LogCaptureFixture,
                                                                     tmp_path: Path) -> None:
    """The page's refusal of a file is one warning line naming it; its traceback is kept only when the web app
    logs at DEBUG (`medclass --debug serve`); the page still shows Gradio's own file component."""
    from medclass.serving import webapp
    from medclass.serving._upload import UploadError

    for level, traceback in ((logging.INFO, False), (logging.DEBUG, True)):
        caplog.clear()
        caplog.set_level(level, logger=webapp.__name__)
        try:
            raise UploadError(422, "Cannot read the upload: not an image.")
        except UploadError as e:
            error = webapp._refused("notes.png", e.message)
        assert error.print_exception is False and str(error.message) == "Cannot read the upload: not an image."
        assert [(r.levelname, r.getMessage(), bool(r.exc_info)) for r in caplog.records] == [
            ("WARNING", "refused the upload 'notes.png': Cannot read the upload: not an image.", traceback)]
    ckpt = load_bench_api()._random_checkpoint(tmp_path, "simple_cnn", 32)
    components = webapp.create_webapp(ckpt).get_config_file()["components"]
    assert [c["type"] for c in components if c["props"].get("elem_id") == "upload"] == ["file"]
