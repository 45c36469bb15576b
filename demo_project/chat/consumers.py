"""The demo's browser websocket: the library's consumer, plus the listener status panel."""

from __future__ import annotations

import re
from typing import Any

from appsync_events.consumers import AppSyncEventsConsumer

from .models import ROOM_PATTERN
from .status import STATUS_GROUP, status

__all__ = ["ChatConsumer"]

# What a page may follow: one room, or every room through the wildcard.
_FOLLOWABLE = re.compile(rf"^/chat/rooms/(?:{ROOM_PATTERN}|\*)\Z")


class ChatConsumer(AppSyncEventsConsumer):
    """Relay chat events to the page, and the listener's status to its status panel.

    The demo has no accounts: its ``GRANTS`` (settings) let everyone subscribe below
    ``/chat/rooms/`` and grant no publishing (messages are posted through the Django view,
    which saves them). On top of the grants, a page may follow only one room
    (``/chat/rooms/<room>``) or the all-rooms wildcard (``/chat/rooms/*``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._accepted = False

    async def can_subscribe(self, user: Any, channel: str) -> bool:
        """Allow what GRANTS allow, and of that only one room or the all-rooms wildcard."""
        return _FOLLOWABLE.match(channel) is not None and await super().can_subscribe(user, channel)

    async def accept(self, subprotocol: str | None = None, headers: Any = None) -> None:
        """Accept the socket and remember that it was accepted."""
        await super().accept(subprotocol, headers)
        self._accepted = True

    async def connect(self) -> None:
        """Accept the socket (the library's checks), then send the current status."""
        await super().connect()
        if not self._accepted:
            return  # refused: the library logged why
        await self.channel_layer.group_add(STATUS_GROUP, self.channel_name)
        await self.send_json({"type": "status", "status": status.snapshot()})

    async def disconnect(self, code: int) -> None:
        """Leave the status group and every followed channel."""
        if self._accepted:
            await self.channel_layer.group_discard(STATUS_GROUP, self.channel_name)
        await super().disconnect(code)

    async def demo_status(self, message: dict[str, Any]) -> None:
        """Relay a status snapshot (channel-layer type ``demo.status``) to the page."""
        await self.send_json({"type": "status", "status": message["status"]})
