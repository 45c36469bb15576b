"""The PROXY setting: one rule (proxies.proxy_for) for the websocket and HTTP publishing.

The integration test runs a small forward proxy on 127.0.0.1 (``CONNECT`` tunnels, and
absolute-form requests for plain http) and checks that both transports go through it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from appsync_events.client import AppSyncEventsClient
from appsync_events.config import APIConfig
from appsync_events.emulator import AppSyncEventsEmulator
from appsync_events.exceptions import ConfigurationError
from appsync_events.http import AsyncHTTPPublisher
from appsync_events.proxies import proxy_for
from appsync_events.redaction import redact
from appsync_events.testing.helpers import emulator_settings
from appsync_events.testing.pytest_plugin import (  # noqa: F401 - fixtures
    appsync_emulator,
    appsync_events_emulator,
)

DEADLINE = 10.0
PROXY_VARS = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No proxy variable from the machine leaks into a test."""
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    ("env", "url", "expected"),
    [
        ({}, "https://abc.appsync-api.us-east-1.amazonaws.com/event", None),
        ({"HTTPS_PROXY": "http://p:3128"}, "https://h.example/event", "http://p:3128"),
        ({"HTTPS_PROXY": "http://p:3128"}, "wss://h.example/event/realtime", "http://p:3128"),
        ({"HTTPS_PROXY": "http://p:3128"}, "http://h.example/event", None),
        ({"HTTP_PROXY": "http://q:8080"}, "ws://h.example/event/realtime", "http://q:8080"),
        ({"ALL_PROXY": "socks5://s:1080"}, "wss://h.example/event/realtime", "socks5://s:1080"),
        (
            {"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "h.example"},
            "https://h.example/event",
            None,
        ),
        (
            {"HTTPS_PROXY": "http://p:3128", "no_proxy": ".example"},
            "wss://api.example:8443/event/realtime",
            None,
        ),
    ],
)
def test_environment_proxies(
    clean_env: pytest.MonkeyPatch, env: dict[str, str], url: str, expected: str | None
) -> None:
    """With PROXY True, the variables pick the proxy per scheme; NO_PROXY bypasses it."""
    for name, value in env.items():
        clean_env.setenv(name, value)
    assert proxy_for(url, True) == expected


def test_explicit_and_disabled_proxy(clean_env: pytest.MonkeyPatch) -> None:
    """A URL setting wins over the environment; False ignores the environment."""
    clean_env.setenv("HTTPS_PROXY", "http://env:3128")
    assert proxy_for("https://h.example/event", "http://set:1") == "http://set:1"
    assert proxy_for("https://h.example/event", False) is None


class ForwardProxy:
    """A tiny HTTP forward proxy: CONNECT tunnels and absolute-form requests."""

    def __init__(self) -> None:
        self.requests: list[str] = []  # first line of each proxied connection
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        first, _, rest = head.partition(b"\r\n")
        method, target, version = first.decode().split(" ")
        self.requests.append(f"{method} {target}")
        if method == "CONNECT":
            host, port = target.rsplit(":", 1)
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
        else:  # absolute form: http://host:port/path
            hostport, _, path = target.removeprefix("http://").partition("/")
            host, port = hostport.rsplit(":", 1)
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            up_writer.write(f"{method} /{path} {version}\r\n".encode() + rest)
        await asyncio.gather(self.pipe(reader, up_writer), self.pipe(up_reader, writer))

    @staticmethod
    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def forward_proxy() -> AsyncIterator[ForwardProxy]:
    """A running forward proxy on 127.0.0.1."""
    proxy = ForwardProxy()
    await proxy.start()
    yield proxy
    await proxy.stop()


async def test_websocket_and_http_publish_go_through_the_configured_proxy(
    appsync_events_emulator: AppSyncEventsEmulator,  # noqa: F811
    forward_proxy: ForwardProxy,
    clean_env: pytest.MonkeyPatch,
) -> None:
    """With PROXY set, the websocket (CONNECT) and HTTP publishing both use that proxy."""
    emulator = appsync_events_emulator
    mapping = emulator_settings(emulator, base={})["default"]
    config = APIConfig.from_mapping("default", {**mapping, "PROXY": forward_proxy.url})
    received: list[Any] = []
    got = asyncio.Event()

    async def on_event(event: Any) -> None:
        received.append(event.payload)
        got.set()

    async with AppSyncEventsClient(config, on_event=on_event) as client:
        await client.subscribe("/default/room")
        async with AsyncHTTPPublisher(config) as publisher:
            answer = await publisher.publish("/default/room", [json.dumps({"via": "proxy"})])
        assert len(answer.successful) == 1
        await asyncio.wait_for(got.wait(), DEADLINE)
    assert received == [{"via": "proxy"}]
    host = config.http_host
    assert f"CONNECT {host}" in forward_proxy.requests
    assert f"POST http://{host}/event" in forward_proxy.requests


async def test_the_environment_proxy_is_followed_and_no_proxy_respected(
    appsync_events_emulator: AppSyncEventsEmulator,  # noqa: F811
    forward_proxy: ForwardProxy,
    clean_env: pytest.MonkeyPatch,
) -> None:
    """By default both transports read HTTP_PROXY; NO_PROXY naming the host bypasses it."""
    emulator = appsync_events_emulator
    config = APIConfig.from_mapping("default", emulator_settings(emulator, base={})["default"])
    clean_env.setenv("HTTP_PROXY", forward_proxy.url)
    async with AppSyncEventsClient(config) as client:
        await client.subscribe("/default/room")
    async with AsyncHTTPPublisher(config) as publisher:
        await publisher.publish("/default/room", ['"one"'])
    assert len(forward_proxy.requests) == 2
    forward_proxy.requests.clear()
    clean_env.setenv("NO_PROXY", "127.0.0.1")
    async with AppSyncEventsClient(config) as client:
        await client.subscribe("/default/room")
    async with AsyncHTTPPublisher(config) as publisher:
        await publisher.publish("/default/room", ['"two"'])
    assert forward_proxy.requests == []


async def test_an_unusable_environment_proxy_is_a_configuration_error_without_its_password(
    appsync_events_emulator: AppSyncEventsEmulator,  # noqa: F811
    clean_env: pytest.MonkeyPatch,
) -> None:
    """A proxy variable websockets cannot use is a ConfigurationError naming PROXY; the
    password in the variable's URL never reaches the message."""
    config = APIConfig.from_mapping(
        "default", emulator_settings(appsync_events_emulator, base={})["default"]
    )
    clean_env.setenv("HTTP_PROXY", "ftp://alice:s3cret-pw@proxy.example:21")
    with pytest.raises(ConfigurationError, match=r"\['PROXY'\]") as info:
        async with AppSyncEventsClient(config) as client:
            await client.subscribe("/default/room")
    assert "s3cret-pw" not in str(info.value)
    assert "ftp://alice:<redacted>@proxy.example:21" in str(info.value)
    assert info.value.key == "PROXY"


def test_redact_hides_the_password_of_a_url() -> None:
    """URL user information keeps the user name and loses the password."""
    text = "proxy http://bob:hunter2@p.example:3128 and https://p.example/ and u@example.com"
    assert redact(text) == (
        "proxy http://bob:<redacted>@p.example:3128 and https://p.example/ and u@example.com"
    )
