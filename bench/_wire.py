"""Minimal AppSync Events clients on raw sockets, so a benchmark measures the server.

Both servers of ``bench/bench_emulator.py`` (the emulator and MiniStack) get exactly the
same clients from here:

* :func:`post_events`: one HTTP ``POST /event`` on a **new connection** (``Connection:
  close``), the request written in one piece, the response read to the end;
* :class:`Subscriber`: one websocket, handshake and AppSync ``connection_init`` /
  ``subscribe`` done by hand, then it only cuts text frames out of the byte stream and
  counts them (a few integer operations per frame, no JSON), so thousands of them in one
  process cost little next to the server that writes the frames.

Loopback only; server frames arrive unmasked (RFC 6455), client frames are masked.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
from typing import Any

SUBPROTOCOL = "aws-appsync-event-ws"


def header_subprotocol(headers: dict[str, str]) -> str:
    """The ``header-<base64url(JSON)>`` subprotocol carrying ``headers``."""
    raw = base64.urlsafe_b64encode(json.dumps(headers).encode()).decode().rstrip("=")
    return f"header-{raw}"


class _Exchange(asyncio.Protocol):
    """One request on one connection: write it, collect the answer until the peer closes."""

    def __init__(self, request: bytes, done: asyncio.Future[bytes]) -> None:
        self.request = request
        self.done = done
        self.chunks: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(b"".join(self.chunks))


async def post_events(
    port: int, host: str, api_key: str, channel: str, events: list[str]
) -> tuple[int, bytes]:
    """POST ``events`` (JSON strings) to ``channel`` on a new connection; return status, body.

    ``host`` is the ``Host`` header (MiniStack routes the data plane by it). The request
    goes out in one write; the response is read until the server closes the connection
    (``Connection: close``).
    """
    body = json.dumps({"channel": channel, "events": events}).encode()
    request = (
        f"POST /event HTTP/1.1\r\nHost: {host}\r\nx-api-key: {api_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bytes] = loop.create_future()
    transport, _ = await loop.create_connection(lambda: _Exchange(request, done), "127.0.0.1", port)
    try:
        response = await done
    finally:
        transport.close()
    head, _, rest = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    return status, rest


def _frame(text: str | bytes, opcode: int = 1) -> bytes:
    """A masked client frame (text by default) carrying ``text``."""
    payload = text.encode() if isinstance(text, str) else text
    mask = os.urandom(4)
    length = len(payload)
    first = 0x80 | opcode
    if length < 126:
        header = struct.pack("!BB", first, 0x80 | length)
    elif length < 65536:
        header = struct.pack("!BBH", first, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, length)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


class Subscriber:
    """One websocket subscribed to a channel, counting the text frames it receives."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buffer = bytearray()
        self.frames = 0
        self.first: bytes | None = None

    @classmethod
    async def open(
        cls, port: int, host: str, auth: dict[str, str], channel: str, sub_id: str
    ) -> Subscriber:
        """Connect, upgrade, ``connection_init`` and subscribe to ``channel``.

        Raises:
            RuntimeError: when the server refuses the upgrade, the init or the subscribe.
        """
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        protocols = f"{SUBPROTOCOL}, {header_subprotocol(auth)}"
        writer.write(
            (
                f"GET /event/realtime HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {protocols}\r\n\r\n"
            ).encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            writer.close()
            raise RuntimeError(f"upgrade refused: {head[:200]!r}")
        self = cls(reader, writer)
        await self.send({"type": "connection_init"})
        await self.expect("connection_ack")
        await self.send(
            {"type": "subscribe", "id": sub_id, "channel": channel, "authorization": auth}
        )
        await self.expect("subscribe_success")
        return self

    async def send(self, message: dict[str, Any]) -> None:
        """Send ``message`` as a masked text frame."""
        self.writer.write(_frame(json.dumps(message)))
        await self.writer.drain()

    async def expect(self, kind: str) -> None:
        """Read frames until one of ``type`` ``kind``; raise on an ``*_error``."""
        while True:
            for payload in await self._read_frames(keep=True):
                message = json.loads(payload)
                if message.get("type") == kind:
                    return
                if str(message.get("type", "")).endswith("error"):
                    raise RuntimeError(f"{kind} refused: {payload[:300]!r}")

    async def _read_frames(self, *, keep: bool) -> list[bytes]:
        """Read once from the socket; return (``keep``) or count the complete text frames."""
        data = await self.reader.read(262_144)
        if not data:
            raise ConnectionError("the server closed the connection")
        buffer = self.buffer
        buffer += data
        kept: list[bytes] = []
        pos = 0
        end = len(buffer)
        count = 0
        while end - pos >= 2:
            opcode = buffer[pos] & 0x0F
            length = buffer[pos + 1] & 0x7F
            start = pos + 2
            if length == 126:
                if end - pos < 4:
                    break
                length = (buffer[pos + 2] << 8) | buffer[pos + 3]
                start = pos + 4
            elif length == 127:
                if end - pos < 10:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 10], "big")
                start = pos + 10
            if end - start < length:
                break
            if opcode == 1:
                if keep:
                    kept.append(bytes(buffer[start : start + length]))
                else:
                    count += 1
                    if self.first is None:
                        self.first = bytes(buffer[start : start + length])
            elif opcode == 9:  # a ping: answer it, or the server gives up on us
                self.writer.write(_frame(bytes(buffer[start : start + length]), opcode=10))
            elif opcode == 8:
                raise ConnectionError("the server closed the websocket")
            pos = start + length
        del buffer[:pos]
        self.frames += count
        return kept

    async def count_forever(self, on_frames: Any) -> None:
        """Count text frames until cancelled; call ``on_frames(n)`` after each read."""
        while True:
            before = self.frames
            await self._read_frames(keep=False)
            if self.frames != before:
                on_frames(self.frames - before)

    def close(self) -> None:
        """Drop the connection (no closing handshake: the benchmark is over)."""
        self.writer.close()
