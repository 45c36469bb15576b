"""The emulator runs the real Lambda authorizer module, as AWS would.

``lambda_authorizer="appsync_events.lambda_authorizer.handler"`` (the ``--lambda-authorizer``
flag, ``EMULATOR['LAMBDA_AUTHORIZER']``) imports the handler by dotted path and calls it
with the request the service sends and a Lambda context; it reads its keys from the same
environment variable as in AWS. Browser-like clients here are plain ``websockets`` ones
speaking the AppSync protocol.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import websockets

from appsync_events import lambda_authorizer
from appsync_events.config import APIConfig
from appsync_events.emulator import AppSyncEventsEmulator, NamespaceHandlers, NamespaceSpec
from appsync_events.emulator.cli import EmulatorExit, build_emulator
from appsync_events.exceptions import ConfigurationError
from appsync_events.lambda_authorizer import KEYS_ENV, encode_token
from appsync_events.protocol import encode_header_subprotocol
from tests.test_emulator_cli import READY, start_module

KEY = "emulator-test-key-0123456789abcdef0123"
HANDLER = "appsync_events.lambda_authorizer.handler"
#: Every request the capturing handler below saw, with its context's request id.
SEEN: list[tuple[dict[str, Any], str, int]] = []


def capturing_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Record what the emulator sends, then decide with the real module."""
    SEEN.append((event, context.aws_request_id, context.get_remaining_time_in_millis()))
    return lambda_authorizer.handler(event, context)


def caching_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The real decision, but cacheable for 300 s: what the module must never answer."""
    answer = lambda_authorizer.handler(event, context)
    return {**answer, "ttlOverride": 300}


def mint(subscribe: list[str], publish: list[str], ttl: int = 300) -> str:
    """A token signed with KEY, as Django's mint() makes them."""
    now = int(time.time())
    claims = {"sub": "42", "iat": now, "exp": now + ttl, "s": subscribe, "p": publish}
    return encode_token(claims, KEY, "k1")


@pytest.fixture
def keys_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The signing keys in the environment, where the authorizer reads them."""
    monkeypatch.setenv(KEYS_ENV, json.dumps({"k1": KEY}))


@pytest.fixture
def emulator(keys_env: None) -> Iterator[AppSyncEventsEmulator]:
    """An emulator whose ``chat`` namespace takes Lambda auth, run by the real module."""
    SEEN.clear()
    with AppSyncEventsEmulator(
        namespaces=[NamespaceSpec("chat", ("API_KEY", "AWS_LAMBDA"), ("AWS_LAMBDA",))],
        lambda_authorizer="tests.test_lambda_authorizer_emulator.capturing_handler",
    ) as emu:
        yield emu


class Browser:
    """One AppSync protocol connection, as a browser in direct mode opens it."""

    def __init__(self, emu: AppSyncEventsEmulator, token: str) -> None:
        self.emu = emu
        self.auth = {"Authorization": token, "host": emu.http_host}
        self.ws: Any = None

    async def connect(self) -> dict[str, Any]:
        protocols = ["aws-appsync-event-ws", encode_header_subprotocol(self.auth)]
        self.ws = await websockets.connect(self.emu.realtime_url, subprotocols=protocols)
        await self.ws.send('{"type":"connection_init"}')
        return await self.next()

    async def next(self) -> dict[str, Any]:
        while True:
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
            if frame["type"] != "ka":
                return frame

    async def subscribe(self, channel: str, op_id: str) -> dict[str, Any]:
        message = {"type": "subscribe", "id": op_id, "channel": channel, "authorization": self.auth}
        await self.ws.send(json.dumps(message))
        return await self.next()

    async def publish(self, channel: str, op_id: str, *events: Any) -> dict[str, Any]:
        message = {
            "type": "publish",
            "id": op_id,
            "channel": channel,
            "events": [json.dumps(e) for e in events],
            "authorization": self.auth,
        }
        await self.ws.send(json.dumps(message))
        return await self.next()

    async def close(self) -> None:
        await self.ws.close()


async def test_connect_subscribe_publish_decided_by_the_module(emulator: AppSyncEventsEmulator):
    """Granted channels are subscribed and published to; the others are refused."""
    browser = Browser(emulator, mint(["/chat/rooms/*"], ["/chat/rooms/7"]))
    assert (await browser.connect())["type"] == "connection_ack"
    assert (await browser.subscribe("/chat/rooms/7", "s1"))["type"] == "subscribe_success"
    assert (await browser.subscribe("/chat/rooms/*", "s2"))["type"] == "subscribe_success"
    refused = await browser.subscribe("/chat/*", "s3")
    assert refused["type"] == "subscribe_error"
    assert refused["errors"][0]["errorType"] == "UnauthorizedException"
    assert (await browser.publish("/chat/rooms/7", "p1", {"n": 1}))["type"] == "publish_success"
    data = [await browser.next(), await browser.next()]
    assert sorted(d["id"] for d in data) == ["s1", "s2"]
    assert {d["event"] for d in data} == {'{"n": 1}'}
    refused = await browser.publish("/chat/rooms/8", "p2", {"n": 2})
    assert refused["type"] == "publish_error"
    assert refused["errors"][0]["errorType"] == "UnauthorizedException"
    await browser.close()
    assert [r.channel for r in emulator.published] == ["/chat/rooms/7"]


async def test_the_handler_gets_the_services_request_shape(emulator: AppSyncEventsEmulator):
    """Each operation reaches the handler as the service sends it, with a Lambda context."""
    token = mint(["/chat/*"], [])
    browser = Browser(emulator, token)
    await browser.connect()
    await browser.subscribe("/chat/rooms/1", "s1")
    await browser.close()
    (connect, connect_id, remaining), (subscribe, subscribe_id, _) = SEEN
    assert connect["authorizationToken"] == token
    assert connect["requestContext"]["operation"] == "EVENT_CONNECT"
    assert "channel" not in connect["requestContext"]
    assert connect["requestHeaders"]["authorization"] == token
    assert subscribe["requestContext"]["operation"] == "EVENT_SUBSCRIBE"
    assert subscribe["requestContext"]["channel"] == "/chat/rooms/1"
    assert subscribe["requestContext"]["channelNamespaceName"] == "chat"
    assert connect_id == connect["requestContext"]["requestId"] != subscribe_id
    assert 0 < remaining <= 10_000


async def test_invalid_tokens_cannot_connect(emulator: AppSyncEventsEmulator):
    """Expired and wrongly signed tokens get connection_error on connect."""
    now = int(time.time())
    expired = mint(["/chat/*"], [], ttl=-1)
    forged = encode_token({"sub": "1", "exp": now + 60, "s": ["/chat/*"], "p": []}, "y" * 40, "k1")
    for token in (expired, forged):
        answer = await Browser(emulator, token).connect()
        assert answer["type"] == "connection_error"
        assert answer["errors"][0]["errorType"] == "UnauthorizedException"


async def test_handler_context_reaches_the_namespace_handlers(emulator: AppSyncEventsEmulator):
    """The module's handlerContext (the user's pk) is the handlers' ``ctx.identity``."""
    identities: list[Any] = []
    emulator.configure(
        handlers={
            "chat": NamespaceHandlers(on_subscribe=lambda ctx: identities.append(ctx.identity))
        }
    )
    browser = Browser(emulator, mint(["/chat/*"], []))
    await browser.connect()
    assert (await browser.subscribe("/chat/x", "s1"))["type"] == "subscribe_success"
    await browser.close()
    assert identities == [{"handlerContext": {"sub": "42"}}]


async def test_a_cached_answer_would_stand_for_another_channel(keys_env: None):
    """Why the module answers ``ttlOverride: 0``: the emulator caches answers per token as
    the service does, so a cacheable "allowed" lets the same token subscribe anywhere."""
    token = mint(["/chat/rooms/*"], [])
    for handler, leaks in (
        ("tests.test_lambda_authorizer_emulator.caching_handler", True),
        (HANDLER, False),
    ):
        with AppSyncEventsEmulator(
            namespaces=[NamespaceSpec("chat", ("AWS_LAMBDA",), ("AWS_LAMBDA",))],
            lambda_authorizer=handler,
        ) as emu:
            browser = Browser(emu, token)
            await browser.connect()
            assert (await browser.subscribe("/chat/rooms/1", "s1"))["type"] == "subscribe_success"
            answer = await browser.subscribe("/chat/secret", "s2")
            await browser.close()
        assert (answer["type"] == "subscribe_success") is leaks, handler


def test_the_flag_and_the_setting_name_the_handler(keys_env: None) -> None:
    """``--lambda-authorizer`` and ``EMULATOR['LAMBDA_AUTHORIZER']`` load the handler."""
    from_flag = build_emulator({"lambda_authorizer": HANDLER})
    api = APIConfig.from_mapping(
        "local",
        {
            "HTTP_URL": "http://127.0.0.1:9/event",
            "AUTH": {"API_KEY": "da2-local"},
            "EMULATOR": {"LAMBDA_AUTHORIZER": HANDLER},
        },
    )
    from_setting = build_emulator({}, api=api)
    token = mint([], [])
    request = {"authorizationToken": token, "requestContext": {"operation": "EVENT_CONNECT"}}
    for emu in (from_flag, from_setting):
        stand_in = emu.authorizer.lambda_authorizer
        assert stand_in is not None
        assert stand_in(request) == {
            "isAuthorized": True,
            "ttlOverride": 0,
            "handlerContext": {"sub": "42"},
        }


def test_a_bad_handler_path_is_a_configuration_error() -> None:
    """A path that cannot be imported, or names nothing callable, is refused up front."""
    with pytest.raises(EmulatorExit) as caught:
        build_emulator({"lambda_authorizer": "appsync_events.nothing_here.handler"})
    assert caught.value.status == 2
    assert "appsync_events.nothing_here.handler" in str(caught.value)
    with pytest.raises(ConfigurationError, match="not callable"):
        AppSyncEventsEmulator(lambda_authorizer="appsync_events.lambda_authorizer.KEYS_ENV")
    with pytest.raises(ConfigurationError, match="dotted path"):
        APIConfig.from_mapping(
            "local",
            {
                "HTTP_URL": "http://127.0.0.1:9/event",
                "AUTH": {"API_KEY": "da2-local"},
                "EMULATOR": {"LAMBDA_AUTHORIZER": "not a path"},
            },
        )


def test_module_serves_with_the_authorizer_and_refuses_a_bad_path(keys_env: None) -> None:
    """``python -m appsync_events.emulator --lambda-authorizer`` (no Django) serves with the
    module, and exits 2 with one line for a path it cannot import."""
    proc = start_module("--port", "0", "--lambda-authorizer", HANDLER)
    try:
        assert proc.stdout is not None
        assert READY.match(proc.stdout.readline())
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
    assert proc.returncode == 0
    proc = start_module("--lambda-authorizer", "appsync_events.nothing_here.handler")
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert out == ""
    [line] = err.splitlines()
    assert line.startswith("python -m appsync_events.emulator: error: Cannot use ")
    assert "appsync_events.nothing_here.handler" in line
