"""The one settings accessor: ``APPSYNC_EVENTS``, keyed by alias like ``CACHES``.

.. code-block:: python

    APPSYNC_EVENTS = {
        "default": {
            "HTTP_URL": "https://abc.appsync-api.eu-west-1.amazonaws.com/event",
            "AUTH": {"API_KEY": "da2-..."},
            "NAMESPACES": {"chat": {}},
            "SUBSCRIPTIONS": ["/chat/*"],
        },
    }

Lookup precedence for every value: the alias's own key, else the documented default.
Nothing is read at import time. :func:`get_api_config` validates an alias once into a
frozen :class:`~appsync_events.config.APIConfig` (see :mod:`appsync_events.config`, which
needs no Django) and caches it; the cache is dropped whenever Django's
``setting_changed`` fires for ``APPSYNC_EVENTS`` (so ``override_settings`` works).

Every mistake raises :class:`~appsync_events.exceptions.ConfigurationError` (an
``ImproperlyConfigured``) naming the alias and the key, with the system check id it is
reported under (``check_id``).

The typed config objects are re-exported here, so ``from appsync_events.conf import
APIConfig`` keeps working; their home is :mod:`appsync_events.config`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from .config import (
    AUTH_MODES,
    DEFAULT_API,
    PUBLISH_BACKENDS,
    APIConfig,
    AuthModeConfig,
    EmulatorConfig,
    ForwardingConfig,
    HandlerIntegrationConfig,
    ListenerConfig,
    MetricsConfig,
    NamespaceConfig,
    NamespaceHandlersConfig,
    Operation,
    OutboxConfig,
    PublishConfig,
    Timeouts,
    is_loopback_host,
)
from .exceptions import ConfigurationError

__all__ = [
    "AUTH_MODES",
    "DEFAULT_API",
    "PUBLISH_BACKENDS",
    "APIConfig",
    "AuthModeConfig",
    "ConfigurationError",
    "EmulatorConfig",
    "ForwardingConfig",
    "HandlerIntegrationConfig",
    "ListenerConfig",
    "MetricsConfig",
    "NamespaceConfig",
    "NamespaceHandlersConfig",
    "Operation",
    "OutboxConfig",
    "PublishConfig",
    "Timeouts",
    "api_aliases",
    "get_api_config",
    "is_loopback_host",
    "raw_settings",
    "reset",
]


def raw_settings() -> Mapping[str, Any]:
    """Return the ``APPSYNC_EVENTS`` setting as is (``{}`` when unset).

    Raises:
        ConfigurationError: the setting is not a dict of aliases.
    """
    value = getattr(settings, "APPSYNC_EVENTS", {})
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f"APPSYNC_EVENTS must be a dict of aliases, like CACHES, not {type(value).__name__}.",
            key="APPSYNC_EVENTS",
            check_id="appsync_events.E001",
        )
    return value


class _Configs:
    """Caches validated aliases; dropped whenever ``APPSYNC_EVENTS`` changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[str, APIConfig] = {}
        # Bumped by reset(): a parse that started before a reset must not be cached, or
        # a thread racing a settings change would pin the old value.
        self._generation = 0

    def get(self, alias: str) -> APIConfig:
        cached = self._cache.get(alias)
        if cached is not None:
            return cached
        generation = self._generation
        raw = raw_settings()
        if alias not in raw:
            known = ", ".join(repr(a) for a in raw) or "none"
            raise ConfigurationError(
                f"APPSYNC_EVENTS has no alias {alias!r} (configured: {known}). Add "
                f"APPSYNC_EVENTS = {{{alias!r}: {{'HTTP_URL': ..., 'AUTH': {{...}}}}}} "
                "to your settings.",
                api=alias,
                check_id="appsync_events.E010",
            )
        config = APIConfig.from_mapping(alias, raw[alias])
        with self._lock:
            if generation == self._generation:
                self._cache[alias] = config
        return config

    def reset(self) -> None:
        with self._lock:
            self._generation += 1
            self._cache.clear()


_configs = _Configs()


def get_api_config(api: str = DEFAULT_API) -> APIConfig:
    """Return the validated configuration of alias ``api`` (cached until settings change).

    Raises:
        ConfigurationError: naming the alias, the key and what to change.
    """
    return _configs.get(api)


def api_aliases() -> tuple[str, ...]:
    """Return the configured aliases, in settings order."""
    return tuple(raw_settings())


def reset() -> None:
    """Drop every cached alias (done for you when ``APPSYNC_EVENTS`` changes)."""
    _configs.reset()


@receiver(setting_changed)
def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "APPSYNC_EVENTS":
        reset()
