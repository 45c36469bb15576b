"""What the emulated service holds: its API, connections, subscriptions and publish records.

Nothing here decides an answer or touches a socket. :class:`Registry` keeps the API's
shape and switches (:class:`ServiceSettings`), the open :class:`Connection` objects, the
subscriptions of each connection (indexed by exact path and wildcard prefix), and every
accepted publish as a :class:`PublishedRecord` for the test helpers. It answers the
lookups the operations need (a channel's namespace, the subscriptions an event
reaches) and checks the per-request limits. The operations themselves
(:mod:`appsync_events.emulator.operations`) build on it.

Threads: the registry changes on the emulator's event loop. The read-only views used by
tests (:attr:`Registry.published`, :meth:`Registry.subscriptions`, ...) and
:meth:`Registry.wait_for` are safe from any thread.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

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
from ..protocol import ErrorEntry, FailedEvent, dumps
from .authz import AuthResult
from .errors import EmulatorError, ErrorSpec, merge_errors
from .hooks import NamespaceHandlers

__all__ = [
    "ALL_MODES",
    "Connection",
    "ConnectionInfo",
    "NamespaceSpec",
    "PublishedRecord",
    "Registry",
    "ServiceSettings",
    "Subscription",
    "SubscriptionInfo",
    "is_unicode",
]

ALL_MODES: Final = (
    "API_KEY",
    "AWS_IAM",
    "AMAZON_COGNITO_USER_POOLS",
    "OPENID_CONNECT",
    "AWS_LAMBDA",
)


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
            max_request_bytes: the service quotas (:mod:`appsync_events.limits`).
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
            ``<``, ``>``, ``&`` escaped as the service appears to; ``"none"`` signs it as
            sent; ``"both"`` accepts either.
        require_subprotocol: refuse an upgrade that does not offer
            ``aws-appsync-event-ws``.
        accept_query_auth: also read the connect auth from ``?header=<base64url>``.
        inherit_connection_auth: let a subscribe/publish without ``authorization`` use
            the connect's identity (off: it is refused, as the doc requires the field).
        errors: the error table (:mod:`appsync_events.emulator.errors`).
        handlers: ``onPublish``/``onSubscribe`` stand-ins, by namespace.
        history_size / history_bytes: the publish history the test helpers read keeps
            the newest records within both bounds (records, and bytes of event text),
            so a long-running emulator's memory stays bounded.
        handshake_timeout: seconds a TCP connection may take to send its first complete
            request (HTTP publish or websocket upgrade), and each later one after a
            response; a half-sent request is closed after it.
        init_timeout: seconds a websocket may stay silent after the upgrade; one that
            sent nothing (not even ``connection_init``) is closed with 1000 after it. The
            service's own timeout is not documented; this is the emulator's choice.
        cors_origins: browser origins allowed besides loopback ones (``http://localhost``,
            ``http://127.0.0.1``, ``http://[::1]``, any port), for HTTP publish (CORS)
            and websocket upgrades (``Origin``); ``("*",)`` allows every origin.
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
    history_size: int = 10_000
    history_bytes: int = 16 * 1024 * 1024
    handshake_timeout: float = 10.0
    init_timeout: float = 30.0
    cors_origins: tuple[str, ...] = ()


def is_unicode(texts: Iterable[str]) -> bool:
    """Tell whether every string of ``texts`` is Unicode text (encodable as UTF-8).

    JSON lets a client write a lone surrogate (``"\\ud800"``): the parsed string then
    holds a code point that is no character, which can be neither signed, compared nor
    sent back. The emulator refuses such input with the service's error shape.
    """
    for text in texts:
        if not text.isascii():
            try:
                text.encode()
            except UnicodeEncodeError:
                return False
    return True


# -- records exposed to tests ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PublishedRecord:
    """One accepted publish, as tests inspect it.

    Attributes:
        channel: the normalised channel path.
        events: the event strings broadcast (after any handler), in request order.
        identifiers: the UUID the service gave each broadcast event.
        failed: the ``failed`` entries of the answer.
        auth_mode: the mode that authorized it (``None`` for a server-side inject).
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


class Subscription:
    """One live subscription of a connection.

    Args:
        connection: the subscribing connection.
        sub_id: the subscription id the client chose.
        channel: the channel pattern subscribed to.
        auth_mode: the mode that authorized it.
    """

    __slots__ = ("auth_mode", "channel", "connection", "id", "key", "prefix")

    def __init__(self, connection: Connection, sub_id: str, channel: Channel, auth_mode: str):
        self.connection = connection
        self.id = sub_id
        self.channel = channel
        self.auth_mode = auth_mode
        #: The data frame up to its event, built once: '{"type":"data","id":"<id>","event":'.
        self.prefix = '{"type":"data","id":' + dumps(sub_id) + ',"event":'
        self.key = (connection.id, sub_id)


class Connection:
    """One websocket connection, held by the registry; the wire layer owns the socket.

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
        self.subscriptions: dict[str, Subscription] = {}
        self.publish_times: deque[float] = deque()
        self.opened_at = time.time()
        #: Set by the wire layer when ``connection_ack`` goes out (starts ``ka``).
        self.on_ack: Callable[[], None] | None = None


class Registry:
    """What the emulated API holds (see the module docstring).

    Args:
        settings: the API's shape and the behaviour switches.
    """

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._connections: dict[str, Connection] = {}
        # Subscription index: exact path -> subs, and wildcard prefix path -> subs.
        self._exact: dict[str, dict[tuple[str, str], Subscription]] = {}
        self._wild: dict[str, dict[tuple[str, str], Subscription]] = {}
        self._published: deque[PublishedRecord] = deque()
        self._published_bytes = 0
        self._published_total = 0
        self._connects = 0

    # -- views for tests (any thread) ----------------------------------------------------

    @property
    def published(self) -> list[PublishedRecord]:
        """The accepted publishes since the last reset, oldest first (a copy): the newest
        ``history_size`` records within ``history_bytes`` of event text."""
        with self._lock:
            return list(self._published)

    @property
    def published_total(self) -> int:
        """Publishes accepted since the last reset, also those the history let go."""
        return self._published_total

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

    def notify(self) -> None:
        """Wake every :meth:`wait_for` so it re-checks its predicate."""
        with self._changed:
            self._changed.notify_all()

    def clear(self) -> None:
        """Forget published records and counters (connections are closed by the caller)."""
        with self._lock:
            self._published.clear()
            self._published_bytes = 0
            self._published_total = 0
            self._connects = 0
        self.notify()

    def all_connections(self) -> list[Connection]:
        """The live connection objects (for the wire layer and fault actions)."""
        with self._lock:
            return list(self._connections.values())

    # -- changes -----------------------------------------------------------------------

    def add_connection(self, connection: Connection) -> None:
        """Hold ``connection`` and count the connect."""
        with self._lock:
            self._connections[connection.id] = connection
            self._connects += 1

    def remove_connection(self, connection: Connection) -> None:
        """Mark ``connection`` closed and forget it with its subscriptions (the socket is gone)."""
        with self._lock:
            connection.closed = True
            self._connections.pop(connection.id, None)
            for sub in connection.subscriptions.values():
                self._unindex(sub)
            connection.subscriptions.clear()
        self.notify()

    def add_subscription(self, sub: Subscription) -> None:
        """Hold ``sub`` on its connection and in the channel index."""
        with self._lock:
            sub.connection.subscriptions[sub.id] = sub
            self._index(sub)
        self.notify()

    def remove_subscription(self, connection: Connection, sub_id: str) -> Subscription | None:
        """Forget the subscription ``sub_id`` of ``connection``; return it (``None``: unknown)."""
        with self._lock:
            sub = connection.subscriptions.pop(sub_id, None)
            if sub is not None:
                self._unindex(sub)
        if sub is not None:
            self.notify()
        return sub

    def record(self, record: PublishedRecord) -> None:
        """Keep ``record`` in the publish history, letting the oldest go past its bounds."""
        size = sum(len(e) for e in record.events)
        settings = self.settings
        with self._lock:
            self._published.append(record)
            self._published_bytes += size
            self._published_total += 1
            while self._published and (
                len(self._published) > settings.history_size
                or self._published_bytes > settings.history_bytes
            ):
                old = self._published.popleft()
                self._published_bytes -= sum(len(e) for e in old.events)
        self.notify()

    def _index(self, sub: Subscription) -> None:
        key = "/" + "/".join(sub.channel.segments)
        index = self._wild if sub.channel.wildcard else self._exact
        index.setdefault(key, {})[sub.key] = sub

    def _unindex(self, sub: Subscription) -> None:
        key = "/" + "/".join(sub.channel.segments)
        index = self._wild if sub.channel.wildcard else self._exact
        bucket = index.get(key)
        if bucket is not None:
            bucket.pop(sub.key, None)
            if not bucket:
                del index[key]

    # -- lookups -----------------------------------------------------------------------

    def namespace(self, channel: Channel) -> NamespaceSpec:
        """Return the namespace of ``channel``.

        Raises:
            EmulatorError: ``unknown_namespace`` when the API does not declare it.
        """
        spec = self.settings.namespaces.get(channel.namespace)
        if spec is None:
            raise EmulatorError("unknown_namespace")
        return spec

    @staticmethod
    def channel(text: str, *, allow_wildcard: bool) -> Channel:
        """Parse a channel as the service does.

        Raises:
            EmulatorError: ``invalid_channel`` with the grammar's reason.
        """
        try:
            return parse_channel(text, allow_wildcard=allow_wildcard)
        except InvalidChannelError as exc:
            raise EmulatorError("invalid_channel", exc.message) from None

    def targets(self, channel: Channel) -> list[Subscription]:
        """Every subscription an event on ``channel`` reaches (one per subscription id)."""
        segments = channel.segments
        out: list[Subscription] = []
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

    # -- limits ------------------------------------------------------------------------

    @staticmethod
    def check_id(op_id: str) -> None:
        """Refuse an operation id outside the service's grammar.

        Raises:
            EmulatorError: ``invalid_id``.
        """
        if not OPERATION_ID_RE.match(op_id):
            raise EmulatorError(
                "invalid_id",
                f"Invalid id {op_id[:40]!r}: use 1-128 letters, digits, '_', '+' or '-'.",
            )

    def check_subscription_room(self, connection: Connection) -> None:
        """Refuse one more subscription on a connection holding the maximum.

        Raises:
            EmulatorError: ``max_subscriptions``.
        """
        limit = self.settings.max_subscriptions
        if len(connection.subscriptions) >= limit:
            raise EmulatorError("max_subscriptions", f"{limit} per connection")

    def check_rate(self, connection: Connection) -> None:
        """Count one websocket publish of ``connection``; refuse it past the rate.

        Raises:
            EmulatorError: ``rate_limited``.
        """
        limit = self.settings.publishes_per_second
        now = time.monotonic()
        times = connection.publish_times
        while times and now - times[0] >= 1.0:
            times.popleft()
        if len(times) >= limit:
            raise EmulatorError("rate_limited", f"{limit} publish requests per second")
        times.append(now)

    def check_request_size(self, body: bytes) -> None:
        """Refuse an HTTP publish body over the request quota.

        Raises:
            EmulatorError: ``request_too_large``.
        """
        limit = self.settings.max_request_bytes
        if len(body) > limit:
            raise EmulatorError(
                "request_too_large",
                f"Request payload is {len(body)} bytes; at most {limit} are allowed",
            )

    def check_events(self, events: Sequence[str], transport: Literal["ws", "http"]) -> None:
        """Refuse an empty, oversized or non-JSON list of events.

        Raises:
            EmulatorError: ``no_events_*``, ``too_many_events_*`` or ``invalid_event_*``.
        """
        if not events:
            raise EmulatorError(f"no_events_{transport}")
        if len(events) > self.settings.max_events:
            raise EmulatorError(f"too_many_events_{transport}")
        for index, event in enumerate(events):
            try:
                json.loads(event)
            except (ValueError, RecursionError):
                raise EmulatorError(
                    f"invalid_event_{transport}", f"Event at index {index} is not valid JSON"
                ) from None
