"""Tests for the handler registry, ordering, isolation, signals and simulate_event."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync

import appsync_events.dispatch as dispatch
from appsync_events.dispatch import Dispatcher, Router, asimulate_event, simulate_event
from appsync_events.events import ReceivedEvent
from appsync_events.exceptions import InvalidChannelError
from appsync_events.signals import event_received

# Sync handlers run like Channels' database_sync_to_async: old connections are closed
# around them, which pytest-django allows only in tests that may use the database (the
# README's handler test carries the same mark).
SYNC_HANDLERS = pytest.mark.django_db


@pytest.fixture
def router() -> Router:
    """A fresh router, independent of the default one."""
    return Router()


@pytest.fixture
def default_router() -> Iterator[Router]:
    """The default router, emptied after the test."""
    before = list(dispatch.default_router._entries)
    yield dispatch.default_router
    dispatch.default_router._entries = before
    dispatch.default_router._invalidate()


def event(subscription: str, payload: Any = None, api: str = "default") -> ReceivedEvent:
    """Build a received event."""
    return ReceivedEvent(api, subscription, payload, "null", "sub-1")


@SYNC_HANDLERS
def test_every_covering_handler_runs_most_specific_first(router: Router) -> None:
    """Exact beats deeper wildcard beats shallower wildcard; others are not run."""
    calls: list[str] = []

    @router.on("/chat/*")
    async def broad(e: ReceivedEvent) -> None:
        calls.append("broad")

    @router.on("/chat/rooms/7")
    def exact(e: ReceivedEvent) -> None:
        calls.append("exact")

    @router.on("/chat/rooms/*")
    async def rooms(e: ReceivedEvent) -> None:
        calls.append("rooms")

    @router.on("/news/*")
    async def other(e: ReceivedEvent) -> None:
        calls.append("other")

    simulate_event("/chat/rooms/7", {"x": 1}, router=router)
    assert calls == ["exact", "rooms", "broad"]
    calls.clear()
    # Held through /chat/*, the same event reaches only the handler covering /chat/*: a
    # wildcard subscription may carry other channels.
    simulate_event("/chat/rooms/7", {"x": 1}, router=router, subscriptions=["/chat/*"])
    assert calls == ["broad"]


@SYNC_HANDLERS
def test_handler_failure_is_isolated_and_logged(
    router: Router, caplog: pytest.LogCaptureFixture
) -> None:
    """One failing handler is logged with the channel; the others still run."""
    calls: list[str] = []

    @router.on("/chat/a")
    def boom(e: ReceivedEvent) -> None:
        raise RuntimeError("kaput")

    @router.on("/chat/*")
    async def after(e: ReceivedEvent) -> None:
        calls.append("after")

    with caplog.at_level(logging.ERROR, logger="appsync_events.dispatch"):
        report = simulate_event("/chat/a", 1, router=router, raise_errors=False)
    assert calls == ["after"]
    assert report.handlers == 2
    assert [type(e.error) for e in report.errors] == [RuntimeError]
    assert "failed for an event on /chat/a" in caplog.text
    assert "kaput" in caplog.text


@SYNC_HANDLERS
def test_simulate_event_reraises_by_default(router: Router) -> None:
    """simulate_event re-raises a handler's exception after all handlers ran."""
    router.add("/chat/a", lambda e: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        simulate_event("/chat/a", {}, router=router)


def test_two_failures_become_an_exception_group(router: Router) -> None:
    """Several failing handlers surface as one ExceptionGroup."""
    router.add("/chat/a", lambda e: 1 / 0)
    router.add("/chat/*", lambda e: [][1])
    with pytest.raises(ExceptionGroup) as info:
        simulate_event("/chat/a", {}, router=router)
    assert len(info.value.exceptions) == 2


async def test_sync_handlers_run_in_a_thread(router: Router) -> None:
    """From async dispatch, a sync handler runs off the event loop's thread."""
    threads: list[int] = []
    router.add("/chat/a", lambda e: threads.append(threading.get_ident()))
    await asimulate_event("/chat/a", 1, router=router)
    assert threads
    assert threads[0] != threading.get_ident()


@pytest.mark.django_db(transaction=True)
async def test_a_closed_handler_thread_ends_after_its_jobs_and_closes_its_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """close() lets the thread finish what was queued, then end with its database
    connection closed (a persistent one too); the next call starts a new thread."""
    from django.db import connection, connections

    # Persistent connections: the handler wrapper alone would leave this one open.
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", None)

    runner = dispatch.HandlerThread("test-handlers")
    seen: list[tuple[threading.Thread, Any]] = []

    def handler(event: ReceivedEvent) -> str:
        with connection.cursor() as cursor:  # opens this thread's connection
            cursor.execute("SELECT 1")
        seen.append((threading.current_thread(), connections["default"]))  # this thread's
        return event.payload

    event = ReceivedEvent("default", "/chat/a", "hi", '"hi"')
    assert await runner(handler, event) == "hi"
    first, first_connection = seen[0]
    runner.close()
    first.join(10)
    assert not first.is_alive()
    if first_connection.vendor != "sqlite":  # SQLite's in-memory test database never closes
        assert first_connection.connection is None  # closed on the thread's way out
    assert await runner(handler, event) == "hi"
    second, _ = seen[1]
    assert second is not first
    assert second.is_alive()
    runner.close()
    second.join(10)
    assert not second.is_alive()


async def test_payload_round_trips_like_the_wire(router: Router) -> None:
    """simulate_event encodes then decodes the payload, as AppSync would deliver it."""
    import datetime

    seen: list[ReceivedEvent] = []

    async def keep(e: ReceivedEvent) -> None:
        seen.append(e)

    router.add("/chat/*", keep)
    await asimulate_event("chat/x/", {"at": datetime.date(2025, 1, 2)}, router=router)
    assert seen[0].payload == {"at": "2025-01-02"}
    assert seen[0].subscription == "/chat/x"
    assert seen[0].raw == '{"at":"2025-01-02"}'


@SYNC_HANDLERS
def test_api_restriction(router: Router) -> None:
    """A handler restricted to an alias ignores other aliases' events."""
    calls: list[str] = []
    router.add("/chat/*", lambda e: calls.append(e.api), api="other")
    simulate_event("/chat/a", 1, router=router)
    simulate_event("/chat/a", 1, router=router, api="other")
    assert calls == ["other"]


@SYNC_HANDLERS
def test_included_routers_and_removal(router: Router) -> None:
    """Handlers of an included router run; removed handlers do not."""
    calls: list[str] = []
    child = Router()

    def first(e: ReceivedEvent) -> None:
        calls.append("child")

    child.add("/chat/*", first)
    router.include(child)
    simulate_event("/chat/a", 1, router=router)
    child.remove(first)
    simulate_event("/chat/a", 1, router=router)
    assert calls == ["child"]


def test_invalid_pattern_is_refused(router: Router) -> None:
    """A pattern breaking the channel grammar fails at registration."""
    with pytest.raises(InvalidChannelError):
        router.on("/chat/a_b")


@SYNC_HANDLERS
def test_module_level_on_uses_the_default_router(default_router: Router) -> None:
    """@appsync_events.dispatch.on registers on the default router."""
    calls: list[Any] = []

    @dispatch.on("/chat/*")
    def handler(e: ReceivedEvent) -> None:
        calls.append(e.payload)

    simulate_event("/chat/z", {"a": 1})
    assert calls == [{"a": 1}]


async def test_event_received_signal_arguments(router: Router) -> None:
    """event_received is sent with sender=alias, event and api; a failing receiver is isolated."""
    received: list[dict[str, Any]] = []

    def receiver(sender: str, **kwargs: Any) -> None:
        received.append({"sender": sender, **kwargs})

    def broken(sender: str, **kwargs: Any) -> None:
        raise ValueError("receiver bug")

    event_received.connect(receiver)
    event_received.connect(broken)
    try:
        report = await Dispatcher(router).dispatch(event("/chat/a", {"k": 1}))
    finally:
        event_received.disconnect(receiver)
        event_received.disconnect(broken)
    assert len(received) == 1
    assert received[0]["sender"] == "default"
    assert received[0]["api"] == "default"
    assert received[0]["event"].payload == {"k": 1}
    assert [type(e.error) for e in report.errors] == [ValueError]


@SYNC_HANDLERS
def test_autodiscover_includes_app_routers(default_router: Router, monkeypatch: Any) -> None:
    """autodiscover imports appsync_handlers modules and includes their router."""
    import sys
    import types

    module = types.ModuleType("demo_project.chat.appsync_handlers")
    router = Router()
    calls: list[int] = []
    router.add("/chat/*", lambda e: calls.append(1))
    module.router = router  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "demo_project.chat.appsync_handlers", module)
    dispatch.autodiscover()
    simulate_event("/chat/a", 1)
    assert calls == [1]
    default_router._children.remove(router)
    router._parents.remove(default_router)


async def test_receivers_of_both_kinds_run_and_failures_are_counted(
    router: Router, caplog: pytest.LogCaptureFixture
) -> None:
    """Sync and async receivers all run (Signal.asend_robust); one failing is logged and
    counted, and the handlers still run."""
    got: list[str] = []

    def sync_receiver(sender: str, **kwargs: Any) -> None:
        got.append("sync")

    async def async_receiver(sender: str, **kwargs: Any) -> None:
        got.append("async")

    async def broken(sender: str, **kwargs: Any) -> None:
        raise ValueError("receiver bug")

    async def handler(e: ReceivedEvent) -> None:
        got.append("handler")

    router.add("/chat/*", handler)
    for receiver in (broken, async_receiver, sync_receiver):
        event_received.connect(receiver)
    try:
        dispatcher = Dispatcher(router)
        with caplog.at_level(logging.ERROR, logger="appsync_events.dispatch"):
            failures = await dispatcher.run(
                event("/chat/a"), dispatcher.handlers("default", "/chat/a")
            )
    finally:
        for receiver in (broken, async_receiver, sync_receiver):
            event_received.disconnect(receiver)
    assert failures == 1
    assert sorted(got) == ["async", "handler", "sync"]
    assert got[-1] == "handler"  # receivers first, then handlers
    assert "broken failed for an event on /chat/a" in caplog.text


async def test_receivers_are_skipped_when_the_signal_is_off(router: Router) -> None:
    """With send_signal=False, event_received receivers never run; handlers do."""
    got: list[str] = []

    async def receiver(sender: str, **kwargs: Any) -> None:
        got.append("receiver")

    async def handler(e: ReceivedEvent) -> None:
        got.append("handler")

    router.add("/chat/*", handler)
    event_received.connect(receiver)
    try:
        report = await Dispatcher(router, send_signal=False).dispatch(event("/chat/a"))
    finally:
        event_received.disconnect(receiver)
    assert got == ["handler"]
    assert report.handlers == 1


async def test_no_receivers_means_no_signal_sent(router: Router, monkeypatch: Any) -> None:
    """Without receivers for the alias, asend_robust is never called."""
    sent: list[Any] = []

    async def spy(**kwargs: Any) -> list[Any]:
        sent.append(kwargs)
        return []

    monkeypatch.setattr(event_received, "asend_robust", spy)
    monkeypatch.setattr(event_received, "receivers", [])  # the project's own receivers
    assert await Dispatcher(router).run(event("/chat/a"), ()) == 0
    assert sent == []


@SYNC_HANDLERS
def test_simulate_takes_the_listeners_routing_so_an_unreachable_handler_is_not_run(
    router: Router, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """With SUBSCRIPTIONS = ['/chat/*'], an event published to /chat/rooms/7 arrives on
    /chat/*: a handler on /chat/rooms/* never runs, and a WARNING says why, once."""
    settings.APPSYNC_EVENTS = {
        "default": {**settings.APPSYNC_EVENTS["default"], "SUBSCRIPTIONS": ["/chat/*"]}
    }
    calls: list[str] = []
    router.add("/chat/rooms/*", lambda e: calls.append(e.subscription))
    with caplog.at_level(logging.WARNING, logger="appsync_events.dispatch"):
        report = simulate_event("/chat/rooms/7", {"x": 1}, router=router)
        dispatcher = Dispatcher(router)  # the listener's: one dispatcher for its whole run
        for n in range(3):
            async_to_sync(dispatcher.dispatch)(event("/chat/*", {"n": n}))
    assert calls == []
    assert report.handlers == 0
    warnings = [r.getMessage() for r in caplog.records if "run no handler" in r.getMessage()]
    assert len(warnings) == 2  # the simulation's, then once for the dispatcher's 3 events
    assert "/chat/rooms/*" in warnings[0]
    assert "Subscribe to /chat/rooms/* too" in warnings[0]


@SYNC_HANDLERS
def test_simulate_refuses_channels_nothing_receives_and_wildcards(
    router: Router, settings: Any
) -> None:
    """A channel no configured subscription matches, or a wildcard, is an error."""
    from appsync_events.exceptions import InvalidChannelError

    settings.APPSYNC_EVENTS = {
        "default": {**settings.APPSYNC_EVENTS["default"], "SUBSCRIPTIONS": ["/chat/*"]}
    }
    with pytest.raises(LookupError, match=r"No subscription .*SUBSCRIPTIONS'\] \(/chat/\*\)"):
        simulate_event("/news/a", 1, router=router)
    with pytest.raises(InvalidChannelError, match="only be used to subscribe"):
        simulate_event("/chat/*", 1, router=router)


@SYNC_HANDLERS
def test_an_event_matching_two_subscriptions_is_delivered_on_each(router: Router) -> None:
    """As from AppSync: one delivery per matching subscription, each with its handlers."""
    seen: list[str] = []
    router.add("/chat/*", lambda e: seen.append(e.subscription))
    simulate_event(
        "/chat/rooms/7", 1, router=router, subscriptions=["/chat/*", "/chat/rooms/*", "/news/*"]
    )
    assert sorted(seen) == ["/chat/*", "/chat/rooms/*"]
