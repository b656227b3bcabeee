"""Load and hostile-input test of the web app (Gradio), driven the way the page drives it, with slow clients.

Starts what ``medclass serve`` runs (``create_app``: the web app with the REST API, in a private upload folder)
as :mod:`bench_api` does (a subprocess on 127.0.0.1, a free port). Each of ``--concurrency`` clients then
repeats what the browser does after a file is dropped on the page: upload the bytes to Gradio's upload route
(``POST /gradio_api/upload``), queue the upload's event with the stored file (``POST /gradio_api/call/analyse``,
Gradio's HTTP queue API) and read the event's result stream (``GET .../call/analyse/<event id>``, server-sent
events). Payloads are those of :mod:`bench_api_load` (real chest X-rays; odd but valid files; a decompression
bomb, a truncated PNG, text named .png, a DICOM claiming huge frames; a text file; an upload over the size
limit); every X-ray upload gets a unique trailer after its JPEG end marker, so each one is a new file on the
server, as with real users. ``--slow-clients`` connections trickle an upload into the upload route meanwhile.

Outcomes: ``complete`` (the decision is shown), ``error`` with a message (the page shows why the file was
refused), ``http 413`` (the upload route refuses a file over the limit); a server error is a 5xx, a dropped
connection or an error event without a message (an unhandled exception). Also reported: latency
percentiles (upload to result), the server's RSS sampled every second, the files left in its upload folder, and
the tracebacks, warnings and errors in the server's log (``--json FILE``: kept beside it as FILE.log).

    .venv/bin/python bench/bench_webapp_load.py --requests 2000 --concurrency 64 --slow-clients 4
"""
from __future__ import annotations

import argparse
import json
import re
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
                       log_counts, start_api_server, summary_cells, timed_upload)
from bench_api_load import HOST, MAX_UPLOAD_MB, payloads, slow_client  # noqa: E402

EVENT = "analyse"  # the upload's event: Gradio names an event without api_name after its function
EXPECTED = {200: "complete", 413: "error", 415: "error", 422: "error"}  # what the page shows for each API status


def expected_outcome(name: str, status: int) -> str:
    """The outcome the page must give a payload that the REST API answers with ``status``."""
    return "http 413" if name == "big.png" else EXPECTED[status]  # over the limit: refused by the upload route


def analyse(client: httpx.Client, base: str, name: str, data: bytes, content_type: str) -> tuple[str, str, float]:
    """One analysis as the page runs it: ``(outcome, message shown or the server's answer, seconds)``."""
    start = time.perf_counter()
    status, response, _ = timed_upload(client, f"{base}/gradio_api/upload", name, data, content_type, field="files")
    if status != 200:
        return ("dropped" if status == -1 else f"http {status}"), response.text[:200] if response else "", \
            time.perf_counter() - start
    file = {"path": response.json()[0], "orig_name": name, "meta": {"_type": "gradio.FileData"}}
    try:
        queued = client.post(f"{base}/gradio_api/call/{EVENT}", json={"data": [file, 1]})
        if queued.status_code != 200:
            return f"http {queued.status_code}", queued.text[:200], time.perf_counter() - start
        stream = client.get(f"{base}/gradio_api/call/{EVENT}/{queued.json()['event_id']}")
    except httpx.HTTPError as e:
        return "dropped", type(e).__name__, time.perf_counter() - start
    events = re.findall(r"^event: (\w+)\r?\ndata: (.*)$", stream.text, re.M)
    final = [(e, d) for e, d in events if e in ("complete", "error")]
    if stream.status_code != 200 or not final:
        return f"http {stream.status_code}", stream.text[:200], time.perf_counter() - start
    event, body = final[-1]
    message = (json.loads(body) or {}).get("error") if event == "error" else ""
    return event if event == "complete" or message else "error without message", message or "", \
        time.perf_counter() - start


def unique(items: list[tuple[str, bytes, str, int]], i: int) -> tuple[str, bytes, str, int]:
    """Payload ``i``: a JPEG gets ``i`` after its end marker (same pixels, a new file for the server)."""
    name, data, ctype, status = items[i % len(items)]
    return (name, data + f"#{i}".encode(), ctype, status) if name.lower().endswith((".jpeg", ".jpg")) and status == 200 \
        and data[:2] == b"\xff\xd8" else (name, data, ctype, status)


def folder_usage(folder: Path | None) -> tuple[int, float]:
    """``(files, MiB)`` under ``folder`` (the server's upload folder)."""
    if folder is None or not folder.is_dir():
        return 0, 0.0
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files) / 2**20


def run(base: str, port: int, items: list[tuple[str, bytes, str, int]], n_requests: int, concurrency: int,
        max_seconds: float, server_pid: int, n_slow: int = 0, slow_bytes: int = 2**19) -> dict:
    """Up to ``n_requests`` analyses with ``concurrency`` clients for at most ``max_seconds``; see the module doc."""
    latency = np.full(n_requests, np.nan)
    outcome = np.full(n_requests, "", dtype=object)
    expected = np.array([expected_outcome(items[i % len(items)][0], items[i % len(items)][3]) for i in range(n_requests)],
                        dtype=object)
    messages: dict[str, int] = {}
    deadline = time.monotonic() + max_seconds
    stop, slow, done = threading.Event(), [], [0]
    threads = [threading.Thread(target=slow_client, args=(port, stop, slow, "/gradio_api/upload", "files", slow_bytes))
               for _ in range(n_slow)]
    for t in threads:
        t.start()
    folder: list[Path] = []
    with httpx.Client(timeout=120, limits=httpx.Limits(max_connections=concurrency)) as client:
        with RssSampler(server_pid, lambda: done[0]) as rss:

            def one(i: int) -> None:
                if time.monotonic() > deadline:
                    return
                name, data, ctype, _ = unique(items, i)
                outcome[i], message, latency[i] = analyse(client, base, name, data, ctype)
                if outcome[i] != expected[i]:
                    key = f"{name}: {outcome[i]} {message[:120]}"
                    messages[key] = messages.get(key, 0) + 1
                done[0] += 1

            start = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(one, range(n_requests)))
            seconds = time.perf_counter() - start
        probe = client.post(f"{base}/gradio_api/upload", files={"files": ("probe.txt", b"x", "text/plain")})
        if probe.status_code == 200:  # <upload folder>/<digest>/probe.txt
            folder.append(Path(probe.json()[0]).parents[1])
    stop.set()
    for t in threads:
        t.join()
    finished = outcome != ""
    valid, hostile = finished & (expected == "complete"), finished & (expected != "complete")
    server_errors = (finished & np.isin(outcome, ["dropped", "error without message"])) | np.array(
        [o.startswith("http 5") for o in outcome])
    files, folder_mib = folder_usage(folder[0] if folder else None)
    values, counts = np.unique(outcome[finished].astype(str), return_counts=True)
    return {"requests": int(finished.sum()), "concurrency": concurrency, "seconds": seconds,
            "rps": finished.sum() / seconds, "server_errors": int(server_errors.sum()),
            "unexpected": int((finished & (outcome != expected)).sum()), "unexpected_messages": messages,
            "outcomes": dict(zip(values.tolist(), map(int, counts))),
            **latency_rss_summary(latency, valid, hostile, rss.samples),
            "upload_folder": folder[0] if folder else None, "upload_folder_files": files, "upload_folder_mb": folder_mib,
            "slow_clients": slow}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="simple_cnn")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--slow-clients", type=int, default=4)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--keep-files-s", type=int, default=0, help="the app's keep_files_s (default: the app's, 1 hour)")
    parser.add_argument("--json", default="", help="also write the full result here")
    args = parser.parse_args()
    items = payloads()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = _random_checkpoint(Path(tmp), args.model, args.image_size)
        port, log = free_port(), Path(args.json).with_suffix(".log") if args.json else Path(tmp) / "server.log"
        log.unlink(missing_ok=True)
        server = start_api_server(ckpt, port, max_upload_mb=MAX_UPLOAD_MB, web=True, log=log,
                                  **({"keep_files_s": args.keep_files_s} if args.keep_files_s else {}))
        try:
            base = f"http://{HOST}:{port}"
            run(base, port, items, len(items) * 2, 8, 120, server.pid)  # warm-up: every payload twice
            r = run(base, port, items, args.requests, args.concurrency, args.max_seconds, server.pid, args.slow_clients)
        finally:
            server.terminate()
            server.wait(timeout=30)
        r["server_log"] = log_counts(log)  # the warm-up's lines included
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1, default=str))
    print(f"| analyses | clients | slow clients | s | analyses/s | server errors | unexpected outcome | {SUMMARY_HEADER} "
          "| upload folder at end |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {r['requests']} | {r['concurrency']} | {args.slow_clients} | {r['seconds']:.0f} | {r['rps']:.1f} | "
          f"{r['server_errors']} | {r['unexpected']} | {summary_cells(r)} | "
          f"{r['upload_folder_files']} files, {r['upload_folder_mb']:.1f} MiB |")
    print(f"outcomes: {r['outcomes']}; slow clients: {r['slow_clients']}; unexpected: {r['unexpected_messages']}; "
          f"server log lines (warm-up included): {r['server_log']}")


if __name__ == "__main__":
    main()
