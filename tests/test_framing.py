"""Tests for :mod:`appsync_events.framing`: the client's receive path below ``recv()``.

The server is a raw TCP server on 127.0.0.1 (port 0) that answers the websocket upgrade
by hand and then writes exactly the bytes a test gives it, so frames can be cut, glued,
malformed or truncated at will. Tests that need exact chunk boundaries on the client
side pause the real socket's reading and hand chunks to ``data_received`` themselves;
anything the client writes back (pongs, close frames) still goes over the real socket.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError
from websockets.frames import Frame, Opcode

from appsync_events import framing
from appsync_events.client import Connection
from appsync_events.conf import get_api_config
from appsync_events.exceptions import ConnectionFailed
from appsync_events.framing import EventSocket, frame_size
from appsync_events.protocol import SUBPROTOCOL

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
DEADLINE = 10.0


def server_frame(opcode: Opcode, data: bytes, fin: bool = True) -> bytes:
    """A frame as a server writes it (unmasked), serialised by websockets."""
    return Frame(opcode, data, fin).serialize(mask=False)


def text(value: str) -> bytes:
    return server_frame(Opcode.TEXT, value.encode())


class RawServer:
    """Answers one websocket upgrade, then writes what the test asks for."""

    def __init__(self, after_upgrade: bytes = b"", close_after_upgrade: bool = False) -> None:
        self.after_upgrade = after_upgrade
        self.close_after_upgrade = close_after_upgrade
        self.connected = asyncio.Event()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/event/realtime"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip()
            for line in request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        accept = base64.b64encode(hashlib.sha1(key + GUID.encode(), usedforsecurity=False).digest())
        protocol = b""
        if SUBPROTOCOL.encode() in request:
            protocol = b"Sec-WebSocket-Protocol: " + SUBPROTOCOL.encode() + b"\r\n"
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
            + accept
            + b"\r\n"
            + protocol
            + b"\r\n"
            # In the same write: the client reads it along with the upgrade response.
            + self.after_upgrade
        )
        await writer.drain()
        if self.close_after_upgrade:
            writer.close()
        self.reader, self.writer = reader, writer
        self.connected.set()

    async def read_client_frame(self) -> tuple[int, bytes]:
        """Read one (masked) frame the client sent: its opcode and unmasked payload."""
        assert self.reader is not None
        first, second = await self.reader.readexactly(2)
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(await self.reader.readexactly(2), "big")
        elif length == 127:
            length = int.from_bytes(await self.reader.readexactly(8), "big")
        mask = await self.reader.readexactly(4)
        payload = await self.reader.readexactly(length)
        return first & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(payload))

    async def write(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)
        await self.writer.drain()


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[..., Any]]:
    servers: list[RawServer] = []

    async def start(after_upgrade: bytes = b"", close_after_upgrade: bool = False) -> RawServer:
        server = RawServer(after_upgrade, close_after_upgrade)
        server.server = await asyncio.start_server(server._handle, "127.0.0.1", 0)
        servers.append(server)
        return server

    yield start
    for server in servers:
        if server.writer is not None:
            server.writer.close()
        assert server.server is not None
        server.server.close()
        await server.server.wait_closed()


async def open_socket(server: RawServer, **kwargs: Any) -> EventSocket:
    ws = await connect(
        server.url,
        create_connection=EventSocket,
        compression=None,
        ping_interval=None,
        proxy=None,
        **kwargs,
    )
    assert isinstance(ws, EventSocket)
    await asyncio.wait_for(server.connected.wait(), DEADLINE)
    return ws


async def take(ws: EventSocket, count: int) -> list[str | bytes]:
    """Take ``count`` messages, waiting for them (the reader's side of the contract)."""
    taken: list[str | bytes] = []
    async with asyncio.timeout(DEADLINE):
        while len(taken) < count:
            if not ws.messages:
                assert not ws.is_closed, f"closed after {taken!r}"
                await ws.wait_messages()
                continue
            taken.append(ws.messages.popleft())
            ws.drained()
    return taken


async def until_closed(ws: EventSocket) -> list[str | bytes]:
    """Take every message until the connection is closed; return them."""
    taken: list[str | bytes] = []
    async with asyncio.timeout(DEADLINE):
        while True:
            if ws.messages:
                taken.append(ws.messages.popleft())
                continue
            if ws.is_closed:
                return taken
            await ws.wait_messages()


# A stream of every shape of frame, with what the client must deliver for it, in order.
BIG = "x" * 70_000  # a 64-bit length
MEDIUM = "é" * 200  # a 16-bit length, multi-byte UTF-8
STREAM = b"".join(
    [
        text('{"type":"ka"}'),
        text(MEDIUM),
        server_frame(Opcode.BINARY, b"\x00\x01"),
        server_frame(Opcode.TEXT, b'{"frag', fin=False),
        server_frame(Opcode.PING, b"are you there"),  # a control frame between fragments
        server_frame(Opcode.CONT, "mented é".encode(), fin=False),
        server_frame(Opcode.CONT, b'":1}'),
        text(BIG),
        text(""),
        text("last"),
    ]
)
EXPECTED: list[str | bytes] = [
    '{"type":"ka"}',
    MEDIUM,
    b"\x00\x01",
    '{"fragmented é":1}',
    BIG,
    "",
    "last",
]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 125, 4096, len(STREAM)])
async def test_any_cut_of_the_stream_gives_the_same_messages_in_order(
    raw_server: Callable[..., Any], chunk: int
) -> None:
    server = await raw_server()
    ws = await open_socket(server)
    ws.transport.pause_reading()  # the test feeds the bytes, cut where it wants
    for start in range(0, len(STREAM), chunk):
        ws.data_received(STREAM[start : start + chunk])
    assert await take(ws, len(EXPECTED)) == EXPECTED
    assert not ws.messages
    # The ping in the middle of the fragmented message was answered over the socket.
    assert await asyncio.wait_for(server.read_client_frame(), DEADLINE) == (
        Opcode.PONG.value,
        b"are you there",
    )
    ws.transport.resume_reading()
    ws.transport.abort()


async def test_without_the_known_layout_websockets_parses_everything(
    raw_server: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A websockets release without the reader buffer we look at: same messages."""
    server = await raw_server()
    ws = await open_socket(server)
    cut: list[bytes] = []
    monkeypatch.setattr(framing, "layout_known", lambda protocol: False)
    monkeypatch.setattr(EventSocket, "_cut", lambda self, data, max_size: cut.append(data))
    ws.transport.pause_reading()
    for start in range(0, len(STREAM), 5):
        ws.data_received(STREAM[start : start + 5])
    assert await take(ws, len(EXPECTED)) == EXPECTED
    assert cut == []  # nothing went through the fast cut
    ws.transport.resume_reading()
    ws.transport.abort()


async def test_frames_read_with_the_upgrade_response_come_first(
    raw_server: Callable[..., Any],
) -> None:
    """Frames (and half a frame) glued to the 101 response sit in websockets' buffer."""
    half = text("second")[:5]
    server = await raw_server(after_upgrade=text("first") + half)
    ws = await open_socket(server)
    assert await take(ws, 1) == ["first"]
    await server.write(text("second")[5:] + text("third") + text("fourth")[:3])
    assert await take(ws, 2) == ["second", "third"]
    await server.write(text("fourth")[3:])
    assert await take(ws, 1) == ["fourth"]
    ws.transport.abort()


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        # Masked: a server must never mask its frames.
        (Frame(Opcode.TEXT, b"masked").serialize(mask=True), 1002),
        # A reserved bit with no extension negotiated.
        (bytes([0x81 | 0x40, 2]) + b"hi", 1002),
        (text("ok")[:2] + b"\xff\xfe", 1007),  # invalid UTF-8 in one frame
        (
            server_frame(Opcode.TEXT, b"\xc3", fin=False) + server_frame(Opcode.CONT, b"("),
            1007,  # invalid UTF-8 across fragments
        ),
        (text("y" * 2000), 1009),  # over max_size
        (server_frame(Opcode.CONT, b"orphan"), 1002),
        # A new message while a fragmented one is unfinished.
        (server_frame(Opcode.TEXT, b"a", fin=False) + text("b"), 1002),
    ],
    ids=[
        "masked",
        "reserved-bit",
        "utf8",
        "utf8-fragmented",
        "too-big",
        "orphan-cont",
        "text-inside-fragments",
    ],
)
async def test_invalid_frames_fail_the_connection_with_the_rfc_code(
    raw_server: Callable[..., Any], frames: bytes, code: int
) -> None:
    server = await raw_server()
    ws = await open_socket(server, max_size=1000)
    await server.write(text("before") + frames + text("after"))
    opcode, payload = await asyncio.wait_for(server.read_client_frame(), DEADLINE)
    assert opcode == Opcode.CLOSE.value
    assert int.from_bytes(payload[:2], "big") == code
    assert server.writer is not None
    server.writer.close()  # the server ends TCP, as it must after a close frame
    assert await until_closed(ws) == ["before"]
    assert isinstance(ws.protocol.close_exc, ConnectionClosedError)


async def test_a_server_that_never_ends_tcp_after_a_failure_is_aborted(
    raw_server: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    server = await raw_server()
    ws = await open_socket(server, close_timeout=0.2)
    await server.write(Frame(Opcode.TEXT, b"masked").serialize(mask=True))
    assert await until_closed(ws) == []  # within close_timeout, not never
    assert "did not end the connection within 0.2 s" in caplog.text


async def test_a_truncated_frame_then_eof_is_an_abnormal_closure(
    raw_server: Callable[..., Any],
) -> None:
    server = await raw_server()
    ws = await open_socket(server)
    await server.write(text("whole") + text("truncated")[:6])
    assert await take(ws, 1) == ["whole"]
    assert server.writer is not None
    server.writer.close()
    assert await until_closed(ws) == []
    close = ws.protocol.close_exc
    assert isinstance(close, ConnectionClosedError)
    assert close.rcvd is None  # no close frame: the stream just ended


async def test_a_close_frame_ends_the_stream_after_the_messages_before_it(
    raw_server: Callable[..., Any],
) -> None:
    server = await raw_server()
    ws = await open_socket(server)
    await server.write(
        text("one") + text("two") + server_frame(Opcode.CLOSE, (1000).to_bytes(2, "big"))
    )
    opcode, payload = await asyncio.wait_for(server.read_client_frame(), DEADLINE)
    assert (opcode, payload[:2]) == (Opcode.CLOSE.value, (1000).to_bytes(2, "big"))
    assert server.writer is not None
    server.writer.close()  # the server ends TCP after the closing handshake
    assert await until_closed(ws) == ["one", "two"]
    assert ws.close_code == 1000


async def test_reading_pauses_at_high_water_and_resumes_when_drained(
    raw_server: Callable[..., Any],
) -> None:
    server = await raw_server()
    ws = await open_socket(server)
    await server.write(b"".join(text(f"m{n}") for n in range(ws.high_water * 3)))
    async with asyncio.timeout(DEADLINE):
        while len(ws.messages) < ws.high_water:
            await ws.wait_messages()
            await asyncio.sleep(0)  # let the next read in while nobody drains
    assert not ws.transport.is_reading()  # type: ignore[attr-defined]
    while len(ws.messages) > ws.low_water + 1:
        ws.messages.popleft()
    ws.drained()
    assert not ws.transport.is_reading()  # type: ignore[attr-defined]  # above low water
    ws.messages.popleft()
    ws.drained()
    assert ws.transport.is_reading()  # type: ignore[attr-defined]
    ws.transport.abort()


@pytest.mark.parametrize(
    ("header", "size"),
    [
        (b"", None),
        (b"\x81", None),
        (b"\x81\x05", 7),
        (b"\x81\x85", 11),  # masked: the key adds 4
        (b"\x81\x7e", None),
        (b"\x81\x7e\x01\x00", 260),
        (b"\x82\x7f" + (70_000).to_bytes(8, "big"), 70_010),
        (b"\x82\x7f\x00", None),
    ],
)
def test_frame_size(header: bytes, size: int | None) -> None:
    assert frame_size(header) == size
    assert frame_size(b"junk" + header, 4) == size


def test_the_upgrade_response_is_split_from_the_frames_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """websockets gets the response up to its blank line, even split across reads."""
    fed: list[bytes] = []
    monkeypatch.setattr(ClientConnection, "data_received", lambda self, data: fed.append(data))
    sock = EventSocket.__new__(EventSocket)
    sock._head = b""
    response = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
    frames = text("a") + text("b")
    stream = response + frames
    for cut in (len(response) - 3, len(response) - 1, len(response), len(response) + 1):
        fed.clear()
        sock._head = b""
        rest = sock._upgrade(stream[:cut])
        if b"".join(fed).endswith(b"\r\n\r\n"):  # websockets now has the response: open
            rest += stream[cut:]
        else:
            assert rest == b""
            rest = sock._upgrade(stream[cut:])
        assert b"".join(fed) == response, cut
        assert rest == frames, cut


async def test_the_client_handshake_reads_the_batched_path(
    raw_server: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    """Garbage before the ack is skipped; a data frame the fast path does not take
    (whitespace around it) still reaches on_data; the end is reported."""
    server = await raw_server(
        after_upgrade=server_frame(Opcode.BINARY, b"\x00")
        + text("not json")
        + text('{"type":"ka"}')
        + text('{"type":"connection_ack","connectionTimeoutMs":300000}')
        + text(' {"type":"data","id":"s1","event":"{}"} ')
    )
    got: list[tuple[str, str]] = []
    arrived = asyncio.Event()

    def on_data(connection: Connection, sub_id: str, raw: str, received_at: Any) -> None:
        got.append((sub_id, raw))
        arrived.set()

    connection = await Connection.open(get_api_config(), url=server.url, on_data=on_data)
    await asyncio.wait_for(arrived.wait(), DEADLINE)
    assert got == [("s1", "{}")]
    assert caplog.text.count("Skipped an undecodable frame during the handshake") == 2
    assert server.writer is not None
    server.writer.close()
    reason = await asyncio.wait_for(connection.closed, DEADLINE)
    assert isinstance(reason, ConnectionFailed)
    assert "the connection was lost (code None): ConnectionClosedError" in str(reason)


async def test_a_close_during_the_client_handshake_fails_the_open(
    raw_server: Callable[..., Any],
) -> None:
    server = await raw_server(close_after_upgrade=True)

    def on_data(connection: Connection, sub_id: str, raw: str, received_at: Any) -> None:
        raise AssertionError("no data expected")

    with pytest.raises(ConnectionFailed, match="closed the connection during the handshake"):
        await Connection.open(get_api_config(), url=server.url, on_data=on_data)
