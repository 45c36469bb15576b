"""Tests for the websocket client and its supervisor, against scripted servers.

The server here is a small, scriptable AppSync Events stand-in built on ``websockets``
(real sockets on 127.0.0.1, port 0). It exists to script faults exactly: ack timeouts,
``connection_error``, keep-alive silence, garbage frames, refused subscriptions, TCP
drops. Behaviour against the full emulator is covered in ``test_client_emulator.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Response

from appsync_events.auth import decode_header_subprotocol
from appsync_events.client import (
    AppSyncEventsClient,
    Connection,
    StateChange,
    is_auth_error,
    process_exception,
    reconnect_delays,
)
from appsync_events.conf import get_api_config
from appsync_events.events import ReceivedEvent
from appsync_events.exceptions import (
    ConfigurationError,
    ConnectionFailed,
    ConnectionRejected,
    HandshakeTimeout,
    OperationTimeout,
    PublishError,
    SubscriptionError,
    UpgradeRefused,
)
from appsync_events.paths import channel_matches
from appsync_events.protocol import SUBPROTOCOL

API_KEY = "da2-clienttests000000000000000000"
DEADLINE = 10.0  # seconds any awaited condition may take on a loaded 2-core machine


async def until(condition: Callable[[], bool], timeout: float = DEADLINE) -> None:  # noqa: ASYNC109
    """Wait until ``condition()`` is true, re-checking on every loop turn, with a deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.005)


@dataclass
class Peer:
    """One client connection as the fake server sees it."""

    ws: ServerConnection
    auth: dict[str, str]
    subscriptions: dict[str, str] = field(default_factory=dict)  # id -> channel
    closed_code: int | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event)


class FakeAppSync:
    """A scriptable AppSync Events websocket server (for fault scripting only).

    Knobs are plain attributes a test sets before or during the run.
    """

    def __init__(self) -> None:
        self.server: Server | None = None
        self.peers: list[Peer] = []
        self.received: list[dict[str, Any]] = []
        self.connection_timeout_ms = 300_000
        self.send_ack = True
        self.reject_connect = False
        self.http_status: int | None = None
        self.echo_subprotocols = False  # answer with every offered subprotocol (broken proxy)
        self.refuse_channels: dict[str, tuple[str, int]] = {}  # channel -> (errorType, times)
        self.ignore_subscribes: set[str] = set()
        self.failed_marker = "bad"
        self.max_subscriptions = 200
        self.before_publish_answer: list[dict[str, Any]] = []
        self.connected = asyncio.Event()

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/event"

    async def __aenter__(self) -> FakeAppSync:
        self.server = await serve(
            self.handler,
            "127.0.0.1",
            0,
            subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
            select_subprotocol=self.select,
            process_request=self.process_request,
            process_response=self.process_response,
            ping_interval=None,
            compression=None,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    def select(self, connection: ServerConnection, offered: Any) -> Any:
        return SUBPROTOCOL if SUBPROTOCOL in offered else None

    def process_request(self, connection: ServerConnection, request: Any) -> Response | None:
        if self.http_status is not None:
            return Response(self.http_status, "Refused", Headers(), b"refused")
        return None

    def process_response(
        self, connection: ServerConnection, request: Any, response: Response
    ) -> Response:
        if self.echo_subprotocols:
            del response.headers["Sec-WebSocket-Protocol"]
            response.headers["Sec-WebSocket-Protocol"] = request.headers["Sec-WebSocket-Protocol"]
        return response

    @property
    def live(self) -> list[Peer]:
        return [p for p in self.peers if not p.closed.is_set()]

    def active_subscriptions(self) -> list[str]:
        return sorted(ch for p in self.live for ch in p.subscriptions.values())

    async def handler(self, ws: ServerConnection) -> None:
        offered = ws.request.headers.get("Sec-WebSocket-Protocol", "") if ws.request else ""
        header = next(
            (p.strip() for p in offered.split(",") if p.strip().startswith("header-")), None
        )
        peer = Peer(ws, decode_header_subprotocol(header) if header else {})
        self.peers.append(peer)
        try:
            async for frame in ws:
                message = json.loads(frame)
                self.received.append(message)
                await self.on_message(peer, message)
        except Exception:  # noqa: S110 - the client went away; recorded below
            pass
        finally:
            peer.closed_code = ws.close_code
            peer.closed.set()

    async def on_message(self, peer: Peer, message: dict[str, Any]) -> None:
        kind = message["type"]
        ws = peer.ws
        if kind == "connection_init":
            if self.reject_connect:
                await ws.send(
                    json.dumps(
                        {
                            "type": "connection_error",
                            "errors": [
                                {
                                    "errorType": "UnauthorizedException",
                                    "errorCode": 401,
                                    "message": "You are not authorized to make this call.",
                                }
                            ],
                        }
                    )
                )
                await ws.close()
            elif self.send_ack:
                await ws.send(
                    json.dumps(
                        {
                            "type": "connection_ack",
                            "connectionTimeoutMs": self.connection_timeout_ms,
                        }
                    )
                )
                self.connected.set()
        elif kind == "subscribe":
            channel = message["channel"]
            if channel in self.ignore_subscribes:
                return
            refusal = self.refuse_channels.get(channel)
            if refusal is not None and refusal[1] > 0:
                self.refuse_channels[channel] = (refusal[0], refusal[1] - 1)
                await ws.send(
                    json.dumps(
                        {
                            "type": "subscribe_error",
                            "id": message["id"],
                            "errors": [{"errorType": refusal[0], "message": "refused"}],
                        }
                    )
                )
                return
            if len(peer.subscriptions) >= self.max_subscriptions:
                await ws.send(
                    json.dumps(
                        {
                            "type": "subscribe_error",
                            "id": message["id"],
                            "errors": [{"errorType": "MaxSubscriptionsReachedError"}],
                        }
                    )
                )
                return
            peer.subscriptions[message["id"]] = channel
            await ws.send(json.dumps({"type": "subscribe_success", "id": message["id"]}))
        elif kind == "unsubscribe":
            peer.subscriptions.pop(message["id"], None)
            await ws.send(json.dumps({"type": "unsubscribe_success", "id": message["id"]}))
        elif kind == "publish":
            for extra in self.before_publish_answer:
                await ws.send(json.dumps(extra))
            successful, failed = [], []
            delivered = []
            for index, event in enumerate(message["events"]):
                if self.failed_marker in event:
                    failed.append(
                        {
                            "identifier": f"id-{index}",
                            "index": index,
                            "code": "EventTooLargeException",
                            "message": "too large",
                        }
                    )
                else:
                    successful.append({"identifier": f"id-{index}", "index": index})
                    delivered.append(event)
            await ws.send(
                json.dumps(
                    {
                        "type": "publish_success",
                        "id": message["id"],
                        "successful": successful,
                        "failed": failed,
                    }
                )
            )
            await self.broadcast(message["channel"], delivered)

    async def broadcast(self, channel: str, events: list[str]) -> None:
        """Deliver ``events`` to every matching subscription on every live connection."""
        for peer in self.live:
            for sub_id, pattern in list(peer.subscriptions.items()):
                if channel_matches(pattern, channel):
                    for event in events:
                        await peer.ws.send(
                            json.dumps({"type": "data", "id": sub_id, "event": event})
                        )

    def drop(self) -> None:
        """Cut every live connection at the TCP level (no close frame)."""
        for peer in self.live:
            peer.ws.transport.abort()


@pytest.fixture
async def fake(settings: Any) -> AsyncIterator[FakeAppSync]:
    """A running fake server, with the ``default`` alias pointed at it."""
    async with FakeAppSync() as server:
        settings.APPSYNC_EVENTS = {
            "default": {
                "HTTP_URL": server.url,
                "REGION": "us-east-1",
                "AUTH": {"API_KEY": API_KEY},
                "NAMESPACES": ["default", "chat"],
                "LISTENER": {"BACKOFF_INITIAL": 0.05, "BACKOFF_MAX": 0.3},
            }
        }
        yield server


class Collector:
    """Collects events and state changes from a client's callbacks."""

    def __init__(self) -> None:
        self.events: list[ReceivedEvent] = []
        self.states: list[StateChange] = []
        self.subscribed: list[str] = []
        self.failed: list[tuple[str, Exception, bool]] = []

    async def on_event(self, event: ReceivedEvent) -> None:
        self.events.append(event)

    async def on_state(self, change: StateChange) -> None:
        self.states.append(change)

    async def on_subscribed(self, sub: Any) -> None:
        self.subscribed.append(sub.channel)

    async def on_failed(self, sub: Any, error: Exception, will_retry: bool) -> None:
        self.failed.append((sub.channel, error, will_retry))

    def client(self, **kwargs: Any) -> AppSyncEventsClient:
        return AppSyncEventsClient(
            "default",
            on_event=self.on_event,
            on_state=self.on_state,
            on_subscribed=self.on_subscribed,
            on_subscription_failed=self.on_failed,
            **kwargs,
        )

    def payloads(self) -> list[Any]:
        return [e.payload for e in self.events]


# -- pure helpers ------------------------------------------------------------------------


def test_reconnect_delays_grow_and_cap() -> None:
    """Delays start within the initial delay, grow geometrically and never pass the cap."""
    delays = list(itertools.islice(reconnect_delays(1.0, 8.0, 2.0), 8))
    assert 0 <= delays[0] <= 1.0
    assert 1.0 <= delays[1] <= 2.0
    assert 2.0 <= delays[2] <= 4.0
    assert all(4.0 <= d <= 8.0 for d in delays[4:])


def test_process_exception_classifies() -> None:
    """Network and service errors are retried; configuration and programming errors stop."""
    assert process_exception(OSError("refused")) is None
    assert process_exception(ConnectionRejected("no")) is None
    assert process_exception(HandshakeTimeout("slow")) is None
    config = ConfigurationError("bad")
    assert process_exception(config) is config
    bug = KeyError("x")
    assert process_exception(bug) is bug


def test_is_auth_error_recognises_refusals() -> None:
    """Unauthorized types, 401/403 codes and expired-token messages are auth errors."""
    assert is_auth_error([{"errorType": "UnauthorizedException"}])
    assert is_auth_error([{"errorType": "X", "errorCode": 403}])
    assert is_auth_error([{"errorType": "X", "message": "Token expired at noon"}])
    assert not is_auth_error([{"errorType": "SubscriptionProcessingError"}])
    assert not is_auth_error(SubscriptionError("x", errors=[{"errorType": "Boom"}]))
    assert is_auth_error(SubscriptionError("x", errors=[{"errorType": "Unauthorized"}]))


# -- handshake ----------------------------------------------------------------------------


async def test_handshake_offers_both_subprotocols_with_fresh_auth(fake: FakeAppSync) -> None:
    """The client offers the AppSync subprotocol plus header-<auth> and sends connection_init."""
    async with AppSyncEventsClient() as client:
        assert client.state == "connected"
        peer = fake.peers[0]
        assert peer.ws.subprotocol == SUBPROTOCOL
        assert peer.auth == {
            "host": "127.0.0.1:" + fake.url.split(":")[2].split("/")[0],
            "x-api-key": API_KEY,
        }
        assert fake.received[0] == {"type": "connection_init"}
    await until(lambda: fake.peers[0].closed.is_set())
    assert fake.peers[0].closed_code == 1000


async def test_ack_timeout_raises_handshake_timeout(fake: FakeAppSync) -> None:
    """No connection_ack within the handshake timeout raises HandshakeTimeout."""
    fake.send_ack = False

    async def nothing(connection: Connection, data: Any) -> None:
        raise AssertionError("no data expected")

    with pytest.raises(HandshakeTimeout, match=r"no connection_ack within 0\.2 s"):
        await Connection.open(get_api_config(), on_data=nothing, handshake_timeout=0.2)


async def test_connection_error_raises_rejected(fake: FakeAppSync) -> None:
    """A connection_error answer raises ConnectionRejected carrying the AWS errors."""
    fake.reject_connect = True

    async def nothing(connection: Connection, data: Any) -> None:
        raise AssertionError("no data expected")

    with pytest.raises(ConnectionRejected) as info:
        await Connection.open(get_api_config(), on_data=nothing)
    assert info.value.error_types == ("UnauthorizedException",)
    assert API_KEY not in str(info.value)


async def test_http_401_upgrade_raises_rejected(fake: FakeAppSync) -> None:
    """An upgrade refused with HTTP 401 raises ConnectionRejected with the status."""
    fake.http_status = 401

    async def nothing(connection: Connection, data: Any) -> None:
        raise AssertionError("no data expected")

    with pytest.raises(ConnectionRejected) as info:
        await Connection.open(get_api_config(), on_data=nothing)
    assert info.value.status == 401


async def test_a_wrong_url_stops_the_client_with_one_error_line(
    fake: FakeAppSync, caplog: pytest.LogCaptureFixture
) -> None:
    """An upgrade answered 404 (a wrong URL) is fatal: no retry, one ERROR naming URL and status."""
    fake.http_status = 404
    seen = Collector()
    client = seen.client()
    with caplog.at_level(logging.INFO, logger="appsync_events.client"):
        await client.connect(wait=False)
        with pytest.raises(UpgradeRefused) as info:
            await asyncio.wait_for(client.wait_closed(), DEADLINE)
    assert info.value.status == 404
    assert info.value.url == client.url
    assert not any(s.state == "reconnecting" for s in seen.states)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert client.url in errors[0].getMessage()
    assert "HTTP 404" in errors[0].getMessage()


@pytest.mark.parametrize("status", [408, 429, 500, 503])
async def test_busy_or_failing_upgrades_are_retried(fake: FakeAppSync, status: int) -> None:
    """429, 408 and 5xx on the upgrade are retried with backoff, then the client connects."""
    fake.http_status = status
    seen = Collector()
    client = seen.client()
    await client.connect(wait=False)
    await until(lambda: sum(s.state == "reconnecting" for s in seen.states) >= 2)
    assert f"HTTP {status}" in str(seen.states[-1].reason)
    fake.http_status = None
    await client.wait_connected(DEADLINE)
    assert client.fatal_error is None
    await client.aclose()


async def test_a_legal_event_escaped_twice_is_received(fake: FakeAppSync) -> None:
    """The largest legal event, every character escaped by the service and again inside the
    frame (about 1.7 MB on the wire), is received whole with the default message limit."""
    seen = Collector()
    client = seen.client()
    await client.connect()
    sub = await client.subscribe("/chat/a")
    event = json.dumps("<" * 240_000).replace("<", "\\u003c")  # as the service escapes
    frame = json.dumps({"type": "data", "id": sub.id, "event": event})
    assert len(frame) > 1_600_000
    await fake.live[0].ws.send(frame)
    await until(lambda: len(seen.events) == 1)
    assert seen.events[0].payload == "<" * 240_000
    await client.aclose()


async def test_a_frame_over_the_message_limit_drops_the_connection(
    settings: Any, fake: FakeAppSync
) -> None:
    """LISTENER['MAX_MESSAGE_BYTES'] bounds inbound frames: a larger one closes the
    connection (1009), which the supervisor reopens and resubscribes."""
    settings.APPSYNC_EVENTS = {
        "default": {
            **settings.APPSYNC_EVENTS["default"],
            "LISTENER": {"BACKOFF_INITIAL": 0.05, "BACKOFF_MAX": 0.3, "MAX_MESSAGE_BYTES": 65_536},
        }
    }
    seen = Collector()
    client = seen.client()
    await client.connect()
    sub = await client.subscribe("/chat/a")
    frame = json.dumps({"type": "data", "id": sub.id, "event": json.dumps("x" * 70_000)})
    peer = fake.live[0]
    await peer.ws.send(frame)
    await asyncio.wait_for(peer.closed.wait(), DEADLINE)
    assert peer.closed_code == 1009
    await until(lambda: fake.active_subscriptions() == ["/chat/a"])
    assert seen.events == []
    await client.aclose()


async def test_failed_upgrade_never_shows_the_header_subprotocol(
    fake: FakeAppSync, caplog: pytest.LogCaptureFixture
) -> None:
    """A server echoing the offered subprotocols fails the connect without revealing header-."""
    fake.echo_subprotocols = True
    seen = Collector()
    client = seen.client()
    with caplog.at_level(logging.DEBUG, logger="appsync_events.client"):
        await client.connect(wait=False)
        await until(lambda: any(s.state == "reconnecting" for s in seen.states))
        await client.aclose()
    reasons = " ".join(str(s.reason) for s in seen.states)
    assert "Sec-WebSocket-Protocol" in reasons  # the real cause is still reported
    client_records = " ".join(
        r.getMessage() for r in caplog.records if r.name == "appsync_events.client"
    )
    for text in (reasons, client_records):
        assert "header-eyJ" not in text
        assert API_KEY not in text


async def test_rejected_connect_backs_off_to_the_cap_loudly(
    fake: FakeAppSync, caplog: pytest.LogCaptureFixture
) -> None:
    """A rejected connect is retried at the maximum delay and logged at ERROR each time."""
    fake.reject_connect = True
    seen = Collector()
    client = seen.client(backoff_max=0.2)
    with caplog.at_level(logging.ERROR, logger="appsync_events.client"):
        await client.connect(wait=False)
        await until(lambda: sum(s.state == "reconnecting" for s in seen.states) >= 2)
        await client.aclose()
    retries = [s for s in seen.states if s.state == "reconnecting"]
    assert all(s.rejected and s.retry_in == 0.2 for s in retries)
    assert "REJECTED" in caplog.text
    assert API_KEY not in caplog.text


async def test_fatal_error_closes_the_client_and_wait_closed_raises(fake: FakeAppSync) -> None:
    """An error classified as fatal closes the client, and wait_closed() re-raises it."""
    fake.http_status = 500
    stop = RuntimeError("stop")
    seen = Collector()
    client = seen.client(process_exception=lambda exc: stop)
    await client.connect(wait=False)
    with pytest.raises(RuntimeError) as raised:
        await asyncio.wait_for(client.wait_closed(), DEADLINE)
    assert raised.value is stop
    assert client.fatal_error is stop
    assert seen.states[-1].state == "closed"


async def test_fresh_credentials_on_every_connect(settings: Any, fake: FakeAppSync) -> None:
    """Each reconnect produces new connect credentials (token refreshed across reconnects)."""
    tokens = (f"token-{n:04d}-abcdefgh" for n in itertools.count())
    config = dict(settings.APPSYNC_EVENTS["default"])
    config["AUTH"] = {"OPENID_CONNECT": {"token_callable": lambda: next(tokens)}}
    settings.APPSYNC_EVENTS = {"default": config}
    seen = Collector()
    async with seen.client() as client:
        await client.subscribe("/chat/a")
        fake.drop()
        await until(lambda: len(fake.peers) == 2 and fake.active_subscriptions() == ["/chat/a"])
    connect_tokens = [p.auth["Authorization"] for p in fake.peers]
    subscribe_tokens = [
        m["authorization"]["Authorization"] for m in fake.received if m["type"] == "subscribe"
    ]
    assert connect_tokens[0] != connect_tokens[1]
    assert len(set(subscribe_tokens)) == len(subscribe_tokens) == 2


# -- supervision ----------------------------------------------------------------------------


async def test_keepalive_silence_reconnects_and_resubscribes(fake: FakeAppSync) -> None:
    """Keep-alive silence drops the connection; the client reconnects and resubscribes."""
    fake.connection_timeout_ms = 300
    seen = Collector()
    async with seen.client() as client:
        await client.subscribe("/chat/*")
        await until(lambda: len(fake.peers) >= 2 and fake.active_subscriptions() == ["/chat/*"])
        await until(lambda: client.reconnects >= 1)
        reasons = [s.reason or "" for s in seen.states if s.state == "reconnecting"]
        assert any("KeepAliveTimeout" in r for r in reasons)
        fake.connection_timeout_ms = 300_000
        await until(lambda: seen.subscribed.count("/chat/*") >= 2)


async def test_frames_feed_the_watchdog(fake: FakeAppSync) -> None:
    """Any inbound frame, not only ka, keeps the connection alive."""
    fake.connection_timeout_ms = 400
    seen = Collector()
    async with seen.client() as client:
        await client.subscribe("/chat/a")
        for n in range(12):  # ~1.2 s of data, three times the keep-alive window
            await fake.broadcast("/chat/a", [json.dumps(n)])
            await asyncio.sleep(0.1)  # pacing the sender: this is the scenario, not a sync
        await until(lambda: len(seen.events) == 12)
        assert len(fake.peers) == 1
        assert client.reconnects == 0


@pytest.mark.parametrize("how", ["close", "drop"])
async def test_lost_connection_resubscribes_without_duplicates(fake: FakeAppSync, how: str) -> None:
    """After a server close or TCP drop mid-stream every subscription is restored once."""
    seen = Collector()
    async with seen.client() as client:
        await client.subscribe("/chat/a")
        await client.subscribe("/chat/*")
        await fake.broadcast("/chat/a", ['"before"'])
        await until(lambda: len(seen.events) == 2)
        if how == "close":
            await fake.peers[0].ws.close(1001)
        else:
            fake.drop()
        await until(lambda: len(fake.peers) == 2 and len(fake.active_subscriptions()) == 2)
        assert len(fake.live) == 1
        assert fake.active_subscriptions() == ["/chat/*", "/chat/a"]
        await until(lambda: all(s.state == "active" for s in client.subscriptions))
        await fake.broadcast("/chat/a", ['"after"'])
        await until(lambda: len(seen.events) == 4)
        assert sorted(seen.payloads()) == ["after", "after", "before", "before"]
        assert {e.subscription for e in seen.events} == {"/chat/a", "/chat/*"}


async def test_one_refused_subscription_does_not_stop_the_others(fake: FakeAppSync) -> None:
    """A subscribe_error fails that subscription only; the others keep receiving."""
    fake.refuse_channels["/chat/bad"] = ("SubscriptionProcessingError", 99)
    seen = Collector()
    async with seen.client() as client:
        good = await client.subscribe("/chat/good")
        with pytest.raises(SubscriptionError) as info:
            await client.subscribe("/chat/bad")
        assert info.value.error_types == ("SubscriptionProcessingError",)
        assert [m["channel"] for m in fake.received if m["type"] == "subscribe"].count(
            "/chat/bad"
        ) == 1  # not retried: not an auth error
        await fake.broadcast("/chat/good", ['"still flowing"'])
        await until(lambda: len(seen.events) == 1)
        assert good.state == "active"
        assert len(fake.peers) == 1  # the connection was not recycled
        assert seen.failed[0][0] == "/chat/bad"
        assert seen.failed[0][2] is False


async def test_auth_refusal_is_retried_with_fresh_credentials(fake: FakeAppSync) -> None:
    """An Unauthorized subscribe_error is retried (fresh auth) and then succeeds."""
    fake.refuse_channels["/chat/a"] = ("UnauthorizedException", 1)
    seen = Collector()
    async with seen.client() as client:
        sub = await client.subscribe("/chat/a")
        assert sub.state == "active"
        assert [f[2] for f in seen.failed] == [True]
        assert fake.active_subscriptions() == ["/chat/a"]


async def test_auth_refusal_retries_are_bounded(fake: FakeAppSync) -> None:
    """A subscription refused for auth on every attempt fails after the retries."""
    fake.refuse_channels["/chat/a"] = ("UnauthorizedException", 99)
    seen = Collector()
    async with seen.client(subscribe_retries=1) as client:
        with pytest.raises(SubscriptionError):
            await client.subscribe("/chat/a")
    assert [f[2] for f in seen.failed] == [True, False]


async def test_subscribe_timeout_raises(fake: FakeAppSync) -> None:
    """A subscribe the service never answers fails with OperationTimeout after the retries."""
    fake.ignore_subscribes.add("/chat/a")
    seen = Collector()
    async with seen.client(operation_timeout=0.1, subscribe_retries=0) as client:
        with pytest.raises(SubscriptionError, match="no answer to subscribe"):
            await client.subscribe("/chat/a")


async def test_rotation_is_make_before_break(fake: FakeAppSync) -> None:
    """With a short lifetime the client subscribes a new connection before closing the old."""
    seen = Collector()
    async with seen.client(rotate_after=0.5) as client:
        await client.subscribe("/chat/a")
        await until(lambda: len(fake.peers) >= 2 and fake.peers[0].closed.is_set())
        old, new = fake.peers[0], fake.peers[1]
        assert old.closed_code == 1000
        assert list(new.subscriptions.values()) == ["/chat/a"]
        assert old.subscriptions == {}  # unsubscribed before closing
        await fake.broadcast("/chat/a", ['"after rotation"'])
        await until(lambda: len(seen.events) == 1)
        assert seen.subscribed.count("/chat/a") >= 2


async def test_a_fatal_error_opening_the_replacement_stops_the_client(
    fake: FakeAppSync, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What process_exception() calls fatal stops the client at rotation too (no retry loop)."""
    from appsync_events.client.connection import Connection as ConnectionClass

    opened = 0
    real_open = ConnectionClass.open.__func__  # type: ignore[attr-defined]

    async def open_once(cls: Any, *args: Any, **kwargs: Any) -> Connection:
        nonlocal opened
        opened += 1
        if opened > 1:
            raise ConfigurationError("APPSYNC_EVENTS['default']: broken after a settings change")
        return await real_open(cls, *args, **kwargs)

    monkeypatch.setattr(ConnectionClass, "open", classmethod(open_once))
    seen = Collector()
    client = seen.client(rotate_after=0.2)
    await client.connect()
    with pytest.raises(ConfigurationError, match="broken after a settings change"):
        await asyncio.wait_for(client.wait_closed(), DEADLINE)
    assert opened == 2
    assert isinstance(client.fatal_error, ConfigurationError)


# -- operations ------------------------------------------------------------------------------


async def test_publish_reports_partial_failure_by_index(fake: FakeAppSync) -> None:
    """publish() returns a PublishResult with successes and failures by caller index."""
    async with AppSyncEventsClient() as client:
        result = await client.publish("/chat/a", ['"ok"', '"bad"', '"ok2"'])
    assert [e.index for e in result.successful] == [0, 2]
    assert [(e.index, e.code) for e in result.failed] == [(1, "EventTooLargeException")]
    assert not result.ok


async def test_publish_chunks_beyond_five(fake: FakeAppSync) -> None:
    """Seven events go in two chunks; indices are the caller's."""
    async with AppSyncEventsClient() as client:
        result = await client.publish("/chat/a", [json.dumps(n) for n in range(7)])
    assert [e.index for e in result.successful] == list(range(7))
    assert [len(m["events"]) for m in fake.received if m["type"] == "publish"] == [5, 2]


async def test_publish_ignores_other_operations_errors(fake: FakeAppSync) -> None:
    """An error for another id, or with no id, is never taken as this publish's result."""
    fake.before_publish_answer = [
        {"type": "publish_error", "id": "someone-else", "errors": [{"errorType": "X"}]},
        {"type": "error", "errors": [{"errorType": "UnsupportedOperation"}]},
    ]
    async with AppSyncEventsClient() as client:
        result = await client.publish("/chat/a", ['"x"'])
    assert result.ok


async def test_publish_error_raises(fake: FakeAppSync) -> None:
    """A publish_error with the publish's own id raises PublishError with the errors."""
    async with AppSyncEventsClient() as client:
        original = fake.on_message

        async def refuse(peer: Peer, message: dict[str, Any]) -> None:
            if message["type"] == "publish":
                await peer.ws.send(
                    json.dumps(
                        {
                            "type": "publish_error",
                            "id": message["id"],
                            "errors": [{"errorType": "UnauthorizedException"}],
                        }
                    )
                )
            else:
                await original(peer, message)

        fake.on_message = refuse  # type: ignore[method-assign]
        with pytest.raises(PublishError) as info:
            await client.publish("/chat/a", ['"x"'])
    assert info.value.error_types == ("UnauthorizedException",)


async def test_publish_timeout_after_an_accepted_chunk_is_partial(fake: FakeAppSync) -> None:
    """When a later chunk gets no answer, PartialPublishError names the events already accepted."""
    from appsync_events.exceptions import PartialPublishError

    async with AppSyncEventsClient() as client:
        original = fake.on_message
        publishes = 0

        async def silent_second(peer: Peer, message: dict[str, Any]) -> None:
            nonlocal publishes
            if message["type"] == "publish":
                publishes += 1
                if publishes == 2:
                    return  # never answered
            await original(peer, message)

        fake.on_message = silent_second  # type: ignore[method-assign]
        with pytest.raises(PartialPublishError) as info:
            await client.publish("/chat/a", [json.dumps(n) for n in range(7)], timeout=0.5)
    assert info.value.accepted == (0, 1, 2, 3, 4)
    assert info.value.not_sent == (5, 6)


async def test_publish_validates_input(fake: FakeAppSync) -> None:
    """Non-string events and wildcard channels are refused before sending."""
    async with AppSyncEventsClient() as client:
        with pytest.raises(TypeError, match="JSON texts"):
            await client.publish("/chat/a", [{"x": 1}])  # type: ignore[list-item]
        with pytest.raises(ValueError, match="wildcard"):
            await client.publish("/chat/*", ['"x"'])
    assert not [m for m in fake.received if m["type"] == "publish"]


async def test_garbage_and_binary_frames_are_logged_and_skipped(
    fake: FakeAppSync, caplog: pytest.LogCaptureFixture
) -> None:
    """Undecodable frames are logged at WARNING and skipped; the stream continues."""
    seen = Collector()
    async with seen.client() as client:
        await client.subscribe("/chat/a")
        ws = fake.peers[0].ws
        with caplog.at_level(logging.WARNING, logger="appsync_events.client"):
            await ws.send("not json{")
            await ws.send(b"\x00\x01binary")
            await ws.send(json.dumps({"type": "mystery"}))
            await fake.broadcast("/chat/a", ['"ok"'])
            await until(lambda: len(seen.events) == 1)
        assert caplog.text.count("Skipped an undecodable frame") == 3
        assert len(fake.peers) == 1


async def test_runtime_subscribe_and_unsubscribe(fake: FakeAppSync) -> None:
    """Subscriptions can be added and removed while connected; removed ones stop delivering."""
    seen = Collector()
    async with seen.client() as client:
        sub = await client.subscribe("/chat/a")
        await fake.broadcast("/chat/a", ['"one"'])
        await until(lambda: len(seen.events) == 1)
        await sub.aclose()
        assert fake.active_subscriptions() == []
        assert any(m["type"] == "unsubscribe" for m in fake.received)
        await client.subscribe("/chat/b")
        await fake.broadcast("/chat/a", ['"gone"'])
        await fake.broadcast("/chat/b", ['"two"'])
        await until(lambda: len(seen.events) == 2)
        assert seen.payloads() == ["one", "two"]


async def test_further_connection_past_the_quota(fake: FakeAppSync) -> None:
    """Past max_subscriptions per connection the client opens another connection."""
    seen = Collector()
    async with seen.client(max_subscriptions=3) as client:
        for n in range(4):
            await client.subscribe(f"/chat/r{n}")
        assert client.connection_count == 2
        assert sorted(len(p.subscriptions) for p in fake.live) == [1, 3]
        await fake.broadcast("/chat/r3", ['"fourth"'])
        await until(lambda: len(seen.events) == 1)
        await client.subscriptions[3].aclose()
        await until(lambda: len(fake.live) == 1)  # the emptied extra connection closes


async def test_aclose_unsubscribes_and_closes_normally(fake: FakeAppSync) -> None:
    """aclose() unsubscribes every subscription then closes with code 1000."""
    client = AppSyncEventsClient()
    await client.connect()
    await client.subscribe("/chat/a")
    await client.subscribe("/chat/b")
    await client.aclose()
    await until(lambda: fake.peers[0].closed.is_set())
    unsubscribes = [m for m in fake.received if m["type"] == "unsubscribe"]
    assert len(unsubscribes) == 2
    assert fake.peers[0].closed_code == 1000
    assert client.state == "closed"
    with pytest.raises(ConnectionFailed):
        await client.subscribe("/chat/c")


async def test_events_iterator(fake: FakeAppSync) -> None:
    """Without on_event, events() yields received events until the client closes."""
    client = AppSyncEventsClient()
    await client.connect()
    await client.subscribe("/chat/*")
    await fake.broadcast("/chat/x/y", ['{"n": 1}', '{"n": 2}'])
    received = []
    async for event in client.events():
        received.append(event)
        if len(received) == 2:
            await client.aclose()
    assert [e.payload for e in received] == [{"n": 1}, {"n": 2}]
    assert received[0].subscription == "/chat/*"
    assert received[0].raw == '{"n": 1}'


async def test_slow_consumer_does_not_trip_the_watchdog(fake: FakeAppSync) -> None:
    """Time spent in a slow on_event callback does not count as keep-alive silence."""
    fake.connection_timeout_ms = 300
    done = asyncio.Event()

    async def slow(event: ReceivedEvent) -> None:
        await asyncio.sleep(0.8)  # a slow handler, longer than the keep-alive window
        done.set()

    seen = Collector()
    client = AppSyncEventsClient(on_event=slow, on_state=seen.on_state)
    await client.connect()
    try:
        await client.subscribe("/chat/a")
        # Keep the server talking after the slow event so the connection stays healthy.
        await fake.broadcast("/chat/a", ['"slow"'])
        await asyncio.wait_for(done.wait(), DEADLINE)
        assert client.reconnects == 0
        assert not [s for s in seen.states if s.state == "reconnecting"]
    finally:
        await client.aclose()


async def test_operation_timeout_for_publish(fake: FakeAppSync) -> None:
    """A publish the service never answers raises OperationTimeout."""
    async with AppSyncEventsClient(operation_timeout=0.1) as client:

        async def silent(peer: Peer, message: dict[str, Any]) -> None:
            return None

        fake.on_message = silent  # type: ignore[method-assign]
        with pytest.raises(OperationTimeout):
            await client.publish("/chat/a", ['"x"'])


async def test_absurdly_nested_event_is_skipped_not_fatal(
    fake: FakeAppSync, caplog: pytest.LogCaptureFixture
) -> None:
    """An event nested deeper than the parser's recursion limit is skipped and counted."""
    seen = Collector()
    async with seen.client() as client:
        await client.subscribe("/chat/a")
        with caplog.at_level(logging.WARNING, logger="appsync_events.client"):
            await fake.broadcast("/chat/a", ["[" * 100_000 + "]" * 100_000, '"after"'])
            await until(lambda: len(seen.events) == 1)
        assert seen.payloads() == ["after"]
        assert client.undecodable_events == 1
        assert "Skipped an event that is not JSON" in caplog.text
        assert len(fake.peers) == 1  # the connection survived


async def test_events_for_subscriptions_the_client_lacks_are_counted_and_logged(
    fake: FakeAppSync, caplog: pytest.LogCaptureFixture
) -> None:
    """A data frame for an id the client never held is skipped, counted and logged at
    INFO once a minute at most; the connection and the real subscription go on."""
    seen = Collector()
    async with seen.client() as client:
        await client.subscribe("/chat/a")
        (peer,) = fake.peers
        with caplog.at_level(logging.INFO, logger="appsync_events.client"):
            for _ in range(3):
                frame = {"type": "data", "id": "not-ours", "event": '"lost"'}
                await peer.ws.send(json.dumps(frame))
            await fake.broadcast("/chat/a", ['"after"'])
            await until(lambda: len(seen.events) == 1)
        assert seen.payloads() == ["after"]
        assert client.unrouted_events == 3
        lines = [r for r in caplog.records if "does not hold" in r.getMessage()]
        assert len(lines) == 1
        assert "'not-ours'" in lines[0].getMessage()


async def test_on_event_may_be_a_plain_function(fake: FakeAppSync) -> None:
    """A sync on_event is called per event; an awaitable it returns is awaited first."""
    calls: list[Any] = []
    waited: list[Any] = []

    async def wait_for(payload: Any) -> None:
        waited.append(payload)

    def on_event(event: ReceivedEvent) -> Any:
        calls.append(event.payload)
        return wait_for(event.payload) if event.payload == "slow" else None

    async with AppSyncEventsClient(on_event=on_event) as client:
        await client.subscribe("/chat/a")
        await fake.broadcast("/chat/a", ['"fast"', '"slow"', '"last"'])
        await until(lambda: len(calls) == 3)
    assert calls == ["fast", "slow", "last"]
    assert waited == ["slow"]
