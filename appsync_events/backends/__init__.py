"""Publishing backends, chosen per alias like ``EMAIL_BACKEND``.

``APPSYNC_EVENTS[alias]["PUBLISH"]["BACKEND"]`` names one of the built-ins by its short
name (``appsync``, ``websocket``, ``locmem``, ``console``, ``dummy``) or a dotted path to a
:class:`~appsync_events.backends.base.BaseBackend` subclass; ``["OPTIONS"]`` are passed to it
with lowercased keys. :func:`get_backend` returns one shared instance per alias and
backend per process, so HTTP connections stay pooled across publishes; the instances are
closed and forgotten when ``APPSYNC_EVENTS`` changes (``override_settings``).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver

from .._loading import import_class
from ..conf import DEFAULT_API, PUBLISH_BACKENDS, get_api_config
from .base import BaseBackend

__all__ = ["BaseBackend", "close_backends", "get_backend"]

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_backends: dict[tuple[str, str], BaseBackend] = {}


def get_backend(api: str = DEFAULT_API, *, backend: str | None = None) -> BaseBackend:
    """Return the shared publishing backend of alias ``api``.

    Args:
        api: the alias.
        backend: a short name or dotted path overriding the alias's ``BACKEND``
            (``manage.py appsync_publish --via`` uses this); the alias's ``OPTIONS`` still
            apply only to its own configured backend.

    Raises:
        ConfigurationError: the backend cannot be imported, is not a ``BaseBackend``, or
            refuses its options.
    """
    config = get_api_config(api)
    path = PUBLISH_BACKENDS.get(backend, backend) if backend else config.publish.backend
    key = (api, path)
    instance = _backends.get(key)
    if instance is not None and instance.api is config:
        return instance
    with _lock:
        instance = _backends.get(key)
        if instance is not None and instance.api is config:
            return instance
        cls = import_class(
            path,
            BaseBackend,
            base_name="appsync_events.backends.BaseBackend",
            setting=f"APPSYNC_EVENTS[{api!r}]['PUBLISH']['BACKEND']",
            api=api,
            key="PUBLISH",
            check_id="appsync_events.E009",
        )
        options: dict[str, Any] = {}
        if path == config.publish.backend:
            options = {str(k).lower(): v for k, v in config.publish.options.items()}
        instance = cls(config, **options)
        _backends[key] = instance
        return instance


def close_backends() -> None:
    """Close and forget every shared backend (connections are reopened on next use)."""
    with _lock:
        instances = list(_backends.values())
        _backends.clear()
    for instance in instances:
        try:
            instance.close()
        except Exception:
            logger.exception("Closing publishing backend %r failed", instance)


@receiver(setting_changed)
def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "APPSYNC_EVENTS":
        close_backends()
