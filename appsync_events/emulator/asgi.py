"""The emulator's wire layer: one ASGI application for HTTP publish and the websocket.

Routes (the custom-domain layout, so real clients pointed at a custom endpoint work
unchanged; https://docs.aws.amazon.com/appsync/latest/eventapi/event-api-custom-domains.html):

* ``POST /event`` — HTTP publish (``OPTIONS`` answers CORS preflights, as browsers
  send them);
* ``/event/realtime`` — the websocket (subprotocol ``aws-appsync-event-ws``);
* ``GET /.well-known/jwks.json`` — the key the emulator signs test JWTs with.

All decisions live in :class:`~appsync_events.emulator.operations.EmulatorState`; this
module moves frames. Each websocket gets one writer task draining a queue, so frames go
out in the order the state produced them, and fan-out never awaits a slow client.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..config import is_loopback_host
from ..exceptions import ProtocolError
from ..protocol import (
    HEADER_SUBPROTOCOL_PREFIX,
    SUBPROTOCOL,
    KeepAlive,
    decode_header_subprotocol,
    encode,
)
from .operations import EmulatorState, requests_log
from .registry import Connection, is_unicode

__all__ = ["MAX_PENDING_FRAMES", "EmulatorApp", "deadline_protocol", "origin_allowed"]

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

#: Frames that may wait for one websocket client. A client that falls further behind
#: (it stopped reading) loses what waits and is closed with 1008, an INFO line saying so:
#: one stalled subscriber cannot grow the emulator's memory without bound.
MAX_PENDING_FRAMES: Final = 10_000

_KA: Final = encode(KeepAlive())
_NO_HOST: Final = {
    "errors": [
        {"errorType": "BadRequestException", "message": "HTTP/1.1 requests need a Host header."}
    ]
}
_JSON_HEADERS: Final = [(b"content-type", b"application/json")]
_INTERNAL_ERROR: Final = {
    "errors": [
        {"errorType": "InternalFailureException", "message": "The emulator failed; see its log."}
    ]
}
# The answer to bytes that are no HTTP/1.1 request (instead of uvicorn's plain text);
# the connection closes after it.
_NOT_HTTP_BODY: Final = json.dumps(
    {"errors": [{"errorType": "BadRequestException", "message": "Not a valid HTTP/1.1 request."}]},
    separators=(",", ":"),
).encode()
_NOT_HTTP: Final = (
    b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
    b"content-length: " + str(len(_NOT_HTTP_BODY)).encode() + b"\r\n"
    b"connection: close\r\n\r\n" + _NOT_HTTP_BODY
)
# The answer to any path but the two endpoints (HTTP request or websocket upgrade).
_NOT_FOUND: Final = {
    "errors": [
        {
            "errorType": "NotFoundException",
            "message": "This emulator serves POST /event and the websocket at /event/realtime.",
        }
    ]
}
# The answers to websocket upgrades refused before the upgrade (HTTP 403).
_FOREIGN_ORIGIN: Final = {
    "errors": [
        {
            "errorType": "UnauthorizedException",
            "message": "Pages of this Origin may not use the emulator (its option cors_origins).",
        }
    ]
}
_NO_SUBPROTOCOL: Final = {
    "errors": [
        {
            "errorType": "BadRequestException",
            "message": "Offer the websocket subprotocol aws-appsync-event-ws.",
        }
    ]
}
# Upgrade headers that are transport, not authorization.
_NOT_AUTH_HEADERS: Final = frozenset(
    {
        "connection",
        "upgrade",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "content-length",
    }
)


class _Close:
    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


class EmulatorApp:
    """The ASGI application serving one :class:`EmulatorState`.

    Args:
        state: the emulated service.
        jwks: a callable returning the JWKS document served at
            ``/.well-known/jwks.json``.
    """

    def __init__(
        self, state: EmulatorState, *, jwks: Callable[[], dict[str, Any]] | None = None
    ) -> None:
        self.state = state
        self._jwks = jwks
        self._tasks: set[asyncio.Task[None]] = set()
        #: Peer address -> the timer closing its TCP connection unless a complete
        #: request arrives first (see :func:`deadline_protocol`).
        self.pending: dict[tuple[Any, ...], asyncio.TimerHandle] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        kind = scope["type"]
        client = scope.get("client")
        if client:
            timer = self.pending.pop(tuple(client)[:2], None)
            if timer is not None:
                timer.cancel()  # a complete request arrived in time
        if kind == "http":
            try:
                await self._http(scope, receive, send)
            except Exception:
                # Never a plain-text 500: the service's error shape, the cause in the log.
                logger.exception("The emulator failed on %s %s", scope["method"], scope["path"])
                await _respond(send, 500, _INTERNAL_ERROR)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    @staticmethod
    async def _lifespan(receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- HTTP --------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"].rstrip("/") or "/"
        method = scope["method"]
        headers = _headers(scope)
        if "host" not in headers and scope.get("http_version") == "1.1":
            # RFC 9112 §3.2: a server answers an HTTP/1.1 request without Host with 400.
            await _respond(send, 400, _NO_HOST, extra=[(b"connection", b"close")])
            return
        cors = _cors_headers(headers.get("origin"), self.state.settings.cors_origins)
        if path == "/event" and method == "POST":
            limit = self.state.settings.max_request_bytes
            body = await _read_body(receive, limit + 1)
            status, payload = await self.state.http_publish(
                headers,
                body,
                request_host=headers.get("host"),
                remote=_remote(scope),
            )
            await _respond(send, status, payload, extra=cors)
        elif path == "/event" and method == "OPTIONS":
            requested = headers.get("access-control-request-headers", "*")
            preflight = [
                (b"access-control-allow-methods", b"POST, OPTIONS"),
                (b"access-control-allow-headers", requested.encode("latin-1")),
                (b"access-control-max-age", b"600"),
            ]
            await send(
                {
                    "type": "http.response.start",
                    # No CORS headers for an origin that is not allowed: the browser
                    # then refuses to send the publish.
                    "status": 204 if cors else 403,
                    "headers": [*cors, *preflight] if cors else [(b"vary", b"Origin")],
                }
            )
            await send({"type": "http.response.body", "body": b""})
        elif path == "/.well-known/jwks.json" and method == "GET" and self._jwks is not None:
            await _respond(send, 200, self._jwks())
        elif path == "/event":
            await _respond(
                send,
                405,
                {"errors": [{"errorType": "MethodNotAllowed", "message": "Use POST /event."}]},
            )
        else:
            await _respond(send, 404, _NOT_FOUND)

    # -- websocket ---------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        first = await receive()
        if first["type"] != "websocket.connect":  # pragma: no cover - ASGI guarantees it
            return
        settings = self.state.settings
        path = scope["path"].rstrip("/")
        offered: list[str] = list(scope.get("subprotocols") or [])
        if path != "/event/realtime" and "websocket.http.response" in scope.get("extensions", {}):
            # A wrong URL: refused before the upgrade with 404, as any unknown path.
            await _respond(send, 404, _NOT_FOUND, kind="websocket.http")
            return
        request_headers = _headers(scope)
        origin = request_headers.get("origin")
        refusal: dict[str, Any] | None = None
        if origin is not None and not origin_allowed(origin, settings.cors_origins):
            # A browser page from another origin never reaches the emulator (browsers
            # always send Origin on a websocket upgrade; other clients usually send none).
            logger.info("Emulator refused a websocket upgrade from origin %s", origin[:200])
            refusal = _FOREIGN_ORIGIN
        elif settings.require_subprotocol and SUBPROTOCOL not in offered:
            refusal = _NO_SUBPROTOCOL
        if path != "/event/realtime" or refusal is not None:
            # Refused before the upgrade with 403, in the JSON error shape when the ASGI
            # server can send a body (a wrong path got its 404 above when it can).
            if refusal is not None and "websocket.http.response" in scope.get("extensions", {}):
                await _respond(send, 403, refusal, kind="websocket.http")
            else:
                await send({"type": "websocket.close", "code": 1008})
            return
        auth_headers = _connect_auth(offered, request_headers, scope, settings.accept_query_auth)
        queue: asyncio.Queue[str | bytes | _Close] = asyncio.Queue()

        def send_frame(frame: str | bytes) -> None:
            if queue.qsize() < MAX_PENDING_FRAMES:
                queue.put_nowait(frame)
            elif not connection.closed:
                connection.closed = True  # no more frames, no more deliveries
                logger.info(
                    "Emulator connection %s fell %d frames behind (the client stopped "
                    "reading): dropping them and closing it with 1008",
                    connection.id,
                    queue.qsize(),
                )
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(_Close(1008, "too slow: frames not read"))

        connection = Connection(
            send=send_frame,
            close=lambda code, reason: queue.put_nowait(_Close(code, reason)),
            headers=auth_headers,
            request_host=request_headers.get("host"),
            remote=_remote(scope),
        )
        tasks: list[asyncio.Task[None]] = []

        def start_keepalive() -> None:
            tasks.append(asyncio.create_task(self._keepalive(connection)))

        connection.on_ack = start_keepalive
        await self.state.open_connection(connection)
        await send(
            {
                "type": "websocket.accept",
                "subprotocol": SUBPROTOCOL if SUBPROTOCOL in offered else None,
            }
        )
        faults = self.state.faults
        tasks.append(
            asyncio.create_task(
                self._writer(
                    connection, queue, send, faults.close_after_messages, faults.close_code
                )
            )
        )
        tasks.append(
            asyncio.create_task(self._close_later(connection, settings.max_lifetime, 1000))
        )
        if faults.close_after_seconds is not None:
            tasks.append(
                asyncio.create_task(
                    self._close_later(connection, faults.close_after_seconds, faults.close_code)
                )
            )
        spoke = asyncio.Event()
        tasks.append(asyncio.create_task(self._close_if_silent(connection, spoke)))
        if connection.connect_error is not None and settings.connect_auth_at == "open":
            self.state.refuse_connection(connection)
        try:
            while True:
                message = await receive()
                kind = message["type"]
                if kind == "websocket.disconnect":
                    break
                if kind != "websocket.receive" or connection.closed:
                    continue
                spoke.set()
                text = message.get("text")
                await self.state.handle_frame(
                    connection, text if text is not None else message.get("bytes") or b""
                )
        finally:
            self.state.remove_connection(connection)
            requests_log.info("CLOSED conn=%s", connection.id[:8])
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _writer(
        self,
        connection: Connection,
        queue: asyncio.Queue[str | bytes | _Close],
        send: Send,
        close_after: int | None,
        close_code: int,
    ) -> None:
        sent = 0
        try:
            while True:
                item = await queue.get()
                if isinstance(item, _Close):
                    connection.closed = True
                    await send(
                        {"type": "websocket.close", "code": item.code, "reason": item.reason}
                    )
                    return
                if isinstance(item, str):
                    await send({"type": "websocket.send", "text": item})
                else:
                    await send({"type": "websocket.send", "bytes": item})
                sent += 1
                if close_after is not None and sent >= close_after:
                    connection.closed = True
                    await send({"type": "websocket.close", "code": close_code, "reason": ""})
                    return
        except OSError:
            # The client went away mid-send (uvicorn raises ClientDisconnected, an OSError);
            # the reader sees the disconnect and cleans up.
            logger.debug("Emulator connection %s gone while sending", connection.id)
        except Exception:
            # A frame the server cannot send (text that is no Unicode, say): never leave
            # the connection open and mute; close it as the protocol's internal error.
            logger.exception("Emulator connection %s: a frame could not be sent", connection.id)
            connection.closed = True
            try:
                await send({"type": "websocket.close", "code": 1011, "reason": ""})
            except OSError:
                logger.debug("Emulator connection %s gone while closing", connection.id)

    async def _keepalive(self, connection: Connection) -> None:
        interval = self.state.settings.ka_interval
        faults = self.state.faults
        if self.state.settings.ka_after_ack and not faults.keepalive_stopped:
            connection.send(_KA)
        while not connection.closed:
            await asyncio.sleep(interval)
            if not faults.keepalive_stopped and not connection.closed:
                connection.send(_KA)

    async def _close_if_silent(self, connection: Connection, spoke: asyncio.Event) -> None:
        """Close a websocket that sends nothing within ``init_timeout`` (with 1000)."""
        timeout = self.state.settings.init_timeout
        try:
            await asyncio.wait_for(spoke.wait(), timeout)
        except TimeoutError:
            if not connection.closed:
                logger.info(
                    "Emulator closing connection %s: nothing received within %.3g s of the "
                    "upgrade (init_timeout)",
                    connection.id,
                    timeout,
                )
                connection.close(1000, "")

    @staticmethod
    async def _close_later(connection: Connection, seconds: float, code: int) -> None:
        await asyncio.sleep(seconds)
        if not connection.closed:
            logger.info("Emulator closing connection %s after %.3g s", connection.id, seconds)
            connection.close(code, "")


def _headers(scope: Scope) -> dict[str, str]:
    """Lowercased request headers; repeated headers joined with ``,``."""
    out: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers") or ():
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        out[name] = f"{out[name]},{value}" if name in out else value
    return out


def _remote(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


def _connect_auth(
    offered: list[str], headers: dict[str, str], scope: Scope, accept_query: bool
) -> dict[str, str]:
    """The connect's header object: ``header-`` subprotocol, else upgrade headers, else query."""
    for proto in offered:
        if proto.startswith(HEADER_SUBPROTOCOL_PREFIX):
            return _decode_connect_auth(proto, "header- subprotocol")
    if accept_query:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        values = query.get("header")
        if values:
            return _decode_connect_auth(HEADER_SUBPROTOCOL_PREFIX + values[0], "?header= value")
    return {k: v for k, v in headers.items() if k not in _NOT_AUTH_HEADERS}


def _decode_connect_auth(value: str, where: str) -> dict[str, str]:
    """The header object of a ``header-`` value; ``{}`` (no auth) when it is unusable."""
    try:
        decoded = decode_header_subprotocol(value)
    except ProtocolError:
        logger.info("Emulator got an undecodable %s; treating as no auth", where)
        return {}
    if not is_unicode((*decoded.keys(), *decoded.values())):
        logger.info("Emulator got a %s holding non-Unicode text; treating as no auth", where)
        return {}
    return {k.lower(): v for k, v in decoded.items()}


async def _read_body(receive: Receive, limit: int) -> bytes:
    """Read the request body, keeping at most ``limit`` bytes (enough to see it is too big)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        if size < limit:
            chunks.append(chunk[: limit - size])
        size += len(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def _respond(
    send: Send,
    status: int,
    payload: Any,
    *,
    kind: str = "http",
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Send ``payload`` as a JSON response: to an HTTP request, or (``kind`` is
    ``"websocket.http"``) instead of a websocket upgrade; ``extra`` headers added."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    if kind == "http":
        headers = [*_JSON_HEADERS, *(extra or ()), (b"content-length", str(len(body)).encode())]
    else:
        # A refused upgrade: uvicorn frames it and writes its own Content-Length and
        # Content-Type (uvicorn 0.50 adds them even when given, and a client then sees
        # each twice), so only the extra headers are passed on.
        headers = [*(extra or ())]
    await send({"type": f"{kind}.response.start", "status": status, "headers": headers})
    await send({"type": f"{kind}.response.body", "body": body})


def origin_allowed(origin: str, allowed: tuple[str, ...]) -> bool:
    """Tell whether a browser ``Origin`` may use the emulator.

    Loopback origins (``localhost``, ``127.0.0.0/8``, ``[::1]``, any port) always may;
    others only when listed in ``allowed`` (or ``allowed`` holds ``"*"``).
    """
    if "*" in allowed or origin.rstrip("/") in allowed:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and is_loopback_host(parts.hostname or "")


def _cors_headers(origin: str | None, allowed: tuple[str, ...]) -> list[tuple[bytes, bytes]]:
    """The CORS headers for a request from ``origin``: none when it is not allowed."""
    if origin is None or not origin_allowed(origin, allowed):
        return []
    return [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"vary", b"Origin"),
    ]


class _CoalescingTransport:
    """A transport that sends what is written during one pass of the event loop at once.

    uvicorn writes a response's head and body, and each websocket frame, with its own
    ``transport.write``, and on a socket with an empty buffer each of those is a
    ``send()`` system call (on loopback the sender also pays for the receiver's network
    stack). Here writes are joined and handed to the real transport once, when the event
    loop runs its next callbacks: a 5-event HTTP publish then answers in one ``send()``
    and its 5 data frames reach each subscriber in one more, instead of 7 calls. Order is
    kept; ``close`` and ``write_eof`` send what is pending first; everything else is the
    real transport's.
    """

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._pending: list[bytes] = []
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        """Hand what is pending to the real transport (a no-op when nothing is)."""
        if self._pending:
            data = b"".join(self._pending) if len(self._pending) > 1 else self._pending[0]
            self._pending.clear()
            self._transport.write(data)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def deadline_protocol(app: EmulatorApp) -> type[HttpToolsProtocol]:
    """uvicorn's HTTP/1.1 protocol, closing connections whose request never completes.

    It is uvicorn's httptools protocol (a C parser: about a third less CPU per publish
    than uvicorn's pure-Python h11 protocol), and its transport coalesces the writes of
    one event-loop pass (a coalescing transport wrapper).

    A client that opens a TCP connection and sends half a request (or nothing) would
    otherwise hold a socket for ever. Each connection must deliver a complete request
    (an HTTP publish or a websocket upgrade) within the emulator's ``handshake_timeout``,
    and each later request on a kept-alive connection as well, counted from the end of
    the previous response. ``app`` cancels the deadline when the request reaches it.
    """

    def expire(transport: asyncio.BaseTransport, key: tuple[Any, ...]) -> None:
        app.pending.pop(key, None)
        logger.info(
            "Emulator closing a connection from %s: no complete request within %.3g s "
            "(handshake_timeout)",
            key[0],
            app.state.settings.handshake_timeout,
        )
        transport.close()

    class DeadlineHTTPProtocol(HttpToolsProtocol):
        """:class:`HttpToolsProtocol` with a deadline for every request head."""

        key: tuple[Any, ...] = ()

        def _arm(self, transport: asyncio.BaseTransport) -> None:
            peer = transport.get_extra_info("peername")
            if not isinstance(peer, tuple):
                return
            self.key = tuple(peer)[:2]
            old = app.pending.pop(self.key, None)
            if old is not None:
                old.cancel()
            app.pending[self.key] = asyncio.get_running_loop().call_later(
                app.state.settings.handshake_timeout, expire, transport, self.key
            )

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            # The websocket protocol takes this transport over at the upgrade, so the
            # frames of a socket are coalesced as well.
            super().connection_made(_CoalescingTransport(transport))  # type: ignore[arg-type]
            self._arm(transport)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self.transport is not None and not self.transport.is_closing():
                self._arm(self.transport)

        def send_400_response(self, msg: str) -> None:
            """Answer bytes that are no HTTP/1.1 request with the service's JSON error
            shape (uvicorn answers plain text), then close."""
            self.transport.write(_NOT_HTTP)
            self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            timer = app.pending.pop(self.key, None)
            if timer is not None:
                timer.cancel()
            super().connection_lost(exc)

    return DeadlineHTTPProtocol
