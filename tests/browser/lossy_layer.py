"""A channel layer that loses chosen events, as a full channel does (the demo's gap test).

The demo's browser test runs ``manage.py appsync_demo`` with
``DJANGO_SETTINGS_MODULE=tests.browser.gap_demo_settings``, whose channel layer is
:class:`LossyChannelLayer`: Channels' in-memory layer, except that a forwarded event whose
``text`` starts with :data:`LOST` finds every consumer's channel full. ``group_send`` then
drops it for that consumer without a word, exactly as it drops the messages of a consumer
that lags past the layer's ``capacity``; which events are lost is known in advance.
"""

from __future__ import annotations

from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer

__all__ = ["LOST", "LossyChannelLayer"]

#: A forwarded chat message whose text starts with this never reaches a consumer.
LOST = "(lost)"


class LossyChannelLayer(InMemoryChannelLayer):
    """The in-memory layer; a forwarded event whose ``text`` starts with :data:`LOST` finds
    the receiving channel full."""

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """Send ``message`` to ``channel``, unless it is an event marked as lost.

        Raises:
            ChannelFull: for a marked event (``group_send`` swallows it, as for a full
                channel).
        """
        payload = message.get("payload")
        text = payload.get("text") if isinstance(payload, dict) else None
        if message.get("type") == "appsync.event" and str(text or "").startswith(LOST):
            raise ChannelFull(channel)
        await super().send(channel, message)
