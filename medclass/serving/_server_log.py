"""The server log of ``medclass serve``: what a user did (a client that left mid-request) is one warning line,
a fault of the server keeps its traceback.

uvicorn logs every exception that escapes the app as ``ERROR: Exception in ASGI application`` with its
traceback. One of them is no fault of the server: :class:`starlette.requests.ClientDisconnect`, raised when a
client closes its connection while its upload is still being read (Gradio's upload route, the API's
``/predict``), e.g. a user who closes the tab or a flaky network. :func:`uvicorn_log_config` is uvicorn's own
logging setup with :class:`UserFaultFilter` on its error logger, which turns such a record into one warning
line (the traceback kept with ``debug``) and leaves every other record as it was. A warning that a normal
request can give each time (:data:`PER_REQUEST_WARNINGS`: Grad-CAM's empty maps for a model without evidence for
the decided class) is logged once, the repeats only with ``debug`` (:class:`FirstOnlyFilter`).

>>> uvicorn.run(app, log_config=uvicorn_log_config(debug=False))  # doctest: +SKIP
"""
from __future__ import annotations

import copy
import logging
from typing import Any

from starlette.requests import ClientDisconnect

#: exceptions a client causes, none a fault of the server, and the line that reports each
USER_FAULTS: dict[type[BaseException], str] = {
    ClientDisconnect: "a client disconnected before its request was complete; nothing was analysed for it",
}


#: loggers whose warnings a normal request can give every time, and a text that identifies each warning
PER_REQUEST_WARNINGS: dict[str, str] = {
    "medclass.explain.cam": "maps are empty",
}


def _user_fault(exc: BaseException | None) -> str:
    """The one-line report of ``exc`` when a client caused it (every exception of a group too), else ''."""
    if isinstance(exc, BaseExceptionGroup):  # anyio task groups wrap what their tasks raised
        lines = {_user_fault(e) for e in exc.exceptions}
        return lines.pop() if len(lines) == 1 and "" not in lines else ""
    return next((line for kind, line in USER_FAULTS.items() if isinstance(exc, kind)), "")


class UserFaultFilter(logging.Filter):
    """Rewrites a log record whose exception a client caused (:data:`USER_FAULTS`) into one warning line,
    traceback dropped unless ``debug``; every other record passes unchanged (a server fault keeps its traceback)."""

    def __init__(self, debug: bool = False) -> None:
        super().__init__()
        self.debug = debug

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: D102
        line = _user_fault(record.exc_info[1] if record.exc_info else None)
        if line:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg, record.args = line + (" (--debug shows the traceback)" if not self.debug else ""), ()
            if not self.debug:
                record.exc_info, record.exc_text = None, None
        return True


class FirstOnlyFilter(logging.Filter):
    """Lets the first record that contains ``text`` through, marked as such, and the later ones only when ``debug``
    (a server would otherwise log the same warning for every request); other records pass."""

    def __init__(self, text: str, debug: bool = False) -> None:
        super().__init__()
        self.text, self.debug, self.seen = text, debug, 0

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: D102
        if self.text not in str(record.msg):
            return True
        self.seen += 1
        if self.seen == 1 and not self.debug:
            record.msg = f"{record.msg} (logged once; later requests' repeats with --debug)"
        return self.seen == 1 or self.debug


def uvicorn_log_config(debug: bool = False) -> dict[str, Any]:
    """uvicorn's default logging setup with :class:`UserFaultFilter` on its error logger (``debug``: keep the
    traceback of what a client caused) and :class:`FirstOnlyFilter` on each of :data:`PER_REQUEST_WARNINGS`."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    filters = config.setdefault("filters", {})
    filters["user_faults"] = {"()": UserFaultFilter, "debug": debug}
    config["loggers"]["uvicorn.error"]["filters"] = ["user_faults"]
    for i, (logger, text) in enumerate(PER_REQUEST_WARNINGS.items()):
        filters[f"first_only_{i}"] = {"()": FirstOnlyFilter, "text": text, "debug": debug}
        config["loggers"][logger] = {"filters": [f"first_only_{i}"]}
    return config
