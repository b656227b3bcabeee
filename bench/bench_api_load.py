"""Load and hostile-input test of the REST API: many concurrent clients, mixed valid and hostile uploads,
slow clients, bounded in requests and time, against a real uvicorn server on 127.0.0.1 only.

Starts ``create_api(checkpoint)`` as :mod:`bench_api` does (a subprocess on 127.0.0.1, a free port), then
``--concurrency`` clients post ``--requests`` uploads, cycling through real chest X-rays and the hostile
files of ``tests/_hostile.py`` (decompression bomb, truncated, text named .png, a DICOM claiming huge
frames; 16-bit, palette, CMYK and a PNG named .jpg are valid) plus a text/plain upload and one over the
size limit; ``--slow-clients`` connections trickle an upload one byte at a time meanwhile. It stops
after ``--requests`` or ``--max-seconds``, whichever comes first. Reported: server errors (5xx or a
dropped connection), answers other than the expected status of each payload, latency percentiles of
valid and hostile uploads, and the server's resident memory after the warm-up and at the end.

    .venv/bin/python bench/bench_api_load.py --requests 2000 --concurrency 64 --slow-clients 8
"""
from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]
from bench_api import (SUMMARY_HEADER, RssSampler, _random_checkpoint, free_port, latency_rss_summary,  # noqa: E402
                       start_api_server, summary_cells, timed_post, xray_payloads)  # noqa: E402
from _hostile import ODD_BUT_READABLE, UNREADABLE, write_hostile  # noqa: E402

HOST = "127.0.0.1"  # the only host this benchmark ever connects to
MAX_UPLOAD_MB = 1  # the server's upload limit here, so that the oversized payload stays small


def payloads(n_xrays: int = 8, root: Path | None = None) -> list[tuple[str, bytes, str, int]]:
    """``(file name, bytes, content type, expected status)``: valid X-rays (from ``root``, default the shared
    chest X-rays), odd valid files and hostile ones."""
    out = [(name, data, ctype, 200) for name, data, ctype in (xray_payloads(n_xrays, root) if root else xray_payloads(n_xrays))]
    with tempfile.TemporaryDirectory() as tmp:
        write_hostile(Path(tmp))
        for name in ODD_BUT_READABLE:
            out.append((name, (Path(tmp) / name).read_bytes(), "application/octet-stream", 200))
        for name in UNREADABLE:
            status = 413 if name in ("bomb.png", "huge.dcm") else 422
            out.append((name, (Path(tmp) / name).read_bytes(), "application/octet-stream", status))
    out.append(("notes.txt", b"not an image", "text/plain", 415))
    out.append(("big.png", b"\x89PNG" + bytes(MAX_UPLOAD_MB * 2**20 + 1), "image/png", 413))
    return out


def slow_client(port: int, stop: threading.Event, results: list[str], path: str = "/predict", field: str = "file",
                declared: int = 2**20) -> None:
    """Open a connection, declare a ``declared``-byte upload to ``path`` (form field ``field``) and send it one byte
    every 0.2 s until ``stop``."""
    head = (f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: multipart/form-data; boundary=xx\r\n"
            f"Content-Length: {declared}\r\n\r\n--xx\r\nContent-Disposition: form-data; name=\"{field}\"; "
            "filename=\"s.png\"\r\nContent-Type: image/png\r\n\r\n").encode()
    try:
        with socket.create_connection((HOST, port), timeout=5) as s:
            s.sendall(head)
            while not stop.wait(0.2):
                s.sendall(b"0")
        results.append("held")
    except OSError as e:  # the server may close a connection it finds too slow
        results.append(f"closed by server ({type(e).__name__})")


def run(url: str, port: int, items: list[tuple[str, bytes, str, int]], n_requests: int, concurrency: int,
        max_seconds: float, server_pid: int, n_slow: int = 0) -> dict:
    """Post up to ``n_requests`` uploads with ``concurrency`` clients for at most ``max_seconds`` seconds."""
    latency = np.full(n_requests, np.nan)
    status = np.zeros(n_requests, dtype=int)
    expected = np.array([items[i % len(items)][3] for i in range(n_requests)])
    deadline = time.monotonic() + max_seconds
    stop, slow, done = threading.Event(), [], [0]
    slow_threads = [threading.Thread(target=slow_client, args=(port, stop, slow)) for _ in range(n_slow)]
    for t in slow_threads:
        t.start()
    with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client, \
            RssSampler(server_pid, lambda: done[0]) as rss:

        def one(i: int) -> None:
            if time.monotonic() > deadline:
                return
            name, data, ctype, _ = items[i % len(items)]
            status[i], latency[i] = timed_post(client, url, name, data, ctype)
            done[0] += 1

        start = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, range(n_requests)))
        seconds = time.perf_counter() - start
    stop.set()
    for t in slow_threads:
        t.join()
    finished = status != 0
    values, counts = np.unique(status[finished], return_counts=True)
    return {"requests": int(finished.sum()), "concurrency": concurrency, "seconds": seconds,
            "rps": finished.sum() / seconds, "server_errors": int(((status >= 500) | (status == -1)).sum()),
            "unexpected": int((finished & (status != expected)).sum()),
            "statuses": dict(zip(map(int, values), map(int, counts))),
            **latency_rss_summary(latency, finished & (expected == 200), finished & (expected != 200), rss.samples),
            "slow_clients": slow}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="simple_cnn")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--slow-clients", type=int, default=8)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    args = parser.parse_args()
    items = payloads()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = _random_checkpoint(Path(tmp), args.model, args.image_size)
        port = free_port()
        server = start_api_server(ckpt, port, max_upload_mb=MAX_UPLOAD_MB)
        try:
            url = f"http://{HOST}:{port}/predict"
            run(url, port, items, len(items) * 2, 8, 60, server.pid)  # warm-up: every payload twice
            r = run(url, port, items, args.requests, args.concurrency, args.max_seconds, server.pid, args.slow_clients)
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"| requests | clients | slow clients | s | req/s | server errors | unexpected status | {SUMMARY_HEADER} |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {r['requests']} | {r['concurrency']} | {args.slow_clients} | {r['seconds']:.0f} | {r['rps']:.1f} | "
          f"{r['server_errors']} | {r['unexpected']} | {summary_cells(r)} |")
    print(f"statuses: {r['statuses']}; slow clients: {r['slow_clients']}")


if __name__ == "__main__":
    main()
