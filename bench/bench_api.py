"""Load test of the REST API: N requests with C concurrent clients against a real uvicorn server.

Starts ``create_api(checkpoint)`` with uvicorn in a subprocess on 127.0.0.1 (a free port), posts
real chest X-rays to ``/predict`` and prints a markdown table: requests/s, median and p95 latency,
errors. Without ``--checkpoint`` a checkpoint with random weights is written to a temporary folder
(speed does not depend on the weights).

    .venv/bin/python bench/bench_api.py --model simple_cnn --image-size 224 --requests 200 --concurrency 8
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

SHARED = Path(os.environ.get("MEDCLASS_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, timeout: float = 60.0, process: subprocess.Popen | None = None) -> None:
    """Poll ``url`` until it answers 200 (raises after ``timeout`` s or when ``process`` has exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def start_api_server(checkpoint: str | Path, port: int, max_batch: int = 16,
                     max_upload_mb: float | None = None, web: bool = False, log: Path | None = None,
                     prelude: str = "", env: dict[str, str] | None = None, **options: Any) -> subprocess.Popen:
    """``create_api(checkpoint)`` under uvicorn in a subprocess on 127.0.0.1:port (``max_upload_mb``: the API's
    default); ``web``: what ``medclass serve`` runs instead, ``create_app`` (the web app with the API) in a private
    upload folder. Logged as ``medclass serve`` logs (warnings and up), to ``log`` when given (the server's stdout
    and stderr), else to this process's. ``prelude``: Python run in the server process first (a diagnostic hook);
    ``env``: more environment variables for it; ``options``: more keyword arguments of the app factory."""
    options = {"max_batch": max_batch, **({} if max_upload_mb is None else {"max_upload_mb": max_upload_mb}), **options}
    options = ", ".join(f"{k}={v!r}" for k, v in options.items())
    run = (f"uvicorn.run(%s({str(checkpoint)!r}, {options}), host='127.0.0.1', port={port}, log_level='warning', "
           "log_config=uvicorn_log_config())")
    imports = ("import logging, uvicorn; from medclass.serving._server_log import uvicorn_log_config; "
               "from medclass.serving._allocator import tune_malloc; tune_malloc(); "  # as serve()
               "logging.basicConfig(format='%(levelname)s: %(message)s'); ")  # medclass's lines as the CLI prints them
    code = prelude + "\n" + (f"{imports}from medclass.serving.webapp import create_app, private_upload_folder\n"
            f"with private_upload_folder(): {run % 'create_app'}" if web else
            f"{imports}from medclass.serving.api import create_api; {run % 'create_api'}")
    env = {**{k: v for k, v in os.environ.items() if k != "GRADIO_TEMP_DIR"}, **(env or {})}  # the app's own folder
    if log is None:
        process = subprocess.Popen([sys.executable, "-c", code], env=env)
    else:
        with open(log, "a") as out:
            process = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=out, stderr=subprocess.STDOUT)
    wait_ready(f"http://127.0.0.1:{port}/health", timeout=300, process=process)  # a busy machine starts slowly
    return process


def log_counts(log: Path) -> dict[str, int]:
    """What a server wrote to ``log``: ``{"tracebacks": ..., "warnings": ..., "errors": ...}`` (lines that start one)."""
    lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
    return {"tracebacks": sum(line.startswith("Traceback") for line in lines),
            "warnings": sum(line.startswith("WARNING") for line in lines),
            "errors": sum(line.startswith("ERROR") for line in lines)}


def timed_post(client: httpx.Client, url: str, name: str, data: bytes, content_type: str,
               field: str = "file") -> tuple[int, float]:
    """``(HTTP status or -1 on a transport error, seconds)`` of one upload in the form field ``field``."""
    status, _, seconds = timed_upload(client, url, name, data, content_type, field)
    return status, seconds


def timed_upload(client: httpx.Client, url: str, name: str, data: bytes, content_type: str,
                 field: str = "file") -> tuple[int, httpx.Response | None, float]:
    """``(HTTP status or -1 on a transport error, the response or None, seconds)`` of one multipart upload."""
    start = time.perf_counter()
    try:
        response = client.post(url, files={field: (name, data, content_type)})
    except httpx.HTTPError:
        return -1, None, time.perf_counter() - start
    return response.status_code, response, time.perf_counter() - start


def run_load(url: str, payloads: list[tuple[str, bytes, str]], n_requests: int = 200, concurrency: int = 8) -> dict:
    """POST ``n_requests`` uploads (cycling through ``payloads``) with ``concurrency`` clients.

    Returns ``{requests, concurrency, errors, statuses, seconds, rps, p50_ms, p95_ms}``.
    """
    latencies = np.zeros(n_requests)
    statuses = np.zeros(n_requests, dtype=int)
    with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client:

        def one(i: int) -> None:
            statuses[i], latencies[i] = timed_post(client, url, *payloads[i % len(payloads)])

        start = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, range(n_requests)))
        seconds = time.perf_counter() - start
    values, counts = np.unique(statuses, return_counts=True)
    return {"requests": n_requests, "concurrency": concurrency, "errors": int((statuses != 200).sum()),
            "statuses": dict(zip(map(int, values), map(int, counts))), "seconds": seconds,
            "rps": n_requests / seconds, "p50_ms": float(np.percentile(latencies, 50) * 1000),
            "p95_ms": float(np.percentile(latencies, 95) * 1000)}


class RssSampler:
    """The resident memory of process ``pid`` sampled every ``interval`` s in a thread, while the block runs:
    ``samples`` holds ``(seconds since start, requests done then, MiB)``, from a first sample at entry to a last at exit.

    >>> with RssSampler(server.pid, lambda: done[0]) as rss: ...  # doctest: +SKIP
    """

    def __init__(self, pid: int, done: Callable[[], int], interval: float = 1.0) -> None:
        self.process, self.done, self.interval = psutil.Process(pid), done, interval
        self.samples: list[tuple[float, int, float]] = []
        self._stop, self._thread = threading.Event(), threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        self.samples.append((time.perf_counter() - self._start, self.done(), self.process.memory_info().rss / 2**20))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> "RssSampler":
        self._start = time.perf_counter()
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def latency_rss_summary(latency: np.ndarray, valid: np.ndarray, hostile: np.ndarray,
                        rss: list[tuple[float, int, float]]) -> dict[str, Any]:
    """The figures a load benchmark reports: latency percentiles (ms) of the ``valid`` and ``hostile`` requests
    (boolean masks over ``latency``, in seconds) and the server's RSS (MiB) from :class:`RssSampler` samples: at
    the start, once 10 % of the requests were done, at the end and its maximum, plus every tenth sample."""

    def pct(mask: np.ndarray, q: float) -> float:
        return float(np.percentile(latency[mask], q) * 1000) if mask.any() else float("nan")

    mib = np.array([m for *_, m in rss])
    total = rss[-1][1]
    tenth = next(m for _, n, m in rss if n >= total / 10)  # the last sample has n == total
    return {**{f"{kind}_p{q}_ms": pct(mask, q) for kind, mask in (("valid", valid), ("hostile", hostile))
               for q in (50, 95, 99)},
            "rss_start_mb": float(mib[0]), "rss_10pct_mb": float(tenth), "rss_end_mb": float(mib[-1]),
            "rss_max_mb": float(mib.max()), "rss_trace": [(round(t, 1), n, round(m, 1)) for t, n, m in rss[::10]]}


def summary_cells(r: dict[str, Any]) -> str:
    """The latency and RSS cells of a load benchmark's markdown row, from :func:`latency_rss_summary`."""
    return (f"{r['valid_p50_ms']:.0f} / {r['valid_p95_ms']:.0f} / {r['valid_p99_ms']:.0f} | {r['hostile_p50_ms']:.0f} / "
            f"{r['hostile_p95_ms']:.0f} / {r['hostile_p99_ms']:.0f} | {r['rss_start_mb']:.0f}, {r['rss_10pct_mb']:.0f}, "
            f"{r['rss_end_mb']:.0f} ({r['rss_max_mb']:.0f})")


SUMMARY_HEADER = "valid p50 / p95 / p99 ms | hostile p50 / p95 / p99 ms | server RSS MiB: start, after 10 %, end (max)"


def xray_payloads(n: int = 16, root: Path = SHARED / "chest_xray") -> list[tuple[str, bytes, str]]:
    """The first ``n`` chest X-rays (``n // 2`` of each class) under ``root`` as upload payloads."""
    files = [p for c in ("NORMAL", "PNEUMONIA") for p in sorted((root / c).glob("*.jpeg"))[: n // 2]]
    return [(p.name, p.read_bytes(), "image/jpeg") for p in files]


def _random_checkpoint(folder: Path, model: str, image_size: int) -> Path:
    from medclass.models import create_model
    from medclass.artifacts.checkpoint import build_meta, save_checkpoint

    meta = build_meta(classes=["NORMAL", "PNEUMONIA"], model_name=model, in_chans=1, image_size=image_size,
                      mean=[0.5], std=[0.25])
    return save_checkpoint(folder / "bench.safetensors", create_model(model, 2, in_chans=1), meta)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="", help="checkpoint to serve (default: random simple_cnn weights)")
    parser.add_argument("--model", default="simple_cnn")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-batch", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.checkpoint or _random_checkpoint(Path(tmp), args.model, args.image_size)
        port = free_port()
        server = start_api_server(ckpt, port, args.max_batch)
        try:
            payloads = xray_payloads()
            run_load(f"http://127.0.0.1:{port}/predict", payloads, n_requests=16, concurrency=4)  # warm-up
            r = run_load(f"http://127.0.0.1:{port}/predict", payloads, args.requests, args.concurrency)
        finally:
            server.terminate()
            server.wait(timeout=30)
    print("| model | size | requests | concurrency | max batch | req/s | p50 ms | p95 ms | errors |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.model if not args.checkpoint else Path(args.checkpoint).name} | {args.image_size} | {r['requests']} | "
          f"{r['concurrency']} | {args.max_batch} | {r['rps']:.1f} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['errors']} |")


if __name__ == "__main__":
    main()
