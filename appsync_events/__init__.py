"""django-appsync-events: the Django way to run realtime on AWS AppSync Events.

The public API is importable from here. Names are resolved lazily on first access, so
``import appsync_events`` never imports models, settings or the app registry; only
documented names are public.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0.dev0"

# name -> module that defines it
_LAZY: dict[str, str] = {
    "AppSyncEventsError": "appsync_events.exceptions",
    "AuthError": "appsync_events.exceptions",
    "ConfigurationError": "appsync_events.exceptions",
    "ConnectionFailed": "appsync_events.exceptions",
    "ConnectionRejected": "appsync_events.exceptions",
    "EventEncodingError": "appsync_events.exceptions",
    "EventTooLargeError": "appsync_events.exceptions",
    "InvalidChannelError": "appsync_events.exceptions",
    "OperationError": "appsync_events.exceptions",
    "PartialPublishError": "appsync_events.exceptions",
    "ProtocolError": "appsync_events.exceptions",
    "PublishCancelled": "appsync_events.exceptions",
    "PublishError": "appsync_events.exceptions",
    "SubscriptionError": "appsync_events.exceptions",
    "ValidationError": "appsync_events.exceptions",
    "get_api_config": "appsync_events.conf",
    "channel_matches": "appsync_events.paths",
    "group_name": "appsync_events.paths",
    "normalize_channel": "appsync_events.paths",
    "PublishResult": "appsync_events.results",
    "ReceivedEvent": "appsync_events.events",
    "DeferredPublish": "appsync_events.publishing",
    "apublish": "appsync_events.publishing",
    "publish": "appsync_events.publishing",
    "Event": "appsync_events.declarative",
    "PublishChangesMixin": "appsync_events.declarative",
    "Router": "appsync_events.dispatch",
    "asimulate_event": "appsync_events.dispatch",
    "on": "appsync_events.dispatch",
    "simulate_event": "appsync_events.dispatch",
    "AppSyncEventsClient": "appsync_events.client",
    "Listener": "appsync_events.listener",
    "websocket_publish_safe": "appsync_events.auth",
    "AppSyncEventsEmulator": "appsync_events.emulator",
    "AppSyncEventsConsumer": "appsync_events.consumers",
    "websocket_application": "appsync_events.routing",
    "AppSyncEventsLifespan": "appsync_events.asgi",
}

__all__ = [
    "AppSyncEventsClient",
    "AppSyncEventsConsumer",
    "AppSyncEventsEmulator",
    "AppSyncEventsError",
    "AppSyncEventsLifespan",
    "AuthError",
    "ConfigurationError",
    "ConnectionFailed",
    "ConnectionRejected",
    "DeferredPublish",
    "Event",
    "EventEncodingError",
    "EventTooLargeError",
    "InvalidChannelError",
    "Listener",
    "OperationError",
    "PartialPublishError",
    "ProtocolError",
    "PublishCancelled",
    "PublishChangesMixin",
    "PublishError",
    "PublishResult",
    "ReceivedEvent",
    "Router",
    "SubscriptionError",
    "ValidationError",
    "__version__",
    "apublish",
    "asimulate_event",
    "channel_matches",
    "get_api_config",
    "group_name",
    "normalize_channel",
    "on",
    "publish",
    "simulate_event",
    "websocket_application",
    "websocket_publish_safe",
]

if TYPE_CHECKING:  # pragma: no cover
    from .asgi import AppSyncEventsLifespan
    from .auth import websocket_publish_safe
    from .client import AppSyncEventsClient
    from .conf import get_api_config
    from .consumers import AppSyncEventsConsumer
    from .declarative import Event, PublishChangesMixin
    from .dispatch import Router, asimulate_event, on, simulate_event
    from .emulator import AppSyncEventsEmulator
    from .events import ReceivedEvent
    from .exceptions import (
        AppSyncEventsError,
        AuthError,
        ConfigurationError,
        ConnectionFailed,
        ConnectionRejected,
        EventEncodingError,
        EventTooLargeError,
        InvalidChannelError,
        OperationError,
        PartialPublishError,
        ProtocolError,
        PublishCancelled,
        PublishError,
        SubscriptionError,
        ValidationError,
    )
    from .listener import Listener
    from .paths import channel_matches, group_name, normalize_channel
    from .publishing import DeferredPublish, apublish, publish
    from .results import PublishResult
    from .routing import websocket_application


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'appsync_events' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
