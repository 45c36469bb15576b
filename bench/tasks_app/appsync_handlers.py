"""A handler standing for one that writes to a database or calls a service: 10 ms."""

from __future__ import annotations

import time

import appsync_events
from appsync_events.events import ReceivedEvent

#: What the handler waits per event, in seconds.
WAIT = 0.010


@appsync_events.on("/default/*")  # enqueued or not: the alias's TASKS['ENQUEUE']
def wait_10ms(event: ReceivedEvent) -> None:
    """Wait 10 ms (I/O, not CPU)."""
    time.sleep(WAIT)
