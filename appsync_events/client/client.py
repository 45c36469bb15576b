"""The public client: :class:`AppSyncEventsClient` and its :class:`Subscription` objects.

.. code-block:: python

    async with AppSyncEventsClient("default") as client:       # a settings alias, or
        ...                                                      # an APIConfig (no Django)
        await client.subscribe("/chat/*")
        result = await client.publish("/chat/lobby", ['{"text": "hi"}'])
        async for event in client.events():
            print(event.subscription, event.payload)

The client owns one or more :class:`~appsync_events.client.supervisor.Supervisor` slots
(a new one opens whenever one holds ``max_subscriptions`` subscriptions), each keeping
one :class:`~appsync_events.client.connection.Connection` up.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Literal, TypeAlias

from .. import auth
from ..config import APIConfig
from ..events import ReceivedEvent
from ..exceptions import (
    AppSyncEventsError,
    AuthError,
    ConfigurationError,
    ConnectionFailed,
    OperationTimeout,
    PartialPublishError,
    PublishError,
    SubscriptionError,
)
from ..hints import namespace_hint, undeclared_namespace
from ..limits import EVENTS_PER_PUBLISH, SUBSCRIPTIONS_PER_CONNECTION
from ..paths import normalize_channel
from ..protocol import (
    Publish,
    PublishSuccess,
    Subscribe,
    SubscribeSuccess,
    Unsubscribe,
    UnsubscribeSuccess,
    loads,
)
from ..results import PublishResult
from .connection import Connection, describe_errors, error_entries
from .retry import RetryPolicy, is_auth_error, process_exception
from .supervisor import ConnectionState, StateChange, Supervisor, SupervisorHooks

#: Seconds between two INFO lines about events for subscription ids the client lacks.
_UNROUTED_LOG_EVERY = 60.0

__all__ = [
    "AppSyncEventsClient",
    "EventCallback",
    "StateCallback",
    "SubscribedCallback",
    "Subscription",
    "SubscriptionFailedCallback",
    "SubscriptionState",
]

logger = logging.getLogger("appsync_events.client")

SubscriptionState: TypeAlias = Literal["pending", "active", "retrying", "failed", "closed"]


def _new_id() -> str:
    return str(uuid.uuid4())


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
        self._slot: Supervisor | None = None
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


StateCallback: TypeAlias = Callable[[StateChange], Awaitable[None]]
EventCallback: TypeAlias = Callable[[ReceivedEvent], Awaitable[None] | None]
SubscribedCallback: TypeAlias = Callable[[Subscription], Awaitable[None]]
SubscriptionFailedCallback: TypeAlias = Callable[
    [Subscription, AppSyncEventsError, bool], Awaitable[None]
]


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
            from ..conf import get_api_config  # a settings alias: the Django layer

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
        self._queue: asyncio.Queue[ReceivedEvent] | None = (
            None if on_event is not None else asyncio.Queue(queue_size)
        )
        self._slots: list[Supervisor] = []
        self._subscriptions: dict[int, Subscription] = {}
        self._started = False
        self._closing = False
        self._closed = asyncio.Event()
        self._fatal_error: BaseException | None = None
        #: Reconnects counted by supervisors that were dropped (their slot emptied).
        self._dropped_reconnects = 0
        self._policy = RetryPolicy(
            self.backoff_initial,
            self.backoff_max,
            self.backoff_factor,
            self.stable_after,
            process_exception,
        )
        self._hooks = SupervisorHooks(
            open=self._open_connection,
            establish=self._establish,
            retire=self._retire,
            report=self._state,
            stop=self._fatal,
        )
        self._state_value: ConnectionState = "closed"
        self._background: set[asyncio.Task[Any]] = set()
        self.loop = asyncio.get_running_loop()
        #: Data frames whose event was not valid JSON (logged and skipped).
        self.undecodable_events = 0
        #: Data frames for a subscription id this client does not hold (skipped): one
        #: unsubscribed or replaced a moment ago (expected, DEBUG) or one it never had
        #: (logged at INFO, at most once a minute).
        self.unrouted_events = 0
        self._unrouted_logged_at = float("-inf")
        self._unrouted_held = 0

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
        await asyncio.gather(*(slot.stop() for slot in self._slots))
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
        return self._dropped_reconnects + sum(slot.reconnects for slot in self._slots)

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        """The subscriptions held, in the order they were added."""
        return tuple(self._subscriptions.values())

    @property
    def last_frame_at(self) -> float | None:
        """The loop time (``time.monotonic()``) of the last frame read on an open
        connection (an event or a keep-alive), or ``None`` while none is open."""
        seen = [s.connection.last_seen for s in list(self._slots) if s.connection is not None]
        return max(seen, default=None)

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
                describe_errors(getattr(answer, "errors", ())),
            )

    def _slot_for(self, sub: Subscription) -> Supervisor:
        for slot in self._slots:
            if len(slot.subscriptions) < slot.capacity and not slot.stopping.is_set():
                break
        else:
            slot = self._add_slot()
        slot.subscriptions[id(sub)] = sub
        sub._slot = slot
        return slot

    def _add_slot(self) -> Supervisor:
        index = max((s.index for s in self._slots), default=-1) + 1
        slot = Supervisor(
            index,
            alias=self.alias,
            hooks=self._hooks,
            policy=self._policy,
            rotate_after=self.rotate_after,
            capacity=self.max_subscriptions,
        )
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

    async def _drop_slot(self, slot: Supervisor) -> None:
        if slot in self._slots:
            self._slots.remove(slot)
            self._dropped_reconnects += slot.reconnects
        await slot.stop()
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
                    entries = error_entries(getattr(answer, "errors", ()))
                    error = SubscriptionError(
                        f"the service refused the subscription ({answer.type})",
                        api=self.alias,
                        channel=sub.channel,
                        errors=entries,
                        operation_id=sub_id,
                        hint=namespace_hint(self.api, sub.channel),
                    )
            if "MaxSubscriptionsReachedError" in error.error_types and sub._slot is not None:
                self._move_to_another_connection(sub)
                return
            # A refusal in a namespace the settings do not declare is the namespace, not
            # the credentials: fresh credentials cannot help.
            retryable = (
                is_auth_error(error) and undeclared_namespace(self.api, sub.channel) is None
            ) or isinstance(error, OperationTimeout)
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
            ValueError: ``events`` is empty, or one ``str`` / ``bytes`` instead of a sequence.
            TypeError: ``events`` holds a value that is not a string.
            PublishError: the service refused the whole publish (``publish_error``), or
                the connection was lost before it answered (the events may or may
                not have been published); a later chunk's failure or timeout raises
                :class:`~appsync_events.exceptions.PartialPublishError`, whose
                ``accepted`` lists the events of the chunks already accepted.
            OperationTimeout: no answer in time to the first chunk.
        """
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
        errors = error_entries(getattr(answer, "errors", ()))
        raise PublishError(
            f"the service refused the publish ({answer.type})",
            api=self.alias,
            channel=path,
            errors=errors,
            operation_id=op_id,
            hint=namespace_hint(self.api, path) if is_auth_error(errors) else "",
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
            self.unrouted_events += 1
            if sub is not None:  # in flight when it was unsubscribed
                logger.debug(
                    "Dropped an event for inactive subscription %s (api=%s)", sub_id, self.alias
                )
                return None
            now = self.loop.time()
            if now - self._unrouted_logged_at < _UNROUTED_LOG_EVERY:
                self._unrouted_held += 1
                return None
            held, self._unrouted_held = self._unrouted_held, 0
            self._unrouted_logged_at = now
            logger.info(
                "Dropped an event for subscription id %.80r, which this client does not "
                "hold (api=%s; %d more such events in the last minute were not logged)",
                sub_id,
                self.alias,
                held,
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
        event = ReceivedEvent(self.alias, sub.channel, payload, raw, sub_id, received_at)
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

    async def _open_connection(self, label: str) -> Connection:
        return await Connection.open(
            self.api,
            on_data=self._on_data,
            on_frame=self._on_frame,
            url=self.url,
            handshake_timeout=self.handshake_timeout,
            label=label,
        )

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
