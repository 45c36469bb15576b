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
    "ConfigurationError": "appsync_events.exceptions",
    "InvalidChannelError": "appsync_events.exceptions",
    "PublishCancelled": "appsync_events.exceptions",
    "get_api_config": "appsync_events.conf",
    "normalize_channel": "appsync_events.paths",
    "channel_matches": "appsync_events.paths",
    "group_name": "appsync_events.paths",
    "publish": "appsync_events.publishing",
    "apublish": "appsync_events.publishing",
    "DeferredPublish": "appsync_events.publishing",
    "Event": "appsync_events.declarative",
    "PublishChangesMixin": "appsync_events.declarative",
    "on": "appsync_events.dispatch",
}

__all__ = [
    "AppSyncEventsError",
    "ConfigurationError",
    "DeferredPublish",
    "Event",
    "InvalidChannelError",
    "PublishCancelled",
    "PublishChangesMixin",
    "__version__",
    "apublish",
    "channel_matches",
    "get_api_config",
    "group_name",
    "normalize_channel",
    "on",
    "publish",
]

if TYPE_CHECKING:  # pragma: no cover
    from .conf import get_api_config
    from .exceptions import (
        AppSyncEventsError,
        ConfigurationError,
        InvalidChannelError,
        PublishCancelled,
    )
    from .declarative import Event, PublishChangesMixin
    from .dispatch import on
    from .paths import channel_matches, group_name, normalize_channel
    from .publishing import DeferredPublish, apublish, publish


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'appsync_events' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
