"""Handlers for received events: ``@on(pattern)``, :class:`Router`, dispatch, simulation.

.. code-block:: python

    # myapp/appsync_handlers.py (imported automatically, like admin.py)
    import appsync_events

    @appsync_events.on("/chat/*")
    async def log_chat(event):
        print(event.subscription, event.payload)

    @appsync_events.on("/chat/rooms/*")
    def save_message(event):           # sync: runs in a thread, the ORM is safe
        Message.objects.create(room=event.payload["room"], text=event.payload["text"])

Matching is by **subscription path**, because AppSync does not tell a subscriber the
concrete channel an event was published to: a handler runs for an event when its
pattern *covers* the subscription the event arrived on
(:func:`~appsync_events.paths.pattern_contains`): a handler on ``/chat/*`` runs for
events on the subscriptions ``/chat/*``, ``/chat/rooms/*`` and ``/chat/rooms/7``; a
handler on ``/chat/rooms/7`` runs only for the subscription ``/chat/rooms/7``.
Publishers that want receivers to know the concrete channel put it (or its template
fields) in the payload, as the model-like event classes do.

Every matching handler runs, the most specific pattern first (exact before wildcard,
deeper before shallower; registration order breaks ties). A handler registered with
``enqueue=True`` (or, without ``enqueue=``, on an alias whose ``TASKS['ENQUEUE']`` is on)
is not run here: the event is enqueued as a task of Django's Tasks framework, for a
worker to run (:mod:`appsync_events.tasks`). Async handlers are awaited;
sync handlers run in a worker thread through :func:`asgiref.sync.sync_to_async` with
stale database connections closed around them, as Channels does for consumers. An
exception in one handler is logged (logger ``appsync_events.dispatch``, with the
handler and the subscription) and counted; the other handlers still run and the
listener goes on.

Handler modules: every installed app's ``appsync_handlers`` module is imported when
Django starts (:func:`autodiscover`); a module-level ``router = Router()`` in it is
included automatically.

In tests, :func:`simulate_event` runs the same dispatch (``event_received`` signal
plus handlers) without a listener or a socket.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import logging
import queue
import sys
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypeVar

from asgiref.sync import async_to_sync, sync_to_async
from django.core.serializers.json import DjangoJSONEncoder
from django.db import close_old_connections, connections

from .conf import get_api_config
from .config import TasksConfig
from .events import ReceivedEvent
from .exceptions import ConfigurationError
from .paths import (
    Channel,
    channel_matches,
    normalize_channel,
    parse_channel,
    pattern_contains,
    specificity,
)
from .signals import event_received

__all__ = [
    "HANDLERS_MODULE",
    "DispatchReport",
    "Dispatcher",
    "Handler",
    "HandlerError",
    "HandlerThread",
    "Router",
    "SyncRunner",
    "asimulate_event",
    "autodiscover",
    "default_router",
    "delivering_subscriptions",
    "on",
    "simulate_event",
]

logger = logging.getLogger(__name__)

#: The module name looked up in every installed app by :func:`autodiscover`.
HANDLERS_MODULE = "appsync_handlers"

Handler: TypeAlias = Callable[[ReceivedEvent], Any]
H = TypeVar("H", bound=Handler)


@dataclass(frozen=True, slots=True)
class _Entry:
    pattern: Channel
    func: Handler
    api: str | None
    is_async: bool
    order: int
    #: ``True``: hand events to Django's Tasks framework (:mod:`appsync_events.tasks`);
    #: ``False``: run in process; ``None``: the alias's ``TASKS['ENQUEUE']``.
    enqueue: bool | None = None
    #: The handler depends on arrival order (a system check warns if it is enqueued).
    ordered: bool = False

    @property
    def name(self) -> str:
        module = getattr(self.func, "__module__", "?")
        qualname = getattr(self.func, "__qualname__", repr(self.func))
        return f"{module}.{qualname}"

    @property
    def has_stable_name(self) -> bool:
        """Whether a worker process can find this handler by :attr:`name` (not a lambda
        or a function defined inside another)."""
        return "<" not in self.name


class Router:
    """A group of handlers; include it in another router (or autodiscovery does).

    Args:
        api: restrict every handler of this router to one settings alias
            (``None``: events of every alias).
    """

    def __init__(self, *, api: str | None = None) -> None:
        self.api = api
        self._entries: list[_Entry] = []
        self._children: list[Router] = []
        self._parents: list[Router] = []
        self._cache: dict[tuple[str, str], tuple[_Entry, ...]] = {}
        self._counter = 0

    def on(
        self,
        pattern: str,
        *,
        api: str | None = None,
        enqueue: bool | None = None,
        ordered: bool = False,
    ) -> Callable[[H], H]:
        """Register the decorated function for events on subscriptions ``pattern`` covers.

        Args:
            pattern: a channel path or wildcard pattern (``/chat/*``).
            api: only for events of this alias (default: the router's, else any).
            enqueue: ``True`` hands each event to Django's Tasks framework, to run on a
                worker (:mod:`appsync_events.tasks`); ``False`` runs it in the listener;
                ``None`` (the default) follows the alias's ``TASKS['ENQUEUE']``.
            ordered: declare that the handler needs events in arrival order; a system
                check warns when such a handler is enqueued (tasks run in no order).

        Raises:
            InvalidChannelError: the pattern breaks the channel grammar.
            TypeError: ``enqueue=True`` on a lambda or a function defined inside
                another, which a worker cannot find by name.
        """
        channel = parse_channel(pattern, allow_wildcard=True)

        def decorator(func: H) -> H:
            self._add(channel, func, api, enqueue, ordered)
            return func

        return decorator

    def add(
        self,
        pattern: str,
        func: Handler,
        *,
        api: str | None = None,
        enqueue: bool | None = None,
        ordered: bool = False,
    ) -> None:
        """Register ``func`` like :meth:`on` does, without a decorator."""
        self._add(parse_channel(pattern, allow_wildcard=True), func, api, enqueue, ordered)

    def _add(
        self,
        pattern: Channel,
        func: Handler,
        api: str | None,
        enqueue: bool | None = None,
        ordered: bool = False,
    ) -> None:
        if not callable(func):
            raise TypeError(f"a handler must be callable, not {type(func).__name__}")
        if enqueue not in (None, True, False) or ordered not in (True, False):
            raise TypeError(
                f"enqueue must be True, False or None and ordered True or False, not "
                f"enqueue={enqueue!r}, ordered={ordered!r}"
            )
        self._counter += 1
        is_async = inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
            getattr(func, "__call__", None)  # noqa: B004 - async callable objects too
        )
        entry = _Entry(
            pattern, func, api or self.api, is_async, self._counter, enqueue, bool(ordered)
        )
        if enqueue and not entry.has_stable_name:
            raise TypeError(
                f"enqueue=True needs a handler a worker can find by name; {entry.name} is a "
                "lambda or is defined inside another function. Define it at module level "
                "in an appsync_handlers module."
            )
        self._entries.append(entry)
        self._invalidate()

    def remove(self, func: Handler) -> None:
        """Unregister every registration of ``func`` in this router."""
        self._entries = [e for e in self._entries if e.func is not func]
        self._invalidate()

    def include(self, router: Router) -> None:
        """Make ``router``'s handlers (now and later) part of this router."""
        if router is self or router in self._children:
            return
        self._children.append(router)
        router._parents.append(self)
        self._invalidate()

    def clear(self) -> None:
        """Drop every handler and included router (for tests)."""
        self._entries.clear()
        for child in self._children:
            child._parents.remove(self)
        self._children.clear()
        self._invalidate()

    def _invalidate(self) -> None:
        self._cache.clear()
        for parent in self._parents:
            parent._invalidate()

    def _all(self) -> Iterable[tuple[int, _Entry]]:
        for entry in self._entries:
            yield (0, entry)
        for depth, child in enumerate(self._children, start=1):
            for _, entry in child._all():
                yield (depth, entry)

    def handlers_for(self, api: str, subscription: str) -> tuple[_Entry, ...]:
        """Return the handlers for events of ``api`` on ``subscription``, in run order."""
        key = (api, subscription)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        matching = [
            (depth, entry)
            for depth, entry in self._all()
            if (entry.api is None or entry.api == api)
            and pattern_contains(entry.pattern, subscription)
        ]
        # Most specific first; then this router before included ones; then registration.
        matching.sort(key=lambda de: (tuple(-x for x in specificity(de[1].pattern)), de[0]))
        result = tuple(entry for _, entry in matching)
        self._cache[key] = result
        return result

    def narrower_than(self, api: str, subscription: str) -> tuple[_Entry, ...]:
        """Return the handlers that events on ``subscription`` can never reach.

        Their pattern lies strictly inside the subscription (``/chat/rooms/*`` inside
        ``/chat/*``): AppSync does not say which channel of the subscription an event came
        from, so such a handler runs only for a subscription its pattern contains.
        """
        return tuple(
            entry
            for _, entry in self._all()
            if (entry.api is None or entry.api == api)
            and pattern_contains(subscription, entry.pattern)
            and not pattern_contains(entry.pattern, subscription)
        )

    def entries(self) -> tuple[_Entry, ...]:
        """Return every registration of this router and of the routers it includes."""
        return tuple(entry for _, entry in self._all())

    def handler_named(self, name: str, api: str) -> _Entry | None:
        """Return the first registration of the handler called ``name`` for alias ``api``.

        ``name`` is the handler's ``module.qualname`` (what workers receive with an
        enqueued event); ``None`` when no such handler is registered.
        """
        for _, entry in self._all():
            if entry.name == name and (entry.api is None or entry.api == api):
                return entry
        return None

    def __len__(self) -> int:
        return sum(1 for _ in self._all())


#: The router ``@appsync_events.on`` registers into; the listener dispatches from it.
default_router = Router()


def on(
    pattern: str,
    *,
    api: str | None = None,
    enqueue: bool | None = None,
    ordered: bool = False,
) -> Callable[[H], H]:
    """Register a handler on the default router: ``@appsync_events.on("/chat/*")``.

    The handler receives one :class:`~appsync_events.events.ReceivedEvent`. See the
    module documentation for matching, order, threads and errors, and
    :meth:`Router.on` for the arguments (``enqueue=True`` runs it on a task worker).
    """
    return default_router.on(pattern, api=api, enqueue=enqueue, ordered=ordered)


def autodiscover() -> None:
    """Import every installed app's ``appsync_handlers`` module; include its ``router``.

    Called from ``AppSyncEventsConfig.ready()``. An import error inside such a module
    propagates (as with ``admin.py``), so a broken handler module is noticed at startup.
    """
    from django.apps import apps
    from django.utils.module_loading import autodiscover_modules

    autodiscover_modules(HANDLERS_MODULE)
    for app in apps.get_app_configs():
        module = sys.modules.get(f"{app.name}.{HANDLERS_MODULE}")
        router = getattr(module, "router", None)
        if isinstance(router, Router) and router is not default_router:
            default_router.include(router)


@dataclass(slots=True)
class HandlerError:
    """A handler that raised: which one and what."""

    handler: str
    error: BaseException


@dataclass(slots=True)
class DispatchReport:
    """What dispatching one event did.

    Attributes:
        handlers: how many handlers ran.
        errors: the handlers (and signal receivers) that raised.
    """

    handlers: int = 0
    errors: list[HandlerError] = field(default_factory=list)


def _run_sync(func: Handler, event: ReceivedEvent) -> Any:
    # As Channels' database_sync_to_async: never use a connection that went stale while
    # the thread sat idle, and never leave one open past its CONN_MAX_AGE.
    close_old_connections()
    try:
        return func(event)
    finally:
        close_old_connections()


_run_sync_async = sync_to_async(_run_sync, thread_sensitive=True)

#: Runs a sync handler for an event from async code; see :class:`HandlerThread`.
SyncRunner: TypeAlias = Callable[[Handler, ReceivedEvent], Awaitable[Any]]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the dispatcher stopped waiting (shutdown abandoned the handler)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


#: The jobs of a :class:`HandlerThread`; ``None`` ends its thread.
_Jobs: TypeAlias = queue.SimpleQueue[
    tuple[
        Handler, ReceivedEvent, asyncio.AbstractEventLoop, asyncio.Future[Any], contextvars.Context
    ]
    | None
]


class HandlerThread:
    """Runs sync handlers one at a time in one daemon thread: what the listener uses.

    Like ``sync_to_async(thread_sensitive=True)`` outside any ``async_to_sync`` call,
    every sync handler runs in one thread, in order, with stale database connections
    closed around it. Unlike it, the thread is a daemon: a handler that never returns
    cannot keep the process alive once the listener's shutdown gave up on it
    (``LISTENER['SHUTDOWN_TIMEOUT']``).
    """

    def __init__(self, name: str = "appsync-handlers") -> None:
        self.name = name
        self._jobs: _Jobs = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    async def __call__(self, func: Handler, event: ReceivedEvent) -> Any:
        """Run ``func(event)`` in the thread and return (or raise) its outcome."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        # The handler sees the caller's context variables (its trace span, for one).
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._work, args=(self._jobs,), name=self.name, daemon=True
                )
                self._thread.start()
            self._jobs.put((func, event, loop, future, contextvars.copy_context()))
        return await future

    def close(self) -> None:
        """Let the thread end once the jobs already queued are done (without waiting).

        On its way out it closes its database connections. Calling the runner again
        starts a new thread; a handler that never returns keeps the old one (a daemon).
        """
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                self._jobs.put(None)  # the old thread's own queue: a new one gets a new one
                self._jobs = queue.SimpleQueue()
            self._thread = None

    def _work(self, jobs: _Jobs) -> None:
        try:
            self._serve(jobs)
        finally:
            connections.close_all()  # this thread's connections only

    @staticmethod
    def _serve(jobs: _Jobs) -> None:
        while True:
            job = jobs.get()
            if job is None:
                return
            func, event, loop, future, context = job
            result: Any = None
            error: BaseException | None = None
            try:
                result = context.run(_run_sync, func, event)
            except BaseException as exc:  # handed to the awaiting coroutine, never lost
                error = exc
            try:
                loop.call_soon_threadsafe(_settle, future, result, error)
            except RuntimeError:  # the loop is closed: nobody waits for this any more
                logger.warning(
                    "A sync handler finished after its event loop closed (%s)",
                    getattr(func, "__qualname__", func),
                )


class Dispatcher:
    """Sends ``event_received`` and runs the matching handlers for each event.

    Handlers that enqueue (``enqueue=True``, or the alias's ``TASKS['ENQUEUE']``) are
    handed to Django's Tasks framework instead (:func:`appsync_events.tasks.enqueue`).

    Args:
        router: where handlers come from (default: :data:`default_router`).
        send_signal: send :data:`~appsync_events.signals.event_received` first.
        run_sync: how sync handlers run; default ``sync_to_async(thread_sensitive=True)``
            (in the calling thread under ``async_to_sync``, as :func:`simulate_event`
            needs); the listener passes a :class:`HandlerThread`.
        retry_enqueue: when enqueueing fails, retry with backoff until it succeeds
            (the listener: meanwhile its bounded queue and ``OVERFLOW`` policy apply);
            otherwise log it and count it as a handler failure.

    Attributes:
        running: the name of the handler running now, or ``None``.
        observer: told about every handler run and failing receiver (metrics and
            traces; the listener sets it): ``handler_started(name, event)`` returns a
            token, ``handler_finished(token, name, error)`` ends it,
            ``receiver_failed(receiver)``. ``None``: nobody is told.
    """

    def __init__(
        self,
        router: Router | None = None,
        *,
        send_signal: bool = True,
        run_sync: SyncRunner | None = None,
        retry_enqueue: bool = False,
    ) -> None:
        self.router = default_router if router is None else router
        self.send_signal = send_signal
        self.run_sync: SyncRunner = run_sync or _run_sync_async
        self.running: str | None = None
        self.retry_enqueue = retry_enqueue
        self._tasks: dict[str, TasksConfig] = {}
        #: (alias, subscription) pairs already warned about (bounded by subscriptions).
        self._warned: set[tuple[str, str]] = set()
        self.observer: Any = None

    def tasks_config(self, api: str) -> TasksConfig:
        """Return alias ``api``'s ``TASKS`` settings (the defaults for an unknown alias)."""
        config = self._tasks.get(api)
        if config is None:
            try:
                config = get_api_config(api).tasks
            except ConfigurationError as exc:
                # Only simulated events come from an alias without settings.
                logger.debug("No TASKS settings for api=%s (%s): using the defaults", api, exc)
                config = TasksConfig()
            self._tasks[api] = config
        return config

    def enqueues(self, entry: _Entry, api: str) -> bool:
        """Whether this dispatcher hands ``entry``'s events of alias ``api`` to a task."""
        if entry.enqueue is not None:
            return entry.enqueue
        return self.tasks_config(api).enqueue

    def handlers(self, api: str, subscription: str) -> tuple[_Entry, ...]:
        """Return the handlers for ``subscription`` in run order (cached by the router).

        The first time a subscription has no handler while handlers with a narrower
        pattern exist, a WARNING says so, once: their events arrive on this subscription,
        which they never see.
        """
        handlers = self.router.handlers_for(api, subscription)
        if not handlers and (api, subscription) not in self._warned and len(self._warned) < 10_000:
            self._warned.add((api, subscription))
            narrower = self.router.narrower_than(api, subscription)
            if narrower:
                logger.warning(
                    "Events on the subscription %s (api=%s) run no handler, but %s would "
                    "want some of them: a handler runs only for subscriptions its pattern "
                    "contains (AppSync does not say which channel an event came from). "
                    "Subscribe to %s too, or widen the handler's pattern.",
                    subscription,
                    api,
                    ", ".join(f"{e.name} ({e.pattern.path})" for e in narrower),
                    ", ".join(dict.fromkeys(e.pattern.path for e in narrower)),
                )
        return handlers

    async def dispatch(self, event: ReceivedEvent) -> DispatchReport:
        """Dispatch one event; never raises for a failing receiver or handler."""
        handlers = self.handlers(event.api, event.subscription)
        errors: list[HandlerError] = []
        await self.run(event, handlers, errors)
        return DispatchReport(len(handlers), errors)

    async def run(
        self,
        event: ReceivedEvent,
        handlers: tuple[_Entry, ...],
        errors: list[HandlerError] | None = None,
    ) -> int:
        """Send ``event_received``, then run ``handlers``; return the number of failures.

        For callers that look the handlers up themselves (the listener caches them per
        subscription). Every failure is logged and counted (and appended to ``errors``
        when given); nothing but cancellation propagates.
        """
        failures = 0
        api = event.api
        observer = self.observer
        if self.send_signal and event_received.has_listeners(api):
            # Django's robust sending: sync receivers in one thread hop, async ones
            # concurrently; every exception comes back as a result.
            for receiver, result in await event_received.asend_robust(
                sender=api, event=event, api=api
            ):
                if isinstance(result, BaseException):
                    failures += 1
                    self._receiver_failed(receiver, result, event, errors)
                    if observer is not None:
                        observer.receiver_failed(receiver)
        for entry in handlers:
            if self.enqueues(entry, api):
                if not await self._enqueue(entry, event, errors):
                    failures += 1
                continue
            self.running = name = entry.name
            token = observer.handler_started(name, event) if observer is not None else None
            error: BaseException | None = None
            try:
                if entry.is_async:
                    await entry.func(event)
                else:
                    await self.run_sync(entry.func, event)
            except Exception as exc:
                failures += 1
                error = exc
                self._handler_failed(entry, event, exc, errors)
            finally:
                self.running = None
                if observer is not None:
                    observer.handler_finished(token, name, error)
        return failures

    def run_here(
        self, event: ReceivedEvent, entry: _Entry, errors: list[HandlerError] | None = None
    ) -> bool:
        """Run one handler in the calling sync thread (a task worker's); return success.

        A sync handler is called directly (stale database connections closed around it,
        as in the listener); an async one through ``async_to_sync``. A failure is logged
        and appended to ``errors`` as :meth:`run` does. No signal is sent.
        """
        try:
            if entry.is_async:
                async_to_sync(entry.func)(event)
            else:
                _run_sync(entry.func, event)
        except Exception as exc:
            self._handler_failed(entry, event, exc, errors)
            return False
        return True

    @staticmethod
    def _handler_failed(
        entry: _Entry,
        event: ReceivedEvent,
        error: Exception,
        errors: list[HandlerError] | None,
    ) -> None:
        logger.error(
            "Handler %s failed for an event on %s (api=%s)",
            entry.name,
            event.subscription,
            event.api,
            exc_info=(type(error), error, error.__traceback__),
        )
        if errors is not None:
            errors.append(HandlerError(entry.name, error))

    async def _enqueue(
        self, entry: _Entry, event: ReceivedEvent, errors: list[HandlerError] | None
    ) -> bool:
        # Imported here: the Tasks framework is optional, needed only when enqueueing.
        try:
            from .tasks import enqueue
        except ImportError as exc:
            logger.error(
                "Handler %s enqueues, but Django's Tasks framework cannot be loaded; the "
                "event on %s was not handled (api=%s): %s",
                entry.name,
                event.subscription,
                event.api,
                exc,
            )
            if errors is not None:
                errors.append(HandlerError(entry.name, exc))
            return False
        error = await enqueue(entry, event, self.tasks_config(event.api), retry=self.retry_enqueue)
        if error is not None and errors is not None:
            errors.append(HandlerError(entry.name, error))
        return error is None

    @staticmethod
    def _receiver_failed(
        receiver: Any,
        error: BaseException,
        event: ReceivedEvent,
        errors: list[HandlerError] | None,
    ) -> None:
        name = getattr(receiver, "__qualname__", repr(receiver))
        logger.error(
            "event_received receiver %s failed for an event on %s (api=%s)",
            name,
            event.subscription,
            event.api,
            exc_info=(type(error), error, error.__traceback__),
        )
        if errors is not None:
            errors.append(HandlerError(name, error))


def delivering_subscriptions(
    api: str, channel: str, subscriptions: Iterable[str] | None = None
) -> list[str]:
    """Return the subscriptions an event published to ``channel`` arrives on.

    ``subscriptions`` default to the alias's ``SUBSCRIPTIONS``; with none configured, the
    channel itself (as ``appsync_listen --channel <channel>`` would subscribe).

    Raises:
        InvalidChannelError: ``channel`` is not a concrete channel (a wildcard cannot be
            published to).
        LookupError: no subscription receives events published to ``channel``.
    """
    path = normalize_channel(channel)
    if subscriptions is None:
        from .conf import get_api_config

        try:
            configured = [c.path for c in get_api_config(api).listener.subscriptions]
        except ConfigurationError:
            configured = []
        source = f"APPSYNC_EVENTS[{api!r}]['SUBSCRIPTIONS']"
    else:
        configured = [normalize_channel(s, allow_wildcard=True) for s in subscriptions]
        source = "subscriptions="
    if not configured:
        return [path]
    matching = [s for s in configured if channel_matches(s, path)]
    if not matching:
        raise LookupError(
            f"No subscription of {source} ({', '.join(configured)}) receives events published "
            f"to {path}: the listener would never see it. Add a subscription that matches it."
        )
    return matching


async def asimulate_event(
    channel: str,
    payload: Any,
    *,
    api: str = "default",
    subscriptions: Iterable[str] | None = None,
    router: Router | None = None,
    send_signal: bool = True,
    raise_errors: bool = True,
) -> DispatchReport:
    """Deliver a fake event as the listener would, without a socket: signal and handlers.

    The event is published to ``channel`` (a concrete channel) and arrives, as from
    AppSync, once on every subscription that matches it: the alias's ``SUBSCRIPTIONS``
    (or ``subscriptions``). Each delivery runs the handlers whose pattern contains that
    subscription, exactly as in the listener, so a test of a handler no subscription can
    reach fails.

    Args:
        channel: the channel the event is published to (no wildcard).
        payload: the decoded event; it is JSON-encoded (``DjangoJSONEncoder``) for
            ``raw`` and decoded again, so the handlers see what they would from AppSync.
        api: the alias.
        subscriptions: the subscriptions the listener holds (default: ``SUBSCRIPTIONS``;
            with none configured, the channel itself).
        router: the router to use (default: the default router).
        send_signal: also send ``event_received``.
        raise_errors: re-raise a handler's exception after all handlers ran (several
            become an :class:`ExceptionGroup`).

    Returns:
        The :class:`DispatchReport` of every delivery together.

    Raises:
        InvalidChannelError: ``channel`` is a wildcard or not a valid channel.
        LookupError: no subscription receives events published to ``channel``.
    """
    raw = json.dumps(payload, cls=DjangoJSONEncoder, separators=(",", ":"))
    dispatcher = Dispatcher(router, send_signal=send_signal)
    report = DispatchReport()
    for subscription in delivering_subscriptions(api, channel, subscriptions):
        event = ReceivedEvent(api, subscription, json.loads(raw), raw, "simulated")
        part = await dispatcher.dispatch(event)
        report.handlers += part.handlers
        report.errors.extend(part.errors)
    if raise_errors and report.errors:
        errors = [e.error for e in report.errors]
        if len(errors) == 1:
            raise errors[0]
        raise ExceptionGroup(
            f"{len(errors)} handlers failed for a simulated event on {channel}",
            [e for e in errors if isinstance(e, Exception)],
        )
    return report


def simulate_event(
    channel: str,
    payload: Any,
    *,
    api: str = "default",
    subscriptions: Iterable[str] | None = None,
    router: Router | None = None,
    send_signal: bool = True,
    raise_errors: bool = True,
) -> DispatchReport:
    """Sync twin of :func:`asimulate_event` (sync handlers run in the calling thread)."""
    runner: Callable[..., Awaitable[DispatchReport]] = asimulate_event
    return async_to_sync(runner)(
        channel,
        payload,
        api=api,
        subscriptions=subscriptions,
        router=router,
        send_signal=send_signal,
        raise_errors=raise_errors,
    )
