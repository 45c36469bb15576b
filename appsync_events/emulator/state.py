"""The emulated service: its API, connections and subscriptions, and every operation.

Nothing here touches a socket. The wire layer (:mod:`appsync_events.emulator.asgi`)
hands each connection a :class:`Connection` with two callbacks (queue a frame, close)
and passes every received frame to :meth:`EmulatorState.handle_frame`; HTTP publishes
go to :meth:`EmulatorState.http_publish`. Operations answer with protocol messages from
:mod:`appsync_events.protocol` and check channels with :mod:`appsync_events.paths` and
:mod:`appsync_events.limits`: the emulator has no grammar of its own.

Threads: operations run on the emulator's event loop. The read-only views used by
tests (:attr:`EmulatorState.published`, :meth:`EmulatorState.subscriptions`, ...) and
:meth:`EmulatorState.wait_for` are safe from any thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar

from ..exceptions import InvalidChannelError
from ..limits import (
    CONNECTION_TIMEOUT_MS,
    EVENTS_PER_PUBLISH,
    KEEP_ALIVE_INTERVAL,
    MAX_CONNECTION_LIFETIME,
    MAX_EVENT_BYTES,
    MAX_REQUEST_BYTES,
    OPERATION_ID_RE,
    PUBLISHES_PER_SECOND,
    SUBSCRIPTIONS_PER_CONNECTION,
)
from ..paths import Channel, parse_channel
from ..protocol import (
    CLIENT_TYPES,
    ConnectionAck,
    ConnectionErrorMessage,
    ConnectionInit,
    DecodeError,
    ErrorEntry,
    ErrorMessage,
    FailedEvent,
    Message,
    Publish,
    PublishErrorMessage,
    PublishSuccess,
    Subscribe,
    SubscribeErrorMessage,
    SubscribeSuccess,
    SuccessfulEvent,
    Unsubscribe,
    UnsubscribeErrorMessage,
    UnsubscribeSuccess,
    decode,
    dumps,
    encode,
    signing_body,
)
from .authz import AuthContext, Authorizer, AuthResult, html_escape_json
from .errors import EmulatorError, ErrorSpec, merge_errors
from .faults import Faults
from .hooks import (
    HandlerContext,
    HandlerError,
    HandlerUnauthorized,
    IncomingEvent,
    NamespaceHandlers,
    PublishHandler,
    SubscribeHandler,
)

__all__ = [
    "ALL_MODES",
    "Connection",
    "ConnectionInfo",
    "EmulatorState",
    "NamespaceSpec",
    "PublishedRecord",
    "ServiceSettings",
    "SubscriptionInfo",
]

logger = logging.getLogger(__name__)

_R = TypeVar("_R")

ALL_MODES: Final = (
    "API_KEY",
    "AWS_IAM",
    "AMAZON_COGNITO_USER_POOLS",
    "OPENID_CONNECT",
    "AWS_LAMBDA",
)

Transport = Literal["websocket", "http"]


@dataclass(frozen=True, slots=True)
class NamespaceSpec:
    """A namespace of the emulated API and the modes it allows per operation."""

    name: str
    publish_auth_modes: tuple[str, ...] = ALL_MODES
    subscribe_auth_modes: tuple[str, ...] = ALL_MODES


@dataclass(slots=True)
class ServiceSettings:
    """Everything that shapes the emulated service's answers (see ``docs/emulator.md``).

    Attributes:
        namespaces: the API's namespaces, by name.
        connection_auth_modes: the modes a websocket connect may use.
        max_subscriptions / publishes_per_second / max_events / max_event_bytes /
            max_request_bytes: the quotas of protocol notes §9.
        ka_interval: seconds between ``ka`` frames.
        connection_timeout_ms: sent in ``connection_ack``.
        max_lifetime: seconds after which a connection is closed.
        wildcard_matches_parent: whether ``/ns/a/*`` also receives ``/ns/a`` (unknown on
            the service; off).
        connect_auth_at: ``"init"`` answers a refused connect on ``connection_init`` (or
            the first message); ``"open"`` sends ``connection_error`` right after the
            upgrade.
        require_init: refuse operations before ``connection_init`` (the doc calls it
            optional; off).
        ka_after_ack: send one ``ka`` right after ``connection_ack`` (GraphQL real-time
            does; on).
        ws_signing_escape: ``"html"`` rebuilds the signed body of a websocket publish with
            ``<``, ``>``, ``&`` escaped as the service appears to (ISS-400); ``"none"``
            signs it as sent; ``"both"`` accepts either.
        require_subprotocol: refuse an upgrade that does not offer
            ``aws-appsync-event-ws``.
        accept_query_auth: also read the connect auth from ``?header=<base64url>``.
        inherit_connection_auth: let a subscribe/publish without ``authorization`` use
            the connect's identity (off: it is refused, as the doc requires the field).
        errors: the error table (:mod:`appsync_events.emulator.errors`).
        handlers: ``onPublish``/``onSubscribe`` stand-ins, by namespace.
    """

    namespaces: dict[str, NamespaceSpec] = field(
        default_factory=lambda: {"default": NamespaceSpec("default")}
    )
    connection_auth_modes: tuple[str, ...] = ALL_MODES
    max_subscriptions: int = SUBSCRIPTIONS_PER_CONNECTION
    publishes_per_second: int = PUBLISHES_PER_SECOND
    max_events: int = EVENTS_PER_PUBLISH
    max_event_bytes: int = MAX_EVENT_BYTES
    max_request_bytes: int = MAX_REQUEST_BYTES
    ka_interval: float = KEEP_ALIVE_INTERVAL
    connection_timeout_ms: int = CONNECTION_TIMEOUT_MS
    max_lifetime: float = MAX_CONNECTION_LIFETIME
    wildcard_matches_parent: bool = False
    connect_auth_at: Literal["init", "open"] = "init"
    require_init: bool = False
    ka_after_ack: bool = True
    ws_signing_escape: Literal["html", "none", "both"] = "html"
    require_subprotocol: bool = True
    accept_query_auth: bool = True
    inherit_connection_auth: bool = False
    errors: Mapping[str, ErrorSpec] = field(default_factory=lambda: merge_errors(None))
    handlers: dict[str, NamespaceHandlers] = field(default_factory=dict)


# -- records exposed to tests ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PublishedRecord:
    """One accepted publish, as tests inspect it.

    Attributes:
        channel: the normalised channel path.
        events: the event strings broadcast (after any handler), in request order.
        identifiers: the UUID the service gave each broadcast event.
        failed: the ``failed`` entries of the answer.
        auth_mode: the mode that authorized it (``None`` for :meth:`EmulatorState.inject`).
        transport: ``"http"``, ``"websocket"`` or ``"inject"``.
        connection_id: the publishing connection (websocket only).
        deliveries: how many ``data`` frames it produced.
        at: ``time.time()`` when it was accepted.
    """

    channel: str
    events: tuple[str, ...]
    identifiers: tuple[str, ...]
    failed: tuple[FailedEvent, ...]
    auth_mode: str | None
    transport: str
    connection_id: str | None
    deliveries: int
    at: float

    @property
    def payloads(self) -> list[Any]:
        """The events decoded from JSON."""
        return [json.loads(e) for e in self.events]


@dataclass(frozen=True, slots=True)
class SubscriptionInfo:
    """A live subscription, as tests inspect it."""

    connection_id: str
    id: str
    channel: str
    auth_mode: str


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """A live websocket connection, as tests inspect it."""

    id: str
    remote: str | None
    auth_mode: str | None
    acked: bool
    subscriptions: int
    opened_at: float


# -- live objects --------------------------------------------------------------------------


class _Subscription:
    __slots__ = ("auth_mode", "channel", "connection", "id", "key", "prefix")

    def __init__(self, connection: Connection, sub_id: str, channel: Channel, auth_mode: str):
        self.connection = connection
        self.id = sub_id
        self.channel = channel
        self.auth_mode = auth_mode
        # The data frame up to its event, built once: '{"type":"data","id":"<id>","event":'.
        self.prefix = '{"type":"data","id":' + dumps(sub_id) + ',"event":'
        self.key = (connection.id, sub_id)


class Connection:
    """One websocket connection, held by the state; the wire layer owns the socket.

    Args:
        send: queue one frame (text, or bytes for a fault) for the client.
        close: ask the wire layer to close with ``(code, reason)``.
        headers: the connect's authorization header object (lowercased).
        request_host: the upgrade's ``Host``.
        remote: the peer address.
    """

    def __init__(
        self,
        *,
        send: Callable[[str | bytes], None],
        close: Callable[[int, str], None],
        headers: Mapping[str, str],
        request_host: str | None,
        remote: str | None,
    ) -> None:
        self.id = str(uuid.uuid4())
        self.send = send
        self.close = close
        self.headers = headers
        self.request_host = request_host
        self.remote = remote
        self.auth: AuthResult | None = None
        self.connect_error: ErrorEntry | None = None
        self.acked = False
        self.closed = False
        self.subscriptions: dict[str, _Subscription] = {}
        self.publish_times: deque[float] = deque()
        self.opened_at = time.time()
        #: Set by the wire layer when ``connection_ack`` goes out (starts ``ka``).
        self.on_ack: Callable[[], None] | None = None


class EmulatorState:
    """The emulated AppSync Event API (see the module docstring).

    Args:
        settings: the API's shape and the behaviour switches.
        authorizer: the credential checks.
        faults: the fault switches.
    """

    def __init__(
        self, settings: ServiceSettings, authorizer: Authorizer, faults: Faults | None = None
    ) -> None:
        self.settings = settings
        self.authorizer = authorizer
        self.faults = faults or Faults()
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._connections: dict[str, Connection] = {}
        # Subscription index: exact path -> subs, and wildcard prefix path -> subs.
        self._exact: dict[str, dict[tuple[str, str], _Subscription]] = {}
        self._wild: dict[str, dict[tuple[str, str], _Subscription]] = {}
        self._published: list[PublishedRecord] = []
        self._connects = 0
        self._rejected_connects = 0

    # -- views for tests (any thread) ----------------------------------------------------

    @property
    def published(self) -> list[PublishedRecord]:
        """Every accepted publish since the last reset, oldest first (a copy)."""
        with self._lock:
            return list(self._published)

    def subscriptions(self, channel: str | None = None) -> list[SubscriptionInfo]:
        """The live subscriptions, optionally only those whose pattern is ``channel``."""
        wanted = None if channel is None else parse_channel(channel, allow_wildcard=True).path
        with self._lock:
            return [
                SubscriptionInfo(c.id, s.id, s.channel.path, s.auth_mode)
                for c in self._connections.values()
                for s in c.subscriptions.values()
                if wanted is None or s.channel.path == wanted
            ]

    def connections(self) -> list[ConnectionInfo]:
        """The open websocket connections."""
        with self._lock:
            return [
                ConnectionInfo(
                    c.id,
                    c.remote,
                    c.auth.mode if c.auth else None,
                    c.acked,
                    len(c.subscriptions),
                    c.opened_at,
                )
                for c in self._connections.values()
            ]

    @property
    def connect_count(self) -> int:
        """Websocket upgrades accepted since the last reset (rejected ones included)."""
        return self._connects

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until ``predicate()`` holds (re-checked on every state change) or timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def clear(self) -> None:
        """Forget published records and counters (connections are closed by the caller)."""
        with self._lock:
            self._published.clear()
            self._connects = 0
            self._rejected_connects = 0
        self.authorizer.clear_cache()
        self._notify()

    def all_connections(self) -> list[Connection]:
        """The live connection objects (for the wire layer and fault actions)."""
        with self._lock:
            return list(self._connections.values())

    # -- helpers -----------------------------------------------------------------------

    def _entry(self, exc: EmulatorError, *, with_code: bool = False) -> ErrorEntry:
        return self.settings.errors[exc.case].entry(exc.detail, with_code=with_code)

    def _spec(self, case: str) -> ErrorSpec:
        return self.settings.errors[case]

    def _namespace(self, channel: Channel) -> NamespaceSpec:
        spec = self.settings.namespaces.get(channel.namespace)
        if spec is None:
            raise EmulatorError("unknown_namespace")
        return spec

    @staticmethod
    def _parse_channel(text: str, *, allow_wildcard: bool) -> Channel:
        try:
            return parse_channel(text, allow_wildcard=allow_wildcard)
        except InvalidChannelError as exc:
            raise EmulatorError("invalid_channel", exc.message) from None

    @staticmethod
    def _check_id(op_id: str) -> None:
        if not OPERATION_ID_RE.match(op_id):
            raise EmulatorError(
                "invalid_id",
                f"Invalid id {op_id[:40]!r}: use 1-128 letters, digits, '_', '+' or '-'.",
            )

    # -- connect -----------------------------------------------------------------------

    async def open_connection(self, connection: Connection) -> None:
        """Register ``connection`` and check its connect auth (the answer waits for init)."""
        with self._lock:
            self._connections[connection.id] = connection
            self._connects += 1
        if self.faults.take_connect_rejection():
            connection.connect_error = self._spec("injected_connect_rejection").entry()
        else:
            ctx = AuthContext(
                "connect",
                "websocket",
                connection.headers,
                b"{}",
                request_host=connection.request_host,
                source_ip=connection.remote,
            )
            try:
                connection.auth = await self.authorizer.authorize(
                    ctx, self.settings.connection_auth_modes
                )
            except EmulatorError as exc:
                connection.connect_error = self._entry(exc, with_code=True)
        if connection.connect_error is not None:
            with self._lock:
                self._rejected_connects += 1
            logger.info("Emulator refused websocket connect %s", connection.id)
        self._notify()

    def refuse_connection(self, connection: Connection) -> None:
        """Send the pending ``connection_error`` and close (1000, as the service does)."""
        entry = connection.connect_error or self._spec("unauthorized").entry()
        connection.send(encode(ConnectionErrorMessage((entry,))))
        connection.close(1000, "")

    def close_connection(self, connection: Connection) -> None:
        """Forget ``connection`` and its subscriptions (the socket is gone)."""
        with self._lock:
            connection.closed = True
            self._connections.pop(connection.id, None)
            for sub in connection.subscriptions.values():
                self._unindex(sub)
            connection.subscriptions.clear()
        self._notify()

    # -- frames ----------------------------------------------------------------------

    async def handle_frame(self, connection: Connection, frame: str | bytes) -> None:
        """Handle one frame received on ``connection``; answers go to ``connection.send``."""
        try:
            message = decode(frame, accept=CLIENT_TYPES)
        except DecodeError as exc:
            self._answer_decode_error(connection, exc)
            return
        if connection.connect_error is not None:
            self.refuse_connection(connection)
            return
        if isinstance(message, ConnectionInit):
            await self._ack(connection)
            return
        if not connection.acked and self.settings.require_init:
            err = EmulatorError("not_initialized", message.type)
            connection.send(encode(_error_for(message, self._entry(err))))
            return
        if not connection.acked and connection.on_ack is not None:
            # connection_init is optional: the first operation starts the keep-alive.
            connection.acked = True
            connection.on_ack()
        if isinstance(message, Subscribe):
            connection.send(encode(await self.subscribe(connection, message)))
        elif isinstance(message, Publish):
            # The answer goes out before the data frames, the publisher's own included.
            after: list[Callable[[], None]] = []
            connection.send(encode(await self.ws_publish(connection, message, after)))
            for deliver in after:
                deliver()
        elif isinstance(message, Unsubscribe):
            connection.send(encode(self.unsubscribe(connection, message)))

    def _answer_decode_error(self, connection: Connection, exc: DecodeError) -> None:
        if exc.reason == "unknown_type":
            err = EmulatorError(
                "unsupported_operation", f"Unsupported operation: {exc.message_type}"
            )
        else:
            err = EmulatorError("malformed_message", str(exc.message))
        entry = self._entry(err)
        if exc.message_type == "subscribe" and exc.message_id:
            connection.send(encode(SubscribeErrorMessage(exc.message_id, (entry,))))
        elif exc.message_type == "publish" and exc.message_id:
            connection.send(encode(PublishErrorMessage(exc.message_id, (entry,))))
        elif exc.message_type == "unsubscribe" and exc.message_id:
            connection.send(encode(UnsubscribeErrorMessage(exc.message_id, (entry,))))
        else:
            connection.send(encode(ErrorMessage(exc.message_id, (entry,))))

    async def _ack(self, connection: Connection) -> None:
        delay = self.faults.ack_delay
        if delay > 0:
            await asyncio.sleep(delay)
        if connection.closed:
            return
        connection.send(encode(ConnectionAck(self.settings.connection_timeout_ms)))
        first = not connection.acked
        connection.acked = True
        if first and connection.on_ack is not None:
            connection.on_ack()
        self._notify()

    # -- operation auth ----------------------------------------------------------------

    async def _authorize_op(
        self,
        connection: Connection | None,
        operation: Literal["subscribe", "publish"],
        transport: Transport,
        headers: Mapping[str, str],
        body: bytes,
        alt_bodies: tuple[bytes, ...],
        channel_text: str,
        channel: Channel,
        request_host: str | None,
        remote: str | None,
    ) -> AuthResult:
        namespace = self._namespace(channel)
        allowed = (
            namespace.publish_auth_modes
            if operation == "publish"
            else namespace.subscribe_auth_modes
        )
        if not headers and connection is not None and connection.auth is not None:
            if self.settings.inherit_connection_auth and connection.auth.mode in allowed:
                return connection.auth
        ctx = AuthContext(
            operation,
            transport,
            headers,
            body,
            request_host=request_host,
            channel=channel_text,
            namespace=channel.namespace,
            source_ip=remote,
            alt_bodies=alt_bodies,
        )
        return await self.authorizer.authorize(ctx, allowed)

    # -- subscribe / unsubscribe -------------------------------------------------------

    async def subscribe(self, connection: Connection, message: Subscribe) -> Message:
        """Handle a ``subscribe``; return ``subscribe_success`` or ``subscribe_error``."""
        try:
            self._check_id(message.id)
            channel = self._parse_channel(message.channel, allow_wildcard=True)
            if message.id in connection.subscriptions:
                raise EmulatorError("duplicate_subscription", message.id)
            auth = await self._authorize_op(
                connection,
                "subscribe",
                "websocket",
                _lower(message.authorization),
                signing_body(message.channel).encode(),
                (),
                message.channel,
                channel,
                connection.request_host,
                connection.remote,
            )
            if len(connection.subscriptions) >= self.settings.max_subscriptions:
                raise EmulatorError(
                    "max_subscriptions", f"{self.settings.max_subscriptions} per connection"
                )
            handlers = self.settings.handlers.get(channel.namespace)
            if handlers is not None and handlers.on_subscribe is not None:
                await self._run_subscribe_handler(
                    handlers.on_subscribe, channel, auth, message, connection
                )
            if message.id in connection.subscriptions or connection.closed:
                # Re-checked: the handler ran in a thread and the loop kept going.
                raise EmulatorError("duplicate_subscription", message.id)
        except EmulatorError as exc:
            return SubscribeErrorMessage(message.id, (self._entry(exc),))
        sub = _Subscription(connection, message.id, channel, auth.mode)
        with self._lock:
            connection.subscriptions[message.id] = sub
            self._index(sub)
        self._notify()
        return SubscribeSuccess(message.id)

    async def _run_subscribe_handler(
        self,
        handler: SubscribeHandler,
        channel: Channel,
        auth: AuthResult,
        message: Subscribe,
        connection: Connection,
    ) -> None:
        segments = (*channel.segments, "*") if channel.wildcard else channel.segments
        ctx = HandlerContext(
            "SUBSCRIBE",
            channel.path,
            segments,
            channel.namespace,
            [],
            auth.identity,
            auth.mode,
            _lower(message.authorization),
            "websocket",
        )
        await _call_handler(handler, ctx, "onSubscribe")

    def unsubscribe(self, connection: Connection, message: Unsubscribe) -> Message:
        """Handle an ``unsubscribe``; return its success or ``UnknownOperationError``."""
        with self._lock:
            sub = connection.subscriptions.pop(message.id, None)
            if sub is not None:
                self._unindex(sub)
        if sub is None:
            entry = self._entry(EmulatorError("unknown_operation", message.id))
            return UnsubscribeErrorMessage(message.id, (entry,))
        self._notify()
        return UnsubscribeSuccess(message.id)

    def _index(self, sub: _Subscription) -> None:
        segments = sub.channel.segments
        key = "/" + "/".join(segments)
        index = self._wild if sub.channel.wildcard else self._exact
        index.setdefault(key, {})[sub.key] = sub

    def _unindex(self, sub: _Subscription) -> None:
        key = "/" + "/".join(sub.channel.segments)
        index = self._wild if sub.channel.wildcard else self._exact
        bucket = index.get(key)
        if bucket is not None:
            bucket.pop(sub.key, None)
            if not bucket:
                del index[key]

    def _targets(self, channel: Channel) -> list[_Subscription]:
        """Every subscription an event on ``channel`` reaches (one per subscription id)."""
        segments = channel.segments
        out: list[_Subscription] = []
        with self._lock:
            exact = self._exact.get(channel.path)
            if exact:
                out.extend(exact.values())
            if self._wild:
                last = len(segments) + (1 if self.settings.wildcard_matches_parent else 0)
                prefix = ""
                for depth in range(1, last):
                    prefix = prefix + "/" + segments[depth - 1]
                    bucket = self._wild.get(prefix)
                    if bucket:
                        out.extend(bucket.values())
        return out

    # -- publish -----------------------------------------------------------------------

    async def ws_publish(
        self,
        connection: Connection,
        message: Publish,
        after: list[Callable[[], None]] | None = None,
    ) -> Message:
        """Handle a websocket ``publish``; return ``publish_success`` or ``publish_error``.

        Args:
            after: when given, the fan-out is appended to it instead of run, so the
                caller can send the answer first.
        """
        try:
            self._check_id(message.id)
            self._rate_limit(connection)
            channel = self._parse_channel(message.channel, allow_wildcard=False)
            body = signing_body(message.channel, message.events)
            mode = self.settings.ws_signing_escape
            if mode == "html":
                bodies: tuple[bytes, ...] = (html_escape_json(body).encode(),)
            elif mode == "none":
                bodies = (body.encode(),)
            else:
                bodies = (body.encode(), html_escape_json(body).encode())
            auth = await self._authorize_op(
                connection,
                "publish",
                "websocket",
                _lower(message.authorization),
                bodies[0],
                bodies[1:],
                message.channel,
                channel,
                connection.request_host,
                connection.remote,
            )
            self._check_events(message.events, "ws")
            successful, failed = await self._publish(
                channel,
                list(message.events),
                auth,
                "websocket",
                connection.id,
                _lower(message.authorization),
                after,
            )
        except EmulatorError as exc:
            return PublishErrorMessage(message.id, (self._entry(exc),))
        return PublishSuccess(message.id, successful, failed)

    def _rate_limit(self, connection: Connection) -> None:
        limit = self.settings.publishes_per_second
        now = time.monotonic()
        times = connection.publish_times
        while times and now - times[0] >= 1.0:
            times.popleft()
        if len(times) >= limit:
            raise EmulatorError("rate_limited", f"{limit} publish requests per second")
        times.append(now)

    def _check_events(self, events: Sequence[str], transport: Literal["ws", "http"]) -> None:
        if not events:
            raise EmulatorError(f"no_events_{transport}")
        if len(events) > self.settings.max_events:
            raise EmulatorError(f"too_many_events_{transport}")
        for index, event in enumerate(events):
            try:
                json.loads(event)
            except ValueError:
                raise EmulatorError(
                    f"invalid_event_{transport}", f"Event at index {index} is not valid JSON"
                ) from None

    async def _publish(
        self,
        channel: Channel,
        events: list[str],
        auth: AuthResult | None,
        transport: str,
        connection_id: str | None,
        headers: Mapping[str, str],
        after: list[Callable[[], None]] | None = None,
    ) -> tuple[tuple[SuccessfulEvent, ...], tuple[FailedEvent, ...]]:
        identifiers = [str(uuid.uuid4()) for _ in events]
        outgoing: list[str | None] = list(events)
        failed: list[FailedEvent] = []
        handlers = self.settings.handlers.get(channel.namespace)
        if handlers is not None and handlers.on_publish is not None and auth is not None:
            outgoing, failed = await self._run_publish_handler(
                handlers.on_publish, channel, events, identifiers, auth, transport, headers
            )
        too_large = self._spec("event_too_large")
        successful: list[SuccessfulEvent] = []
        broadcast: list[str] = []
        broadcast_ids: list[str] = []
        failed_indexes = {f.index for f in failed}
        limit = self.settings.max_event_bytes
        for index, event in enumerate(outgoing):
            if index in failed_indexes:
                continue
            if event is not None and len(event.encode()) > limit:
                failed.append(
                    FailedEvent(identifiers[index], index, too_large.error_type, too_large.message)
                )
                continue
            successful.append(SuccessfulEvent(identifiers[index], index))
            if event is not None:
                broadcast.append(event)
                broadcast_ids.append(identifiers[index])
        targets = self._targets(channel)
        if after is not None:

            def deliver() -> None:
                self._fanout(targets, broadcast)

            after.append(deliver)
            deliveries = len(targets) * len(broadcast)
        else:
            deliveries = self._fanout(targets, broadcast)
        record = PublishedRecord(
            channel.path,
            tuple(broadcast),
            tuple(broadcast_ids),
            tuple(sorted(failed, key=lambda f: f.index)),
            auth.mode if auth else None,
            transport,
            connection_id,
            deliveries,
            time.time(),
        )
        with self._lock:
            self._published.append(record)
        self._notify()
        return tuple(successful), record.failed

    async def _run_publish_handler(
        self,
        handler: PublishHandler,
        channel: Channel,
        events: list[str],
        identifiers: list[str],
        auth: AuthResult,
        transport: str,
        headers: Mapping[str, str],
    ) -> tuple[list[str | None], list[FailedEvent]]:
        payloads = [json.loads(e) for e in events]
        ctx = HandlerContext(
            "PUBLISH",
            channel.path,
            channel.segments,
            channel.namespace,
            [IncomingEvent(i, p) for i, p in zip(identifiers, payloads, strict=True)],
            auth.identity,
            auth.mode,
            headers,
            transport,
        )
        result = await _call_handler(handler, ctx, "onPublish")
        if result is None:
            return list(events), []
        positions = {ident: i for i, ident in enumerate(identifiers)}
        outgoing: list[str | None] = [None] * len(events)
        failed: list[FailedEvent] = []
        seen: set[str] = set()
        spec = self._spec("handler_event_error")
        for item in result:
            if item is None:
                continue
            ident = item.get("id") if isinstance(item, Mapping) else None
            if not isinstance(ident, str) or ident not in positions or ident in seen:
                raise EmulatorError(
                    "handler_error",
                    f"onPublish returned an unknown or duplicate event id {ident!r}",
                )
            seen.add(ident)
            index = positions[ident]
            if "error" in item:
                failed.append(FailedEvent(ident, index, spec.error_type, str(item["error"])))
            elif "payload" in item:
                payload = item["payload"]
                # An untouched payload keeps the publisher's exact string.
                outgoing[index] = events[index] if payload == payloads[index] else dumps(payload)
            else:
                outgoing[index] = events[index]
        return outgoing, failed

    @staticmethod
    def _fanout(targets: list[_Subscription], events: Iterable[str]) -> int:
        if not targets:
            return 0
        count = 0
        for event in events:
            tail = dumps(event) + "}"
            for sub in targets:
                if not sub.connection.closed:
                    sub.connection.send(sub.prefix + tail)
                    count += 1
        return count

    async def inject(self, channel: str, events: Sequence[str]) -> PublishedRecord:
        """Broadcast ``events`` (JSON texts) to ``channel`` with no auth, no handler, no limit.

        Raises:
            EmulatorError: for an invalid channel or unknown namespace.
        """
        chan = self._parse_channel(channel, allow_wildcard=False)
        self._namespace(chan)
        await self._publish(chan, list(events), None, "inject", None, {})
        with self._lock:
            return self._published[-1]

    # -- HTTP ----------------------------------------------------------------------

    async def http_publish(
        self,
        headers: Mapping[str, str],
        body: bytes,
        *,
        request_host: str | None,
        remote: str | None,
    ) -> tuple[int, dict[str, Any]]:
        """Handle ``POST /event``; return the HTTP status and the JSON body."""
        try:
            if len(body) > self.settings.max_request_bytes:
                raise EmulatorError(
                    "request_too_large",
                    f"Request payload is {len(body)} bytes; at most "
                    f"{self.settings.max_request_bytes} are allowed",
                )
            try:
                obj = json.loads(body)
            except ValueError:
                raise EmulatorError(
                    "invalid_event_http", "Request body is not valid JSON"
                ) from None
            if not isinstance(obj, dict):
                raise EmulatorError("invalid_event_http", "Request body must be a JSON object")
            channel_text = obj.get("channel")
            events = obj.get("events")
            if not isinstance(channel_text, str):
                raise EmulatorError("invalid_channel", "Request body has no string 'channel'")
            if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
                raise EmulatorError(
                    "invalid_event_http", "'events' must be a list of JSON-encoded strings"
                )
            channel = self._parse_channel(channel_text, allow_wildcard=False)
            auth = await self._authorize_op(
                None,
                "publish",
                "http",
                headers,
                body,
                (),
                channel_text,
                channel,
                request_host,
                remote,
            )
            self._check_events(events, "http")
            successful, failed = await self._publish(channel, events, auth, "http", None, headers)
        except EmulatorError as exc:
            spec = self._spec(exc.case)
            return spec.status, {"errors": [self._entry(exc).to_json()]}
        return 200, {
            "failed": [f.to_json() for f in failed],
            "successful": [s.to_json() for s in successful],
        }


async def _call_handler(
    handler: Callable[[HandlerContext], _R], ctx: HandlerContext, hook: str
) -> _R:
    """Run a namespace handler stand-in in a worker thread; map what it raises.

    ``HandlerUnauthorized`` and ``HandlerError`` become the service's errors for them; any
    other exception is logged (``hook`` names the handler) and reported as a handler error.
    """
    try:
        return await asyncio.to_thread(handler, ctx)
    except HandlerUnauthorized:
        raise EmulatorError("handler_unauthorized") from None
    except HandlerError as exc:
        raise EmulatorError("handler_error", exc.message) from None
    except Exception as exc:
        logger.exception("%s stand-in for %r raised", hook, ctx.namespace)
        raise EmulatorError("handler_error", f"{type(exc).__name__}: {exc}") from None


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _error_for(message: Message, entry: ErrorEntry) -> Message:
    if isinstance(message, Subscribe):
        return SubscribeErrorMessage(message.id, (entry,))
    if isinstance(message, Publish):
        return PublishErrorMessage(message.id, (entry,))
    if isinstance(message, Unsubscribe):
        return UnsubscribeErrorMessage(message.id, (entry,))
    return ErrorMessage(None, (entry,))
