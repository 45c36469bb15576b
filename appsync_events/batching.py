"""Encoding, size checks and chunking of events: everything a publish checks before I/O.

No sockets here. :func:`encode_events` turns the caller's values into the JSON texts the
service carries (and fails naming the event's position and type); :func:`chunk_indices`
splits them into requests bounded by the event count **and** the request body size, using
the exact wire body :func:`request_body` builds (``{"channel":…,"events":[…]}``, compact).

No Django at import time: the default encoder (Django's ``DjangoJSONEncoder``, as
``PUBLISH['ENCODER']`` defaults to) is loaded on first use; without Django, pass
``encoder=json.JSONEncoder`` or your own.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

from ._loading import import_string
from .exceptions import ConfigurationError, EventEncodingError, EventTooLargeError
from .limits import EVENTS_PER_PUBLISH, MAX_EVENT_BYTES, MAX_REQUEST_BYTES
from .protocol import dumps

__all__ = [
    "DEFAULT_ENCODER",
    "chunk_indices",
    "encode_event",
    "encode_events",
    "load_encoder",
    "request_body",
]


#: The encoder used when none is given (``PUBLISH['ENCODER']``'s default).
DEFAULT_ENCODER = "django.core.serializers.json.DjangoJSONEncoder"


@lru_cache(maxsize=32)
def load_encoder(path: str) -> type[json.JSONEncoder]:
    """Import the JSON encoder class named by ``path`` (``PUBLISH['ENCODER']``).

    Raises:
        ConfigurationError: when it cannot be imported or is not a ``JSONEncoder``.
    """
    try:
        cls = import_string(path)
    except ImportError as exc:
        raise ConfigurationError(
            f"APPSYNC_EVENTS PUBLISH['ENCODER'] = {path!r} cannot be imported: {exc}",
            key="PUBLISH",
            check_id="appsync_events.E009",
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, json.JSONEncoder)):
        raise ConfigurationError(
            f"APPSYNC_EVENTS PUBLISH['ENCODER'] = {path!r} is not a json.JSONEncoder subclass.",
            key="PUBLISH",
            check_id="appsync_events.E009",
        )
    return cls


def encode_event(
    event: Any,
    *,
    index: int = 0,
    encoder: type[json.JSONEncoder] | None = None,
    max_bytes: int = MAX_EVENT_BYTES,
) -> str:
    """Encode one event as compact JSON text and check its size.

    Args:
        event: any JSON-serialisable value (``encoder`` handles datetimes, Decimals...).
        index: the event's position in the caller's arguments, for error messages.
        encoder: the ``JSONEncoder`` subclass to use (default: :data:`DEFAULT_ENCODER`).
        max_bytes: the per-event limit, in UTF-8 bytes.

    Raises:
        EventEncodingError: the value (or something inside it) is not serialisable, or
            holds NaN/infinity, which JSON cannot carry.
        EventTooLargeError: the encoded text is over ``max_bytes``.
    """
    if encoder is None:
        encoder = load_encoder(DEFAULT_ENCODER)
    try:
        text = json.dumps(
            event, cls=encoder, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError, RecursionError) as exc:
        raise EventEncodingError(
            f"Event at index {index} (a {type(event).__name__}) cannot be encoded as JSON: "
            f"{exc}. Pass dicts, lists, strings, numbers, booleans or None (datetimes, "
            "Decimals and UUIDs work with the default encoder), or set "
            "PUBLISH['ENCODER'] to an encoder that knows this type.",
            index=index,
        ) from None
    size = len(text.encode())
    if size > max_bytes:
        raise EventTooLargeError(
            f"Event at index {index} is {size} bytes once encoded; AppSync accepts at most "
            f"{max_bytes} bytes per event. Send a reference (an id or URL) instead of the data.",
            index=index,
            size=size,
            limit=max_bytes,
        )
    return text


def encode_events(
    events: Iterable[Any],
    *,
    encoder: type[json.JSONEncoder] | None = None,
    max_bytes: int = MAX_EVENT_BYTES,
) -> tuple[str, ...]:
    """Encode every event (see :func:`encode_event`); the first failure raises."""
    if encoder is None:
        encoder = load_encoder(DEFAULT_ENCODER)
    return tuple(
        encode_event(event, index=index, encoder=encoder, max_bytes=max_bytes)
        for index, event in enumerate(events)
    )


def request_body(channel: str, events: Sequence[str]) -> bytes:
    """Return the HTTP publish body: ``{"channel":…,"events":[…]}``, compact UTF-8 JSON."""
    return dumps({"channel": channel, "events": list(events)}).encode()


def chunk_indices(
    channel: str,
    events: Sequence[str],
    *,
    max_events: int = EVENTS_PER_PUBLISH,
    max_bytes: int = MAX_REQUEST_BYTES,
) -> list[list[int]]:
    """Split encoded events into requests of at most ``max_events`` and ``max_bytes``.

    Order is kept: the chunks concatenated are ``0 .. len(events) - 1``. Sizes are those
    of :func:`request_body` exactly (an event text is escaped once more inside it).

    Raises:
        EventTooLargeError: one event alone does not fit in a request of ``max_bytes``
            (impossible with the service's limits, possible with smaller custom ones).
    """
    empty = len(request_body(channel, ()))
    chunks: list[list[int]] = []
    current: list[int] = []
    size = empty
    for index, text in enumerate(events):
        item = len(dumps(text).encode())
        comma = 1 if current else 0
        if current and (len(current) >= max_events or size + comma + item > max_bytes):
            chunks.append(current)
            current, size, comma = [], empty, 0
        if size + item > max_bytes:
            raise EventTooLargeError(
                f"Event at index {index} needs {empty + item} bytes in a publish request; "
                f"a request may carry at most {max_bytes} bytes.",
                index=index,
                size=item,
                limit=max_bytes - empty,
                channel=channel,
            )
        current.append(index)
        size += comma + item
    if current:
        chunks.append(current)
    return chunks
