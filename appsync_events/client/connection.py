"""One AppSync Events websocket: handshake, reader, keep-alive watchdog, operations by id.

Built on the public asyncio API of ``websockets``: :func:`websockets.asyncio.client.connect`
opens the socket (two subprotocols, the proxy configuration, a message size limit) and
:meth:`~websockets.asyncio.client.ClientConnection.recv` reads one message at a time.
Backpressure is ``websockets``' own: while the event consumer makes the reader wait,
received frames pile up to ``max_queue`` (:data:`RECEIVE_QUEUE`), then ``websockets``
stops reading from TCP and the service's frames wait in the socket buffers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import (
    ConnectionClosed,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidProxy,
    InvalidStatus,
    InvalidURI,
)

from .. import auth
from ..config import APIConfig
from ..exceptions import (
    ConfigurationError,
    ConnectionFailed,
    ConnectionRejected,
    HandshakeTimeout,
    KeepAliveTimeout,
    OperationTimeout,
    UpgradeRefused,
)
from ..hints import unreachable_hint
from ..protocol import (
    SERVER_TYPES,
    SUBPROTOCOL,
    BroadcastError,
    ConnectionAck,
    ConnectionErrorMessage,
    ConnectionInit,
    Data,
    DecodeError,
    ErrorEntry,
    ErrorMessage,
    KeepAlive,
    Message,
    Publish,
    PublishErrorMessage,
    PublishSuccess,
    ServerMessage,
    Subscribe,
    SubscribeErrorMessage,
    SubscribeSuccess,
    Unsubscribe,
    UnsubscribeErrorMessage,
    UnsubscribeSuccess,
    decode,
    decode_data,
    encode,
)
from ..proxies import proxy_for
from ..redaction import redact, redacting_logger

if TYPE_CHECKING:
    from .client import Subscription

__all__ = [
    "CLOSE_TIMEOUT",
    "RECEIVE_QUEUE",
    "Connection",
    "DataCallback",
    "describe_errors",
    "error_entries",
]

logger = logging.getLogger("appsync_events.client")

#: Seconds a websocket close handshake may take before the TCP connection is dropped.
CLOSE_TIMEOUT: Final = 2.0

#: ``websockets``' ``max_queue``: how many received frames may wait for the reader
#: before ``websockets`` stops reading from the socket (and resumes at a quarter).
RECEIVE_QUEUE: Final = 64

#: Upgrade statuses that mean "try again later" rather than "wrong URL".
_RETRYABLE_4XX: Final = frozenset({408, 429})

#: The logger ``websockets`` writes to for our connections: its own ``websockets.client``
#: logger (so its DEBUG output stays available where people look for it), wrapped so
#: every record is redacted. At DEBUG, ``websockets`` logs every handshake header (the
#: ``header-`` subprotocol holds the connect credentials) and every outgoing frame
#: (``authorization`` members); the wrapper replaces each credential with ``<redacted>``.
_ws_logger: Final = redacting_logger("websockets.client")

#: Called by the reader for each ``data`` message, with the connection, the
#: subscription id, the event's JSON text and when its frame was read. It may be
#: ``async def`` or a plain function returning ``None`` or an awaitable: the reader
#: awaits whatever is returned (backpressure), so a consumer that never needs to wait
#: costs no coroutine per event.
DataCallback: TypeAlias = Callable[["Connection", str, str, datetime], Awaitable[None] | None]


def error_entries(errors: Sequence[ErrorEntry]) -> list[dict[str, Any]]:
    """The service's error entries as the ``errors`` of an exception (wire form)."""
    return [e.to_json() for e in errors]


def describe_errors(errors: Iterable[ErrorEntry]) -> str:
    """The service's error entries in one log-friendly line."""
    return "; ".join(f"{e.error_type}: {e.message}" for e in errors)


def _code(exc: ConnectionClosed) -> int | None:
    """The close code the peer sent, or ``None`` when the connection just dropped."""
    return exc.rcvd.code if exc.rcvd is not None else None


class Connection:
    """One AppSync Events websocket: handshake, reader, keep-alive watchdog, operations.

    Use :meth:`open` to create one; it returns once ``connection_ack`` arrived. The
    reader task then runs until the socket closes, the watchdog fires, or
    :meth:`aclose` is called; :attr:`closed` resolves with the reason.

    Attributes:
        connection_timeout: the keep-alive window in seconds (from ``connection_ack``).
        opened_at: the loop time the handshake completed.
        frames: inbound messages read (every kind, garbage included).
        routes: subscription id → the subscription its data frames belong to.
        closed: a future resolving with the exception that ended the connection.
    """

    def __init__(
        self,
        ws: ClientConnection,
        *,
        api: str,
        connection_timeout: float,
        on_data: DataCallback,
        on_frame: Callable[[], None] | None = None,
        label: str = "",
    ) -> None:
        self._ws = ws
        self.api = api
        self.label = label
        self.connection_timeout = connection_timeout
        self._on_data = on_data
        self._on_frame = on_frame
        self._loop = asyncio.get_running_loop()
        self.opened_at = self._loop.time()
        self._last_seen = self.opened_at
        self._delivering = False
        self._pending: dict[str, asyncio.Future[ServerMessage]] = {}
        self.frames = 0
        self.routes: dict[str, Subscription] = {}
        self.closed: asyncio.Future[BaseException] = self._loop.create_future()
        self._reader = asyncio.create_task(self._read(), name=f"appsync-reader{label}")
        self._watchdog = asyncio.create_task(self._watch(), name=f"appsync-watchdog{label}")

    # -- opening ------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        api: APIConfig,
        *,
        on_data: DataCallback,
        on_frame: Callable[[], None] | None = None,
        url: str | None = None,
        connect_timeout: float | None = None,
        handshake_timeout: float | None = None,
        label: str = "",
    ) -> Connection:
        """Open the websocket and complete the AppSync handshake.

        Connect credentials are produced afresh on every call. The socket goes through
        the proxy :func:`~appsync_events.proxies.proxy_for` picks from ``api.proxy`` and
        accepts messages up to ``api.listener.max_message_bytes``.

        Raises:
            ConnectionRejected: ``connection_error`` or HTTP 401/403 on the upgrade.
            UpgradeRefused: another HTTP 4xx on the upgrade (not 408 or 429).
            HandshakeTimeout: no ``connection_ack`` within ``handshake_timeout``.
            ConnectionFailed: the socket could not be opened or closed mid-handshake.
            AuthError: the connect credentials could not be produced.
        """
        url = url or api.realtime_url
        connect_timeout = api.timeouts.connect if connect_timeout is None else connect_timeout
        handshake_timeout = (
            api.timeouts.handshake if handshake_timeout is None else handshake_timeout
        )
        headers = await auth.aconnect_headers(api)
        subprotocols: list[Any] = [SUBPROTOCOL, auth.encode_header_subprotocol(headers)]
        try:
            ws = await ws_connect(
                url,
                subprotocols=subprotocols,
                open_timeout=connect_timeout,
                ping_interval=None,  # AppSync's ``ka`` frames are the liveness signal
                close_timeout=CLOSE_TIMEOUT,
                compression=None,
                max_size=api.listener.max_message_bytes,
                max_queue=RECEIVE_QUEUE,
                proxy=proxy_for(url, api.proxy),
                logger=_ws_logger,
                user_agent_header="django-appsync-events",
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403):
                raise ConnectionRejected(
                    f"the service refused the websocket upgrade with HTTP {status}",
                    status=status,
                    api=api.alias,
                ) from None
            if 400 <= status < 500 and status not in _RETRYABLE_4XX:
                raise UpgradeRefused(
                    f"the websocket upgrade to {url} was answered with HTTP {status}; "
                    f"check APPSYNC_EVENTS[{api.alias!r}]['REALTIME_URL'] (or the "
                    "HTTP_URL it is derived from)",
                    status=status,
                    url=url,
                    api=api.alias,
                ) from None
            raise ConnectionFailed(
                f"the websocket upgrade to {url} failed with HTTP {status}", api=api.alias
            ) from None
        except (InvalidProxy, InvalidURI) as exc:
            # A proxy URL from the environment (PROXY itself is checked with the settings)
            # websockets cannot use; redact(): it may carry a password.
            raise ConfigurationError(
                f"cannot open the websocket to {url}: {redact(str(exc))}; fix the proxy "
                "environment variable (HTTPS_PROXY, ALL_PROXY) or set "
                f"APPSYNC_EVENTS[{api.alias!r}]['PROXY']",
                api=api.alias,
                key="PROXY",
            ) from None
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            # redact(): a server or proxy that echoes the offered subprotocols makes
            # websockets quote the header- subprotocol (the credentials) in its error.
            raise ConnectionFailed(
                f"could not open the websocket to {url}: {type(exc).__name__}: {redact(str(exc))}",
                api=api.alias,
                hint=unreachable_hint(url) if isinstance(exc, ConnectionRefusedError) else "",
            ) from None
        try:
            ack = await cls._handshake(ws, api.alias, handshake_timeout)
        except BaseException:
            # Abort rather than close politely: the peer did not follow the protocol.
            ws.transport.abort()
            raise
        return cls(
            ws,
            api=api.alias,
            connection_timeout=ack.connection_timeout_ms / 1000.0,
            on_data=on_data,
            on_frame=on_frame,
            label=label,
        )

    @staticmethod
    async def _handshake(
        ws: ClientConnection,
        alias: str,
        timeout: float,  # noqa: ASYNC109
    ) -> ConnectionAck:
        def closed(exc: ConnectionClosed) -> ConnectionFailed:
            return ConnectionFailed(
                f"the service closed the connection during the handshake (code {_code(exc)})",
                api=alias,
            )

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            await ws.send(encode(ConnectionInit()))
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise HandshakeTimeout(
                        f"no connection_ack within {timeout:g} s of connection_init", api=alias
                    )
                try:
                    # Cancelling recv() loses nothing (websockets documents it).
                    frame = await asyncio.wait_for(ws.recv(), remaining)
                except TimeoutError:
                    continue  # re-checked above, raising HandshakeTimeout
                try:
                    message = decode(frame, accept=SERVER_TYPES)
                except DecodeError as exc:
                    logger.warning(
                        "Skipped an undecodable frame during the handshake (api=%s): %s [%s]",
                        alias,
                        exc.message,
                        exc.frame,
                    )
                    continue
                if isinstance(message, ConnectionAck):
                    return message
                if isinstance(message, ConnectionErrorMessage):
                    raise ConnectionRejected(
                        "the service refused the connection (connection_error)",
                        api=alias,
                        errors=error_entries(message.errors),
                    )
                if isinstance(message, KeepAlive):
                    continue
                logger.warning(
                    "Ignored an unexpected %s message before connection_ack (api=%s)",
                    message.type,
                    alias,
                )
        except ConnectionClosed as exc:
            raise closed(exc) from None

    # -- reading ------------------------------------------------------------------

    async def _read(self) -> None:
        """Read every message until the socket closes; hand each ``data`` event on."""
        reason: BaseException = ConnectionFailed("the connection ended", api=self.api)
        ws = self._ws
        on_frame = self._on_frame
        on_data = self._on_data
        loop = self._loop
        try:
            while True:
                try:
                    frame = await ws.recv()
                except ConnectionClosed as exc:
                    reason = self._lost(exc)
                    break
                self._last_seen = loop.time()
                self.frames += 1
                if on_frame is not None:
                    on_frame()
                fields = decode_data(frame)
                if fields is not None:
                    pending = on_data(self, fields[0], fields[1], datetime.now(UTC))
                else:
                    try:
                        message = decode(frame, accept=SERVER_TYPES)
                    except DecodeError as exc:
                        logger.warning(
                            "Skipped an undecodable frame (api=%s%s, reason=%s): %s [%s]",
                            self.api,
                            self.label,
                            exc.reason,
                            exc.message,
                            exc.frame,
                        )
                        continue
                    if not isinstance(message, Data):
                        self._handle(message)
                        continue
                    pending = on_data(self, message.id, message.event, datetime.now(UTC))
                if pending is None:
                    continue
                # While the consumer applies backpressure we are not reading, so silence
                # is ours, not the service's: the watchdog must not count it.
                self._delivering = True
                try:
                    await pending
                finally:
                    self._delivering = False
                    self._last_seen = loop.time()
        except asyncio.CancelledError:
            reason = self.closed.result() if self.closed.done() else reason
            raise
        except Exception as exc:  # a consumer callback raised: the connection cannot go on
            logger.exception("The event consumer failed (api=%s%s)", self.api, self.label)
            reason = exc
        finally:
            self._finish(reason)

    def _lost(self, exc: ConnectionClosed) -> ConnectionFailed:
        if isinstance(exc, ConnectionClosedOK):
            return ConnectionFailed(
                f"the service closed the connection (code {_code(exc)})", api=self.api
            )
        return ConnectionFailed(
            f"the connection was lost (code {_code(exc)}): {type(exc).__name__}", api=self.api
        )

    def _handle(self, message: Message) -> None:
        if isinstance(message, KeepAlive):
            return
        if isinstance(
            message,
            SubscribeSuccess
            | SubscribeErrorMessage
            | UnsubscribeSuccess
            | UnsubscribeErrorMessage
            | PublishSuccess
            | PublishErrorMessage,
        ):
            future = self._pending.pop(message.id, None)
            if future is None:
                logger.warning(
                    "Ignored a %s for unknown operation id %s (api=%s%s)",
                    message.type,
                    message.id,
                    self.api,
                    self.label,
                )
            elif not future.done():
                future.set_result(message)
            return
        if isinstance(message, ErrorMessage):
            future = self._pending.pop(message.id, None) if message.id else None
            if future is not None and not future.done():
                future.set_result(message)
            else:
                # Not attributable to any operation: never charge it to one.
                logger.warning(
                    "The service sent an error for no pending operation (api=%s%s, id=%s): %s",
                    self.api,
                    self.label,
                    message.id,
                    describe_errors(message.errors),
                )
            return
        if isinstance(message, BroadcastError):
            logger.warning(
                "The service could not deliver an event for subscription %s (api=%s%s): %s",
                message.id,
                self.api,
                self.label,
                describe_errors(message.errors),
            )
            return
        if isinstance(message, ConnectionErrorMessage):
            self._fail(
                ConnectionRejected(
                    "the service sent connection_error on an open connection",
                    api=self.api,
                    errors=error_entries(message.errors),
                )
            )
            return
        logger.warning(
            "Ignored an unexpected %s message (api=%s%s)", message.type, self.api, self.label
        )

    async def _watch(self) -> None:
        loop = self._loop
        timeout = self.connection_timeout
        while True:
            remaining = self._last_seen + timeout - loop.time()
            if remaining <= 0:
                if not self._delivering:
                    self._fail(
                        KeepAliveTimeout(
                            f"no frame from the service for {timeout:g} s (connectionTimeoutMs)",
                            api=self.api,
                        )
                    )
                    return
                remaining = min(timeout, 1.0)
            await asyncio.sleep(remaining)

    def _fail(self, reason: BaseException) -> None:
        """Drop the connection now (no close handshake) and record ``reason``."""
        if not self.closed.done():
            self.closed.set_result(reason)
        self._ws.transport.abort()
        self._reader.cancel()

    def _finish(self, reason: BaseException) -> None:
        if not self.closed.done():
            self.closed.set_result(reason)
        self._watchdog.cancel()
        failure = self.closed.result()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(
                    failure
                    if isinstance(failure, ConnectionFailed)
                    else ConnectionFailed("the connection was lost", api=self.api)
                )
        self._pending.clear()

    # -- operations ---------------------------------------------------------------

    @property
    def last_seen(self) -> float:
        """The loop time (``time.monotonic()``) the last frame was read, as the keep-alive
        watchdog counts it (the handshake's time before the first)."""
        return self._last_seen

    @property
    def is_open(self) -> bool:
        """Whether the connection is still usable."""
        return not self.closed.done()

    async def request(
        self,
        message: Subscribe | Unsubscribe | Publish,
        timeout: float,  # noqa: ASYNC109 - one deadline per operation
    ) -> Message:
        """Send ``message`` and return the service's answer with the same ``id``.

        Raises:
            OperationTimeout: no answer within ``timeout`` seconds.
            ConnectionFailed: the connection closed before the answer.
        """
        if self.closed.done():
            raise ConnectionFailed("the connection is closed", api=self.api)
        future: asyncio.Future[ServerMessage] = self._loop.create_future()
        self._pending[message.id] = future
        try:
            await self._ws.send(encode(message))
        except ConnectionClosed:
            self._pending.pop(message.id, None)
            raise ConnectionFailed("the connection closed while sending", api=self.api) from None
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            self._pending.pop(message.id, None)
            raise OperationTimeout(
                f"no answer to {message.type} within {timeout:g} s",
                api=self.api,
                channel=getattr(message, "channel", None),
                operation_id=message.id,
            ) from None

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close the websocket with ``code`` (normal closure by default) and wait."""
        if not self.closed.done():
            self.closed.set_result(ConnectionFailed("closed by the client", api=self.api))
        try:
            await self._ws.close(code, reason)
        except Exception:  # closing a broken socket: nothing more to do
            logger.debug("Error while closing the websocket (api=%s)", self.api, exc_info=True)
        self._reader.cancel()
        self._watchdog.cancel()
        await asyncio.gather(self._reader, self._watchdog, return_exceptions=True)
