"""The handler the listener enqueues and the ``db_worker`` processes run.

Every delivery appends a line to the file ``APPSYNC_TASKS_LOG``: ``attempt <key> <pid>
<time>`` first, then ``duplicate <key> <pid> <time>`` when the idempotency helper
recognises the event as handled already. The first delivery of the event whose key is
``APPSYNC_TASKS_BLOCK_KEY`` commits, writes the worker's pid to ``APPSYNC_TASKS_READY``
and then waits (for the test to kill the worker), so its task is left RUNNING.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import appsync_events
from appsync_events.events import ReceivedEvent
from appsync_events.idempotency import event_key, idempotent

_LOG = os.environ.get("APPSYNC_TASKS_LOG", os.devnull)
_BLOCK_KEY = os.environ.get("APPSYNC_TASKS_BLOCK_KEY", "")
_READY = Path(os.environ.get("APPSYNC_TASKS_READY", os.devnull))


def _note(kind: str, key: str) -> None:
    # One write() of one line on an O_APPEND descriptor: lines of both workers never mix,
    # and a line written survives the process being killed right after.
    line = f"{kind} {key} {os.getpid()} {time.time():.6f}\n".encode()
    fd = os.open(_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@idempotent(name="tests.tasks_app.work")
def _first_time(event: ReceivedEvent) -> bool:
    return True


@appsync_events.on("/default/*", enqueue=True)
def work(event: ReceivedEvent) -> None:
    """Record the delivery; let the helper tell a duplicate; block once on the marker."""
    key = event_key(event)
    _note("attempt", key)
    if _first_time(event) is None:
        _note("duplicate", key)
        return
    if key == _BLOCK_KEY and not _READY.exists():
        # Committed and not finished: the test SIGKILLs this worker while it waits here.
        _READY.write_text(str(os.getpid()))
        threading.Event().wait(600)
