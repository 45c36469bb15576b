"""Errors name the likely cause and the fix: an undeclared namespace, an emulator not running."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from appsync_events.client import AppSyncEventsClient
from appsync_events.config import APIConfig
from appsync_events.emulator import AppSyncEventsEmulator
from appsync_events.exceptions import ConnectionFailed, PublishError, SubscriptionError
from appsync_events.http import AsyncHTTPPublisher, HTTPPublisher
from appsync_events.testing.helpers import emulator_settings
from appsync_events.testing.pytest_plugin import (  # noqa: F401 - fixtures
    appsync_emulator,
    appsync_events_emulator,
)


def config_for(emulator: AppSyncEventsEmulator, **extra: Any) -> APIConfig:
    mapping = emulator_settings(emulator, base={})["default"]
    return APIConfig.from_mapping("default", {**mapping, **extra})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_http_publish_to_an_undeclared_namespace_names_it(
    appsync_events_emulator: AppSyncEventsEmulator,  # noqa: F811
) -> None:
    """The service's bare 403 becomes: this namespace is not declared, here are those that are."""
    config = config_for(appsync_events_emulator, NAMESPACES=["chat"])
    with HTTPPublisher(config) as publisher, pytest.raises(PublishError) as info:
        publisher.publish("/news/today", ['"hi"'])
    text = str(info.value)
    assert info.value.status == 403
    assert "UnauthorizedException" in text
    assert "Namespace 'news' is not in APPSYNC_EVENTS['default']['NAMESPACES'] (chat)" in text


async def test_websocket_publish_and_subscribe_to_an_undeclared_namespace_name_it(
    appsync_events_emulator: AppSyncEventsEmulator,  # noqa: F811
) -> None:
    """Over the websocket too; and a refused subscription there is not retried with fresh
    credentials, which could never help."""
    config = config_for(appsync_events_emulator, NAMESPACES=["chat"])
    failures: list[tuple[str, bool]] = []

    async def on_failed(sub: Any, error: Exception, will_retry: bool) -> None:
        failures.append((str(error), will_retry))

    async with AppSyncEventsClient(config, on_subscription_failed=on_failed) as client:
        with pytest.raises(SubscriptionError) as sub_info:
            await client.subscribe("/news/*")
        with pytest.raises(PublishError) as pub_info:
            await client.publish("/news/today", ['"hi"'])
    assert "Namespace 'news' is not in" in str(sub_info.value)
    assert "Namespace 'news' is not in" in str(pub_info.value)
    assert [retry for _, retry in failures] == [False]  # failed at once, no retry


async def test_a_refused_connection_to_this_machine_asks_whether_the_emulator_runs() -> None:
    """Connection refused on loopback: the websocket and HTTP errors say how to start it."""
    port = free_port()
    config = APIConfig.from_mapping(
        "default",
        {"HTTP_URL": f"http://127.0.0.1:{port}/event", "AUTH": {"API_KEY": "da2-hints0000000"}},
    )
    from appsync_events.client import Connection

    async def nothing(*args: Any) -> None:
        return None

    with pytest.raises(ConnectionFailed) as ws_info:
        await Connection.open(config, on_data=nothing)
    async with AsyncHTTPPublisher(config, retries=0) as publisher:
        with pytest.raises(PublishError) as http_info:
            await publisher.publish("/default/a", ['"x"'])
    for error in (ws_info.value, http_info.value):
        assert "Is the emulator running there?" in str(error)
        assert f"python -m appsync_events.emulator --port {port}" in str(error)


def test_no_emulator_hint_for_a_remote_host() -> None:
    """A host that is not this machine gets no emulator hint."""
    from appsync_events.hints import unreachable_hint

    assert unreachable_hint("https://abc.appsync-api.eu-west-1.amazonaws.com/event") == ""
    assert "--port 8765" in unreachable_hint("ws://localhost:8765/event/realtime")
