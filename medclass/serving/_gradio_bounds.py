"""What Gradio 6 keeps in memory and on disk per session, event and upload, bounded for a server that runs for weeks.

The web app is one Gradio ``Blocks``; under a long load test (``bench/bench_webapp_load.py``,
``bench/diag_webapp_memory.py``) these of Gradio's stores grew with every analysis or upload, and
:func:`bound_gradio_state` bounds each:

- the component updates of each session (page load or API call): the newest :data:`SESSIONS_KEPT`;
- the timings of past events for Gradio's monitoring summary: the newest :data:`EVENTS_TIMED`;
- the ids of each session's pending events: a session's entry goes once it has none pending
  (:class:`_PendingEventIds`);
- uploads and shown images: deleted by Gradio's ``delete_cache`` round, which gets a stable view of each set
  of files (:class:`_FilesToDelete`) and also sees the empty temporary files that ``gr.File`` leaves behind
  (:class:`_StrayFiles`).

Hand-written because Gradio offers no setting for the last three. Gradio's tracker has reports of such growth
(gradio-app/gradio#11602, #13154; the fixes merged for them, in 6.31, the newest release, still leave a session's
emptied set behind). Each class names the Gradio code it works around, so that a Gradio upgrade can drop it.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import gradio as gr

# browser sessions (page loads, API calls) whose component updates Gradio keeps (its default, 10,000, is ~90 KB
# each here: memory grew by ~0.9 GB); an evicted session only loses what the next analysis sets again
SESSIONS_KEPT = 500
# past events whose timings Gradio keeps for its monitoring summary (its default, 10,000, ~1 KB each)
EVENTS_TIMED = 1000


def bound_gradio_state(demo: gr.Blocks, upload_folder: str) -> None:
    """Bound what ``demo`` keeps per session, event and upload (see the module doc); call it once the Blocks is
    built, before it is mounted or launched. ``upload_folder``: Gradio's upload folder (a component's
    ``GRADIO_CACHE``)."""
    demo.state_session_capacity = SESSIONS_KEPT  # read when the app is created (launch() or mount_gradio_app)
    queue = demo._queue  # created with the Blocks; mount_gradio_app and launch() keep it
    queue.ANALYTICS_MAX_EVENTS = EVENTS_TIMED
    queue.pending_event_ids_session = _PendingEventIds(queue.pending_event_ids_session)
    demo.temp_file_sets[:] = [*map(_FilesToDelete, demo.temp_file_sets), _StrayFiles(upload_folder)]


class _PendingEventIds(dict):
    """Gradio's ids of pending events by session hash (``Queue.pending_event_ids_session``), without the sessions
    that have none pending.

    Gradio 6 adds a session's set when the session queues its first event (``Queue.push``) and removes the ids as
    their results are delivered (``queue_data_helper`` in ``routes.py``), but drops the emptied set only when a
    client disconnects: one entry for every page load and every API call, for as long as the server runs (~0.5 KB
    each, and ``GET /gradio_api/call/<fn>/<event id>`` goes through all of them to find a finished event's session).

    When a new session is added and the dict has doubled since the last sweep, the sessions with an empty set
    are dropped first: amortised O(1) a session. It runs on the event loop inside ``Queue.push``, where no other
    coroutine can be between emptying a session's set and reading it (Gradio does both without an ``await``), and a
    session that queues again gets a new set, as a new one does.
    """

    MIN_SWEEP = 64

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._sweep_at = max(2 * len(self), self.MIN_SWEEP)

    def __setitem__(self, session: str, ids: set[str]) -> None:
        if session not in self and len(self) >= self._sweep_at:
            for idle in [s for s, pending in self.items() if not pending]:
                del self[idle]
            self._sweep_at = max(2 * len(self), self.MIN_SWEEP)
        super().__setitem__(session, ids)


class _FilesToDelete(set):
    """One of Gradio's sets of files to delete (the uploads, each component's shown images) as its deletion round
    sees it: a copy taken at once to go through, and removals applied at once.

    Gradio 6 (``route_utils.delete_files_created_by_app``) iterates the set itself in a worker thread while the
    upload route and the analyses add to it: under load it failed with "Set changed size during iteration", and
    the failure ends Gradio's deletion task for good (nothing is deleted again while the server runs).
    """

    def __init__(self, files: set[str]) -> None:
        super().__init__()
        self.files = files

    def __iter__(self) -> Iterator[str]:
        return iter(self.files.copy())  # one C call: no other thread changes the set during it

    def __isub__(self, removed: Any) -> "_FilesToDelete":
        self.files.difference_update(removed)
        return self


class _StrayFiles(set):
    """The loose ``tmp*`` files directly in the upload folder, listed afresh each time Gradio's ``delete_cache``
    round asks (it removes those older than its age), so they are deleted with the uploads.

    ``gr.File(type="filepath")`` creates an empty temporary file there on every event and never removes
    it (Gradio 6, ``components/file.py``); uploads and shown images live in sub-folders, and an upload in
    flight is a young ``tmp*`` file that the age keeps.
    """

    def __init__(self, folder: str) -> None:
        super().__init__()
        self.folder = folder

    def __iter__(self) -> Iterator[str]:
        try:
            with os.scandir(self.folder) as entries:
                return iter([e.path for e in entries if e.name.startswith("tmp") and e.is_file(follow_symlinks=False)])
        except OSError:
            return iter([])

    def __isub__(self, removed: Any) -> "_StrayFiles":
        return self  # nothing to forget: the folder is listed again next round

