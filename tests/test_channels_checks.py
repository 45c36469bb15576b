"""System checks W005-W007 for channel-layer forwarding, W008-W009 for grants, E014 for
the channel layer browsers need."""

from __future__ import annotations

from typing import Any

from channels.routing import ProtocolTypeRouter
from django.core import checks

from appsync_events.checks import (
    check_channel_layers,
    check_forwarding,
    check_grants,
    routed_consumers,
)
from appsync_events.consumers import AppSyncEventsConsumer
from appsync_events.routing import websocket_application

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


# -- W008 / W009: grants ----------------------------------------------------------------------


class HookConsumer(AppSyncEventsConsumer):
    """A consumer that decides in its own hook (GRANTS do not matter to it)."""

    async def can_subscribe(self, user: Any, channel: str) -> bool:
        return True


#: ASGI applications the tests point ASGI_APPLICATION at.
ROUTED = ProtocolTypeRouter({"websocket": websocket_application()})
ROUTED_HOOK = ProtocolTypeRouter({"websocket": websocket_application(consumer=HookConsumer)})
ROUTED_OTHER_ALIAS = ProtocolTypeRouter({"websocket": websocket_application(api="other")})


def test_routed_consumers_are_found_through_the_routing_tree():
    """The walk finds the consumer behind origin validation, auth and URL routing."""
    assert routed_consumers(ROUTED) == [(AppSyncEventsConsumer, "default")]
    assert routed_consumers(ROUTED_OTHER_ALIAS) == [(AppSyncEventsConsumer, "other")]
    assert routed_consumers(object()) == []


def test_w008_when_the_routed_consumer_has_nothing_granted(settings):
    """W008: the consumer is routed and GRANTS is empty, so browsers get nothing."""
    settings.ASGI_APPLICATION = "tests.test_channels_checks.ROUTED"
    settings.APPSYNC_EVENTS = {"default": {**settings.APPSYNC_EVENTS["default"], "GRANTS": []}}
    (warning,) = check_grants()
    assert warning.id == "appsync_events.W008"
    assert "GRANTS" in warning.hint
    settings.APPSYNC_EVENTS = {
        "default": {**settings.APPSYNC_EVENTS["default"], "GRANTS": [{"SUBSCRIBE": ["/chat/*"]}]}
    }
    assert check_grants() == []


def test_no_w008_for_a_consumer_with_its_own_hook_or_when_not_routed(settings):
    """A consumer overriding can_subscribe, or no routed consumer, is no reason to warn."""
    settings.APPSYNC_EVENTS = {"default": {**settings.APPSYNC_EVENTS["default"], "GRANTS": []}}
    settings.ASGI_APPLICATION = "tests.test_channels_checks.ROUTED_HOOK"
    assert check_grants() == []
    settings.ASGI_APPLICATION = "tests.test_channels_checks.NOT_THERE"
    assert check_grants() == []
    del settings.ASGI_APPLICATION
    assert check_grants() == []


def test_w009_for_a_grant_in_an_undeclared_namespace(settings):
    """W009: a grant naming a namespace the API does not declare grants nothing usable."""
    settings.APPSYNC_EVENTS = {
        "default": {
            **settings.APPSYNC_EVENTS["default"],
            "GRANTS": [{"SUBSCRIBE": ["/chat/*", "/news/*"]}],
        }
    }
    (warning,) = check_grants()
    assert warning.id == "appsync_events.W009"
    assert "'news'" in warning.msg


# -- E014: a channel layer for browsers ------------------------------------------------------


def test_e013_when_the_consumer_is_routed_without_channel_layers(settings):
    """E014: the consumer is routed but CHANNEL_LAYERS is empty (every socket refused)."""
    settings.CHANNEL_LAYERS = {}
    settings.ASGI_APPLICATION = "tests.test_channels_checks.ROUTED"
    (error,) = check_channel_layers()
    assert error.id == "appsync_events.E014"
    assert "routes AppSyncEventsConsumer" in error.msg
    assert "InMemoryChannelLayer" in error.hint


def test_e013_when_forwarding_is_set_without_channel_layers(settings):
    """E014: an alias sets FORWARDING (e.g. IN_PROCESS) but no layer exists."""
    del settings.CHANNEL_LAYERS
    settings.APPSYNC_EVENTS = {
        "default": {**settings.APPSYNC_EVENTS["default"], "FORWARDING": {"IN_PROCESS": True}}
    }
    (error,) = check_channel_layers()
    assert "APPSYNC_EVENTS['default'] sets FORWARDING" in error.msg


def test_no_e013_without_browsers_or_with_a_layer(settings):
    """Projects that relay nothing to browsers, or have a layer, get no error."""
    settings.CHANNEL_LAYERS = {}
    assert check_channel_layers() == []  # no FORWARDING, no routed consumer
    settings.APPSYNC_EVENTS = {
        "default": {**settings.APPSYNC_EVENTS["default"], "FORWARDING": {"ENABLED": False}}
    }
    assert check_channel_layers() == []
    settings.CHANNEL_LAYERS = {"default": IN_MEMORY}
    settings.ASGI_APPLICATION = "tests.test_channels_checks.ROUTED"
    assert check_channel_layers() == []
