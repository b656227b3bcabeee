"""Downloading named data sets with pooch, against a local HTTP server (no machine here reaches the real records).

The server honours HTTP Range requests (or ignores them, like Python's own http.server) and can
break its first response half-way, so checksums, resume, clean restarts, unpacking once and the
offline error are all exercised through the real download code.
"""
from __future__ import annotations

import hashlib
import io
import socket
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medclass.cli import _register_all, app
from medclass.config import DataConfig
from medclass.data import catalog, load_source
from medclass.data.catalog import KERMANY, NamedDataset, get_dataset, sample_path
from medclass.data.download import fetch
from medclass.errors import DatasetError


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        srv = self.server
        body = srv.files.get(self.path.split("?")[0])
        srv.seen.append((self.path, self.headers.get("Range")))
        if body is None:
            self.send_error(404)
            return
        start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") and srv.ranges else 0
        if start >= len(body) > 0:
            self.send_error(416)
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        cut, srv.cut_after = srv.cut_after, None
        self.wfile.write(body[start:start + cut] if cut is not None else body[start:])
        self.close_connection = cut is not None  # a broken connection: fewer bytes than announced

    def log_message(self, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    files: dict[str, bytes]
    seen: list[tuple[str, str | None]]
    cut_after: int | None  # the next response stops after this many bytes
    ranges: bool  # honour Range requests

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{name}?download=1"


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.files, srv.seen, srv.cut_after, srv.ranges = {}, [], None, True
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("MEDCLASS_DATA_DIR", str(folder))
    return folder


def _npz_bytes(n: int = 6, size: int = 28) -> bytes:
    """A MedMNIST-shaped .npz: train/val/test images and (n, 1) labels, two classes."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split in ("train", "val", "test"):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(n, 1).astype(np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _serve(server: _Server, monkeypatch: pytest.MonkeyPatch, body: bytes, name: str = "tinymnist_28",
           file: str = "tinymnist.npz", known_hash: str | None = "", **kw: object) -> NamedDataset:
    """Put ``body`` on the server and register it as ``name`` (md5 of the body unless known_hash is given)."""
    server.files[f"/{file}"] = body
    if known_hash == "":
        known_hash = f"md5:{hashlib.md5(body).hexdigest()}"
    ds = replace(get_dataset("pneumoniamnist_28"), name=name, file=file, url=server.url(file), known_hash=known_hash,
                 images=18, **kw)
    monkeypatch.setitem(catalog.DATASETS, name, ds)
    return ds


def test_npz_by_name_is_downloaded_checked_and_reused(server: _Server, monkeypatch: pytest.MonkeyPatch,
                                                      cache: Path) -> None:
    body = _npz_bytes()
    _serve(server, monkeypatch, body)
    table = load_source(DataConfig(path="tinymnist_28"))  # as `--data tinymnist_28` does
    assert table.classes == ["normal", "pneumonia"] and len(table) == 18
    assert set(table.frame["split"]) == {"train", "val", "test"}
    assert (cache / "tinymnist_28" / "tinymnist.npz").read_bytes() == body
    load_source(DataConfig(path="tinymnist_28"))
    assert len(server.seen) == 1  # the second use reads the cache


def test_corrupt_download_is_refused_and_not_kept(server: _Server, monkeypatch: pytest.MonkeyPatch,
                                                  cache: Path) -> None:
    ds = _serve(server, monkeypatch, _npz_bytes(), known_hash="md5:" + "0" * 32)
    with pytest.raises(DatasetError) as e:
        fetch(ds, progress=False, retries=0)
    assert "tinymnist_28" in str(e.value) and ds.url in str(e.value) and "corrupt" in str(e.value)
    assert "0" * 32 in str(e.value) and str(cache / "tinymnist_28") in str(e.value)
    assert [p.name for p in (cache / "tinymnist_28").iterdir()] == []


def test_broken_download_resumes_where_it_stopped(server: _Server, monkeypatch: pytest.MonkeyPatch,
                                                  cache: Path) -> None:
    body = _npz_bytes(n=400)  # ~1 MB, 16 chunks of the downloader
    ds = _serve(server, monkeypatch, body)
    server.cut_after = len(body) // 3
    with pytest.raises(DatasetError, match="Could not download data set tinymnist_28"):
        fetch(ds, progress=False, retries=0)
    part = cache / "tinymnist_28" / "tinymnist.npz.part"
    kept = part.stat().st_size
    assert len(body) // 3 - 2**16 < kept <= len(body) // 3  # what came is kept (less the chunk being read)
    path = fetch(ds, progress=False, retries=0)
    assert path.read_bytes() == body and not part.exists()
    assert server.seen[-1][1] == f"bytes={kept}-"  # only the rest was asked for


def test_broken_download_is_retried_within_one_call(server: _Server, monkeypatch: pytest.MonkeyPatch) -> None:
    body = _npz_bytes(n=400)
    ds = _serve(server, monkeypatch, body)
    server.cut_after = 2**17 + 100
    assert fetch(ds, progress=True, retries=1).read_bytes() == body
    assert [r for _, r in server.seen] == [None, f"bytes={2**17}-"]


def test_server_without_ranges_restarts_cleanly(server: _Server, monkeypatch: pytest.MonkeyPatch) -> None:
    body = _npz_bytes(n=400)
    ds = _serve(server, monkeypatch, body)
    server.ranges, server.cut_after = False, 2**17 + 100
    with pytest.raises(DatasetError):
        fetch(ds, progress=False, retries=0)
    assert fetch(ds, progress=False, retries=0).read_bytes() == body
    assert server.seen[-1][1] is not None  # a range was asked for, the whole file came, and was used alone


def test_offline_error_names_data_set_url_cache_and_the_way_out(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ds = replace(KERMANY, name="kermany_test", url=f"http://127.0.0.1:{port}/ChestXRay2017.zip")
    with pytest.raises(DatasetError) as e:
        fetch(ds, progress=False, retries=0)
    text = str(e.value)
    for part in ("kermany_test", ds.url, "Are you offline?", "Connection refused", str(cache / "kermany_test"),
                 "--data PATH", "MEDCLASS_DATA_DIR"):
        assert part in text, part


def test_http_error_is_explained(server: _Server, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = replace(_serve(server, monkeypatch, b"x"), url=server.url("moved.npz"))
    with pytest.raises(DatasetError, match="404"):
        fetch(ds, progress=False, retries=0)


def test_zip_archive_is_unpacked_once_and_read_as_class_folders(server: _Server, monkeypatch: pytest.MonkeyPatch,
                                                                cache: Path) -> None:
    """A ChestXRay2017.zip look-alike made of sample images: chest_xray/{train,test}/<class>/, plus macOS litter."""
    images = sorted(sample_path().rglob("*.jpeg"))[::50]  # 12 images, both classes
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i, img in enumerate(images):
            zf.write(img, f"chest_xray/{'test' if i % 3 == 0 else 'train'}/{img.parent.name}/{img.name}")
        zf.writestr("__MACOSX/chest_xray/._junk", b"")
    body = buf.getvalue()
    _serve(server, monkeypatch, body, name="tiny_cxr", file="ChestXRay2017.zip",
           known_hash=f"sha256:{hashlib.sha256(body).hexdigest()}", archive="zip", class_names=(),
           preset="kermany_chest_xray")
    table = load_source(DataConfig(path="tiny_cxr"))
    assert table.classes == ["NORMAL", "PNEUMONIA"] and len(table) == len(images)
    assert set(table.frame["split"]) == {"train", "test"} and (table.frame["patient"] != "").all()
    unpacked = cache / "tiny_cxr" / "ChestXRay2017.zip.unzip" / "chest_xray"
    assert Path(table.root) == unpacked
    marker = unpacked / "train" / "kept"
    marker.write_text("not unpacked again")
    load_source(DataConfig(path="tiny_cxr"))
    assert marker.is_file() and len(server.seen) == 1


def test_without_checksum_the_sha256_is_logged_and_a_damaged_archive_is_not_kept(
        server: _Server, monkeypatch: pytest.MonkeyPatch, cache: Path, caplog: pytest.LogCaptureFixture) -> None:
    body = _npz_bytes()
    _serve(server, monkeypatch, body, name="unchecked", known_hash=None)
    with caplog.at_level("WARNING", logger="medclass.data.download"):
        load_source(DataConfig(path="unchecked"))
    assert "no published checksum" in caplog.text and hashlib.sha256(body).hexdigest() in caplog.text
    ds = _serve(server, monkeypatch, b"<html>not a zip</html>", name="damaged", file="ChestXRay2017.zip",
                known_hash=None, archive="zip")
    with pytest.raises(DatasetError, match="not a readable zip archive"):
        fetch(ds, progress=False, retries=0)
    assert list((cache / "damaged").iterdir()) == []


def test_datasets_command_lists_size_licence_citation(monkeypatch: pytest.MonkeyPatch) -> None:
    from medclass.cli._common import console

    _register_all()
    monkeypatch.setattr(console, "width", 200)  # the shared console was sized when first used, not from COLUMNS here
    out = CliRunner().invoke(app, ["datasets"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    for text in ("chest_xray_sample", "kermany_cxr", "pneumoniamnist_64", "organamnist_224", "CC BY 4.0",
                 "doi:10.17632/rscbjbr9sj.2", "Scientific Data", "none published", "MEDCLASS_DATA_DIR"):
        assert text in out.output, text
    missing = CliRunner().invoke(app, ["datasets", "kermany"])
    assert missing.exit_code == 2 and "kermany_cxr" in missing.output
