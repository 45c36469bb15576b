"""The asyncio websocket client for AppSync Events, with its supervisor.

Two layers:

:class:`Connection`
    One websocket: the handshake (two subprotocols, fresh connect auth,
    ``connection_init`` → ``connection_ack`` within the handshake timeout), a reader
    task that decodes every frame once, a keep-alive watchdog fed by **every** inbound
    frame, and operations (subscribe / unsubscribe / publish) correlated by ``id``.

:class:`AppSyncEventsClient`
    What applications use. It owns one or more connections (a new one opens whenever
    one holds :data:`~appsync_events.limits.SUBSCRIPTIONS_PER_CONNECTION`
    subscriptions) and supervises each: reconnect with jittered, capped exponential
    backoff (reset once a connection has been stable), resubscribe everything with
    fresh auth, rotate make-before-break before the service's 24 h limit, and fail
    only the subscription the service refuses while the others keep flowing.

.. code-block:: python

    async with AppSyncEventsClient("default") as client:
        await client.subscribe("/chat/*")
        result = await client.publish("/chat/lobby", ['{"text": "hi"}'])
        async for event in client.events():
            print(event.subscription, event.payload)

Error classification (:func:`process_exception`): network failures, keep-alive and
handshake timeouts, protocol errors and 5xx upgrades are retried with backoff; a
rejected connect (``connection_error``, HTTP 401/403) or credentials that cannot be
produced are retried at the *maximum* delay, logged at ERROR each time so a wrong key
never spins quietly; a :class:`~appsync_events.exceptions.ConfigurationError` or an
unexpected exception stops the client (:meth:`AppSyncEventsClient.wait_closed`
re-raises it).

Logging: logger ``appsync_events.client``. The ``websockets`` library logs to its own
``websockets.client`` logger through :func:`~appsync_events.redaction.redacting_logger`:
its DEBUG output (handshake headers, every frame) stays available, with the ``header-``
subprotocol value, API keys, tokens and signatures replaced by ``<redacted>``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypeAlias, cast

from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import (
    ConnectionClosed,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidStatus,
)

from . import auth
from .config import APIConfig
from .events import ReceivedEvent, make_event
from .exceptions import (
    AppSyncEventsError,
    AuthError,
    ConfigurationError,
    ConnectionFailed,
    ConnectionRejected,
    HandshakeTimeout,
    KeepAliveTimeout,
    OperationTimeout,
    PublishError,
    SubscriptionError,
)
from .framing import EventSocket
from .limits import EVENTS_PER_PUBLISH, SUBSCRIPTIONS_PER_CONNECTION
from .paths import normalize_channel
from .protocol import (
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
    loads,
)
from .redaction import redact, redacting_logger
from .results import PublishResult

__all__ = [
    "AppSyncEventsClient",
    "Connection",
    "ConnectionState",
    "StateChange",
    "Subscription",
    "SubscriptionState",
    "is_auth_error",
    "process_exception",
    "reconnect_delays",
]

logger = logging.getLogger(__name__)

ConnectionState: TypeAlias = Literal["connecting", "connected", "reconnecting", "closed"]
SubscriptionState: TypeAlias = Literal["pending", "active", "retrying", "failed", "closed"]

#: Largest frame accepted from the service: one event is at most 240 KB, but a frame
#: escapes it as a JSON string, which can double its size.
MAX_FRAME_BYTES: Final = 1 << 20

#: Seconds a websocket close handshake may take before the TCP connection is dropped.
CLOSE_TIMEOUT: Final = 2.0

#: ``errorType`` values (and message fragments) that mean "your credentials were
#: refused", for which a fresh token may help.
_AUTH_ERROR_TYPES: Final = frozenset(
    {
        "UnauthorizedException",
        "Unauthorized",
        "NotAuthorizedException",
        "ForbiddenException",
        "AccessDeniedException",
        "ExpiredTokenException",
    }
)
_AUTH_ERROR_FRAGMENTS: Final = ("token expired", "token has expired", "expired token")


# -- backoff and classification ---------------------------------------------------------


def reconnect_delays(
    initial: float = 1.0, maximum: float = 60.0, factor: float = 2.0
) -> Iterator[float]:
    """Yield reconnect delays: jittered, growing geometrically, capped at ``maximum``.

    The first delay is drawn from ``[0, initial]`` so that many clients cut off at once
    do not return at once; each later one from ``[d/2, d]`` where ``d`` grows by
    ``factor`` up to ``maximum``. The supervisor starts a fresh generator once a
    connection has been stable, which resets the backoff.
    """
    yield random.uniform(0, initial)  # noqa: S311 - jitter, not cryptography
    delay = initial
    while True:
        delay = min(delay * factor, maximum)
        yield random.uniform(delay / 2, delay)  # noqa: S311


def is_auth_error(error: BaseException | Sequence[Mapping[str, Any]] | None) -> bool:
    """Tell whether an error (or an AWS ``errors`` array) says credentials were refused.

    True for ``errorType`` values such as ``UnauthorizedException``, for
    ``errorCode`` 401/403, and for messages saying a token expired: the cases in
    which retrying with fresh credentials may succeed.
    """
    if error is None:
        return False
    if isinstance(error, ConnectionRejected):
        return True
    if isinstance(error, AuthError):
        return True
    entries: Sequence[Mapping[str, Any]]
    if isinstance(error, AppSyncEventsError):
        entries = error.errors
    elif isinstance(error, BaseException):
        return False
    else:
        entries = error
    for entry in entries:
        if str(entry.get("errorType", "")) in _AUTH_ERROR_TYPES:
            return True
        if entry.get("errorCode") in (401, 403):
            return True
        message = str(entry.get("message") or "").lower()
        if any(fragment in message for fragment in _AUTH_ERROR_FRAGMENTS):
            return True
    return False


def process_exception(exc: BaseException) -> BaseException | None:
    """Classify a failure to connect or a lost connection.

    Returns:
        ``None`` when the supervisor should reconnect (after a delay; a rejected
        connect waits the maximum delay), or the exception to raise when it must stop.
        Pass your own function as ``process_exception=`` to change the policy.
    """
    if isinstance(exc, ConfigurationError):
        return exc
    if isinstance(exc, AppSyncEventsError | OSError | TimeoutError | ConnectionClosed):
        return None
    if isinstance(exc, InvalidHandshake):
        return None
    return exc


def _entries(errors: Sequence[ErrorEntry]) -> list[dict[str, Any]]:
    return [e.to_json() for e in errors]


def _code(exc: ConnectionClosed) -> int | None:
    """The close code the peer sent, or ``None`` when the connection just dropped."""
    return exc.rcvd.code if exc.rcvd is not None else None


def _new_id() -> str:
    return str(uuid.uuid4())


#: The logger ``websockets`` writes to for our connections: its own ``websockets.client``
#: logger (so its DEBUG output stays available where people look for it), wrapped so
#: every record is redacted. At DEBUG, ``websockets`` logs every handshake header (the
#: ``header-`` subprotocol holds the connect credentials) and every outgoing frame
#: (``authorization`` members); the wrapper replaces each credential with ``<redacted>``.
_ws_logger: Final = redacting_logger("websockets.client")


# -- one connection -----------------------------------------------------------------------


#: Called by the reader for each ``data`` message, with the connection, the
#: subscription id, the event's JSON text and when its batch of frames was read. It may
#: be ``async def`` or a plain function returning ``None`` or an awaitable: the reader
#: awaits whatever is returned (backpressure), so a consumer that never needs to wait
#: costs no coroutine per event.
DataCallback: TypeAlias = Callable[["Connection", str, str, datetime], Awaitable[None] | None]


def _describe(errors: Iterable[ErrorEntry]) -> str:
    """The service's error entries in one log-friendly line."""
    return "; ".join(f"{e.error_type}: {e.message}" for e in errors)


class Connection:
    """One AppSync Events websocket: handshake, reader, keep-alive watchdog, operations.

    Use :meth:`open` to create one; it returns once ``connection_ack`` arrived. The
    reader task then runs until the socket closes, the watchdog fires, or
    :meth:`aclose` is called; :attr:`closed` resolves with the reason.

    Attributes:
        connection_timeout: the keep-alive window in seconds (from ``connection_ack``).
        opened_at: the loop time the handshake completed.
        frames: inbound frames read (every kind, garbage included).
    """

    def __init__(
        self,
        ws: EventSocket,
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
        #: Subscription id → the subscription its data frames belong to.
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

        Connect credentials are produced afresh on every call.

        Raises:
            ConnectionRejected: ``connection_error`` or HTTP 401/403 on the upgrade.
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
                max_size=MAX_FRAME_BYTES,
                proxy=None,
                create_connection=EventSocket,
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
            raise ConnectionFailed(
                f"the websocket upgrade failed with HTTP {status}", api=api.alias
            ) from None
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            # redact(): a server or proxy that echoes the offered subprotocols makes
            # websockets quote the header- subprotocol (the credentials) in its error.
            raise ConnectionFailed(
                f"could not open the websocket: {type(exc).__name__}: {redact(str(exc))}",
                api=api.alias,
            ) from None
        ws = cast(EventSocket, ws)  # create_connection=EventSocket
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
        ws: EventSocket,
        alias: str,
        timeout: float,  # noqa: ASYNC109
    ) -> ConnectionAck:
        def closed(exc: ConnectionClosed) -> ConnectionFailed:
            return ConnectionFailed(
                f"the service closed the connection during the handshake (code {_code(exc)})",
                api=alias,
            )

        try:
            await ws.send(encode(ConnectionInit()))
        except ConnectionClosed as exc:
            raise closed(exc) from None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise HandshakeTimeout(
                    f"no connection_ack within {timeout:g} s of connection_init", api=alias
                )
            if not ws.messages:
                if ws.is_closed:
                    raise closed(ws.protocol.close_exc)
                try:
                    await asyncio.wait_for(ws.wait_messages(), remaining)
                except TimeoutError:
                    pass  # re-checked above, raising HandshakeTimeout
                continue
            frame = ws.messages.popleft()
            ws.drained()
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
                    errors=_entries(message.errors),
                )
            if isinstance(message, KeepAlive):
                continue
            logger.warning(
                "Ignored an unexpected %s message before connection_ack (api=%s)",
                message.type,
                alias,
            )

    # -- reading ------------------------------------------------------------------

    async def _read(self) -> None:
        """Drain the socket's messages, a batch (the frames read together) per wake-up."""
        reason: BaseException = ConnectionFailed("the connection ended", api=self.api)
        ws = self._ws
        messages = ws.messages
        on_frame = self._on_frame
        on_data = self._on_data
        loop = self._loop
        try:
            while True:
                if not messages:
                    if ws.is_closed:
                        break
                    await ws.wait_messages()
                    continue
                self._last_seen = loop.time()
                received_at = datetime.now(UTC)
                if on_frame is not None:
                    on_frame()
                while messages:
                    frame = messages.popleft()
                    self.frames += 1
                    fields = decode_data(frame)
                    if fields is not None:
                        pending = on_data(self, fields[0], fields[1], received_at)
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
                        pending = on_data(self, message.id, message.event, received_at)
                    if pending is None:
                        continue
                    # While the consumer applies backpressure we are not reading, so
                    # silence is ours, not the service's: the watchdog must not count it.
                    self._delivering = True
                    ws.drained()
                    try:
                        await pending
                    finally:
                        self._delivering = False
                        self._last_seen = loop.time()
                ws.drained()
            close = ws.protocol.close_exc
            if isinstance(close, ConnectionClosedOK):
                reason = ConnectionFailed(
                    f"the service closed the connection (code {ws.close_code})", api=self.api
                )
            else:
                reason = ConnectionFailed(
                    f"the connection was lost (code {_code(close)}): {type(close).__name__}",
                    api=self.api,
                )
        except asyncio.CancelledError:
            reason = self.closed.result() if self.closed.done() else reason
            raise
        except Exception as exc:  # a consumer callback raised: the connection cannot go on
            logger.exception("The event consumer failed (api=%s%s)", self.api, self.label)
            reason = exc
        finally:
            self._finish(reason)

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
                    _describe(message.errors),
                )
            return
        if isinstance(message, BroadcastError):
            logger.warning(
                "The service could not deliver an event for subscription %s (api=%s%s): %s",
                message.id,
                self.api,
                self.label,
                _describe(message.errors),
            )
            return
        if isinstance(message, ConnectionErrorMessage):
            self._fail(
                ConnectionRejected(
                    "the service sent connection_error on an open connection",
                    api=self.api,
                    errors=_entries(message.errors),
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


# -- subscriptions ---------------------------------------------------------------------


class Subscription:
    """A subscription the client holds, across reconnects.

    Attributes:
        channel: the normalised path subscribed to (may end in ``/*``).
        mode: the auth mode forced for it, or ``None`` for the namespace's default.
        id: the protocol id of the current attempt.
        state: ``"pending"``, ``"active"``, ``"retrying"``, ``"failed"`` or ``"closed"``.
        error: the last error, when the service refused it.
    """

    def __init__(self, client: AppSyncEventsClient, channel: str, mode: str | None) -> None:
        self._client = client
        self.channel = channel
        self.mode = mode
        self.id = _new_id()
        self.state: SubscriptionState = "pending"
        self.error: AppSyncEventsError | None = None
        self._settled = asyncio.Event()
        self._slot: _Slot | None = None
        self._connection: Connection | None = None

    def __repr__(self) -> str:
        return f"<Subscription {self.channel} id={self.id} state={self.state}>"

    @property
    def is_closed(self) -> bool:
        """Whether it was unsubscribed (or the client closed)."""
        return self.state == "closed"

    async def wait(self) -> Subscription:
        """Wait for the first outcome: return when active, raise when it failed.

        Raises:
            SubscriptionError: the service refused it (after the retries, for auth errors).
        """
        await self._settled.wait()
        if self.state == "failed":
            raise self.error or SubscriptionError("the subscription failed", channel=self.channel)
        return self

    async def aclose(self) -> None:
        """Unsubscribe (same as ``await client.unsubscribe(subscription)``)."""
        await self._client.unsubscribe(self)


@dataclass(frozen=True, slots=True)
class StateChange:
    """A connection of the client changed state.

    Attributes:
        state: ``"connecting"``, ``"connected"``, ``"reconnecting"`` or ``"closed"``.
        reason: why (the error for ``"reconnecting"``), or ``None``.
        retry_in: seconds until the next attempt, for ``"reconnecting"``.
        connection: the index of the connection slot (0 for the first).
        rejected: whether the service refused the connect (credentials).
    """

    state: ConnectionState
    reason: str | None = None
    retry_in: float | None = None
    connection: int = 0
    rejected: bool = False


StateCallback: TypeAlias = Callable[[StateChange], Awaitable[None]]
EventCallback: TypeAlias = Callable[[ReceivedEvent], Awaitable[None] | None]
SubscribedCallback: TypeAlias = Callable[[Subscription], Awaitable[None]]
SubscriptionFailedCallback: TypeAlias = Callable[
    [Subscription, AppSyncEventsError, bool], Awaitable[None]
]


class _Slot:
    """One supervised connection and the subscriptions assigned to it."""

    def __init__(self, client: AppSyncEventsClient, index: int) -> None:
        self.client = client
        self.index = index
        self.label = f", connection={index}"
        self.subscriptions: dict[int, Subscription] = {}
        #: Lowered when the service refuses a subscription with
        #: ``MaxSubscriptionsReachedError`` (its quota is lower than configured).
        self.capacity = client.max_subscriptions
        self.connection: Connection | None = None
        self.connected = asyncio.Event()
        self.stopping = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"appsync-supervisor-{self.index}")

    async def _open(self) -> Connection:
        return await Connection.open(
            self.client.api,
            on_data=self.client._on_data,
            on_frame=self.client._on_frame,
            url=self.client.url,
            handshake_timeout=self.client.handshake_timeout,
            label=self.label,
        )

    async def _sleep(self, delay: float) -> bool:
        """Sleep ``delay`` seconds; return False when stopping interrupted it."""
        try:
            await asyncio.wait_for(self.stopping.wait(), delay)
        except TimeoutError:
            return True
        return False

    async def _run(self) -> None:
        client = self.client
        delays = client._delays()
        attempt = 0
        while not self.stopping.is_set():
            await client._state(StateChange("connecting", connection=self.index))
            try:
                connection = await self._open()
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                fatal = client._process_exception(exc)
                if fatal is not None:
                    await client._fatal(fatal)
                    return
                attempt += 1
                rejected = isinstance(exc, ConnectionRejected | AuthError)
                delay = client.backoff_max if rejected else next(delays)
                await client._reconnecting(self.index, exc, delay, rejected, attempt)
                if not await self._sleep(delay):
                    break
                continue
            attempt = 0
            self.connection = connection
            self.connected.set()
            if self.index in client._ever_connected:
                client._reconnect_count += 1
            client._ever_connected.add(self.index)
            await client._state(StateChange("connected", connection=self.index))
            await self._subscribe_all(connection)
            reason = await self._hold(connection)
            if reason is not None:
                self.connected.clear()
                for sub in self.subscriptions.values():
                    if sub.state == "active":
                        sub.state = "pending"  # resubscribed once reconnected
            if reason is None or self.stopping.is_set():
                break
            if client.loop.time() - connection.opened_at >= client.stable_after:
                delays = client._delays()  # it was stable: start the backoff afresh
            fatal = client._process_exception(reason)
            if fatal is not None:
                await client._fatal(fatal)
                return
            delay = next(delays)
            await client._reconnecting(self.index, reason, delay, False, 1)
            if not await self._sleep(delay):
                break

    async def _hold(self, connection: Connection) -> BaseException | None:
        """Hold the slot's connection, rotating it when due, until it fails (return why)
        or the slot stops (return ``None``)."""
        client = self.client
        while True:
            rotate_at = connection.opened_at + client.rotate_after
            remaining = rotate_at - client.loop.time()
            stop: asyncio.Future[Any] = asyncio.ensure_future(self.stopping.wait())
            closed: asyncio.Future[Any] = connection.closed
            try:
                await asyncio.wait(
                    {closed, stop},
                    timeout=max(remaining, 0),
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                stop.cancel()
            if connection.closed.done():
                self.connection = None
                return connection.closed.result()
            if self.stopping.is_set():
                return None
            replacement = await self._rotate(connection)
            if replacement is not None:
                connection = replacement  # hold the new one from now on

    async def _rotate(self, old: Connection) -> Connection | None:
        """Open a new connection, subscribe it, then retire ``old`` (make-before-break)."""
        client = self.client
        logger.info(
            "Rotating the connection after %.0f s (api=%s%s)",
            client.loop.time() - old.opened_at,
            client.alias,
            self.label,
        )
        try:
            new = await self._open()
        except Exception as exc:
            fatal = client._process_exception(exc)
            if fatal is not None:  # e.g. a ConfigurationError: retrying cannot help
                await client._fatal(fatal)
                return None
            # The old connection still works: keep it, try again after a delay.
            delay = min(client.backoff_max, max(client.backoff_initial, 1.0))
            logger.warning(
                "Could not open the replacement connection (api=%s%s): %s; retrying in %.1f s",
                client.alias,
                self.label,
                exc,
                delay,
            )
            await self._sleep(delay)
            return None
        await self._subscribe_all(new)
        self.connection = new
        # Both connections now deliver: events published in this short window may
        # arrive twice (documented in docs/listener.md). Close the old one now.
        await client._retire(old, self.label)
        await client._state(StateChange("connected", reason="rotated", connection=self.index))
        return new

    async def _subscribe_all(self, connection: Connection) -> None:
        subscriptions = [s for s in self.subscriptions.values() if s.state != "closed"]
        if subscriptions:
            await asyncio.gather(
                *(self.client._establish(s, connection) for s in subscriptions),
                return_exceptions=False,
            )


class AppSyncEventsClient:
    """An async client for one AppSync Events API alias.

    Use it as an async context manager (or call :meth:`connect` and :meth:`aclose`).
    Subscriptions can be added and removed at any time; they survive reconnects and
    rotations. Received events go to ``on_event`` when given (awaited by the socket
    reader: a slow callback applies backpressure, and the keep-alive watchdog does not
    count the time it takes), else to a bounded queue read with :meth:`events`.

    Args:
        api: the alias (``"default"``) or an :class:`~appsync_events.conf.APIConfig`.
        on_event: ``async def on_event(event: ReceivedEvent)``, or a plain function
            that returns ``None`` or an awaitable (awaited before the next frame is
            read): a consumer that usually hands the event on without waiting saves
            a coroutine per event.
        on_state: ``async def on_state(change: StateChange)``.
        on_subscribed: ``async def on_subscribed(subscription)``, after every
            ``subscribe_success`` (so again after each reconnect).
        on_subscription_failed: ``async def f(subscription, error, will_retry)``.
        on_frame: a cheap sync callable run for every inbound frame (health files).
        url: the websocket URL; defaults to the alias's ``realtime_url``.
        backoff_initial, backoff_max, backoff_factor, stable_after, rotate_after:
            the supervisor's timing; default to the alias's ``LISTENER`` settings.
        operation_timeout, handshake_timeout: default to the alias's ``TIMEOUTS``.
        subscribe_retries: how many times a subscription refused for an auth reason
            is retried with fresh credentials (delays 1 s, 2 s, 4 s... capped at
            ``backoff_max``) before it fails for good.
        max_subscriptions: subscriptions per connection before another one opens.
        queue_size: the :meth:`events` queue bound (when ``on_event`` is not given).
        process_exception: classifies connection failures; see :func:`process_exception`.
    """

    def __init__(
        self,
        api: str | APIConfig = "default",
        *,
        on_event: EventCallback | None = None,
        on_state: StateCallback | None = None,
        on_subscribed: SubscribedCallback | None = None,
        on_subscription_failed: SubscriptionFailedCallback | None = None,
        on_frame: Callable[[], None] | None = None,
        url: str | None = None,
        backoff_initial: float | None = None,
        backoff_max: float | None = None,
        backoff_factor: float | None = None,
        stable_after: float | None = None,
        rotate_after: float | None = None,
        operation_timeout: float | None = None,
        handshake_timeout: float | None = None,
        subscribe_retries: int = 3,
        max_subscriptions: int = SUBSCRIPTIONS_PER_CONNECTION,
        queue_size: int = 1000,
        process_exception: Callable[[BaseException], BaseException | None] = process_exception,
    ) -> None:
        if isinstance(api, APIConfig):
            self.api = api
        else:
            from .conf import get_api_config  # a settings alias: the Django layer

            self.api = get_api_config(api)
        self.alias = self.api.alias
        listener = self.api.listener
        self.url = url or self.api.realtime_url
        self.backoff_initial = (
            listener.backoff_initial if backoff_initial is None else backoff_initial
        )
        self.backoff_max = listener.backoff_max if backoff_max is None else backoff_max
        self.backoff_factor = listener.backoff_factor if backoff_factor is None else backoff_factor
        self.stable_after = listener.stable_after if stable_after is None else stable_after
        self.rotate_after = listener.rotate_after if rotate_after is None else rotate_after
        self.operation_timeout = (
            self.api.timeouts.operation if operation_timeout is None else operation_timeout
        )
        self.handshake_timeout = (
            self.api.timeouts.handshake if handshake_timeout is None else handshake_timeout
        )
        if max_subscriptions < 1:
            raise ValueError("max_subscriptions must be at least 1")
        if subscribe_retries < 0:
            raise ValueError("subscribe_retries must be 0 or more")
        self.subscribe_retries = subscribe_retries
        self.max_subscriptions = max_subscriptions
        self._on_event = on_event
        self._on_state = on_state
        self._on_subscribed = on_subscribed
        self._on_subscription_failed = on_subscription_failed
        self._on_frame_cb = on_frame
        self._process_exception = process_exception
        self._queue: asyncio.Queue[ReceivedEvent] | None = (
            None if on_event is not None else asyncio.Queue(queue_size)
        )
        self._slots: list[_Slot] = []
        self._subscriptions: dict[int, Subscription] = {}
        self._started = False
        self._closing = False
        self._closed = asyncio.Event()
        self._fatal_error: BaseException | None = None
        self._reconnect_count = 0
        self._ever_connected: set[int] = set()
        self._state_value: ConnectionState = "closed"
        self._background: set[asyncio.Task[Any]] = set()
        self.loop = asyncio.get_running_loop()
        #: Data frames whose event was not valid JSON (logged and skipped).
        self.undecodable_events = 0

    # -- lifecycle -----------------------------------------------------------------

    async def __aenter__(self) -> AppSyncEventsClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def connect(
        self,
        *,
        wait: bool = True,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> None:
        """Start the supervisor; with ``wait``, return once the first connection is up.

        Raises:
            ConnectionFailed: the first connection was not up within ``timeout``
                (default: connect + handshake timeouts); the supervisor keeps trying.
            ConfigurationError: a configuration mistake stopped the supervisor.
        """
        if not self._started:
            self._started = True
            self._add_slot()
        if wait:
            limit = (
                timeout
                if timeout is not None
                else self.api.timeouts.connect + self.handshake_timeout
            )
            await self.wait_connected(limit)

    async def wait_connected(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Wait until the first connection is up.

        Raises:
            ConnectionFailed: not connected within ``timeout`` seconds, or closed.
        """
        if not self._slots:
            raise ConnectionFailed("the client is not started; call connect()", api=self.alias)
        slot = self._slots[0]
        waiter = asyncio.ensure_future(slot.connected.wait())
        closer = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait({waiter, closer}, timeout=timeout, return_when="FIRST_COMPLETED")
        finally:
            waiter.cancel()
            closer.cancel()
        if self._fatal_error is not None:
            raise self._fatal_error
        if not slot.connected.is_set():
            raise ConnectionFailed(
                f"not connected within {timeout:g} s" if timeout else "the client is closed",
                api=self.alias,
            )

    async def wait_closed(self) -> None:
        """Wait until the client stops; re-raise the error that stopped it, if any."""
        await self._closed.wait()
        if self._fatal_error is not None:
            raise self._fatal_error

    async def aclose(self) -> None:
        """Unsubscribe everything, close every connection with code 1000, stop."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        for slot in self._slots:
            slot.stopping.set()
        tasks = [slot.task for slot in self._slots if slot.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        for sub in self._subscriptions.values():
            sub.state = "closed"
            sub._settled.set()
        await asyncio.gather(
            *(
                self._retire(slot.connection, slot.label)
                for slot in self._slots
                if slot.connection is not None
            ),
            return_exceptions=True,
        )
        # When a fatal error closes the client, this very coroutine runs as one of the
        # background tasks: cancelling (or gathering) itself would abort the close.
        current = asyncio.current_task()
        background = [task for task in self._background if task is not current]
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        self._subscriptions.clear()
        self._state_value = "closed"
        self._closed.set()
        await self._state(StateChange("closed"), force=True)

    @property
    def state(self) -> ConnectionState:
        """The first connection's state (``"closed"`` before :meth:`connect`)."""
        return self._state_value

    @property
    def fatal_error(self) -> BaseException | None:
        """The error that stopped the client, if one did."""
        return self._fatal_error

    @property
    def reconnects(self) -> int:
        """How many times a connection was re-established after being lost."""
        return self._reconnect_count

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        """The subscriptions held, in the order they were added."""
        return tuple(self._subscriptions.values())

    @property
    def connection_count(self) -> int:
        """How many connections are currently open."""
        return sum(1 for s in self._slots if s.connection is not None and s.connection.is_open)

    # -- subscriptions ----------------------------------------------------------------

    async def subscribe(
        self, channel: str, *, mode: str | None = None, wait: bool = True
    ) -> Subscription:
        """Subscribe to ``channel`` (a path, may end in ``/*``); kept across reconnects.

        Args:
            channel: the path; validated and normalised.
            mode: force an auth mode; default: the namespace's first held mode.
            wait: wait for the first outcome (and raise on failure). With ``False``,
                return at once; outcomes go to ``on_subscribed`` /
                ``on_subscription_failed``.

        Raises:
            InvalidChannelError: the path breaks the grammar.
            SubscriptionError: the service refused it (after the auth retries).
            ConnectionFailed: the client is closed.
        """
        path = normalize_channel(channel, allow_wildcard=True)
        if self._closing:
            raise ConnectionFailed("the client is closed", api=self.alias, channel=path)
        if not self._started:
            await self.connect(wait=False)
        sub = Subscription(self, path, mode)
        self._subscriptions[id(sub)] = sub
        slot = self._slot_for(sub)
        if slot.connection is not None and slot.connection.is_open:
            self._spawn(self._establish(sub, slot.connection))
        # else: the supervisor subscribes it once the connection is up.
        if wait:
            await sub.wait()
        return sub

    async def unsubscribe(self, subscription: Subscription) -> None:
        """Stop ``subscription``: tell the service (when connected) and forget it."""
        if subscription.state == "closed":
            return
        subscription.state = "closed"
        subscription._settled.set()
        self._subscriptions.pop(id(subscription), None)
        slot = subscription._slot
        if slot is not None:
            slot.subscriptions.pop(id(subscription), None)
        connection = subscription._connection
        if connection is not None and connection.is_open:
            await self._send_unsubscribe(connection, subscription.id, subscription.channel)
        if slot is not None and slot.index > 0 and not slot.subscriptions:
            await self._drop_slot(slot)

    async def _send_unsubscribe(self, connection: Connection, sub_id: str, channel: str) -> None:
        try:
            answer = await connection.request(Unsubscribe(sub_id), self.operation_timeout)
        except (ConnectionFailed, OperationTimeout) as exc:
            logger.warning(
                "Unsubscribe from %s got no answer (api=%s): %s", channel, self.alias, exc
            )
            return
        finally:
            connection.routes.pop(sub_id, None)
        if not isinstance(answer, UnsubscribeSuccess):
            logger.warning(
                "The service refused to unsubscribe %s (api=%s): %s",
                channel,
                self.alias,
                _describe(getattr(answer, "errors", ())),
            )

    def _slot_for(self, sub: Subscription) -> _Slot:
        for slot in self._slots:
            if len(slot.subscriptions) < slot.capacity and not slot.stopping.is_set():
                break
        else:
            slot = self._add_slot()
        slot.subscriptions[id(sub)] = sub
        sub._slot = slot
        return slot

    def _add_slot(self) -> _Slot:
        index = max((s.index for s in self._slots), default=-1) + 1
        slot = _Slot(self, index)
        self._slots.append(slot)
        if index > 0:
            logger.info(
                "Opening connection %d: the others hold %d subscriptions each (api=%s)",
                index,
                self.max_subscriptions,
                self.alias,
            )
        slot.start()
        return slot

    async def _drop_slot(self, slot: _Slot) -> None:
        slot.stopping.set()
        if slot in self._slots:
            self._slots.remove(slot)
        if slot.task is not None:
            await asyncio.gather(slot.task, return_exceptions=True)
        if slot.connection is not None:
            await self._retire(slot.connection, slot.label)
            slot.connection = None

    async def _establish(self, sub: Subscription, connection: Connection) -> None:
        """Subscribe ``sub`` on ``connection``; retry auth refusals with fresh credentials."""
        retry_delay = min(1.0, self.backoff_max)
        for attempt in range(self.subscribe_retries + 1):
            if sub.state == "closed" or not connection.is_open:
                return
            sub_id = _new_id()
            try:
                headers = await auth.aoperation_headers(
                    self.api, "subscribe", sub.channel, mode=sub.mode
                )
            except ConfigurationError as exc:
                await self._sub_failed(
                    sub,
                    SubscriptionError(str(exc), api=self.alias, channel=sub.channel),
                    False,
                )
                return
            except AuthError as exc:
                error: AppSyncEventsError = exc
            else:
                connection.routes[sub_id] = sub
                try:
                    answer = await connection.request(
                        Subscribe(sub_id, sub.channel, headers), self.operation_timeout
                    )
                except ConnectionFailed:
                    connection.routes.pop(sub_id, None)
                    return  # the supervisor resubscribes after the reconnect
                except OperationTimeout as exc:
                    connection.routes.pop(sub_id, None)
                    # The service may still activate it: make sure it does not linger.
                    self._spawn(self._send_unsubscribe(connection, sub_id, sub.channel))
                    error = exc
                else:
                    if isinstance(answer, SubscribeSuccess):
                        if sub.is_closed:  # unsubscribed while we waited
                            await self._send_unsubscribe(connection, sub_id, sub.channel)
                            return
                        # On a rotation the old connection keeps its route (and keeps
                        # delivering) until it is retired.
                        sub.id, sub._connection = sub_id, connection
                        sub.state, sub.error = "active", None
                        sub._settled.set()
                        if self._on_subscribed is not None:
                            await self._on_subscribed(sub)
                        return
                    connection.routes.pop(sub_id, None)
                    entries = _entries(getattr(answer, "errors", ()))
                    error = SubscriptionError(
                        f"the service refused the subscription ({answer.type})",
                        api=self.alias,
                        channel=sub.channel,
                        errors=entries,
                        operation_id=sub_id,
                    )
            if "MaxSubscriptionsReachedError" in error.error_types and sub._slot is not None:
                self._move_to_another_connection(sub)
                return
            retryable = is_auth_error(error) or isinstance(error, OperationTimeout)
            will_retry = retryable and attempt < self.subscribe_retries
            if not will_retry:
                if not isinstance(error, SubscriptionError):
                    error = SubscriptionError(
                        str(error), api=self.alias, channel=sub.channel, errors=error.errors
                    )
                await self._sub_failed(sub, error, False)
                return
            sub.state, sub.error = "retrying", error
            logger.warning(
                "Subscription to %s refused (api=%s): %s; retrying with fresh credentials "
                "in %.1f s (%d of %d)",
                sub.channel,
                self.alias,
                error,
                retry_delay,
                attempt + 1,
                self.subscribe_retries,
            )
            if self._on_subscription_failed is not None:
                await self._on_subscription_failed(sub, error, True)
            await asyncio.sleep(retry_delay)
            retry_delay = min(retry_delay * 2, self.backoff_max)

    def _move_to_another_connection(self, sub: Subscription) -> None:
        slot = sub._slot
        if slot is None:
            return
        slot.subscriptions.pop(id(sub), None)
        slot.capacity = max(1, len(slot.subscriptions))
        logger.warning(
            "Connection %d reached the service's subscription quota at %d; moving %s to "
            "another connection (api=%s)",
            slot.index,
            slot.capacity,
            sub.channel,
            self.alias,
        )
        target = self._slot_for(sub)
        if target.connection is not None and target.connection.is_open:
            self._spawn(self._establish(sub, target.connection))

    async def _sub_failed(self, sub: Subscription, error: AppSyncEventsError, retry: bool) -> None:
        logger.error("Subscription to %s failed (api=%s): %s", sub.channel, self.alias, error)
        sub.state, sub.error = "failed", error
        self._subscriptions.pop(id(sub), None)
        if sub._slot is not None:
            sub._slot.subscriptions.pop(id(sub), None)
        sub._settled.set()
        if self._on_subscription_failed is not None:
            await self._on_subscription_failed(sub, error, retry)

    # -- publishing -------------------------------------------------------------------

    async def publish(
        self,
        channel: str,
        events: Sequence[str],
        *,
        mode: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - per answer, not overall
    ) -> PublishResult:
        """Publish JSON texts to ``channel`` over the websocket.

        More than five events are sent in chunks of five, one after the other; the
        result reports every event by its index in ``events``.

        IAM: the service rejects an IAM-signed *websocket* publish whose events contain
        certain characters (``<`` and ``>`` among them) with a signature mismatch,
        although the same publish over HTTP succeeds. This method sends what it is
        given; check :func:`appsync_events.auth.websocket_publish_safe` first and
        publish over HTTP when it returns ``False`` (the websocket publishing backend
        does that fallback for you).

        Args:
            channel: a concrete channel path (no wildcard).
            events: the events, each already a JSON text.
            mode: force an auth mode; default: the namespace's first held mode.
            timeout: seconds to wait for each answer (default: operation timeout).

        Returns:
            The :class:`~appsync_events.results.PublishResult` (check ``.ok``).

        Raises:
            InvalidChannelError: the channel is invalid or a wildcard.
            TypeError / ValueError: ``events`` is empty or holds non-strings.
            PublishError: the service refused the whole publish (``publish_error``), or
                the connection was lost before it answered (the events may or may
                not have been published); a later chunk's failure or timeout raises
                :class:`~appsync_events.exceptions.PartialPublishError`, whose
                ``accepted`` lists the events of the chunks already accepted.
            OperationTimeout: no answer in time to the first chunk.
        """
        from .exceptions import PartialPublishError

        path = normalize_channel(channel)
        if isinstance(events, str | bytes) or not events:
            raise ValueError("events must be a non-empty sequence of JSON texts")
        for index, event in enumerate(events):
            if not isinstance(event, str):
                raise TypeError(
                    f"event {index} is a {type(event).__name__}; pass JSON texts "
                    "(json.dumps the values first)"
                )
        timeout = self.operation_timeout if timeout is None else timeout
        result: PublishResult | None = None
        for start in range(0, len(events), EVENTS_PER_PUBLISH):
            chunk = tuple(events[start : start + EVENTS_PER_PUBLISH])
            indices = range(start, start + len(chunk))
            try:
                part = await self._publish_chunk(path, chunk, indices, mode, timeout)
            except (PublishError, OperationTimeout) as exc:
                if result is None:
                    raise
                # Earlier chunks were accepted: say which, whatever stopped this one (a
                # timed-out chunk may or may not have been published).
                raise PartialPublishError(
                    str(exc),
                    accepted=[e.index for e in result.successful],
                    not_sent=[i for i in range(start, len(events))],
                    result=result,
                    api=self.alias,
                    channel=path,
                    errors=exc.errors,
                ) from exc
            result = part if result is None else result.merge(part)
        if result is None:  # unreachable: events is non-empty
            raise ValueError("events must be a non-empty sequence of JSON texts")
        return result

    async def _publish_chunk(
        self,
        path: str,
        chunk: tuple[str, ...],
        indices: range,
        mode: str | None,
        timeout: float,  # noqa: ASYNC109
    ) -> PublishResult:
        connection = await self._publish_connection(timeout)
        headers = await auth.aoperation_headers(self.api, "publish", path, chunk, mode=mode)
        op_id = _new_id()
        try:
            answer = await connection.request(Publish(op_id, path, chunk, headers), timeout)
        except ConnectionFailed as exc:
            raise PublishError(
                f"the connection was lost before the service answered; the events may or "
                f"may not have been published ({exc.message})",
                api=self.alias,
                channel=path,
                operation_id=op_id,
            ) from None
        if isinstance(answer, PublishSuccess):
            return PublishResult.from_message(answer, api=self.alias, channel=path, indices=indices)
        raise PublishError(
            f"the service refused the publish ({answer.type})",
            api=self.alias,
            channel=path,
            errors=_entries(getattr(answer, "errors", ())),
            operation_id=op_id,
        )

    async def _publish_connection(self, timeout: float) -> Connection:  # noqa: ASYNC109
        if self._closing:
            raise PublishError("the client is closed", api=self.alias)
        if not self._started:
            await self.connect(wait=False)
        for slot in self._slots:
            if slot.connection is not None and slot.connection.is_open:
                return slot.connection
        try:
            await self.wait_connected(timeout)
        except ConnectionFailed as exc:
            raise PublishError(f"not connected: {exc.message}", api=self.alias) from None
        connection = self._slots[0].connection
        if connection is None:
            raise PublishError("not connected", api=self.alias)
        return connection

    # -- receiving --------------------------------------------------------------------

    async def events(self) -> AsyncIterator[ReceivedEvent]:
        """Iterate over received events until the client closes.

        Raises:
            RuntimeError: the client was created with ``on_event`` (events go there).
        """
        if self._queue is None:
            raise RuntimeError("this client delivers events to on_event; events() is unused")
        queue = self._queue
        while True:
            if queue.empty():
                if self._closed.is_set():
                    return
                getter = asyncio.ensure_future(queue.get())
                closer = asyncio.ensure_future(self._closed.wait())
                try:
                    await asyncio.wait({getter, closer}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    closer.cancel()
                    if not getter.done():
                        getter.cancel()
                if not getter.done() or getter.cancelled():
                    continue
                yield getter.result()
            else:
                yield queue.get_nowait()

    def _on_data(
        self, connection: Connection, sub_id: str, raw: str, received_at: datetime
    ) -> Awaitable[None] | None:
        """Decode one data message's event (once) and hand it on; see ``DataCallback``."""
        sub = connection.routes.get(sub_id)
        if sub is None or sub.state == "closed":
            logger.debug(
                "Dropped an event for inactive subscription %s (api=%s)", sub_id, self.alias
            )
            return None
        try:
            payload = loads(raw)
        except (ValueError, RecursionError):
            # RecursionError: absurdly nested JSON is as undecodable as a syntax error.
            self.undecodable_events += 1
            logger.warning(
                "Skipped an event that is not JSON on %s (api=%s): %.60r",
                sub.channel,
                self.alias,
                raw,
            )
            return None
        event = make_event(self.alias, sub.channel, payload, raw, sub_id, received_at)
        if self._on_event is not None:
            return self._on_event(event)
        queue = self._queue
        if queue is not None:
            if queue.full():
                return queue.put(event)  # waits for room: backpressure
            queue.put_nowait(event)
        return None

    def _on_frame(self) -> None:
        if self._on_frame_cb is not None:
            self._on_frame_cb()

    # -- supervisor helpers -----------------------------------------------------------

    def _delays(self) -> Iterator[float]:
        return reconnect_delays(self.backoff_initial, self.backoff_max, self.backoff_factor)

    async def _state(self, change: StateChange, *, force: bool = False) -> None:
        if change.connection == 0:
            self._state_value = change.state
        if self._closing and not force:
            return
        if self._on_state is not None:
            try:
                await self._on_state(change)
            except Exception:
                logger.exception("on_state callback failed (api=%s)", self.alias)

    async def _reconnecting(
        self, index: int, exc: BaseException, delay: float, rejected: bool, attempt: int
    ) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        if rejected:
            logger.error(
                "The service REJECTED the connection (api=%s, connection=%d, attempt %d): %s. "
                "Check the credentials in APPSYNC_EVENTS[%r]['AUTH']; retrying in %.1f s "
                "(the maximum backoff).",
                self.alias,
                index,
                attempt,
                reason,
                self.alias,
                delay,
            )
        else:
            logger.info(
                "Connection %d lost or not opened (api=%s): %s; reconnecting in %.1f s",
                index,
                self.alias,
                reason,
                delay,
            )
        await self._state(
            StateChange("reconnecting", reason, delay, connection=index, rejected=rejected)
        )

    async def _fatal(self, error: BaseException) -> None:
        logger.error("The client stopped (api=%s): %s", self.alias, error)
        self._fatal_error = error
        self._spawn(self.aclose())

    async def _retire(self, connection: Connection, label: str) -> None:
        """Unsubscribe every subscription routed to ``connection``, then close it."""
        if connection.is_open:
            ids = list(connection.routes)
            await asyncio.gather(
                *(
                    self._send_unsubscribe(connection, sub_id, connection.routes[sub_id].channel)
                    for sub_id in ids
                    if sub_id in connection.routes
                ),
                return_exceptions=True,
            )
        await connection.aclose(1000)
        logger.debug("Closed a connection (api=%s%s)", self.alias, label)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
