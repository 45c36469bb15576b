"""What the listener hands to signals, handlers and consumers: :class:`ReceivedEvent`.

AppSync does not tell a subscriber which concrete channel an event was published to:
a ``data`` frame names only the subscription it matched. An event received on
``/chat/*`` may come from ``/chat/rooms/7`` or ``/chat/lobby``; ``subscription`` is
``/chat/*`` either way. Publishers that want receivers to know the concrete channel put
it (or the fields it is built from) in the payload, as the declarative event classes
of :mod:`appsync_events.declarative` do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["ReceivedEvent"]


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ReceivedEvent:
    """One event as received on one subscription.

    Attributes:
        api: the settings alias of the API it came from.
        subscription: the normalised path of the subscription it arrived on (may be a
            wildcard such as ``/chat/*``); **not** the concrete channel.
        payload: the decoded JSON value.
        raw: the JSON text exactly as the service delivered it.
        subscription_id: the protocol id of that subscription.
        received_at: when the frame was read (UTC); frames the client read from the
            socket in one go share one timestamp.
    """

    api: str
    subscription: str
    payload: Any
    raw: str
    subscription_id: str = ""
    received_at: datetime = field(default_factory=_now)
