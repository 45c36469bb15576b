"""The listener: hold an alias's subscriptions and dispatch every event received.

:class:`Listener` is what ``manage.py appsync_listen`` runs (and what you can run
inside an ASGI process). It owns an :class:`~appsync_events.client.AppSyncEventsClient`
(reconnects, resubscribes, rotation) and, per event, decoded once:

1. sends :data:`~appsync_events.signals.event_received`;
2. runs every matching handler (:mod:`appsync_events.dispatch`);
3. hands the event to every **sink**: objects with ``async def dispatch(event)`` plus
   ``async def start(listener)`` / ``async def stop()`` (see :class:`Sink`). The
   Channels forwarder (:class:`appsync_events.forwarding.ChannelLayerForwarder`) is
   one, added by default when ``FORWARDING['ENABLED']`` and ``CHANNEL_LAYERS`` is set.

Between the socket reader and dispatch sits a bounded queue (``LISTENER['QUEUE_SIZE']``).
With the default ``OVERFLOW = "block"``, a full queue pauses the reader (backpressure:
the service's frames wait in the socket buffers; the keep-alive watchdog does not count
that pause). ``"drop_newest"`` / ``"drop_oldest"`` drop instead; every dropped event is
counted, sent as :data:`~appsync_events.signals.event_dropped` and logged (one line per
second at most, with the count).

Subscriptions can be added and removed at run time with :meth:`Listener.follow` /
:meth:`Listener.unfollow` (reference-counted; the configured ones are never dropped).
Those are **forward-only**: their events go to the sinks (the forwarder, for browsers)
and not to signals or handlers, because AppSync delivers an event once per matching
subscription, so with ``/chat/*`` configured and ``/chat/rooms/7`` followed, handlers
would otherwise run twice for ``/chat/rooms/7``. A path that is configured and also
followed is static.

Shutdown (SIGINT/SIGTERM, :meth:`Listener.request_stop`, ``max_events``, ``max_idle``):
stop accepting events, let queued and in-flight handlers finish, unsubscribe, close the
websocket with code 1000, all within ``LISTENER['SHUTDOWN_TIMEOUT']``. Sync handlers run
in a daemon thread (:class:`~appsync_events.dispatch.HandlerThread`): one still running
at the deadline is abandoned with an ERROR line naming it, and :meth:`Listener.run`
returns :data:`EXIT_SHUTDOWN_TIMEOUT`. (An ``async def`` handler that blocks the event
loop with a sync call cannot be interrupted: put blocking work in a sync handler.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder

from . import instrumentation, metrics, signals
from .client import AppSyncEventsClient, StateChange, Subscription
from .conf import APIConfig, get_api_config
from .dispatch import Dispatcher, HandlerThread, Router
from .events import ReceivedEvent
from .exceptions import AppSyncEventsError, ConfigurationError, ConnectionFailed
from .lease import Lease, get_lease
from .paths import normalize_channel

__all__ = [
    "EXIT_ERROR",
    "EXIT_SHUTDOWN_TIMEOUT",
    "JSONLinesSink",
    "Listener",
    "ListenerHealth",
    "ListenerStats",
    "Sink",
]

logger = logging.getLogger(__name__)

#: Exit status of a listener an error stopped (``appsync_listen`` exits with it).
EXIT_ERROR = 1
#: Exit status when the shutdown took longer than ``LISTENER['SHUTDOWN_TIMEOUT']``:
#: handlers still running were abandoned (logged at ERROR, naming the handler).
EXIT_SHUTDOWN_TIMEOUT = 3


@runtime_checkable
class Sink(Protocol):
    """Where the listener hands every event after signals and handlers.

    ``start`` is called once the listener runs (with the listener, which offers
    :meth:`Listener.follow` / :meth:`Listener.unfollow`), ``stop`` during shutdown.
    ``dispatch`` should not raise; if it does, the error is logged and counted as a
    handler error and the listener goes on.
    """

    async def start(self, listener: Any) -> None:
        """Start (called once, before the first event)."""

    async def dispatch(self, event: ReceivedEvent) -> None:
        """Take one event."""

    async def stop(self) -> None:
        """Stop (called once, during shutdown)."""


class _TextStream(Protocol):
    def write(self, text: str, /) -> Any: ...
    def flush(self) -> Any: ...


class JSONLinesSink:
    """Write one JSON line per event: ``{"channel": <subscription>, "event": <payload>}``.

    What ``appsync_listen --print`` uses; ``stream`` is flushed after each line. Lines
    are written in order from a daemon thread of their own, so a stream that blocks (a
    pipe read slowly) holds back the next event, never the event loop: the keep-alive
    watchdog and a shutdown still run, and ``SHUTDOWN_TIMEOUT`` bounds the wait.
    """

    def __init__(self, stream: _TextStream) -> None:
        self.stream = stream
        self._writer = HandlerThread("appsync-print")

    async def start(self, listener: Any) -> None:
        """Nothing to start."""

    async def dispatch(self, event: ReceivedEvent) -> None:
        """Write the event's line (in the writer thread)."""
        await self._writer(self._write, event)

    def _write(self, event: ReceivedEvent) -> None:
        line = json.dumps(
            {"channel": event.subscription, "event": event.payload},
            cls=DjangoJSONEncoder,
            ensure_ascii=False,
        )
        self.stream.write(line + "\n")
        self.stream.flush()

    async def stop(self) -> None:
        """Let the writer thread end once the lines already queued are written."""
        self._writer.close()


@dataclass
class ListenerStats:
    """Counters of a listener, readable at any time (``listener.stats``).

    Attributes:
        received: events read from the socket.
        dispatched: events that went through signals, handlers and sinks (events on
            followed, forward-only subscriptions: through the sinks).
        handler_errors: handler, receiver and sink exceptions (each logged).
        reconnects: connections re-established after a loss.
        dropped: events dropped by an ``OVERFLOW`` drop policy.
        discarded: events received after shutdown began (not dispatched).
        queued: events taken in and not dispatched yet: waiting in the queue, or being
            dispatched (after a shutdown that gave up at ``SHUTDOWN_TIMEOUT``, those it
            abandoned). Once the listener has stopped, ``received == dispatched +
            dropped + discarded + queued``.
    """

    received: int = 0
    dispatched: int = 0
    handler_errors: int = 0
    reconnects: int = 0
    dropped: int = 0
    discarded: int = 0
    queued: int = 0

    def as_dict(self) -> dict[str, int]:
        """Return the counters as a dict."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ListenerHealth:
    """A snapshot of a listener's state, for probes and metrics (:meth:`Listener.health`).

    A :class:`~appsync_events.health.HealthReport`.

    Attributes:
        phase: ``"starting"``, ``"standby"`` (waiting for the lease), ``"running"``,
            ``"stopping"`` or ``"stopped"``.
        connection: the first connection's state (``"closed"`` before it opens).
        subscriptions: each configured subscription's state (``"active"``,
            ``"pending"``, ``"retrying"``; ``"failed"`` when the service refused it).
        followed_active: followed (browser) subscriptions established now.
        queue_depth / queue_capacity: events waiting for dispatch, and the bound.
        seconds_since_last_frame: since the last frame from the service (an event or a
            keep-alive); ``None`` before the first one.
        seconds_since_last_event: since the last event was dispatched (or the start).
    """

    phase: str
    connection: str
    subscriptions: dict[str, str]
    followed_active: int
    queue_depth: int
    queue_capacity: int
    seconds_since_last_frame: float | None
    seconds_since_last_event: float

    @property
    def configured_active(self) -> int:
        """Configured subscriptions established now."""
        return sum(1 for state in self.subscriptions.values() if state == "active")

    @property
    def ready(self) -> tuple[bool, str]:
        """Whether the listener is ready, and why not: connected with every configured
        subscription established (a standby waiting for the lease counts as ready)."""
        if self.phase == "standby":
            return True, "standby: waiting for the lease"
        if self.phase != "running":
            return False, f"the listener is {self.phase}"
        if self.connection != "connected":
            return False, f"the connection is {self.connection}"
        waiting = [f"{p} is {s}" for p, s in self.subscriptions.items() if s != "active"]
        if waiting:
            return False, "subscription " + ", ".join(waiting)
        return True, "connected; every configured subscription is established"

    @property
    def alive(self) -> tuple[bool, str]:
        """Always alive: the health server runs on the listener's loop, so a blocked
        loop does not answer at all."""
        return True, "the event loop answers"

    def details(self) -> dict[str, Any]:
        """Return the connection and subscription states, for ``/readyz``."""
        return {"connection": self.connection, "subscriptions": self.subscriptions}


class Listener:
    """Receive an alias's events and dispatch them; the service behind ``appsync_listen``.

    Args:
        api: the settings alias.
        channels: subscribe to these paths instead of ``SUBSCRIPTIONS``.
        router: the handler router (default: the default router).
        sinks: extra sinks; ``None`` adds the Channels forwarder when forwarding is on.
        send_signals: send ``event_received`` (the other signals are always sent).
        exclusive: hold the alias's lease (:mod:`appsync_events.lease`) while
            dispatching; standbys wait for it.
        lease: the lease to use with ``exclusive`` (default: :func:`get_lease`).
        max_events: stop after dispatching this many events.
        max_idle: stop after this many seconds without an event.
        health_file: touch this file on inbound frames (at most once a second).
        http_port: serve ``/healthz``, ``/readyz`` and ``/metrics`` on this port
            (default ``LISTENER['HTTP_PORT']``; ``None`` there: no server; ``0``: a free
            port, see :attr:`http_port` once running).
        http_host: the interface of that server (default ``LISTENER['HTTP_HOST']``).
        status: a callable receiving one-line state reports (the command prints them
            to stderr).
        in_process: the listener runs inside the ASGI process (for the forwarder).
        drain_outbox: also drain the durable outbox's rows of this alias while
            dispatching (:class:`~appsync_events.outbox.drainer.OutboxDrainer` in a
            worker thread); with ``exclusive``, only the lease holder drains.
        client_options: extra keyword arguments for
            :class:`~appsync_events.client.AppSyncEventsClient`.
    """

    def __init__(
        self,
        api: str = "default",
        *,
        channels: Sequence[str] | None = None,
        router: Router | None = None,
        sinks: Iterable[Any] | None = None,
        send_signals: bool = True,
        exclusive: bool = False,
        lease: Lease | None = None,
        max_events: int | None = None,
        max_idle: float | None = None,
        health_file: str | os.PathLike[str] | None = None,
        http_port: int | None = None,
        http_host: str | None = None,
        status: Callable[[str], None] | None = None,
        in_process: bool = False,
        drain_outbox: bool = False,
        client_options: dict[str, Any] | None = None,
    ) -> None:
        self.config: APIConfig = get_api_config(api)
        self.alias = self.config.alias
        lc = self.config.listener
        if channels:
            self.channels = tuple(
                dict.fromkeys(normalize_channel(c, allow_wildcard=True) for c in channels)
            )
        else:
            self.channels = tuple(c.path for c in lc.subscriptions)
        # Sync handlers run in a daemon thread, so a handler that never returns cannot
        # keep the process past the shutdown deadline. A failed enqueue is retried: the
        # queue below then fills and OVERFLOW applies.
        self._handler_thread = HandlerThread()
        self.dispatcher = Dispatcher(
            router, send_signal=send_signals, run_sync=self._handler_thread, retry_enqueue=True
        )
        self.sinks: list[Any] = list(sinks) if sinks is not None else []
        if sinks is None:
            self.sinks.extend(self._default_sinks(in_process))
        self.exclusive = exclusive
        self.lease = lease
        if exclusive and lease is None:
            self.lease = get_lease(self.config)
        self.max_events = max_events
        self.max_idle = max_idle
        self.health_file = Path(health_file) if health_file is not None else None
        #: The port of the health and metrics server (the real one once it listens).
        self.http_port = lc.http_port if http_port is None else http_port
        self.http_host = http_host or lc.http_host
        self._status = status
        self.drain_outbox = drain_outbox
        self._outbox_stop = asyncio.Event()
        self._outbox: asyncio.Task[None] | None = None
        self.client_options = dict(client_options or {})
        self.stats = ListenerStats()
        self.client: AppSyncEventsClient | None = None
        #: The error that stopped the client (and so the listener), if one did.
        self.fatal_error: BaseException | None = None
        #: Subscriptions that dispatch to signals and handlers; paths only added by
        #: follow() are forward-only (sinks), see _dispatch_loop.
        self._static = frozenset(self.channels)
        self._queue: asyncio.Queue[ReceivedEvent] = asyncio.Queue(lc.queue_size)
        self._stop = asyncio.Event()
        self._accepting = False
        self._follows: dict[str, tuple[int, Subscription | None]] = {}
        # Follows whose subscribe is still waiting for the service, by path: a concurrent
        # follow of the same path waits for that answer instead of returning early.
        self._subscribing: dict[str, asyncio.Future[None]] = {}
        # 1 while an event is being dispatched (counted in stats.queued); it stays 1 when
        # the shutdown cancels that dispatch at its deadline.
        self._in_flight = 0
        self._last_drop_log = 0.0
        self._drops_since_log = 0
        self._last_touch = 0.0
        self._last_event = 0.0
        self._exit_reason = ""
        self._stopped_sinks: list[Any] = []
        self._phase = "starting"
        self._last_frame: float | None = None
        self._observer: instrumentation.ListenerObserver | None = None

    def _default_sinks(self, in_process: bool) -> list[Any]:
        if not self.config.forwarding.enabled or not getattr(settings, "CHANNEL_LAYERS", None):
            return []
        from .forwarding import ChannelLayerForwarder

        return [ChannelLayerForwarder.from_settings(self.alias, in_process=in_process)]

    # -- reporting --------------------------------------------------------------------

    def _say(self, line: str) -> None:
        logger.info("%s (api=%s)", line, self.alias)
        if self._status is not None:
            self._status(line)

    # -- running ----------------------------------------------------------------------

    @property
    def static_channels(self) -> frozenset[str]:
        """The paths this listener holds for its whole run (``channels``), not follows."""
        return self._static

    def request_stop(self, reason: str = "stop requested") -> None:
        """Ask a running listener to shut down cleanly (thread-safe from the loop only)."""
        if not self._stop.is_set():
            self._exit_reason = reason
            self._stop.set()

    async def run(self, *, install_signal_handlers: bool = True) -> int:
        """Run until stopped; return the exit status.

        0 after a clean shutdown, :data:`EXIT_ERROR` when an error stopped the client,
        :data:`EXIT_SHUTDOWN_TIMEOUT` when the shutdown abandoned handlers at its deadline.

        Raises:
            ConfigurationError: a configuration mistake (the command exits 2).
        """
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        if install_signal_handlers and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, self.request_stop, f"received {sig.name}")
                    installed.append(sig)
        server = await self._start_http()
        try:
            if self.exclusive and self.lease is not None:
                acquired = await self._acquire_lease(self.lease)
                if not acquired:
                    return 0
            return await self._serve()
        finally:
            self._phase = "stopped"
            self._handler_thread.close()  # ends once its jobs are done; closes its DB connections
            for sig in installed:
                loop.remove_signal_handler(sig)
            if self.lease is not None and self.lease.held:
                await self.lease.release()
            if server is not None:
                await server.stop()

    async def _start_http(self) -> Any:
        """Start the ``/healthz``, ``/readyz``, ``/metrics`` server when a port is set."""
        if self.http_port is None:
            return None
        from .health import HealthServer

        server = HealthServer(
            self, self.http_host, self.http_port, allowed_ips=self.config.metrics.allowed_ips
        )
        try:
            self.http_port = await server.start()
        except OSError as exc:
            raise ConfigurationError(
                f"cannot serve /healthz, /readyz and /metrics on {server.url}: {exc}; set "
                f"another APPSYNC_EVENTS[{self.alias!r}]['LISTENER']['HTTP_PORT'] (or "
                "--http-port), or free that one.",
                api=self.alias,
                key="LISTENER['HTTP_PORT']",
                check_id="appsync_events.E009",
            ) from None
        self._say(f"serving /healthz, /readyz and /metrics on {server.url}")
        return server

    def health(self) -> ListenerHealth:
        """Return a snapshot of the listener's state (safe to call from another thread)."""
        client = self.client
        # tuple() of a dict's values runs without releasing the GIL: a consistent copy
        # even while the event loop changes the dict.
        subs = client.subscriptions if client is not None else ()
        states: dict[str, str] = dict.fromkeys(self.channels, "pending")
        followed = 0
        for sub in subs:
            if sub.channel in states:
                if states[sub.channel] != "active":
                    states[sub.channel] = sub.state
            elif sub.state == "active":
                followed += 1
        if client is not None:
            # A refused subscription leaves the client's list: say so.
            held = {sub.channel for sub in subs}
            for path in states:
                if path not in held:
                    states[path] = "failed"
        now = time.monotonic()
        if client is not None and (seen := client.last_frame_at) is not None:
            self._last_frame = seen  # kept while reconnecting, when no connection is open
        last_frame = self._last_frame
        return ListenerHealth(
            phase=self._phase,
            connection=client.state if client is not None else "closed",
            subscriptions=states,
            followed_active=followed,
            queue_depth=self._queue.qsize(),
            queue_capacity=self._queue.maxsize,
            seconds_since_last_frame=None if last_frame is None else now - last_frame,
            seconds_since_last_event=max(now - self._last_event, 0.0) if self._last_event else 0.0,
        )

    async def _acquire_lease(self, lease: Lease) -> bool:
        self._say(f"waiting for lease {lease.name}")
        self._phase = "standby"
        acquire = asyncio.ensure_future(lease.acquire())
        stop = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait({acquire, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not acquire.done():
            acquire.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await acquire
            await lease.release()
            return False
        acquire.result()
        self._say(f"lease {lease.name} acquired; this listener dispatches")
        return True

    async def _serve(self) -> int:
        lc = self.config.listener
        options: dict[str, Any] = {
            "on_event": self._on_event,
            "on_state": self._on_state,
            "on_subscribed": self._on_subscribed,
            "on_subscription_failed": self._on_subscription_failed,
            "on_frame": self._on_frame if self.health_file is not None else None,
            "subscribe_retries": lc.subscribe_retries,
        }
        options.update(self.client_options)
        self.client = client = AppSyncEventsClient(self.config, **options)
        self._observer = observer = instrumentation.listener_observer(self)
        self.dispatcher.observer = observer
        self._phase = "running"
        self._accepting = True
        self._last_event = time.monotonic()
        if self.health_file is not None:
            self.health_file.touch()
        started: list[Any] = []
        try:
            for sink in self.sinks:
                await sink.start(self)
                started.append(sink)
        except BaseException:
            # Undo what already started: no half-started listener is left behind.
            for sink in reversed(started):
                try:
                    await sink.stop()
                except Exception:
                    logger.exception("Sink %r failed to stop (api=%s)", sink, self.alias)
            await client.aclose()
            raise
        self._stopped_sinks = []
        if self.drain_outbox:
            self._outbox = self._start_outbox()
        dispatcher = asyncio.create_task(self._dispatch_loop(), name="appsync-dispatch")
        stats = asyncio.create_task(self._stats_loop(), name="appsync-stats")
        watchers = [
            asyncio.create_task(self._idle_loop(), name="appsync-idle"),
            asyncio.create_task(self._client_watch(), name="appsync-client-watch"),
        ]
        if self.exclusive and self.lease is not None:
            watchers.append(
                asyncio.create_task(self._lease_watch(self.lease), name="appsync-lease")
            )
        self._say(f"connecting to {client.url}")
        await client.connect(wait=False)
        for path in self.channels:
            await client.subscribe(path, wait=False)
        try:
            await self._stop.wait()
        finally:
            status = await self._shutdown(client, dispatcher, stats, watchers)
        return status

    async def _shutdown(
        self,
        client: AppSyncEventsClient,
        dispatcher: asyncio.Task[None],
        stats: asyncio.Task[None],
        watchers: list[asyncio.Task[None]],
    ) -> int:
        """Stop within ``LISTENER['SHUTDOWN_TIMEOUT']``, whatever the handlers do.

        Returns the exit status: 0, :data:`EXIT_ERROR` when an error stopped the client,
        :data:`EXIT_SHUTDOWN_TIMEOUT` when handlers (or the outbox batch, or the close)
        were abandoned at the deadline.
        """
        self._say(f"stopping: {self._exit_reason or 'stop requested'}")
        self._phase = "stopping"
        loop = asyncio.get_running_loop()
        timeout = self.config.listener.shutdown_timeout
        deadline = loop.time() + timeout
        # Room kept for unsubscribing and closing the websocket with 1000.
        reserve = min(2.0, timeout / 4)

        def left(keep: float = 0.0) -> float:
            return max(deadline - keep - loop.time(), 0.0)

        timed_out = False
        # 1. Stop reading: events from now on are counted and not dispatched.
        self._accepting = False
        for task in watchers:
            task.cancel()
        # 2. Let queued and in-flight handlers finish, within the deadline.
        try:
            await asyncio.wait_for(self._queue.join(), left(reserve))
        except TimeoutError:
            timed_out = True
            running = self.dispatcher.running
            if running is not None:
                logger.error(
                    "Shutdown timeout (%.1f s): abandoned handler %s, still running for an "
                    "event; %d queued events were not dispatched (api=%s)",
                    timeout,
                    running,
                    self._queue.qsize(),
                    self.alias,
                )
            else:
                logger.warning(
                    "Shutdown timeout (%.1f s): %d queued events were not dispatched (api=%s)",
                    timeout,
                    self._queue.qsize() + self._in_flight,
                    self.alias,
                )
        dispatcher.cancel()
        stats.cancel()
        # A sync handler keeps running in its daemon thread; an async one that ignores
        # its cancellation is not waited for past the deadline either.
        await asyncio.wait({dispatcher, stats, *watchers}, timeout=left(reserve) or None)
        if not await self._stop_outbox(left(reserve)):
            timed_out = True
        # 3. Unsubscribe and close with 1000, with what is left of the time.
        fatal = self.fatal_error = client.fatal_error
        try:
            await asyncio.wait_for(client.aclose(), max(left(), 0.1))
        except TimeoutError:
            timed_out = True
            logger.error(
                "Shutdown timeout (%.1f s): the websocket was not closed cleanly (api=%s)",
                timeout,
                self.alias,
            )
        for sink in self.sinks:
            try:
                await asyncio.wait_for(sink.stop(), max(left(), 0.1))
            except TimeoutError:
                timed_out = True
                logger.error("Sink %r did not stop in time (api=%s)", sink, self.alias)
            except Exception:
                logger.exception("Sink %r failed to stop (api=%s)", sink, self.alias)
        self._log_stats()
        if self._observer is not None:
            self._observer.close(self)
        if self.stats.discarded:
            self._say(f"{self.stats.discarded} events arrived during shutdown, not dispatched")
        self._say("closed")
        if fatal is not None:
            self._say(f"stopped by an error: {fatal}")
            if not isinstance(fatal, AppSyncEventsError):
                raise fatal
            return EXIT_ERROR
        if timed_out:
            self._say(f"shutdown took longer than SHUTDOWN_TIMEOUT ({timeout:g} s)")
            return EXIT_SHUTDOWN_TIMEOUT
        return 0

    def _start_outbox(self) -> asyncio.Task[None]:
        from .outbox.drainer import OutboxDrainer

        drainer = OutboxDrainer(api=self.alias)
        metrics.register_outbox_collector(drainer.using)  # the backlog, on /metrics
        self._say(f"draining the outbox of {self.alias!r} (worker {drainer.worker})")

        def on_batch(report: Any) -> None:
            logger.info("Outbox batch (api=%s): %s", self.alias, report)

        self._outbox_stop.clear()
        return asyncio.create_task(
            drainer.arun(self._outbox_stop, on_batch=on_batch), name="appsync-outbox"
        )

    async def _stop_outbox(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Let the drainer finish its batch (within ``timeout``), then stop it.

        Returns False when the batch in flight had to be cut short.
        """
        task, self._outbox = self._outbox, None
        if task is None:
            return True
        self._outbox_stop.set()
        done, _ = await asyncio.wait({task}, timeout=timeout or None)
        if not done:
            logger.warning(
                "Shutdown timeout (%.1f s): the outbox batch in flight was cut short; its "
                "unsent rows are sent again once their claim expires (api=%s)",
                timeout,
                self.alias,
            )
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)
            return False
        if (exc := task.exception()) is not None:
            logger.error("The outbox drainer failed (api=%s)", self.alias, exc_info=exc)
        return True

    # -- receiving --------------------------------------------------------------------

    def _on_event(self, event: ReceivedEvent) -> Awaitable[None] | None:
        """Queue one event; return an awaitable only when the reader must wait.

        Plain function, not ``async def``: with room in the queue (the common case)
        the client's reader goes on to the next frame without a coroutine.
        """
        stats = self.stats
        stats.received += 1
        if not self._accepting:
            stats.discarded += 1
            return None
        queue = self._queue
        try:
            queue.put_nowait(event)
            return None
        except asyncio.QueueFull:
            pass
        policy = self.config.listener.overflow
        if policy == "block":
            return queue.put(event)  # the reader waits for room: backpressure
        dropped = event
        if policy == "drop_oldest":
            dropped = queue.get_nowait()
            queue.task_done()
            queue.put_nowait(event)
        return self._dropped(dropped, policy)

    async def _dropped(self, event: ReceivedEvent, policy: str) -> None:
        self.stats.dropped += 1
        self._drops_since_log += 1
        now = time.monotonic()
        if now - self._last_drop_log >= 1.0:
            logger.warning(
                "Queue full (%d): dropped %d event(s) with OVERFLOW=%r in the last second, "
                "%d in total (latest on %s; api=%s)",
                self.config.listener.queue_size,
                self._drops_since_log,
                policy,
                self.stats.dropped,
                event.subscription,
                self.alias,
            )
            self._last_drop_log = now
            self._drops_since_log = 0
        if signals.event_dropped.receivers:
            await self._send(
                signals.event_dropped,
                event=event,
                policy=policy,
                dropped=self.stats.dropped,
            )

    async def _dispatch_loop(self) -> None:
        """Dispatch queued events one at a time, in order: signal, handlers, then sinks."""
        queue = self._queue
        dispatcher = self.dispatcher
        sinks = self.sinks
        static = self._static
        stats = self.stats
        alias = self.alias
        observer = self._observer
        while True:
            event = await queue.get()
            self._in_flight = 1
            token = observer.event_started(event) if observer is not None else None
            dispatched = False
            try:
                subscription = event.subscription
                # Subscriptions added by follow() exist for browsers: their events go
                # to the sinks (the forwarder) only. A static subscription covering the
                # same channel delivers the event to signals and handlers already, so
                # running them here too would run them twice.
                if subscription in static:
                    failures = await dispatcher.run(event, dispatcher.handlers(alias, subscription))
                    stats.handler_errors += failures
                for sink in sinks:
                    try:
                        await sink.dispatch(event)
                    except Exception:
                        stats.handler_errors += 1
                        if observer is not None:
                            observer.sink_failed(sink)
                        logger.exception(
                            "Sink %r failed for an event on %s (api=%s)",
                            sink,
                            subscription,
                            alias,
                        )
                stats.dispatched += 1
                self._in_flight = 0
                dispatched = True
                self._last_event = time.monotonic()
                if self.max_events is not None and stats.dispatched >= self.max_events:
                    self.request_stop(f"dispatched {stats.dispatched} events (--max-events)")
            finally:
                if observer is not None:
                    observer.event_finished(token, event, dispatched)
                queue.task_done()

    def _on_frame(self) -> None:
        now = time.monotonic()
        if self.health_file is not None and now - self._last_touch >= 1.0:
            self._last_touch = now
            try:
                os.utime(self.health_file)
            except FileNotFoundError:
                self.health_file.touch()
            except OSError:
                logger.warning("Cannot touch the health file %s", self.health_file, exc_info=True)

    # -- lifecycle reports --------------------------------------------------------------

    async def _send(self, sig: Any, **kwargs: Any) -> None:
        if not sig.receivers:
            return
        for receiver, result in await sig.asend_robust(sender=self.alias, api=self.alias, **kwargs):
            if isinstance(result, BaseException):
                self.stats.handler_errors += 1
                if self._observer is not None:
                    self._observer.receiver_failed(receiver)
                logger.error(
                    "A receiver of %s failed (api=%s): %r",
                    getattr(receiver, "__qualname__", receiver),
                    self.alias,
                    result,
                    exc_info=(type(result), result, result.__traceback__),
                )

    async def _on_state(self, change: StateChange) -> None:
        label = f"connection {change.connection}: " if change.connection else ""
        if change.state == "connected":
            self._say(f"{label}connected" + (" (rotated)" if change.reason == "rotated" else ""))
        elif change.state == "reconnecting":
            why = "REJECTED by the service: " if change.rejected else ""
            self._say(f"{label}reconnecting in {change.retry_in or 0:.1f}s: {why}{change.reason}")
        elif change.state == "connecting":
            pass  # reported once by _serve; per-attempt lines would be noise
        if self.client is not None:
            self.stats.reconnects = self.client.reconnects
        await self._send(
            signals.connection_state_changed,
            state=change.state,
            reason=change.reason,
            retry_in=change.retry_in,
        )

    async def _on_subscribed(self, sub: Subscription) -> None:
        client = self.client
        active = sum(1 for s in client.subscriptions if s.state == "active") if client else 0
        self._say(f"subscribed {sub.channel} ({active} active)")
        await self._send(
            signals.subscription_established, channel=sub.channel, subscription_id=sub.id
        )

    async def _on_subscription_failed(
        self, sub: Subscription, error: AppSyncEventsError, will_retry: bool
    ) -> None:
        self._say(
            f"subscription to {sub.channel} failed: {error}"
            + ("; retrying with fresh credentials" if will_retry else "")
        )
        await self._send(
            signals.subscription_failed, channel=sub.channel, error=error, will_retry=will_retry
        )

    # -- watchers ----------------------------------------------------------------------

    async def _idle_loop(self) -> None:
        if self.max_idle is None:
            return
        while True:
            idle = time.monotonic() - self._last_event
            if idle >= self.max_idle:
                self.request_stop(f"no event for {self.max_idle:g} s (--max-idle)")
                return
            await asyncio.sleep(self.max_idle - idle)

    async def _client_watch(self) -> None:
        if self.client is None:
            return
        with contextlib.suppress(Exception):
            await self.client.wait_closed()
        self.request_stop("the client stopped")

    async def _lease_watch(self, lease: Lease) -> None:
        await lease.wait_lost()
        self.request_stop("the lease was lost")

    async def _stats_loop(self) -> None:
        interval = self.config.listener.stats_interval
        while True:
            await asyncio.sleep(interval)
            self._log_stats()

    def _log_stats(self) -> None:
        self.stats.queued = self._queue.qsize() + self._in_flight
        if self.client is not None:
            self.stats.reconnects = self.client.reconnects
        s = self.stats
        logger.info(
            "Listener stats (api=%s): received=%d dispatched=%d handler_errors=%d "
            "reconnects=%d dropped=%d queued=%d",
            self.alias,
            s.received,
            s.dispatched,
            s.handler_errors,
            s.reconnects,
            s.dropped,
            s.queued,
        )

    # -- runtime subscriptions -----------------------------------------------------------

    async def follow(self, path: str) -> None:
        """Hold a subscription to ``path`` (reference-counted) while the listener runs.

        The subscription is forward-only: its events go to the sinks, not to
        ``event_received`` or handlers (unless ``path`` is a configured subscription,
        which stays static). See the module documentation. It returns once the service
        has accepted the subscription, also when another follow of the same path is still
        waiting for that answer (it then fails as that follow does).

        Raises:
            InvalidChannelError: the path breaks the grammar.
            SubscriptionError: the service refused it.
            ConnectionFailed: the listener is not running.
        """
        channel = normalize_channel(path, allow_wildcard=True)
        count, sub = self._follows.get(channel, (0, None))
        if count:
            self._follows[channel] = (count + 1, sub)
            pending = self._subscribing.get(channel)
            if pending is not None:
                # Return when the service accepted the path, or fail as that follow did.
                await asyncio.shield(pending)
            return
        if channel in self.channels:
            self._follows[channel] = (1, None)  # held anyway
            return
        if self.client is None:
            raise ConnectionFailed("the listener is not running", api=self.alias, channel=channel)
        self._follows[channel] = (1, None)
        pending = asyncio.get_running_loop().create_future()
        # Waiters see the outcome; with none, a failure must not warn "never retrieved".
        pending.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._subscribing[channel] = pending
        try:
            sub = await self.client.subscribe(channel)
        except BaseException as exc:
            self._follows.pop(channel, None)
            if not isinstance(exc, Exception):  # cancelled: waiters must not look cancelled
                exc = ConnectionFailed(
                    "the follow was cancelled before the service answered",
                    api=self.alias,
                    channel=channel,
                )
            pending.set_exception(exc)
            raise
        finally:
            if self._subscribing.get(channel) is pending:
                del self._subscribing[channel]
        if not pending.done():
            pending.set_result(None)
        count, held = self._follows.get(channel, (0, None))
        if count == 0 or held is not None:
            # Unfollowed while subscribing, or unfollowed and followed again with the
            # other follow's subscription in place first: one subscription per path.
            await self._remove(sub)
            return
        self._follows[channel] = (count, sub)

    async def unfollow(self, path: str) -> None:
        """Release one :meth:`follow` of ``path``; unsubscribe after the last one."""
        channel = normalize_channel(path, allow_wildcard=True)
        count, sub = self._follows.get(channel, (0, None))
        if count <= 1:
            self._follows.pop(channel, None)
            if sub is not None:
                await self._remove(sub)
        else:
            self._follows[channel] = (count - 1, sub)

    async def _remove(self, sub: Subscription) -> None:
        """Unsubscribe ``sub``; send :data:`~appsync_events.signals.subscription_removed`."""
        was_active = sub.state == "active"
        await sub.aclose()
        if was_active:
            await self._send(
                signals.subscription_removed, channel=sub.channel, subscription_id=sub.id
            )

    @property
    def followed(self) -> dict[str, int]:
        """The paths held by :meth:`follow`, with their reference counts."""
        return {path: count for path, (count, _) in self._follows.items()}
