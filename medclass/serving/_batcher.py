"""Micro-batching: requests from many threads share one forward pass (at most ``max_batch`` images).

A single worker thread takes the first waiting item, gathers more for up to ``max_wait_s`` (or
until ``max_batch``), runs ``fn`` on the stacked batch and hands each caller its row. An exception
in ``fn`` is raised in every caller of that batch. The worker starts on the first call.
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

_STOP = object()


class MicroBatcher:
    """Thread-safe batching front of ``fn: (N, ...) array -> (N, ...) array``.

    >>> b = MicroBatcher(lambda x: x * 2, max_batch=8)
    >>> b.submit(np.ones(3)).tolist()
    [2.0, 2.0, 2.0]
    >>> b.close()
    """

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], max_batch: int = 16, max_wait_s: float = 0.005) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}.")
        self.fn, self.max_batch, self.max_wait_s = fn, max_batch, max_wait_s
        self._queue: queue.Queue = queue.Queue()
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.batches = 0  # forward passes run so far (for tests and monitoring)

    def submit(self, item: np.ndarray, timeout: float | None = 60.0) -> np.ndarray:
        """Run ``fn`` on ``item`` (one sample, no batch axis) within a batch; returns its output row."""
        self._ensure_worker()
        future: Future = Future()
        self._queue.put((item, future))
        return future.result(timeout=timeout)

    def close(self) -> None:
        """Stop the worker after the items already queued."""
        if self._worker is not None:
            self._queue.put(_STOP)
            self._worker.join(timeout=10)
            self._worker = None

    def _ensure_worker(self) -> None:
        with self._start_lock:
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="medclass-microbatcher", daemon=True)
                self._worker.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch, stop = [first], False
            deadline = time.monotonic() + self.max_wait_s
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            self._process(batch)
            if stop:
                return

    def _process(self, batch: list[tuple[np.ndarray, Future]]) -> None:
        try:
            out = self.fn(np.stack([item for item, _ in batch]))
        except Exception as e:  # handed to every waiting caller, who re-raises it
            for _, future in batch:
                future.set_exception(e)
            return
        self.batches += 1
        for row, (_, future) in zip(out, batch):
            future.set_result(row)
