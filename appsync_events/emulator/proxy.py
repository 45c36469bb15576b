"""A small asyncio TCP proxy that breaks connections the way networks do.

An ASGI server always speaks correct websocket: it cannot drop a TCP connection without a
close frame or send a frame that is cut short. The emulator can therefore put this proxy
in front of uvicorn (``AppSyncEventsEmulator(fault_proxy=True)``); clients dial the proxy
and the proxy pipes bytes both ways, following the server's websocket framing so it can
act *between* two frames:

* ``drop``: abort both TCP connections at once (no close frame, no FIN handshake);
* ``truncated``: send a frame header that announces more bytes than follow, then abort;
* ``garbage``: send bytes that are no websocket frame (a reserved opcode), then stop
  forwarding the server's side.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import Final, cast

__all__ = ["FaultProxy"]

logger = logging.getLogger(__name__)

_ACTIONS: Final = frozenset({"drop", "truncated", "garbage"})
_TRUNCATED_FRAME: Final = b"\x81\x7e" + struct.pack("!H", 1000) + b'{"type":"da'
_GARBAGE: Final = b"\x8f\x05\xde\xad\xbe\xef\x00not a websocket frame"


class _Pair:
    """One client connection and its upstream connection."""

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.client: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self.pending_to_upstream: list[bytes] = []
        # Server → client parsing state.
        self.head = bytearray()
        self.websocket = False
        self.passthrough = False
        self.frame_header = bytearray()
        self.remaining = 0
        self.pending_action: str | None = None
        self.dead = False

    # -- client side -------------------------------------------------------------------

    def from_client(self, data: bytes) -> None:
        if self.upstream is None:
            self.pending_to_upstream.append(data)
        elif not self.dead:
            self.upstream.write(data)

    def upstream_ready(self, transport: asyncio.Transport) -> None:
        self.upstream = transport
        for chunk in self.pending_to_upstream:
            transport.write(chunk)
        self.pending_to_upstream.clear()

    # -- server side -------------------------------------------------------------------

    def from_upstream(self, data: bytes) -> None:
        client = self.client
        if client is None or self.dead:
            return
        if not self.websocket:
            if self.passthrough:
                client.write(data)
                return
            self.head.extend(data)
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.head[: end + 4])
            rest = bytes(self.head[end + 4 :])
            self.head.clear()
            client.write(head)
            if head.startswith((b"HTTP/1.1 101", b"HTTP/1.0 101")):
                self.websocket = True
                self.proxy.track(self)
                if rest:
                    self.from_upstream(rest)
            else:
                self.passthrough = True
                if rest:
                    client.write(rest)
            return
        self._frames(data, client)

    def _frames(self, data: bytes, client: asyncio.Transport) -> None:
        out: list[bytes] = []
        i = 0
        n = len(data)
        while i < n:
            if self.remaining:
                take = min(self.remaining, n - i)
                out.append(data[i : i + take])
                i += take
                self.remaining -= take
                if not self.remaining and self._boundary(out, client):
                    return
                continue
            self.frame_header.append(data[i])
            i += 1
            need = _header_length(self.frame_header)
            if need is None or len(self.frame_header) < need:
                continue
            out.append(bytes(self.frame_header))
            self.remaining = _payload_length(self.frame_header)
            self.frame_header.clear()
            if not self.remaining and self._boundary(out, client):
                return
        if out:
            client.write(b"".join(out))

    def _boundary(self, out: list[bytes], client: asyncio.Transport) -> bool:
        """Between two frames: run a pending action; True when the pair is finished."""
        if self.pending_action is None:
            return False
        client.write(b"".join(out))
        out.clear()
        self._act_now(self.pending_action)
        return True

    def at_boundary(self) -> bool:
        return self.websocket and not self.remaining and not self.frame_header

    def act(self, action: str) -> None:
        if action == "drop":
            self._act_now(action)
        elif self.at_boundary():
            self._act_now(action)
        else:
            self.pending_action = action

    def _act_now(self, action: str) -> None:
        self.pending_action = None
        self.dead = True
        client, upstream = self.client, self.upstream
        if action == "truncated" and client is not None:
            client.write(_TRUNCATED_FRAME)
        elif action == "garbage" and client is not None:
            client.write(_GARBAGE)
            if upstream is not None:
                upstream.abort()
            return
        if client is not None:
            client.abort()
        if upstream is not None:
            upstream.abort()

    def close(self) -> None:
        self.dead = True
        for transport in (self.client, self.upstream):
            if transport is not None:
                transport.abort()
        self.proxy.untrack(self)


def _header_length(header: bytearray) -> int | None:
    if len(header) < 2:
        return None
    length = header[1] & 0x7F
    masked = 4 if header[1] & 0x80 else 0
    extra = 2 if length == 126 else 8 if length == 127 else 0
    return 2 + extra + masked


def _payload_length(header: bytearray) -> int:
    length = header[1] & 0x7F
    if length == 126:
        return int(struct.unpack("!H", header[2:4])[0])
    if length == 127:
        return int(struct.unpack("!Q", header[2:10])[0])
    return length


class _ClientProtocol(asyncio.Protocol):
    def __init__(self, proxy: FaultProxy) -> None:
        self.pair = _Pair(proxy)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.pair.client = cast(asyncio.Transport, transport)
        self.pair.proxy.connect_upstream(self.pair)

    def data_received(self, data: bytes) -> None:
        self.pair.from_client(data)

    def eof_received(self) -> bool | None:
        if self.pair.upstream is not None and self.pair.upstream.can_write_eof():
            self.pair.upstream.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.pair.close()


class _UpstreamProtocol(asyncio.Protocol):
    def __init__(self, pair: _Pair) -> None:
        self.pair = pair

    def data_received(self, data: bytes) -> None:
        self.pair.from_upstream(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.pair.close()


class FaultProxy:
    """Pipe ``host:<its own port>`` to ``host:upstream_port`` and inject faults on demand.

    Args:
        host: the interface to listen on and the upstream host.
        upstream_port: the port of the real server.
    """

    def __init__(self, host: str, upstream_port: int) -> None:
        self.host = host
        self.upstream_port = upstream_port
        self._server: asyncio.Server | None = None
        self._websockets: set[_Pair] = set()
        self._pairs: set[_Pair] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        """Listen on a free port; return it."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _ClientProtocol(self), self.host, 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def stop(self) -> None:
        """Stop listening and abort every piped connection."""
        if self._server is not None:
            self._server.close()
        for pair in list(self._pairs):
            pair.close()
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def reset(self) -> None:
        """Nothing persists between tests but connections, which the emulator closes."""

    def connect_upstream(self, pair: _Pair) -> None:
        self._pairs.add(pair)
        task = asyncio.get_running_loop().create_task(self._connect(pair))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, pair: _Pair) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_connection(
                lambda: _UpstreamProtocol(pair), self.host, self.upstream_port
            )
        except OSError as exc:
            logger.warning("Fault proxy could not reach the emulator: %s", exc)
            pair.close()
            return
        pair.upstream_ready(transport)

    def track(self, pair: _Pair) -> None:
        self._websockets.add(pair)

    def untrack(self, pair: _Pair) -> None:
        self._websockets.discard(pair)
        self._pairs.discard(pair)

    def act(self, action: str) -> int:
        """Apply ``action`` to every proxied websocket; return how many.

        Raises:
            ValueError: for an unknown action.
        """
        if action not in _ACTIONS:
            raise ValueError(f"unknown fault {action!r}; use one of {', '.join(sorted(_ACTIONS))}")
        pairs = [p for p in self._websockets if not p.dead]
        for pair in pairs:
            pair.act(action)
        return len(pairs)
