"""Python stand-ins for a namespace's ``onPublish`` / ``onSubscribe`` handlers.

AppSync runs APPSYNC_JS handlers (or a direct Lambda) per namespace; the emulator runs
plain Python callables with the same ``ctx`` shape
(https://docs.aws.amazon.com/appsync/latest/eventapi/channel-namespace-handlers.html) and
maps their outcomes the way the service does:

``on_publish(ctx) -> list | None``
    Return ``None`` to broadcast the events unchanged, or a list of
    ``{"id": ..., "payload": ...}`` (broadcast, payload transformed),
    ``{"id": ..., "error": "..."}`` (not broadcast; listed in ``failed``) and ``None``
    entries (ignored). Events whose id is not returned are dropped: not broadcast, and
    listed in ``successful`` (the service's behaviour is unknown here; we chose this).
    Unknown or duplicate ids are handler errors. Raise :class:`HandlerError` (like
    ``util.error``) to refuse the whole publish (HTTP 403 / ``publish_error``) or
    :class:`HandlerUnauthorized` (``util.unauthorized``).
``on_subscribe(ctx) -> None``
    Raise :class:`HandlerError` or :class:`HandlerUnauthorized` to refuse the
    subscription (``subscribe_error``).

Callables run in a worker thread, so they may block (and use the Django ORM).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

__all__ = [
    "HandlerContext",
    "HandlerError",
    "HandlerUnauthorized",
    "IncomingEvent",
    "NamespaceHandlers",
    "PublishHandler",
    "SubscribeHandler",
]


class HandlerError(Exception):
    """Raise from a handler to refuse the operation with ``message`` (``util.error``)."""

    def __init__(self, message: str, error_type: str | None = None) -> None:
        self.message = message
        self.error_type = error_type
        super().__init__(message)


class HandlerUnauthorized(Exception):
    """Raise from a handler to refuse the operation as unauthorized (``util.unauthorized``)."""


@dataclass(frozen=True, slots=True)
class IncomingEvent:
    """One event as a publish handler sees it: the service's UUID and the parsed payload."""

    id: str
    payload: Any


@dataclass(slots=True)
class HandlerContext:
    """The ``ctx`` a handler receives, as the AWS handler guide describes it.

    Attributes:
        operation: ``"PUBLISH"`` or ``"SUBSCRIBE"``.
        channel: the normalised channel path (a pattern for subscribe).
        segments: its segments (``"*"`` last for a wildcard subscription).
        namespace: the channel namespace.
        events: the events of a publish (empty for subscribe).
        identity: the caller's identity (``None`` for API keys).
        auth_mode: the mode that authorized the operation.
        headers: the authorization header object / HTTP headers, lowercased.
        transport: ``"http"`` or ``"websocket"``.
        stash: a dict the handler may use freely.
    """

    operation: str
    channel: str
    segments: tuple[str, ...]
    namespace: str
    events: list[IncomingEvent]
    identity: Mapping[str, Any] | None
    auth_mode: str
    headers: Mapping[str, str]
    transport: str
    stash: dict[str, Any] = field(default_factory=dict)


PublishHandler: TypeAlias = Callable[[HandlerContext], Sequence[Mapping[str, Any] | None] | None]
SubscribeHandler: TypeAlias = Callable[[HandlerContext], None]


@dataclass(frozen=True, slots=True)
class NamespaceHandlers:
    """The handler stand-ins of one namespace (either may be ``None``)."""

    on_publish: PublishHandler | None = None
    on_subscribe: SubscribeHandler | None = None
