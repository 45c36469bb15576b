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
deeper before shallower; registration order breaks ties). Async handlers are awaited;
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
from django.db import close_old_connections

from .events import ReceivedEvent
from .paths import Channel, normalize_channel, parse_channel, pattern_contains, specificity
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

    @property
    def name(self) -> str:
        module = getattr(self.func, "__module__", "?")
        qualname = getattr(self.func, "__qualname__", repr(self.func))
        return f"{module}.{qualname}"


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

    def on(self, pattern: str, *, api: str | None = None) -> Callable[[H], H]:
        """Register the decorated function for events on subscriptions ``pattern`` covers.

        Args:
            pattern: a channel path or wildcard pattern (``/chat/*``).
            api: only for events of this alias (default: the router's, else any).

        Raises:
            InvalidChannelError: the pattern breaks the channel grammar.
        """
        channel = parse_channel(pattern, allow_wildcard=True)

        def decorator(func: H) -> H:
            self._add(channel, func, api)
            return func

        return decorator

    def add(self, pattern: str, func: Handler, *, api: str | None = None) -> None:
        """Register ``func`` like :meth:`on` does, without a decorator."""
        self._add(parse_channel(pattern, allow_wildcard=True), func, api)

    def _add(self, pattern: Channel, func: Handler, api: str | None) -> None:
        if not callable(func):
            raise TypeError(f"a handler must be callable, not {type(func).__name__}")
        self._counter += 1
        is_async = inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
            getattr(func, "__call__", None)  # noqa: B004 - async callable objects too
        )
        self._entries.append(_Entry(pattern, func, api or self.api, is_async, self._counter))
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

    def __len__(self) -> int:
        return sum(1 for _ in self._all())


#: The router ``@appsync_events.on`` registers into; the listener dispatches from it.
default_router = Router()


def on(pattern: str, *, api: str | None = None) -> Callable[[H], H]:
    """Register a handler on the default router: ``@appsync_events.on("/chat/*")``.

    The handler receives one :class:`~appsync_events.events.ReceivedEvent`. See the
    module documentation for matching, order, threads and errors.
    """
    return default_router.on(pattern, api=api)


def autodiscover() -> None:
    """Import every installed app's ``appsync_handlers`` module; include its ``router``.

    Called from :meth:`AppSyncEventsConfig.ready`. An import error inside such a module
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
        self._jobs: queue.SimpleQueue[
            tuple[
                Handler,
                ReceivedEvent,
                asyncio.AbstractEventLoop,
                asyncio.Future[Any],
                contextvars.Context,
            ]
        ] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    async def __call__(self, func: Handler, event: ReceivedEvent) -> Any:
        """Run ``func(event)`` in the thread and return (or raise) its outcome."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._start()
        # The handler sees the caller's context variables (its trace span, for one).
        self._jobs.put((func, event, loop, future, contextvars.copy_context()))
        return await future

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
                self._thread.start()

    def _work(self) -> None:
        while True:
            func, event, loop, future, context = self._jobs.get()
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

    Args:
        router: where handlers come from (default: :data:`default_router`).
        send_signal: send :data:`~appsync_events.signals.event_received` first.
        run_sync: how sync handlers run; default ``sync_to_async(thread_sensitive=True)``
            (in the calling thread under ``async_to_sync``, as :func:`simulate_event`
            needs); the listener passes a :class:`HandlerThread`.

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
    ) -> None:
        self.router = default_router if router is None else router
        self.send_signal = send_signal
        self.run_sync: SyncRunner = run_sync or _run_sync_async
        self.running: str | None = None
        self.observer: Any = None

    def handlers(self, api: str, subscription: str) -> tuple[_Entry, ...]:
        """Return the handlers for ``subscription`` in run order (cached by the router)."""
        return self.router.handlers_for(api, subscription)

    async def dispatch(self, event: ReceivedEvent) -> DispatchReport:
        """Dispatch one event; never raises for a failing receiver or handler."""
        handlers = self.router.handlers_for(event.api, event.subscription)
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
                logger.exception(
                    "Handler %s failed for an event on %s (api=%s)",
                    name,
                    event.subscription,
                    event.api,
                )
                if errors is not None:
                    errors.append(HandlerError(name, exc))
            finally:
                self.running = None
                if observer is not None:
                    observer.handler_finished(token, name, error)
        return failures

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


async def asimulate_event(
    channel: str,
    payload: Any,
    *,
    api: str = "default",
    router: Router | None = None,
    send_signal: bool = True,
    raise_errors: bool = True,
) -> DispatchReport:
    """Run the handlers (and ``event_received``) for a fake event, without a socket.

    Args:
        channel: the subscription path the event "arrived on" (may be a wildcard).
        payload: the decoded event; it is JSON-encoded (``DjangoJSONEncoder``) for
            ``raw`` and decoded again, so the handlers see what they would from AppSync.
        api: the alias.
        router: the router to use (default: the default router).
        send_signal: also send ``event_received``.
        raise_errors: re-raise a handler's exception after all handlers ran (several
            become an :class:`ExceptionGroup`).

    Returns:
        The :class:`DispatchReport`.
    """
    raw = json.dumps(payload, cls=DjangoJSONEncoder, separators=(",", ":"))
    event = ReceivedEvent(
        api, normalize_channel(channel, allow_wildcard=True), json.loads(raw), raw, "simulated"
    )
    report = await Dispatcher(router, send_signal=send_signal).dispatch(event)
    if raise_errors and report.errors:
        errors = [e.error for e in report.errors]
        if len(errors) == 1:
            raise errors[0]
        raise ExceptionGroup(
            f"{len(errors)} handlers failed for a simulated event on {event.subscription}",
            [e for e in errors if isinstance(e, Exception)],
        )
    return report


def simulate_event(
    channel: str,
    payload: Any,
    *,
    api: str = "default",
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
        router=router,
        send_signal=send_signal,
        raise_errors=raise_errors,
    )
