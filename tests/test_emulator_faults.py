"""Fault injection: keep-alive, connects, acks, closes, broken frames and dropped TCP."""

from __future__ import annotations

import asyncio
import socket

import pytest
import websockets

from appsync_events.emulator import AppSyncEventsEmulator
from appsync_events.testing.pytest_plugin import (  # noqa: F401 - fixtures
    appsync_emulator,
    appsync_emulator_faults,
    appsync_events_emulator,
)
from tests.test_emulator_helpers import TIMEOUT, RawClient, api_key_auth, connected

pytestmark = pytest.mark.django_db(databases=[])


@pytest.fixture
def emu(appsync_events_emulator: AppSyncEventsEmulator) -> AppSyncEventsEmulator:  # noqa: F811
    """The session emulator (fault proxy on), reset."""
    return appsync_events_emulator


async def test_stop_and_resume_keepalive(emu):
    """stop_keepalive() silences ka on open connections; resume_keepalive() restores it."""
    emu.configure(ka_interval=0.05)
    async with await connected(emu) as client:
        assert (await client.recv())["type"] == "ka"
        emu.faults.stop_keepalive()
        await client.no_frame(types=("ka",), wait=0.3)
        emu.faults.resume_keepalive()
        assert await client.recv() == {"type": "ka"}


async def test_reject_next_connects(emu, appsync_emulator_faults):  # noqa: F811
    """The next N connects get connection_error whatever their credentials; then they pass."""
    appsync_emulator_faults.reject_next_connects(2)
    for _ in range(2):
        async with await RawClient.open(emu) as client:
            answer = await client.init()
            assert answer["type"] == "connection_error"
            assert answer["errors"][0]["errorType"] == "UnauthorizedException"
    async with await RawClient.open(emu) as client:
        assert (await client.init())["type"] == "connection_ack"


async def test_delay_ack(emu):
    """delay_ack(s) holds connection_ack back by at least s seconds."""
    emu.faults.delay_ack(0.3)
    async with await RawClient.open(emu) as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await client.send({"type": "connection_init"})
        with pytest.raises(TimeoutError):
            await client.recv_type("connection_ack", within=0.1)
        assert (await client.recv_type("connection_ack"))["type"] == "connection_ack"
        assert loop.time() - started >= 0.3


async def test_close_after_messages(emu):
    """close_after(messages=N) closes each new connection after N server frames."""
    emu.faults.close_after(messages=2, code=1011)
    async with await RawClient.open(emu) as client:
        await client.send({"type": "connection_init"})
        assert (await client.recv())["type"] == "connection_ack"
        assert (await client.recv())["type"] == "ka"
        with pytest.raises(websockets.ConnectionClosedError):
            await client.recv()
        assert client.ws.close_code == 1011


async def test_close_after_seconds(emu):
    """close_after(seconds=S) closes each new connection after S seconds."""
    emu.faults.close_after(seconds=0.2)
    client = await connected(emu)
    with pytest.raises(websockets.ConnectionClosedOK):
        await client.recv_type("never", within=TIMEOUT)


async def test_close_connections_now(emu):
    """close_connections(code) closes every open websocket with that code."""
    client = await connected(emu)
    assert await asyncio.to_thread(emu.close_connections, 4000, "bye") == 1
    with pytest.raises(websockets.ConnectionClosed):
        await client.recv_type("never")
    assert (client.ws.close_code, client.ws.close_reason) == (4000, "bye")


@pytest.mark.parametrize("frame", ["garbage{", b"\x00\xffbinary", "x" * 2_000_000])
async def test_send_raw_frames(emu, frame):
    """send_raw() delivers garbage text, binary and oversize frames to every client."""
    async with await connected(emu) as client:
        await client.recv_type("ka")
        assert await asyncio.to_thread(emu.send_raw, frame) == 1
        received = await asyncio.wait_for(client.ws.recv(), TIMEOUT)
        assert received == frame


async def test_a_frame_the_server_cannot_send_closes_with_1011(emu, caplog):
    """A frame the emulator cannot encode (text that is no Unicode) closes the connection
    with 1011 and an ERROR line; it used to leave the connection open and mute."""
    async with await connected(emu) as client:
        await client.recv_type("ka")
        assert await asyncio.to_thread(emu.send_raw, "\ud800") == 1
        with pytest.raises(websockets.ConnectionClosedError):
            await client.recv_type("never")
        assert client.ws.close_code == 1011
    assert "a frame could not be sent" in caplog.text


async def test_oversize_frame_breaks_a_limited_client(emu):
    """A client with a 1 MB frame limit fails (1009) on an oversize frame."""
    ws = await websockets.connect(
        emu.realtime_url,
        subprotocols=["aws-appsync-event-ws", _header(emu)],  # type: ignore[list-item]
        max_size=1_000_000,
    )
    await ws.send('{"type":"connection_init"}')
    await ws.recv()
    await asyncio.to_thread(emu.send_raw, "y" * 1_500_000)
    with pytest.raises(websockets.ConnectionClosedError):
        await _read_until_closed(ws)
    assert ws.protocol.close_sent is not None
    assert ws.protocol.close_sent.code == 1009


async def test_drop_connections_without_close_frame(emu):
    """drop_connections() cuts TCP: the client sees an abnormal closure (no close frame)."""
    async with await connected(emu) as client:
        await client.recv_type("ka")
        assert await asyncio.to_thread(emu.drop_connections) == 1
        with pytest.raises(websockets.ConnectionClosedError):
            await client.recv_type("never")
        assert client.ws.close_code == 1006  # abnormal closure: no close frame came
    assert emu.state.wait_for(lambda: not emu.connections, TIMEOUT)


@pytest.mark.parametrize("kind", ["truncated", "garbage"])
async def test_broken_frames_through_the_proxy(emu, kind):
    """A truncated frame or non-websocket bytes make the client fail the connection."""
    async with await connected(emu) as client:
        await client.recv_type("ka")
        assert await asyncio.to_thread(emu.send_broken_frame, kind) == 1
        with pytest.raises(websockets.ConnectionClosedError):
            await client.recv_type("never")


class _FakeTransport:
    """Collects what the proxy writes; records aborts."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.data.extend(data)

    def abort(self) -> None:
        self.aborted = True


def test_proxy_injects_only_between_frames():
    """A fault requested mid-frame waits for the frame's end; earlier bytes pass whole."""
    from appsync_events.emulator.proxy import FaultProxy, _Pair

    pair = _Pair(FaultProxy("127.0.0.1", 1))
    client, upstream = _FakeTransport(), _FakeTransport()
    pair.client, pair.upstream = client, upstream  # type: ignore[assignment]
    handshake = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
    payload = b"a" * 300
    frame = b"\x81\x7e" + len(payload).to_bytes(2, "big") + payload
    pair.from_upstream(handshake + frame[:100])
    pair.act("truncated")
    assert not client.aborted  # mid-frame: the fault waits
    pair.from_upstream(frame[100:] + b"\x81\x02{}")
    assert bytes(client.data).startswith(handshake + frame)
    assert client.data[len(handshake) + len(frame) :][:2] == b"\x81\x7e"  # the broken frame
    assert client.aborted
    assert upstream.aborted
    assert b"{}" not in client.data[len(handshake) + len(frame) :]


async def test_http_passes_through_the_proxy(emu):
    """Plain HTTP requests pass the fault proxy unchanged."""
    from tests.test_emulator_helpers import http_publish

    for _ in range(2):
        assert (await http_publish(emu, "/default/a", ["1"])).status_code == 200


async def test_proxy_faults_need_the_proxy():
    """Without the fault proxy, drop/broken-frame faults say how to enable it."""
    async with AppSyncEventsEmulator() as emulator:
        with pytest.raises(RuntimeError, match="fault_proxy=True"):
            emulator.drop_connections()


async def test_faults_reset_between_tests(emu):
    """reset() turns every switch off."""
    emu.faults.stop_keepalive()
    emu.faults.reject_next_connects(3)
    emu.faults.delay_ack(1)
    emu.faults.close_after(messages=1)
    await asyncio.to_thread(emu.reset)
    faults = emu.faults
    assert not faults.keepalive_stopped
    assert faults.pending_connect_rejections == 0
    assert faults.ack_delay == 0
    assert faults.close_after_messages is None


def test_port_in_use_is_reported():
    """Starting on a port that is taken raises OSError at once (no hang)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match="in use"):
            AppSyncEventsEmulator("127.0.0.1", port).start()


def test_non_loopback_bind_warns(caplog):
    """Binding a non-loopback address logs a warning."""
    emulator = AppSyncEventsEmulator("0.0.0.0", 0)  # noqa: S104 - the point of the test
    with emulator:
        assert emulator.running
    assert "not a loopback address" in caplog.text


def test_sync_context_manager_and_restart_guard():
    """The emulator works as a context manager and refuses a second start()."""
    with AppSyncEventsEmulator() as emulator:
        assert emulator.http_url.startswith("http://127.0.0.1:")
        assert emulator.realtime_url == emulator.http_url.replace("http", "ws", 1) + "/realtime"
        with pytest.raises(RuntimeError, match="already started"):
            emulator.start()
    assert not emulator.running


def _header(emu: AppSyncEventsEmulator) -> str:
    from appsync_events.auth import encode_header_subprotocol

    return encode_header_subprotocol(api_key_auth(emu))


async def _read_until_closed(ws) -> None:
    while True:
        await asyncio.wait_for(ws.recv(), TIMEOUT)
