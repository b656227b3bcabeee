"""Worker processes for image decoding (cache build, fingerprints) that cannot deadlock or hang silently.

Two rules, both learnt from a hang (issue 12: a cache build stalled forever at 0 % CPU):

* **One torch thread per worker.** The workers are forked; when the parent has already run a
  parallel torch operation, the forked child inherits an OpenMP thread pool whose threads do not
  exist in it, and its first large torch operation waits for them forever. ``torch.set_num_threads(1)``
  in the worker initialiser (what PyTorch's own DataLoader workers do) keeps torch off that pool.
* **A watchdog.** Each result must arrive within ``stall_timeout`` seconds; otherwise the pool is
  terminated and :class:`~medclass.errors.DatasetError` says what stalled and which setting to change.

Example:
    >>> with worker_pool(2) as pool:                                                   # doctest: +SKIP
    ...     results = list(watched_imap(pool, len, ["ab", "c"], stall_timeout=60, what="demo"))
"""
from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.pool
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..errors import DatasetError
from .cluster import ClusterPool, open_cluster


def _single_threaded() -> None:
    torch = sys.modules.get("torch")  # only a parent that loaded torch can have handed down its thread pool
    if torch is not None:
        torch.set_num_threads(1)


def _map_chunk(job: tuple[Callable[[Any], Any], list[Any]]) -> list[Any]:
    func, chunk = job
    return [func(item) for item in chunk]


def worker_pool(workers: int) -> multiprocessing.pool.Pool:
    """A pool of ``workers`` processes whose torch runs single-threaded (safe after fork)."""
    return multiprocessing.get_context().Pool(workers, initializer=_single_threaded)


@contextlib.contextmanager
def decode_pool(workers: int, cluster: str = "") -> Iterator[multiprocessing.pool.Pool | ClusterPool | None]:
    """Where :func:`watched_imap` runs: the Dask cluster ``cluster`` names (:func:`~.cluster.open_cluster`), else
    ``workers`` local processes (:func:`worker_pool`), else this process (``workers`` <= 1: ``None``)."""
    if cluster:
        with open_cluster(cluster) as client:
            yield ClusterPool(client)
    elif workers > 1:
        pool = worker_pool(workers)
        try:
            yield pool
        finally:
            pool.terminate()
            pool.join()
    else:
        yield None


def stall_error(what: str, seconds: float) -> DatasetError:
    """The error of a data step that made no progress for ``seconds`` (names the setting to change)."""
    return DatasetError(
        f"{what} made no progress for {seconds:g} s and was stopped (train.stall_timeout={seconds:g}). A worker "
        "process is stuck (e.g. on a network file system or a hung decoder). Retry with train.num_workers=0 to "
        "read in the main process, or raise train.stall_timeout when single images really take that long."
    )


def watched_imap(pool: multiprocessing.pool.Pool | ClusterPool | None, func: Callable[[Any], Any], items: Iterable[Any], *,
                 stall_timeout: float, what: str, chunksize: int = 1) -> Iterator[Any]:
    """``pool.imap(func, items)`` in order, each result awaited at most ``stall_timeout`` seconds (0 = forever).

    Without a pool the items are mapped in this process; a :class:`~.cluster.ClusterPool` sends the same chunks to
    a Dask cluster. On a stall the pool is terminated and :func:`stall_error` is raised.
    """
    if pool is None:
        yield from map(func, items)
        return
    items = list(items)
    chunks = [(func, items[i:i + chunksize]) for i in range(0, len(items), max(1, chunksize))]
    if isinstance(pool, ClusterPool):
        yield from pool.imap_chunks(_map_chunk, chunks, what=what, stall_timeout=stall_timeout)
        return
    results = pool.imap(_map_chunk, chunks)  # chunked by hand: imap(chunksize > 1) has no per-result timeout
    while True:
        try:
            yield from results.next(stall_timeout or None)
        except StopIteration:
            return
        except multiprocessing.TimeoutError:
            pool.terminate()
            raise stall_error(what, stall_timeout) from None


@contextlib.contextmanager
def loader_watchdog(what: str, stall_timeout: float) -> Iterator[None]:
    """Turn a DataLoader's ``timeout`` (no batch for ``stall_timeout`` s) into :func:`stall_error`.

    The DataLoader itself enforces the limit (``DataLoader(..., timeout=stall_timeout)``, workers > 0);
    this names the step and the setting in the error instead of torch's bare ``RuntimeError``.
    """
    try:
        yield
    except RuntimeError as e:
        if "DataLoader timed out" in str(e):
            raise stall_error(what, stall_timeout) from e
        raise
