"""System checks W005-W007 for channel-layer forwarding."""

from __future__ import annotations

from typing import Any

from django.core import checks

from appsync_events.checks import check_forwarding

IN_MEMORY = {"BACKEND": "channels.layers.InMemoryChannelLayer"}
REDIS = {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": []}}


def configure(settings: Any, layers: Any, **aliases: dict[str, Any]) -> None:
    base = settings.APPSYNC_EVENTS["default"]
    settings.CHANNEL_LAYERS = layers
    settings.APPSYNC_EVENTS = {
        name: {**base, "FORWARDING": forwarding} for name, forwarding in aliases.items()
    }


def ids(messages: list[checks.CheckMessage]) -> list[str | None]:
    return [m.id for m in messages]


def test_in_memory_layer_without_in_process_listener_warns(settings):
    """W005: in-memory forwarding needs the listener inside the ASGI process."""
    configure(settings, {"default": IN_MEMORY}, default={})
    (warning,) = check_forwarding()
    assert warning.id == "appsync_events.W005"
    assert "IN_PROCESS" in warning.hint
    assert warning.obj == "APPSYNC_EVENTS['default']['FORWARDING']"


def test_in_process_or_redis_or_disabled_forwarding_is_fine(settings):
    """No warning with IN_PROCESS, with a Redis layer, or with forwarding off."""
    configure(settings, {"default": IN_MEMORY}, default={"IN_PROCESS": True})
    assert check_forwarding() == []
    configure(settings, {"default": REDIS}, default={})
    assert check_forwarding() == []
    configure(settings, {"default": IN_MEMORY}, default={"ENABLED": False})
    assert check_forwarding() == []
    configure(settings, {}, default={})
    assert check_forwarding() == []


def test_missing_layer_warns(settings):
    """W006: FORWARDING['CHANNEL_LAYER'] must name a layer of CHANNEL_LAYERS."""
    configure(settings, {"default": REDIS}, default={"CHANNEL_LAYER": "events"})
    (warning,) = check_forwarding()
    assert warning.id == "appsync_events.W006"
    assert "'events'" in warning.msg


def test_shared_control_channel_warns(settings):
    """W007: two aliases on one layer need distinct control channels."""
    configure(settings, {"default": REDIS}, default={}, other={})
    assert ids(check_forwarding()) == ["appsync_events.W007"]
    configure(settings, {"default": REDIS}, default={}, other={"CONTROL_CHANNEL": "other-ctl"})
    assert check_forwarding() == []


def test_check_is_registered():
    """The check runs with the app's other checks."""
    assert check_forwarding in checks.registry.registry.get_checks()
