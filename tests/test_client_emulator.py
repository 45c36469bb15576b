"""The websocket client against the emulator: real sockets, the service's own answers."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from appsync_events.client import AppSyncEventsClient
from appsync_events.emulator import AppSyncEventsEmulator
from appsync_events.exceptions import HandshakeTimeout, SubscriptionError
from appsync_events.testing.pytest_plugin import (  # noqa: F401 - fixtures
    appsync_emulator,
    appsync_emulator_faults,
    appsync_events_emulator,
)
from tests.test_client import DEADLINE, Collector, until


class Seen(Collector):
    """The callback collector of the scripted-server tests, with a fast reconnect backoff."""

    def client(self, **kwargs: Any) -> AppSyncEventsClient:
        kwargs.setdefault("backoff_initial", 0.05)
        kwargs.setdefault("backoff_max", 0.3)
        return super().client(**kwargs)


@pytest.fixture
def emulator(appsync_events_emulator: AppSyncEventsEmulator) -> AppSyncEventsEmulator:  # noqa: F811
    """The reset emulator with the ``default`` alias pointing at it."""
    return appsync_events_emulator


async def publish(emulator: AppSyncEventsEmulator, channel: str, *events: Any) -> None:
    """Feed subscribers from the emulator's side (its thread), without blocking our loop."""
    await asyncio.to_thread(emulator.publish, channel, *events)


async def test_handshake_and_round_trip(emulator: AppSyncEventsEmulator) -> None:
    """Connect, subscribe, publish over the socket and receive our own event."""
    seen = Seen()
    async with seen.client() as client:
        await client.subscribe("/chat/*")
        result = await client.publish("/chat/rooms/7", [json.dumps({"text": "hi"})])
        assert result.ok
        await until(lambda: len(seen.events) == 1)
    event = seen.events[0]
    assert event.subscription == "/chat/*"
    assert event.payload == {"text": "hi"}
    assert event.raw == '{"text": "hi"}'
    assert event.api == "default"


async def test_ack_timeout(emulator: AppSyncEventsEmulator) -> None:
    """A delayed connection_ack past the handshake timeout fails with HandshakeTimeout."""
    emulator.faults.delay_ack(2.0)
    seen = Seen()
    client = seen.client(handshake_timeout=0.2)
    await client.connect(wait=False)
    await until(lambda: any(s.state == "reconnecting" for s in seen.states))
    await client.aclose()
    assert "HandshakeTimeout" in (seen.states[1].reason or "")
    assert HandshakeTimeout.__name__ in next(s.reason for s in seen.states if s.reason)


async def test_connection_error_then_recovery(emulator: AppSyncEventsEmulator) -> None:
    """A rejected connect is reported as rejected and retried; the next attempt works."""
    emulator.faults.reject_next_connects(1)
    seen = Seen()
    async with seen.client() as client:
        sub = await client.subscribe("/chat/a")
        assert sub.state == "active"
    rejected = [s for s in seen.states if s.state == "reconnecting"]
    assert len(rejected) == 1
    assert rejected[0].rejected
    assert rejected[0].retry_in == 0.3  # the maximum backoff


async def test_keepalive_silence_reconnects(emulator: AppSyncEventsEmulator) -> None:
    """When ka frames stop, the client reconnects and resubscribes."""
    emulator.configure(connection_timeout_ms=400, ka_interval=0.1)
    seen = Seen()
    async with seen.client() as client:
        await client.subscribe("/chat/a")
        emulator.faults.stop_keepalive()
        await until(lambda: client.reconnects >= 1)
        emulator.faults.resume_keepalive()
        await until(lambda: seen.subscribed.count("/chat/a") >= 2)
        await until(lambda: [s.channel for s in emulator.subscriptions] == ["/chat/a"])
        await publish(emulator, "/chat/a", "back")
        await until(lambda: [e.payload for e in seen.events] == ["back"])


@pytest.mark.parametrize("fault", ["close", "drop"])
async def test_mid_stream_loss_resubscribes_once(
    emulator: AppSyncEventsEmulator, fault: str
) -> None:
    """Server close or TCP drop mid-stream: resubscribed once, nothing duplicated."""
    seen = Seen()
    async with seen.client() as client:
        await client.subscribe("/chat/a")
        await client.subscribe("/chat/b")
        await publish(emulator, "/chat/a", 1)
        await until(lambda: len(seen.events) == 1)
        before = {c.id for c in emulator.connections}
        if fault == "close":
            emulator.close_connections(1001)
        else:
            emulator.drop_connections()
        await until(
            lambda: (
                {c.id for c in emulator.connections}.isdisjoint(before)
                and len(emulator.subscriptions) == 2
                and all(s.state == "active" for s in client.subscriptions)
            )
        )
        assert sorted(s.channel for s in emulator.subscriptions) == ["/chat/a", "/chat/b"]
        assert len(emulator.connections) == 1
        await publish(emulator, "/chat/a", 2)
        await publish(emulator, "/chat/b", 3)
        await until(lambda: len(seen.events) == 3)
        assert [e.payload for e in seen.events] == [1, 2, 3]


async def test_refused_subscription_while_others_flow(emulator: AppSyncEventsEmulator) -> None:
    """A namespace the API lacks is refused; the other subscription keeps receiving."""
    seen = Seen()
    async with seen.client(subscribe_retries=0) as client:
        await client.subscribe("/chat/a")
        with pytest.raises(SubscriptionError) as info:
            await client.subscribe("/missing/a")
        assert "UnauthorizedException" in info.value.error_types
        await publish(emulator, "/chat/a", "flowing")
        await until(lambda: len(seen.events) == 1)
        assert len(emulator.connections) == 1


async def test_rotation_with_short_lifetime(emulator: AppSyncEventsEmulator) -> None:
    """rotate_after opens and subscribes a new connection before the old one closes."""
    seen = Seen()
    async with seen.client(rotate_after=0.6) as client:
        await client.subscribe("/chat/a")
        first = {c.id for c in emulator.connections}
        await until(lambda: any(s.reason == "rotated" for s in seen.states))
        # Rotation repeats every 0.6 s: wait for a moment between two overlaps.
        await until(
            lambda: (
                {c.id for c in emulator.connections}.isdisjoint(first)
                and [s.channel for s in emulator.subscriptions] == ["/chat/a"]
            )
        )
        assert client.reconnects == 0
        await publish(emulator, "/chat/a", "rotated")
        await until(lambda: [e.payload for e in seen.events][-1:] == ["rotated"])


async def test_publish_partial_failure(emulator: AppSyncEventsEmulator) -> None:
    """An over-size event fails by index while the others are accepted."""
    big = json.dumps("x" * 250_000)
    async with AppSyncEventsClient() as client:
        result = await client.publish("/chat/a", ['"small"', big, '"small2"'])
    assert [e.index for e in result.successful] == [0, 2]
    assert [e.index for e in result.failed] == [1]
    assert result.failed[0].code == "EventTooLargeException"


async def test_garbage_and_binary_frames(
    emulator: AppSyncEventsEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Garbage and binary frames are logged and skipped; the connection carries on."""
    seen = Seen()
    async with seen.client() as client:
        await client.subscribe("/chat/a")
        with caplog.at_level(logging.WARNING, logger="appsync_events.client"):
            emulator.send_raw("{{{ not json")
            emulator.send_raw(b"\x89binary")
            await publish(emulator, "/chat/a", "after")
            await until(lambda: len(seen.events) == 1)
        assert caplog.text.count("Skipped an undecodable frame") == 2
        assert client.reconnects == 0


async def test_runtime_subscribe_unsubscribe(emulator: AppSyncEventsEmulator) -> None:
    """Subscriptions added and removed while connected take effect on the service."""
    seen = Seen()
    async with seen.client() as client:
        a = await client.subscribe("/chat/a")
        await client.subscribe("/chat/b")
        await a.aclose()
        assert [s.channel for s in emulator.subscriptions] == ["/chat/b"]
        await publish(emulator, "/chat/a", "no")
        await publish(emulator, "/chat/b", "yes")
        await until(lambda: len(seen.events) == 1)
        assert seen.events[0].payload == "yes"


async def test_second_connection_past_200_subscriptions(emulator: AppSyncEventsEmulator) -> None:
    """The 201st subscription goes on a second connection; all 201 are live."""
    seen = Seen()
    async with seen.client() as client:
        for n in range(201):
            await client.subscribe(f"/chat/r{n}", wait=False)
        await until(lambda: sum(s.state == "active" for s in client.subscriptions) == 201)
        counts = sorted(c.subscriptions for c in emulator.connections)
        assert counts == [1, 200]
        await publish(emulator, "/chat/r200", "last")
        await until(lambda: len(seen.events) == 1)


async def test_lower_service_quota_moves_subscriptions(emulator: AppSyncEventsEmulator) -> None:
    """When the service's quota is lower than configured, refused ones move elsewhere."""
    emulator.configure(max_subscriptions=2)
    seen = Seen()
    async with seen.client() as client:
        for n in range(3):
            await client.subscribe(f"/chat/q{n}", wait=False)
        await until(lambda: sum(s.state == "active" for s in client.subscriptions) == 3)
        assert sorted(c.subscriptions for c in emulator.connections) == [1, 2]
        assert not seen.failed


async def test_aclose_unsubscribes_then_closes(emulator: AppSyncEventsEmulator) -> None:
    """aclose leaves no subscription and no connection on the service."""
    client = AppSyncEventsClient()
    await client.connect()
    await client.subscribe("/chat/a")
    await client.aclose()
    await until(lambda: not emulator.connections, DEADLINE)
    assert emulator.subscriptions == []


class _Lines(logging.Handler):
    """Keep every record as a handler would write it (with tracebacks)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))


async def test_websockets_debug_output_is_redacted(emulator: AppSyncEventsEmulator) -> None:
    """With websockets at DEBUG, a real connect logs frames and headers but no credential."""
    from appsync_events.auth import aconnect_headers, encode_header_subprotocol
    from appsync_events.conf import get_api_config

    header = encode_header_subprotocol(await aconnect_headers(get_api_config()))
    assert header.startswith("header-")
    handler = _Lines()
    names = ("websockets", "appsync_events")
    levels = {name: logging.getLogger(name).level for name in names}
    root = logging.getLogger()
    root.addHandler(handler)
    for name in names:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        seen = Seen()
        async with seen.client() as client:
            await client.subscribe("/chat/*")
            result = await client.publish("/chat/a", [json.dumps({"text": "hi"})])
            assert result.ok
            await until(lambda: len(seen.events) == 1)
    finally:
        root.removeHandler(handler)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    # The client side only: the emulator's server (uvicorn) logs what it received at
    # DEBUG under its own loggers, which is the server's business, not the client's.
    client_side = [
        (record, line)
        for record, line in zip(handler.records, handler.lines, strict=True)
        if record.name.startswith("websockets.client")
        or (
            record.name.startswith("appsync_events")
            and not record.name.startswith("appsync_events.emulator")
        )
    ]
    text = "\n".join(line for _, line in client_side)
    # websockets' DEBUG output is there: the handshake and the outgoing frames...
    ours = [r for r, _ in client_side if r.name == "websockets.client"]
    assert any(r.levelno == logging.DEBUG for r in ours)
    assert "Sec-WebSocket-Protocol" in text
    assert '"type":"subscribe"' in text
    # ...with every credential replaced.
    assert emulator.api_key not in text
    assert header not in text
    assert "header-<redacted>" in text
    assert all(
        line.split("header-", 1)[1].startswith("<redacted>")
        for _, line in client_side
        if "header-" in line
    )
