"""What the emulated service does: connect, subscribe, unsubscribe and publish.

:class:`EmulatorState` is the service: the :class:`~.registry.Registry` it holds, plus
the operations. The wire layer (:mod:`appsync_events.emulator.asgi`) hands each
connection a :class:`~.registry.Connection` with two callbacks (queue a frame, close)
and passes every received frame to :meth:`EmulatorState.handle_frame`; HTTP publishes
go to :meth:`EmulatorState.http_publish`. Operations check credentials with
:mod:`.authz`, run the handler stand-ins of :mod:`.hooks`, answer with protocol messages
from :mod:`appsync_events.protocol` and fan events out to the subscriptions the registry
finds. Channels are checked with :mod:`appsync_events.paths` and
:mod:`appsync_events.limits`: the emulator has no grammar of its own.

Threads: operations run on the emulator's event loop; the registry's views are safe
from any thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, TypeVar

from ..exceptions import short_repr
from ..paths import Channel
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
from .errors import EmulatorError, ErrorSpec
from .faults import Faults
from .hooks import (
    HandlerContext,
    HandlerError,
    HandlerUnauthorized,
    IncomingEvent,
    PublishHandler,
    SubscribeHandler,
)
from .registry import (
    Connection,
    PublishedRecord,
    Registry,
    ServiceSettings,
    Subscription,
    is_unicode,
)

__all__ = ["EmulatorState"]

logger = logging.getLogger(__name__)

#: One INFO line per connection, subscribe, unsubscribe, publish and refusal, as a web
#: server's request log. ``appsync_emulator`` and ``python -m appsync_events.emulator``
#: print it on stderr (``--quiet`` silences it); elsewhere it is an ordinary logger.
requests_log = logging.getLogger("appsync_events.emulator.requests")


def _short(connection_id: str | None) -> str:
    return (connection_id or "-")[:8]


def _refusal(entry: ErrorEntry) -> str:
    return f"{entry.error_type}: {entry.message}" if entry.message else entry.error_type


_R = TypeVar("_R")

Transport = Literal["websocket", "http"]


class EmulatorState(Registry):
    """The emulated AppSync Event API: what it holds and what it does.

    Args:
        settings: the API's shape and the behaviour switches.
        authorizer: the credential checks.
        faults: the fault switches.
    """

    def __init__(
        self, settings: ServiceSettings, authorizer: Authorizer, faults: Faults | None = None
    ) -> None:
        super().__init__(settings)
        self.authorizer = authorizer
        self.faults = faults or Faults()

    def clear(self) -> None:
        """Forget published records, counters and cached Lambda authorizer answers."""
        super().clear()
        self.authorizer.clear_cache()

    def _entry(self, exc: EmulatorError, *, with_code: bool = False) -> ErrorEntry:
        return self.settings.errors[exc.case].entry(exc.detail, with_code=with_code)

    def _spec(self, case: str) -> ErrorSpec:
        return self.settings.errors[case]

    # -- connect -----------------------------------------------------------------------

    async def open_connection(self, connection: Connection) -> None:
        """Register ``connection`` and check its connect auth (the answer waits for init)."""
        self.add_connection(connection)
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
            logger.info("Emulator refused websocket connect %s", connection.id)
            requests_log.info(
                "REFUSED connect conn=%s from %s: %s",
                _short(connection.id),
                connection.remote,
                _refusal(connection.connect_error),
            )
        else:
            requests_log.info(
                "CONNECT conn=%s from %s (%s)",
                _short(connection.id),
                connection.remote,
                connection.auth.mode if connection.auth else "no auth",
            )
        self.notify()

    def refuse_connection(self, connection: Connection) -> None:
        """Send the pending ``connection_error`` and close (1000, as the service does)."""
        entry = connection.connect_error or self._spec("unauthorized").entry()
        connection.send(encode(ConnectionErrorMessage((entry,))))
        connection.close(1000, "")

    # -- frames ----------------------------------------------------------------------

    async def handle_frame(self, connection: Connection, frame: str | bytes) -> None:
        """Handle one frame received on ``connection``; answers go to ``connection.send``."""
        try:
            message = decode(frame, accept=CLIENT_TYPES)
        except DecodeError as exc:
            self._answer_decode_error(connection, exc)
            return
        if isinstance(message, Subscribe | Publish | Unsubscribe) and not is_unicode(
            _texts(message)
        ):
            self._answer_not_unicode(connection, message)
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
        # The frame's own id and type go back only when they are Unicode text: a lone
        # surrogate escape in them could be neither encoded nor sent.
        message_id = exc.message_id if is_unicode((exc.message_id or "",)) else None
        message_type = exc.message_type or ""
        if exc.reason == "unknown_type":
            shown = message_type.encode("utf-8", "backslashreplace").decode()
            err = EmulatorError("unsupported_operation", f"Unsupported operation: {shown}")
        else:
            err = EmulatorError("malformed_message", str(exc.message))
        entry = self._entry(err)
        if message_type == "subscribe" and message_id:
            connection.send(encode(SubscribeErrorMessage(message_id, (entry,))))
        elif message_type == "publish" and message_id:
            connection.send(encode(PublishErrorMessage(message_id, (entry,))))
        elif message_type == "unsubscribe" and message_id:
            connection.send(encode(UnsubscribeErrorMessage(message_id, (entry,))))
        else:
            connection.send(encode(ErrorMessage(message_id, (entry,))))

    def _answer_not_unicode(
        self, connection: Connection, message: Subscribe | Publish | Unsubscribe
    ) -> None:
        err = EmulatorError(
            "malformed_message",
            f"{message.type} message holds a string that is not Unicode text "
            "(a lone surrogate escape such as \\ud800)",
        )
        entry = self._entry(err)
        if is_unicode((message.id,)):
            connection.send(encode(_error_for(message, entry)))
        else:  # the id cannot be sent back either
            connection.send(encode(ErrorMessage(None, (entry,))))

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
        self.notify()

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
        namespace = self.namespace(channel)
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
            self.check_id(message.id)
            channel = self.channel(message.channel, allow_wildcard=True)
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
            self.check_subscription_room(connection)
            handlers = self.settings.handlers.get(channel.namespace)
            if handlers is not None and handlers.on_subscribe is not None:
                await self._run_subscribe_handler(
                    handlers.on_subscribe, channel, auth, message, connection
                )
            if message.id in connection.subscriptions or connection.closed:
                # Re-checked: the handler ran in a thread and the loop kept going.
                raise EmulatorError("duplicate_subscription", message.id)
        except EmulatorError as exc:
            entry = self._entry(exc)
            requests_log.info(
                "REFUSED subscribe %s conn=%s: %s",
                short_repr(message.channel),
                _short(connection.id),
                _refusal(entry),
            )
            return SubscribeErrorMessage(message.id, (entry,))
        self.add_subscription(Subscription(connection, message.id, channel, auth.mode))
        requests_log.info(
            "SUBSCRIBE %s conn=%s (%s)", channel.path, _short(connection.id), auth.mode
        )
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
        sub = self.remove_subscription(connection, message.id)
        if sub is None:
            entry = self._entry(EmulatorError("unknown_operation", message.id))
            return UnsubscribeErrorMessage(message.id, (entry,))
        requests_log.info("UNSUBSCRIBE %s conn=%s", sub.channel.path, _short(connection.id))
        return UnsubscribeSuccess(message.id)

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
            self.check_id(message.id)
            self.check_rate(connection)
            channel = self.channel(message.channel, allow_wildcard=False)
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
            self.check_events(message.events, "ws")
            successful, record = await self._publish(
                channel,
                list(message.events),
                auth,
                "websocket",
                connection.id,
                _lower(message.authorization),
                after,
            )
        except EmulatorError as exc:
            entry = self._entry(exc)
            requests_log.info(
                "REFUSED publish %s ws conn=%s: %s",
                short_repr(message.channel),
                _short(connection.id),
                _refusal(entry),
            )
            return PublishErrorMessage(message.id, (entry,))
        _log_publish(record, _short(connection.id))
        return PublishSuccess(message.id, successful, record.failed)

    async def _publish(
        self,
        channel: Channel,
        events: list[str],
        auth: AuthResult | None,
        transport: str,
        connection_id: str | None,
        headers: Mapping[str, str],
        after: list[Callable[[], None]] | None = None,
    ) -> tuple[tuple[SuccessfulEvent, ...], PublishedRecord]:
        """Run the handler, drop oversized events, fan out and record the publish."""
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
        targets = self.targets(channel)
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
        self.record(record)
        return tuple(successful), record

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
    def _fanout(targets: list[Subscription], events: Iterable[str]) -> int:
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
        chan = self.channel(channel, allow_wildcard=False)
        self.namespace(chan)
        _, record = await self._publish(chan, list(events), None, "inject", None, {})
        return record

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
            self.check_request_size(body)
            try:
                obj = json.loads(body)
            except (ValueError, RecursionError):
                # RecursionError: nesting deeper than the parser goes is as invalid.
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
            if not is_unicode((channel_text, *events)):
                raise EmulatorError(
                    "invalid_event_http",
                    "Request body holds a string that is not Unicode text "
                    "(a lone surrogate escape such as \\ud800)",
                )
            channel = self.channel(channel_text, allow_wildcard=False)
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
            self.check_events(events, "http")
            successful, record = await self._publish(channel, events, auth, "http", None, headers)
        except EmulatorError as exc:
            spec = self._spec(exc.case)
            entry = self._entry(exc)
            requests_log.info(
                "REFUSED publish http from %s: %s %s", remote, spec.status, _refusal(entry)
            )
            return spec.status, {"errors": [entry.to_json()]}
        _log_publish(record, f"http from {remote}")
        return 200, {
            "failed": [f.to_json() for f in record.failed],
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


def _texts(message: Subscribe | Publish | Unsubscribe) -> list[str]:
    """Every string a client operation carries: id, channel, events, authorization."""
    texts = [message.id]
    if isinstance(message, Subscribe | Publish):
        texts.append(message.channel)
        texts.extend(message.authorization.keys())
        texts.extend(message.authorization.values())
    if isinstance(message, Publish):
        texts.extend(message.events)
    return texts


def _log_publish(record: PublishedRecord, source: str) -> None:
    failed = f", {len(record.failed)} failed" if record.failed else ""
    requests_log.info(
        "PUBLISH %s %s: %d events%s, %d deliveries",
        record.channel,
        source,
        len(record.events),
        failed,
        record.deliveries,
    )


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
