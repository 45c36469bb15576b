"""What the demo publishes: :class:`MessagePosted`, a declarative event per chat message."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from appsync_events.declarative import Event
from appsync_events.paths import normalize_channel

from .models import Message

__all__ = ["MessagePosted", "message_data"]


def message_data(message: Message) -> dict[str, Any]:
    """Return a message as the JSON-ready dict the pages render."""
    return {
        "id": message.pk,
        "room": message.room,
        "author": message.author,
        "text": message.text,
        "created_at": message.created_at.isoformat(),
    }


class MessagePosted(Event):
    """A message was posted in a room.

    Every payload holds the fields, the template's ``room`` included: a page following
    the wildcard ``/chat/rooms/*`` learns the room only from the payload, because AppSync
    names the subscription, never the concrete channel. The base class adds
    ``event_type`` (``"MessagePosted"``) and a unique ``event_id``.
    """

    channel = "/chat/rooms/{room}"

    room: str
    id: int
    author: str
    text: str
    created_at: datetime

    @classmethod
    def from_message(cls, message: Message) -> MessagePosted:
        """Build the event announcing ``message``."""
        return cls(
            room=message.room,
            id=message.pk,
            author=message.author,
            text=message.text,
            created_at=message.created_at,
        )

    @classmethod
    def channel_for(cls, *, room: str) -> str:
        """Return the channel of ``room`` (``/chat/rooms/lobby``)."""
        return normalize_channel(cls.channel.format(room=room))

    @classmethod
    def wildcard(cls) -> str:
        """Return the pattern that covers every room: ``/chat/rooms/*``."""
        head = cls.channel.split("{", 1)[0].rstrip("/")
        return normalize_channel(f"{head}/*", allow_wildcard=True)
