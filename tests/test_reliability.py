"""Reliability through the CLI as typed: Ctrl-C during `train` (exit 130 and the resume command), library
noise kept off the console (`--debug` shows it), messages that name what a user types, atomic writes that
survive a full disk or a kill, one `train` per run folder at a time, and hostile volume uploads to a real server."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medclass.cli import _register_all, app

from _helpers import load_bench_api, make_checkpoint, make_images

_register_all()
runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "from medclass.cli import main; main()"]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def _wait_for(path: Path, proc: subprocess.Popen, limit: float = 120.0) -> None:
    """Wait for ``path`` to appear (the event), failing early if the process ends first."""
    deadline = time.monotonic() + limit
    while not path.exists():
        assert proc.poll() is None, f"the process ended (code {proc.returncode}) before {path.name} appeared"
        assert time.monotonic() < deadline, f"{path} did not appear within {limit} s"
        time.sleep(0.05)


@pytest.mark.slow
def test_real_dicom_gives_no_library_tracebacks_unless_debug(shared_data: Path, tmp_path: Path) -> None:
    """pydicom logs a traceback for each file it cannot decode and warns about non-conforming headers: medclass
    reports those files once with their reason; the library's own lines appear with --debug only."""
    ckpt = make_checkpoint(tmp_path / "m.safetensors")
    predict = [*CLI, "predict", str(ckpt), str(shared_data / "dicom"), "--out", str(tmp_path / "p.csv")]
    check = subprocess.run([*CLI, "data", "check", str(shared_data / "dicom"), "--out", str(tmp_path / "dc")],
                           env=_env(), capture_output=True, text=True, timeout=300)
    quiet = subprocess.run(predict, env=_env(), capture_output=True, text=True, timeout=300)
    for proc in (check, quiet):
        assert proc.returncode == 0, proc.stderr[-3000:]
        for noise in ("Traceback", "Invalid value for VR", "End of file reached", "site-packages"):
            assert noise not in proc.stdout + proc.stderr, (proc.args[3], noise, proc.stderr[-3000:])
    assert "unreadable" in quiet.stdout  # the files pydicom failed on are still reported, on one line each
    debug = subprocess.run([*CLI[:3], "--debug", *predict[3:]], env=_env(), capture_output=True, text=True, timeout=300)
    assert debug.returncode == 0 and "Traceback" in debug.stderr and "pydicom/" in debug.stderr, debug.stderr[-3000:]


def test_train_without_data_says_it_uses_the_shipped_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    import medclass.cli.train as train_cli
    from medclass.errors import ConfigError

    def stop(*args, **kwargs):
        raise ConfigError("stopped before training (test)")

    monkeypatch.setattr(train_cli, "_train", stop)
    out = runner.invoke(app, ["train", "--model", "simple_cnn"])
    assert out.exit_code == 2 and "data: chest_xray_sample, the 600 chest X-rays shipped with medclass" in \
        out.output.replace("\n", " "), out.output
    out = runner.invoke(app, ["train", "--model", "simple_cnn", "--data", "/some/folder"])
    assert "shipped" not in out.output  # the user named the data


def test_a_class_with_one_image_names_the_folds_flag(tmp_path: Path) -> None:
    data = make_images(tmp_path / "data", n_per_class=8)
    for extra in sorted((data / "plain").iterdir())[1:]:
        extra.unlink()
    out = runner.invoke(app, ["train", "--data", str(data), "--model", "simple_cnn", "--image-size", "32", "--epochs", "1",
                              "--set", f"workspace={tmp_path / 'ws'}", "--set", "data.near_duplicates=false",
                              "--patient-regex", r"^(p[a-z]+\d+)_", "--quiet"])
    assert out.exit_code == 2, out.output
    text = out.output.replace("\n", " ")
    assert "only 1 patient(s)" in text and "medclass train --folds" in text and "assign_folds" not in text, text


def test_a_folder_of_unreadable_files_says_so(tmp_path: Path) -> None:
    for label in ("a", "b"):
        (tmp_path / "data" / label).mkdir(parents=True)
        for i in range(6):
            (tmp_path / "data" / label / f"{label}{i}.png").write_text("not an image")
    out = runner.invoke(app, ["data", "check", str(tmp_path / "data"), "--out", str(tmp_path)])
    assert out.exit_code == 0, out.output
    text = out.output.replace("\n", " ")
    assert "None of the 12 images can be read" in text and "split_too_small" not in text, text


# -- faults: full disk, killed writes, two trainings of one run ----------------------------------------
def _fsync_fails_for(name: str, after: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """``os.fsync`` raises ENOSPC (a full disk) on the temporary file of ``name`` once it was written ``after`` times."""
    import errno

    real, seen = os.fsync, {"n": 0}

    def fsync(fd: int) -> None:
        if f".{name}." in os.readlink(f"/proc/self/fd/{fd}"):
            seen["n"] += 1
            if seen["n"] > after:
                raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_a_full_disk_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from medclass.errors import DiskFullError
    from medclass.utils import leftover_writes, write_json

    path = tmp_path / "metrics.json"
    write_json(path, {"auc": 0.9})
    _fsync_fails_for("metrics.json", 0, monkeypatch)
    with pytest.raises(DiskFullError, match="No space left .* the previous metrics.json is unchanged"):
        write_json(path, {"auc": 0.1})
    assert path.read_text() == '{\n  "auc": 0.9\n}' and not leftover_writes(tmp_path)


KILLED_SAVE = """
import os, signal, sys
from medclass.artifacts.checkpoint import build_meta, save_checkpoint
from medclass.models import create_model
meta = build_meta(classes=["a", "b"], model_name="simple_cnn", in_chans=1, image_size=32, mean=[0.5], std=[0.25])
os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)  # killed while the new file is being written
save_checkpoint(sys.argv[1], create_model("simple_cnn", num_classes=2, in_chans=1), meta)
"""


def test_a_checkpoint_write_killed_midway_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    from medclass.artifacts.checkpoint import build_meta, load_checkpoint, save_checkpoint
    from medclass.models import create_model
    from medclass.utils import leftover_writes

    good = tmp_path / "m.safetensors"
    save_checkpoint(good, create_model("simple_cnn", num_classes=2, in_chans=1),
                    build_meta(classes=["a", "b"], model_name="simple_cnn", in_chans=1, image_size=32, mean=[0.5], std=[0.25]))
    before = good.read_bytes()
    killed = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(good)], env=_env(), capture_output=True, text=True,
                            timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert good.read_bytes() == before and list(load_checkpoint(good)[1].classes) == ["a", "b"]  # the previous one, whole
    assert len(leftover_writes(tmp_path)) == 1  # the killed write's temporary file, found by the next run


def test_train_out_of_disk_space_then_resumed_says_what_happened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pandas as pd

    data = make_images(tmp_path / "data", n_per_class=8)
    run = tmp_path / "ws" / "default" / "full"
    args = ["train", "--data", str(data), "--model", "simple_cnn", "--image-size", "32", "--in-chans", "1",
            "--epochs", "2", "--batch-size", "8", "--quiet", "--experiment", "full", "--set", f"workspace={tmp_path / 'ws'}",
            "--set", "train.num_workers=0", "--set", r"data.patient_regex=^(p[a-z]+\d+)_", "--set", "data.near_duplicates=false"]
    with monkeypatch.context() as m:
        _fsync_fails_for("metrics.csv", 1, m)  # epoch 1 is written, the disk is full at epoch 2
        out = runner.invoke(app, args)
    assert out.exit_code == 2 and "Traceback" not in out.output, out.output
    text = out.output.replace("\n", " ")
    assert "No space left" in text and f"medclass train --resume {run}" in text, text
    assert pd.read_csv(run / "metrics.csv")["epoch"].tolist() == [0]  # the file of epoch 1, whole
    # a write killed earlier and a process that never released the folder: the next run says so and cleans up
    (run / ".metrics.csv.x1y2.tmp").write_text("epoch,val_loss\n0,0.")
    (run / "train.lock").write_text("pid 4242 on host, medclass train, since 2026-12-07 08:00:00")
    out = runner.invoke(app, ["train", "--resume", str(run), "--quiet"])
    assert out.exit_code == 0, out.output
    text = out.output.replace("\n", " ")
    assert "left by a write that was interrupted" in text and "(pid 4242" in text, text
    assert not (run / ".metrics.csv.x1y2.tmp").exists() and (run / "train.lock").read_text() == ""
    assert pd.read_csv(run / "metrics.csv")["epoch"].tolist() == [0, 1]


def test_one_lock_holder_at_a_time(tmp_path: Path) -> None:
    from medclass.errors import BusyError
    from medclass.utils import exclusive_lock

    with exclusive_lock(tmp_path / "x.lock", "first", "busy") as previous:
        assert previous == ""
        with pytest.raises(BusyError, match=rf"busy \(held by pid {os.getpid()} .*first"):
            with exclusive_lock(tmp_path / "x.lock", "second", "busy"):
                pass
    with exclusive_lock(tmp_path / "x.lock", "third", "busy") as previous:
        assert previous == ""  # released cleanly: nothing to report


@pytest.mark.slow  # a fault test with two real training processes: CI's slow stage
def test_a_running_train_refuses_a_second_one_and_ctrl_c_exits_130(tmp_path: Path) -> None:
    data = make_images(tmp_path / "data", n_per_class=8)
    run = tmp_path / "ws" / "default" / "busy"
    new = ["train", "--data", str(data), "--model", "simple_cnn", "--image-size", "32", "--in-chans", "1",
           "--epochs", "500", "--batch-size", "8", "--quiet", "--experiment", "busy", "--set", f"workspace={tmp_path / 'ws'}",
           "--set", "train.num_workers=0", "--set", "train.early_stopping=0",
           "--set", r"data.patient_regex=^(p[a-z]+\d+)_", "--set", "data.near_duplicates=false"]
    proc = subprocess.Popen([*CLI, *new], cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(run / "metrics.csv", proc)  # the event: epoch 1 is done, training is under way
        for args in (new, ["train", "--resume", str(run)]):  # a second training of the run, new or resumed
            out = runner.invoke(app, args)
            assert out.exit_code == 2, out.output
            text = out.output.replace("\n", " ")
            assert "is being trained by another process" in text and f"pid {proc.pid}" in text, text
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, out + err
    assert f"interrupted; resume with `medclass train --resume {run}`" in err.replace("\n", ""), err
    assert "Traceback" not in out + err
    assert (run / "train.lock").read_text() == ""  # released: the next run has nothing to report


def _bench_api_load(name: str = "bench_api_load"):
    """A load benchmark of bench/ as a module (``bench_api_load`` or ``bench_webapp_load``)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


@pytest.mark.slow  # a fault test with real servers: CI's slow stage
def test_api_server_killed_mid_request_then_restarted_answers_again(tmp_path: Path) -> None:
    """SIGKILL while a client is still sending its upload: the client gets a closed connection at once (no hang),
    and a server restarted on the same port answers the next upload (127.0.0.1 only)."""
    import socket

    import httpx

    from medclass.data.catalog import sample_path

    bench = _bench_api_load()
    checkpoint, port = bench._random_checkpoint(tmp_path, "simple_cnn", 32), bench.free_port()
    server = bench.start_api_server(checkpoint, port)
    client = socket.create_connection((bench.HOST, port), timeout=30)
    try:
        head = (f"POST /predict HTTP/1.1\r\nHost: {bench.HOST}:{port}\r\nContent-Type: multipart/form-data; "
                "boundary=b\r\nContent-Length: 1000000\r\n\r\n--b\r\nContent-Disposition: form-data; name=\"file\"; "
                "filename=\"x.png\"\r\nContent-Type: image/png\r\n\r\n")
        client.sendall(head.encode() + b"\x89PNG" + bytes(1000))  # mid-request: the body is far from complete
        server.kill()
        server.wait(timeout=30)
        try:
            closed = client.recv(1024) == b""
        except ConnectionError:
            closed = True
        assert closed  # the half-sent request ends with the server, it does not hang the client
    finally:
        client.close()
    server = bench.start_api_server(checkpoint, port)  # same port, same checkpoint: nothing left behind blocks it
    try:
        xray = next(sample_path().glob("NORMAL/*.jpeg"))
        r = httpx.post(f"http://{bench.HOST}:{port}/predict", files={"file": (xray.name, xray.read_bytes(), "image/jpeg")},
                       timeout=60)
        assert r.status_code == 200 and set(r.json()["probabilities"]) == {"NORMAL", "PNEUMONIA"}, r.text
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_api_under_mixed_valid_and_hostile_load_gives_no_server_error(tmp_path: Path) -> None:
    """A short run of bench/bench_api_load.py (127.0.0.1 only): every upload gets its expected status."""
    bench = _bench_api_load()
    from medclass.data.catalog import sample_path

    items = bench.payloads(4, root=sample_path())  # the packaged X-rays: no ../shared needed
    assert {status for *_, status in items} == {200, 413, 415, 422}
    port = bench.free_port()
    server = bench.start_api_server(bench._random_checkpoint(tmp_path, "simple_cnn", 32), port,
                                    max_upload_mb=bench.MAX_UPLOAD_MB)
    try:
        r = bench.run(f"http://{bench.HOST}:{port}/predict", port, items, n_requests=3 * len(items), concurrency=8,
                      max_seconds=120, server_pid=server.pid, n_slow=1)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert r["requests"] == 3 * len(items) and r["server_errors"] == 0 and r["unexpected"] == 0, r
    assert r["slow_clients"] == ["held"] and r["valid_p50_ms"] > 0


@pytest.mark.slow
def test_hostile_volume_uploads_to_a_real_server_leave_no_traceback_and_no_file(shared_data: Path, tmp_path: Path) -> None:
    """The hostile volume uploads of tests/_hostile_volumes.py against `create_api` under uvicorn (127.0.0.1), as curl
    would send them: each gets its 4xx, a real CT still gets 200 after them, the server's log holds no traceback,
    and its temporary folder is empty again (every upload's private folder removed)."""
    import httpx

    from _hostile_volumes import LIMIT_MB, hostile_uploads
    from _volumes import lidc_volume, make_volume_checkpoint

    bench = load_bench_api()
    checkpoint, port = make_volume_checkpoint(tmp_path / "v.safetensors"), bench.free_port()
    server_tmp, log = tmp_path / "server-tmp", tmp_path / "server.log"
    server_tmp.mkdir()
    code = ("import uvicorn; from medclass.serving.api import create_api; "
            f"uvicorn.run(create_api({str(checkpoint)!r}, max_volume_mb={LIMIT_MB}), host='127.0.0.1', port={port})")
    with log.open("w") as out:
        server = subprocess.Popen([sys.executable, "-c", code], env={**_env(), "TMPDIR": str(server_tmp)}, stdout=out,
                                  stderr=subprocess.STDOUT)
    try:
        bench.wait_ready(f"http://127.0.0.1:{port}/health", timeout=120, process=server)
        url = f"http://127.0.0.1:{port}/predict"
        for case, name, data, status, phrase in hostile_uploads(shared_data, tmp_path / "fixtures"):
            r = httpx.post(url, files={"file": (name, data, "application/octet-stream")}, timeout=120)
            assert r.status_code == status and phrase in r.json()["detail"], (case, r.status_code, r.text)
        nifti = lidc_volume(shared_data, 3)[0]
        r = httpx.post(url, files={"file": (nifti.name, nifti.read_bytes(), "application/gzip")}, timeout=120)
        assert r.status_code == 200 and set(r.json()["probabilities"]) == {"benign", "malignant"}, r.text
    finally:
        server.terminate()
        server.wait(timeout=30)
    text = log.read_text()
    assert "Traceback" not in text and " 500 " not in text and " 422 " in text, text[-3000:]
    assert list(server_tmp.iterdir()) == []


@pytest.mark.slow  # a load test: CI's slow stage
def test_web_app_under_mixed_load_with_a_slow_upload_gives_no_server_error_and_deletes_old_files(tmp_path: Path) -> None:
    """A short run of bench/bench_webapp_load.py against what `medclass serve` runs (127.0.0.1 only): uploads go
    through the page's upload route and queued event, every payload gets the outcome the page must show, a client
    trickling a large upload into the upload route holds no worker, and uploads and shown images are deleted
    once older than ``keep_files_s``, with the empty temporary file Gradio's File component leaves per event; the
    server log has a warning line for each refused file and not one traceback."""
    bench = _bench_api_load("bench_webapp_load")
    from medclass.data.catalog import sample_path

    items = bench.payloads(4, root=sample_path())  # the packaged X-rays: no ../shared needed
    port, log = bench.free_port(), tmp_path / "server.log"
    server = bench.start_api_server(bench._random_checkpoint(tmp_path, "simple_cnn", 32), port,
                                    max_upload_mb=bench.MAX_UPLOAD_MB, web=True, keep_files_s=10, log=log)
    try:
        base = f"http://{bench.HOST}:{port}"
        r = bench.run(base, port, items, n_requests=len(items), concurrency=8, max_seconds=240,
                      server_pid=server.pid, n_slow=1, slow_bytes=bench.MAX_UPLOAD_MB * 2**20 - 4096)
        time.sleep(14)  # past keep_files_s and one deletion round (every 2 s)
        files_later, _ = bench.folder_usage(r["upload_folder"])
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert r["requests"] == len(items) and r["server_errors"] == 0 and r["unexpected"] == 0, r
    assert r["outcomes"] == {"complete": 8, "error": 5, "http 413": 1}, r["outcomes"]
    assert r["slow_clients"] == ["held"] and r["valid_p50_ms"] > 0
    assert r["upload_folder_files"] >= 8 and files_later == 0, (r["upload_folder_files"], files_later)
    counts = bench.log_counts(log)  # each refused file is one warning line, the slow client's disconnect too
    assert counts["tracebacks"] == 0 and counts["errors"] == 0 and counts["warnings"] >= 5, (counts, log.read_text()[-3000:])


def test_web_app_keeps_the_state_of_a_bounded_number_of_sessions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every API call (and page load) is a Gradio session holding its component updates; only the newest
    SESSIONS_KEPT are kept, so memory does not grow with the number of users (Gradio's default kept 10,000).
    Gradio's timings of past events are bounded the same way, and a session whose events are all done leaves
    Gradio's map of pending event ids (Gradio 6.31 kept an empty set for every session ever seen: one entry more
    per analysis through the API, found by ``bench/diag_webapp_memory.py``)."""
    from fastapi.testclient import TestClient
    from starlette.routing import Mount

    from medclass.data.catalog import sample_path
    from medclass.serving import _gradio_bounds, webapp

    bench = _bench_api_load("bench_webapp_load")
    monkeypatch.setattr(_gradio_bounds, "SESSIONS_KEPT", 3)
    monkeypatch.setattr(_gradio_bounds, "EVENTS_TIMED", 2)
    monkeypatch.setattr(_gradio_bounds._PendingEventIds, "MIN_SWEEP", 2)
    xray = next(sample_path().glob("NORMAL/*.jpeg"))
    with webapp.private_upload_folder():
        app = webapp.create_app(bench._random_checkpoint(tmp_path, "simple_cnn", 32))
        with TestClient(app) as client:
            outcomes = [bench.analyse(client, "", xray.name, xray.read_bytes() + bytes([i]), "image/jpeg")[0]
                        for i in range(6)]
        blocks = next(r.app for r in app.routes if isinstance(r, Mount) and r.path == "").get_blocks()
    assert outcomes == ["complete"] * 6
    assert len(blocks.state_holder.session_data) == 3
    assert len(blocks._queue.event_analytics) == 2
    assert 1 <= len(blocks._queue.pending_event_ids_session) <= 2, blocks._queue.pending_event_ids_session  # was 6


def test_gradios_pending_event_ids_drop_only_sessions_with_none_pending() -> None:
    """The sweep runs when a new session is added and the map has doubled since the last one: sessions with
    pending events stay, emptied ones go, and a session seen again gets a new set (amortised O(1) a session)."""
    from medclass.serving._gradio_bounds import _PendingEventIds

    ids = _PendingEventIds()
    for i in range(300):
        ids[f"s{i}"] = set()
        ids[f"s{i}"].add(f"e{i}")
        if i % 3:  # two sessions in three get their result: Gradio empties their set and keeps it
            ids[f"s{i}"].remove(f"e{i}")
    pending = {f"s{i}" for i in range(300) if i % 3 == 0}
    assert pending <= ids.keys() and len(ids) < 2 * len(pending) + _PendingEventIds.MIN_SWEEP
    assert all(ids[s] == {f"e{s[1:]}"} for s in pending)
    ids["s1"] = set()  # an old session that queues again
    assert ids["s1"] == set() and "s1" in ids
    ids["s0"] = ids["s0"] - {"e0"}  # what Gradio's clean_events does to an existing session: no sweep, no loss
    assert "s0" in ids


def test_web_app_checks_an_upload_by_lookup_never_by_a_pass_over_every_upload(tmp_path: Path) -> None:
    """Whether a named file was uploaded through the page is two set lookups: a pass over Gradio's set of uploads
    (changed meanwhile by its upload route and deletion round) failed under load with "Set changed size during
    iteration" (once in ~5,000 analyses), and cost a step per file still kept."""
    from medclass.serving import webapp
    from medclass.serving._upload import UploadError

    class NoPass(set):
        def __iter__(self):
            raise AssertionError("a pass over every upload")

    (tmp_path / "a.png").write_bytes(b"image bytes")
    (tmp_path / "x").mkdir()
    uploaded = NoPass({str(tmp_path / "a.png")})
    assert webapp._read_uploaded(str(tmp_path / "a.png"), uploaded) == b"image bytes"
    assert webapp._read_uploaded(f"{tmp_path}/x/../a.png", uploaded) == b"image bytes"  # the same file, normalised
    (tmp_path / "b.png").write_bytes(b"not uploaded here")
    with pytest.raises(UploadError) as refused:
        webapp._read_uploaded(str(tmp_path / "b.png"), uploaded)
    assert refused.value.status == 403


def test_gradios_deletion_round_goes_through_a_copy_of_each_set_of_files(tmp_path: Path) -> None:
    """Gradio's deletion round iterates its sets of files to delete in a worker thread while uploads and analyses
    add to them; the web app hands it a copy of each (a plain set failed under load with "Set changed size during
    iteration", which ended Gradio's deletion task for good), and removals reach the real set."""
    from medclass.serving import _gradio_bounds, webapp

    demo = webapp.create_webapp(load_bench_api()._random_checkpoint(tmp_path, "simple_cnn", 32))
    assert demo.temp_file_sets and all(isinstance(s, (_gradio_bounds._FilesToDelete, _gradio_bounds._StrayFiles))
                                       for s in demo.temp_file_sets)
    files = {"a", "b"}
    view = _gradio_bounds._FilesToDelete(files)
    seen = iter(view)
    next(seen)
    files.add("c")  # what the upload route does meanwhile
    assert len(list(seen)) == 1  # the rest of the copy, no RuntimeError
    view -= {"a"}
    assert files == {"b", "c"} and sorted(view) == ["b", "c"]
    with pytest.raises(RuntimeError, match="changed size"):  # what the plain set did
        seen = iter(files)
        next(seen)
        files.add("d")
        next(seen)
