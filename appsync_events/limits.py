"""The service limits appsync_events enforces, in one table.

Sources: the AppSync Events quotas (see ``docs/emulator.md`` for the evidence table).
The client checks these before sending; the emulator enforces the same numbers.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "CHANNEL_MAX_SEGMENTS",
    "CONNECTION_TIMEOUT_MS",
    "EVENTS_PER_PUBLISH",
    "KEEP_ALIVE_INTERVAL",
    "MAX_CONNECTION_LIFETIME",
    "MAX_EVENT_BYTES",
    "MAX_REQUEST_BYTES",
    "OPERATION_ID_RE",
    "PUBLISHES_PER_SECOND",
    "SEGMENT_MAX_LENGTH",
    "SUBSCRIPTIONS_PER_CONNECTION",
]

#: At most this many events in one publish (HTTP or websocket).
EVENTS_PER_PUBLISH: Final = 5

#: One event's serialised JSON text, in UTF-8 bytes. The service says "240 KB"; we read
#: that conservatively as 240,000 bytes so nothing we accept is refused.
MAX_EVENT_BYTES: Final = 240_000

#: The whole publish request body, in bytes.
MAX_REQUEST_BYTES: Final = 1_200_000

#: Subscriptions one websocket connection may hold (adjustable on the service).
SUBSCRIPTIONS_PER_CONNECTION: Final = 200

#: Websocket publish requests per second per connection.
PUBLISHES_PER_SECOND: Final = 25

#: Channel path segments (namespace included) and characters per segment.
CHANNEL_MAX_SEGMENTS: Final = 5
SEGMENT_MAX_LENGTH: Final = 50

#: ``connectionTimeoutMs`` the service sends in ``connection_ack``.
CONNECTION_TIMEOUT_MS: Final = 300_000

#: Seconds between the service's ``ka`` frames.
KEEP_ALIVE_INTERVAL: Final = 60.0

#: Seconds after which the service closes a connection.
MAX_CONNECTION_LIFETIME: Final = 24 * 60 * 60.0

#: Grammar of a subscription or operation ``id``.
OPERATION_ID_RE: Final = re.compile(r"^[A-Za-z0-9_+-]{1,128}\Z")
