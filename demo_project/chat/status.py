"""The listener's status, as the demo's status panel shows it, fed by the library's signals.

Receivers of :data:`~appsync_events.signals.connection_state_changed`,
:data:`~appsync_events.signals.subscription_established`,
:data:`~appsync_events.signals.subscription_removed` and
:data:`~appsync_events.signals.event_received` update one in-process
:class:`ListenerStatus` and push a snapshot to the channel-layer group
:data:`STATUS_GROUP`, which :class:`demo_project.chat.consumers.ChatConsumer` relays to
every open page. Connection and subscription changes go out at once; events only mark the
status changed, and one snapshot per :data:`EVENT_UPDATE_INTERVAL` carries them (a busy
room costs a few status messages a second, not one round trip to the channel layer per
event).

The snapshot lives in the process that runs the listener. In the demo that is the ASGI
process itself, so a page opened later gets the current values at once; with a separate
``appsync_listen`` process and Redis, pages get the values with the listener's next update.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from channels.layers import get_channel_layer

from appsync_events.events import ReceivedEvent

__all__ = [
    "STATUS_GROUP",
    "STATUS_MESSAGE_TYPE",
    "ListenerStatus",
    "status",
]

logger = logging.getLogger(__name__)

#: The channel-layer group that receives every status snapshot.
STATUS_GROUP = "demo-chat-status"
#: The ``type`` of those channel-layer messages (the consumer method ``demo_status``).
STATUS_MESSAGE_TYPE = "demo.status"

# How many event ids to remember for de-duplication: one event reaches the listener once per
# matching subscription (``/chat/*``, ``/chat/rooms/*`` and ``/chat/rooms/lobby`` all match
# a message in the lobby), and the panel counts events, not deliveries.
_SEEN_IDS = 1000


@dataclass
class ListenerStatus:
    """What the status panel shows: connection state, last event time, events received.

    Thread-safe: signal receivers may run in the event loop or in a worker thread.
    """

    state: str = "not started"
    reason: str | None = None
    retry_in: float | None = None
    last_event_at: datetime | None = None
    events_received: int = 0
    deliveries: int = 0
    subscriptions: set[str] = field(default_factory=set)
    _seen: OrderedDict[str, None] = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def set_state(self, state: str, reason: str | None, retry_in: float | None) -> None:
        """Record a connection state change."""
        with self._lock:
            self.state = state
            self.reason = reason
            self.retry_in = retry_in
            if state != "connected":
                # Subscriptions do not survive a lost connection; they are re-announced
                # (``subscription_established``) after the reconnect.
                self.subscriptions.clear()

    def add_subscription(self, channel: str) -> None:
        """Record a subscription the service accepted."""
        with self._lock:
            self.subscriptions.add(channel)

    def remove_subscription(self, channel: str) -> None:
        """Forget a subscription the listener dropped."""
        with self._lock:
            self.subscriptions.discard(channel)

    def record_event(self, event: ReceivedEvent) -> bool:
        """Count one delivery, and the event itself when its id was not seen yet.

        Returns:
            Whether this delivery was a new event.
        """
        with self._lock:
            self.deliveries += 1
            self.last_event_at = event.received_at
            key = _event_key(event)
            if key in self._seen:
                self._seen.move_to_end(key)
                return False
            self._seen[key] = None
            if len(self._seen) > _SEEN_IDS:
                self._seen.popitem(last=False)
            self.events_received += 1
            return True

    def reset(self) -> None:
        """Forget everything (tests)."""
        with self._lock:
            self.state = "not started"
            self.reason = None
            self.retry_in = None
            self.last_event_at = None
            self.events_received = 0
            self.deliveries = 0
            self.subscriptions.clear()
            self._seen.clear()

    def snapshot(self) -> dict[str, Any]:
        """Return the status as JSON-ready data."""
        with self._lock:
            return {
                "state": self.state,
                "reason": self.reason,
                "retry_in": self.retry_in,
                "last_event_at": self.last_event_at.isoformat() if self.last_event_at else None,
                "events_received": self.events_received,
                "deliveries": self.deliveries,
                "subscriptions": sorted(self.subscriptions),
                "as_of": datetime.now(UTC).isoformat(),
            }


def _event_key(event: ReceivedEvent) -> str:
    payload = event.payload
    if isinstance(payload, dict):
        for name in ("event_id", "id"):
            value = payload.get(name)
            if isinstance(value, str | int) and not isinstance(value, bool):
                return f"{name}:{value}"
    # No id in the payload: the raw text is the best identity there is.
    return f"raw:{event.raw}"


#: The status of this process's listener.
status = ListenerStatus()


async def broadcast() -> None:
    """Send the current snapshot to every page (the :data:`STATUS_GROUP` group)."""
    layer = get_channel_layer()
    if layer is None:
        logger.warning("No channel layer is configured; the status panel will not update.")
        return
    await layer.group_send(STATUS_GROUP, {"type": STATUS_MESSAGE_TYPE, "status": status.snapshot()})


# -- signal receivers (connected in ChatConfig.ready) ------------------------------------------


async def on_connection_state_changed(
    sender: Any,
    *,
    state: str,
    reason: str | None = None,
    retry_in: float | None = None,
    **kwargs: Any,
) -> None:
    """Record the listener's new connection state and tell the pages."""
    status.set_state(state, reason, retry_in)
    await broadcast()


async def on_subscription_established(sender: Any, *, channel: str, **kwargs: Any) -> None:
    """Record an accepted subscription and tell the pages."""
    status.add_subscription(channel)
    await broadcast()


async def on_subscription_removed(sender: Any, *, channel: str, **kwargs: Any) -> None:
    """Forget a dropped subscription and tell the pages."""
    status.remove_subscription(channel)
    await broadcast()


#: Seconds between two status snapshots caused by events (at most).
EVENT_UPDATE_INTERVAL = 0.25
_scheduled: dict[asyncio.AbstractEventLoop, asyncio.TimerHandle] = {}


def _broadcast_later() -> None:
    """Send one snapshot :data:`EVENT_UPDATE_INTERVAL` from now, unless one is due already."""
    loop = asyncio.get_running_loop()
    if loop in _scheduled:
        return

    def fire() -> None:
        _scheduled.pop(loop, None)
        task = loop.create_task(broadcast())
        task.add_done_callback(_report_failure)

    _scheduled[loop] = loop.call_later(EVENT_UPDATE_INTERVAL, fire)


def _report_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("Broadcasting the status failed", exc_info=task.exception())


async def on_event_received(sender: Any, *, event: ReceivedEvent, **kwargs: Any) -> None:
    """Count a received event; the pages hear of it with the next coalesced snapshot."""
    status.record_event(event)
    _broadcast_later()
