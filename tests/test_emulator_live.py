"""Protocol scenarios run against the emulator and, when configured, a real Event API.

Every test here only speaks the wire (raw websocket frames and HTTP requests), so the
same scenario runs against both targets: ``emulator`` always, ``live`` when the
environment names a real AppSync Event API (skipped otherwise):

``APPSYNC_EVENTS_LIVE_URL``
    its HTTP endpoint (``https://….appsync-api.<region>.amazonaws.com/event``);
``APPSYNC_EVENTS_LIVE_API_KEY``
    an API key it accepts on connect, publish and subscribe;
``APPSYNC_EVENTS_LIVE_REALTIME_URL`` (optional)
    its websocket endpoint (derived from the HTTP one otherwise);
``APPSYNC_EVENTS_LIVE_NAMESPACE`` (optional, ``default``)
    a namespace with API-key auth and no handlers.

A difference between the two targets in any of these is a bug in the emulator (or in
what we took for the service's behaviour): fix it, and update docs/emulator.md.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

from appsync_events.emulator import AppSyncEventsEmulator
from tests.test_emulator_helpers import RawClient, http_publish


@dataclass(frozen=True)
class Target:
    """What a scenario needs to know about the service it talks to."""

    http_url: str
    realtime_url: str
    http_host: str
    api_key: str
    namespace: str


def _live_target() -> Target | None:
    url = os.environ.get("APPSYNC_EVENTS_LIVE_URL")
    key = os.environ.get("APPSYNC_EVENTS_LIVE_API_KEY")
    if not url or not key:
        return None
    host = urlsplit(url).netloc
    realtime = os.environ.get("APPSYNC_EVENTS_LIVE_REALTIME_URL") or (
        "wss://" + host.replace(".appsync-api.", ".appsync-realtime-api.", 1) + "/event/realtime"
    )
    namespace = os.environ.get("APPSYNC_EVENTS_LIVE_NAMESPACE", "default")
    return Target(url, realtime, host, key, namespace)


@pytest.fixture(scope="module")
def module_emulator() -> Iterator[AppSyncEventsEmulator]:
    """An emulator with the built-in defaults (one 'default' namespace)."""
    with AppSyncEventsEmulator() as emulator:
        yield emulator


@pytest.fixture(
    params=["emulator", pytest.param("live", marks=pytest.mark.live)],
)
def target(request: pytest.FixtureRequest, module_emulator: AppSyncEventsEmulator) -> Target:
    """The service under test: the emulator, or the real API named by the environment."""
    if request.param == "live":
        live = _live_target()
        if live is None:
            pytest.skip("set APPSYNC_EVENTS_LIVE_URL and APPSYNC_EVENTS_LIVE_API_KEY to run live")
        return live
    module_emulator.reset()
    emu = module_emulator
    return Target(emu.http_url, emu.realtime_url, emu.http_host, emu.api_key, "default")


def auth(target: Target, key: str | None = None) -> dict[str, str]:
    """The API-key header object."""
    return {"host": target.http_host, "x-api-key": key or target.api_key}


async def open_client(target: Target, key: str | None = None) -> RawClient:
    """Open a raw websocket to ``target`` (its URL, its host in the auth)."""
    return await RawClient.open(target, auth(target, key), url=target.realtime_url)  # type: ignore[arg-type]


def channel(target: Target, *rest: str) -> str:
    """A fresh channel under the target's namespace (live runs must not collide)."""
    return "/" + "/".join([target.namespace, "t" + uuid.uuid4().hex[:12], *rest])


async def test_live_handshake(target):
    """connection_init is answered by connection_ack with connectionTimeoutMs."""
    async with await open_client(target) as client:
        assert client.ws.subprotocol == "aws-appsync-event-ws"
        ack = await client.init()
        assert ack["type"] == "connection_ack"
        assert isinstance(ack["connectionTimeoutMs"], int)


async def test_live_bad_key(target):
    """A wrong API key gets connection_error UnauthorizedException."""
    async with await open_client(target, "da2-" + "x" * 26) as client:
        answer = await client.init()
    assert answer["type"] == "connection_error"
    assert answer["errors"][0]["errorType"] == "UnauthorizedException"


async def test_live_round_trip_wildcard_and_batch(target):
    """Own-connection delivery, wildcard at depth, one unchanged data frame per event."""
    base = channel(target)
    async with await open_client(target) as client:
        await client.init()
        answer = await client.subscribe("s" + uuid.uuid4().hex, base + "/*", auth(target))
        assert answer["type"] == "subscribe_success"
        events = ['{"a": 1}', '"<b>&</b>"', "3"]
        answer = await client.publish("p" + uuid.uuid4().hex, base + "/x/y", events, auth(target))
        assert answer["type"] == "publish_success"
        assert answer["failed"] == []
        assert sorted(e["index"] for e in answer["successful"]) == [0, 1, 2]
        received = await client.data(3, within=15)
        assert sorted(d["event"] for d in received) == sorted(events)


async def test_live_http_publish_shape(target):
    """HTTP publish answers successful/failed with an identifier per event."""
    response = await http_publish(
        target,  # type: ignore[arg-type]
        channel(target).lstrip("/"),
        ['{"h":1}', "2"],
        {"x-api-key": target.api_key},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["failed"] == []
    assert all(uuid.UUID(e["identifier"]) for e in body["successful"])


async def test_live_six_events(target):
    """Six events: WS InvalidInputError, HTTP 400 BadRequestException."""
    async with await open_client(target) as client:
        await client.init()
        answer = await client.publish("p6", channel(target), ["1"] * 6, auth(target))
        assert answer["errors"][0]["errorType"] == "InvalidInputError"
    response = await http_publish(
        target,
        channel(target),
        ["1"] * 6,
        {"x-api-key": target.api_key},  # type: ignore[arg-type]
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["errorType"] == "BadRequestException"


async def test_live_unknown_namespace(target):
    """An undeclared namespace is UnauthorizedException on WS publish."""
    async with await open_client(target) as client:
        await client.init()
        answer = await client.publish(
            "pu", "/nosuchns" + uuid.uuid4().hex[:8] + "/x", ["1"], auth(target)
        )
        assert answer["type"] == "publish_error"
        assert answer["errors"][0]["errorType"] == "UnauthorizedException"


async def test_live_event_too_large(target):
    """A 250 KB event fails alone with EventTooLargeException."""
    async with await open_client(target) as client:
        await client.init()
        big = json.dumps("x" * 250_000)
        answer = await client.publish("pl", channel(target), ["1", big], auth(target))
        assert answer["type"] == "publish_success"
        assert [f["index"] for f in answer["failed"]] == [1]
        assert answer["failed"][0]["code"] == "EventTooLargeException"


async def test_live_unsubscribe_unknown(target):
    """Unsubscribing an unknown id gets unsubscribe_error UnknownOperationError."""
    async with await open_client(target) as client:
        await client.init()
        await client.send({"type": "unsubscribe", "id": "never-subscribed"})
        answer = await client.recv_type("unsubscribe_error", within=15)
        assert answer["errors"][0]["errorType"] == "UnknownOperationError"
