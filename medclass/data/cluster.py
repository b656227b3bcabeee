"""More than one machine: data preparation and batch prediction on a Dask ``distributed`` cluster.

Why Dask: the work is an ordered map of a Python function over chunks of rows (decode and hash images,
predict a part of files), with results streamed back in order to one writer. ``distributed`` does exactly
that (``Client.submit`` / futures), is pure Python, installs with pip (``pip install "medclass[cluster]"``),
starts with two commands (``dask scheduler``; ``dask worker tcp://HOST:8786``) or under SLURM/Kubernetes
(dask-jobqueue, dask-kubernetes), and needs nothing of medclass but an import. Ray would bring its own
object store and a much larger install for the same map; Lightning's ``litdata`` optimises data sets into
its own chunk format for streaming training, which is not what the leak audit or a prediction CSV need.

A cluster is named by a string (``--cluster``):

* ``tcp://HOST:8786`` (or ``tls://...``): connect to a running scheduler;
* ``local:N``: start a local cluster of ``N`` worker processes (one thread each) for this command.

Every worker must have medclass installed (the same version) and see the images, the checkpoint and the
output folder at the same paths (a shared file system), because only paths travel to the workers.

Example:
    >>> with open_cluster("local:2") as client:                                     # doctest: +SKIP
    ...     list(ordered_map(client, len, [("ab",), ("c",)], what="demo"))
    [2, 1]
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..errors import ConfigError

_LOCAL = re.compile(r"local:(\d+)$")
_INSTALL = 'pip install "medclass[cluster]"'
IN_FLIGHT_PER_WORKER = 2  # jobs queued per worker thread: enough to keep it busy, few enough to keep memory flat


def check_cluster(spec: str) -> str:
    """``spec`` if it names a cluster (``tcp://HOST:PORT``, ``tls://...``, ``local:N``), else a :class:`ConfigError`."""
    if _LOCAL.match(spec) or re.match(r"(tcp|tls|inproc|ucx)://\S+$", spec):
        return spec
    raise ConfigError(f"--cluster {spec!r} names no cluster; give the scheduler's address (tcp://HOST:8786, printed "
                      "by `dask scheduler`) or local:N to start N local worker processes.")


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ConfigError(f"--cluster needs Dask distributed, which is not installed; install it with {_INSTALL}.") from None
    return distributed


@contextlib.contextmanager
def open_cluster(spec: str) -> Iterator[Any]:
    """A ``distributed.Client`` on the cluster ``spec`` (see the module docstring); a local cluster is closed after."""
    distributed = _distributed()
    local = _LOCAL.match(check_cluster(spec))
    if local:
        nanny = logging.getLogger("distributed.nanny")
        level = nanny.level
        # distributed writes its workers' settings (OMP_NUM_THREADS=1, PYTHONHASHSEED, MALLOC_TRIM_THRESHOLD_...) into
        # this process's os.environ and leaves them there: restored after, so later work (training, DataLoader
        # workers, subprocesses) runs as it would have without the cluster
        environ = dict(os.environ)
        try:
            with distributed.LocalCluster(n_workers=int(local.group(1)), threads_per_worker=1, processes=True,
                                          dashboard_address=None) as cluster, distributed.Client(cluster) as client:
                yield client
                nanny.setLevel(logging.ERROR)  # closing: "worker process still alive after 4 s, killing" is routine
        finally:
            nanny.setLevel(level)
            for key in set(os.environ) - set(environ):
                del os.environ[key]
            os.environ.update(environ)
    else:
        with distributed.Client(spec) as client:
            yield client


def ordered_map(client: Any, func: Callable[..., Any], jobs: Iterable[tuple], *, what: str,
                stall_timeout: float = 0, in_flight: int | None = None) -> Iterator[Any]:
    """``func(*job)`` for each job on the cluster's workers, yielded in the order of ``jobs``.

    At most ``in_flight`` jobs (default :data:`IN_FLIGHT_PER_WORKER` per worker thread) are submitted ahead, so
    ``jobs`` may be a generator over millions of rows. A result that takes over ``stall_timeout`` seconds
    (0 = no limit) stops the map with the same error as a stalled local pool; the jobs still queued are cancelled.
    """
    from ._pool import stall_error

    in_flight = in_flight or max(1, IN_FLIGHT_PER_WORKER * sum(client.nthreads().values()))
    pending: deque = deque()
    try:
        for job in jobs:
            pending.append(client.submit(func, *job, pure=False))
            if len(pending) >= in_flight:
                yield _result(pending.popleft(), what, stall_timeout, stall_error)
        while pending:
            yield _result(pending.popleft(), what, stall_timeout, stall_error)
    finally:
        if pending:
            client.cancel(list(pending))


def _result(future: Any, what: str, stall_timeout: float, stall_error: Callable[[str, float], Exception]) -> Any:
    try:
        return future.result(timeout=stall_timeout or None)
    except TimeoutError:
        raise stall_error(what, stall_timeout) from None


class ClusterPool:
    """A cluster in place of a local process pool for :func:`medclass.data._pool.watched_imap` (fingerprints, the
    image cache): the same chunks of work, sent to the cluster's workers instead of forked processes."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def imap_chunks(self, func: Callable[[Any], list[Any]], chunks: Iterable[Any], *, what: str,
                    stall_timeout: float) -> Iterator[Any]:
        """``func(chunk)`` for each chunk (each a list of results), flattened, in order."""
        for results in ordered_map(self.client, func, ((c,) for c in chunks), what=what, stall_timeout=stall_timeout):
            yield from results


__all__ = ["ClusterPool", "IN_FLIGHT_PER_WORKER", "check_cluster", "open_cluster", "ordered_map"]
