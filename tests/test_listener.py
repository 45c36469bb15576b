"""Tests for the Listener against the emulator: signals, handlers, queue policies, follows."""

from __future__ import annotations

import asyncio
import copy
import io
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from appsync_events import signals
from appsync_events.dispatch import Router
from appsync_events.emulator import AppSyncEventsEmulator
from appsync_events.events import ReceivedEvent
from appsync_events.exceptions import SubscriptionError
from appsync_events.listener import JSONLinesSink, Listener
from appsync_events.testing.pytest_plugin import (  # noqa: F401 - fixtures
    appsync_emulator,
    appsync_events_emulator,
)
from tests.test_client import until
from tests.test_outbox import forget_thread_connections


@pytest.fixture
def emulator(appsync_events_emulator: AppSyncEventsEmulator) -> AppSyncEventsEmulator:  # noqa: F811
    """The reset emulator with the ``default`` alias pointing at it."""
    return appsync_events_emulator


def configure(settings: Any, **listener: Any) -> None:
    """Set LISTENER options (and fast backoff) on the emulated ``default`` alias."""
    value = copy.deepcopy(settings.APPSYNC_EVENTS)
    section = {"BACKOFF_INITIAL": 0.05, "BACKOFF_MAX": 0.3, **listener}
    value["default"]["LISTENER"] = section
    value["default"]["SUBSCRIPTIONS"] = ["/chat/*"]
    settings.APPSYNC_EVENTS = value


class Running:
    """A listener running as a task, with helpers to stop it."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.task = asyncio.create_task(listener.run(install_signal_handlers=False))

    async def stop(self) -> int:
        self.listener.request_stop("test over")
        return await asyncio.wait_for(self.task, 20)


@pytest.fixture
async def run() -> AsyncIterator[Callable[..., Running]]:
    """Start listeners; any still running at the end are stopped."""
    started: list[Running] = []

    def start(**kwargs: Any) -> Running:
        kwargs.setdefault("sinks", [])
        running = Running(Listener(**kwargs))
        started.append(running)
        return running

    yield start
    for running in started:
        if not running.task.done():
            await running.stop()


async def publish(emulator: AppSyncEventsEmulator, channel: str, *events: Any) -> None:
    """Feed subscribers from the emulator's thread."""
    await asyncio.to_thread(emulator.publish, channel, *events)


class Receiver:
    """Records every call of a signal, with its arguments."""

    def __init__(self, signal: Any) -> None:
        self.signal = signal
        self.calls: list[dict[str, Any]] = []
        signal.connect(self.receive, weak=False)

    def receive(self, sender: Any, **kwargs: Any) -> None:
        kwargs.pop("signal", None)
        self.calls.append({"sender": sender, **kwargs})

    def close(self) -> None:
        self.signal.disconnect(self.receive)


@pytest.fixture
def receivers() -> Iterator[Callable[[Any], Receiver]]:
    """Connect recording receivers; disconnected after the test."""
    made: list[Receiver] = []

    def make(signal: Any) -> Receiver:
        receiver = Receiver(signal)
        made.append(receiver)
        return receiver

    yield make
    for receiver in made:
        receiver.close()


async def test_dispatch_signals_handlers_and_sinks(
    settings: Any, emulator: AppSyncEventsEmulator, run: Any, receivers: Any
) -> None:
    """An event goes to event_received, every matching handler, then every sink."""
    configure(settings)
    router = Router()
    order: list[str] = []

    @router.on("/chat/*")
    async def handler(event: ReceivedEvent) -> None:
        order.append("handler")

    got = receivers(signals.event_received)
    established = receivers(signals.subscription_established)
    states = receivers(signals.connection_state_changed)
    out = io.StringIO()
    running = run(router=router, sinks=[JSONLinesSink(out)], max_events=2)
    await until(lambda: established.calls)
    await publish(emulator, "/chat/rooms/7", {"n": 1}, {"n": 2})
    assert await asyncio.wait_for(running.task, 20) == 0
    assert order == ["handler", "handler"]
    assert [c["event"].payload for c in got.calls] == [{"n": 1}, {"n": 2}]
    assert got.calls[0]["sender"] == "default"
    assert got.calls[0]["api"] == "default"
    assert established.calls[0] == {
        "sender": "default",
        "api": "default",
        "channel": "/chat/*",
        "subscription_id": established.calls[0]["subscription_id"],
    }
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines == [
        {"channel": "/chat/*", "event": {"n": 1}},
        {"channel": "/chat/*", "event": {"n": 2}},
    ]
    assert [c["state"] for c in states.calls][:2] == ["connecting", "connected"]
    assert states.calls[-1]["state"] == "closed"
    assert set(states.calls[0]) == {"sender", "api", "state", "reason", "retry_in"}
    stats = running.listener.stats
    assert (stats.received, stats.dispatched, stats.handler_errors) == (2, 2, 0)
    await until(lambda: not emulator.subscriptions)  # unsubscribed at shutdown


async def test_the_handler_and_print_threads_end_with_the_listener(
    settings: Any, emulator: AppSyncEventsEmulator, run: Any, receivers: Any
) -> None:
    """The threads running sync handlers and writing --print lines end when the listener
    stops (a process that runs listeners one after another does not collect threads)."""
    import threading

    configure(settings)
    router = Router()
    threads: list[threading.Thread] = []

    @router.on("/chat/*")
    def handler(event: ReceivedEvent) -> None:
        threads.append(threading.current_thread())

    class Stream(io.StringIO):
        def write(self, text: str) -> int:
            threads.append(threading.current_thread())
            return super().write(text)

    established = receivers(signals.subscription_established)
    running = run(router=router, sinks=[JSONLinesSink(Stream())], max_events=1)
    await until(lambda: established.calls)
    await publish(emulator, "/chat/rooms/7", {"n": 1})
    assert await asyncio.wait_for(running.task, 20) == 0
    names = sorted(t.name for t in threads)
    assert names == ["appsync-handlers", "appsync-print"]
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive(), thread.name


async def test_subscription_established_again_after_reconnect(
    settings: Any, emulator: AppSyncEventsEmulator, run: Any, receivers: Any
) -> None:
    """After the service drops the connection, subscription_established is sent again."""
    configure(settings)
    established = receivers(signals.subscription_established)
    states = receivers(signals.connection_state_changed)
    running = run()
    await until(lambda: len(established.calls) == 1)
    emulator.close_connections(1001)
    await until(lambda: len(established.calls) == 2)
    reconnecting = [c for c in states.calls if c["state"] == "reconnecting"]
    assert reconnecting
    assert reconnecting[0]["retry_in"] is not None
    assert running.listener.stats.reconnects == 1
    assert await running.stop() == 0


async def test_subscription_failed_signal(
    settings: Any, emulator: AppSyncEventsEmulator, run: Any, receivers: Any
) -> None:
    """A refused subscription sends subscription_failed; the others keep flowing."""
    configure(settings, SUBSCRIBE_RETRIES=0)
    failed = receivers(signals.subscription_failed)
    got = receivers(signals.event_received)
    running = run(channels=["/chat/*", "/missing/a"])
    await until(lambda: bool(failed.calls and emulator.subscriptions))
    assert failed.calls[0]["channel"] == "/missing/a"
    assert failed.calls[0]["will_retry"] is False
    assert isinstance(failed.calls[0]["error"], SubscriptionError)
    await publish(emulator, "/chat/a", "ok")
    await until(lambda: got.calls)
    assert await running.stop() == 0


async def test_handler_errors_are_counted_and_do_not_stop(
    settings: Any, emulator: AppSyncEventsEmulator, run: Any
) -> None:
    """A raising handler is counted; the next handlers and events still run."""
    configure(settings)
    router = Router()
    ok: list[Any] = []
    router.add("/chat/*", lambda e: 1 / 0)
    router.add("/chat/*", lambda e: ok.append(e.payload))
    running = run(router=router)
    await asyncio.to_thread(emulator.wait_for_subscriptions, 1)
    await publish(emulator, "/chat/a", 1, 2)
    await until(lambda: running.listener.stats.dispatched == 2)
    assert ok == [1, 2]
    assert running.listener.stats.handler_errors == 2
    assert await running.stop() == 0


@pytest.mark.parametrize("policy", ["drop_newest", "drop_oldest"])
async def test_drop_policies_count_and_signal(
    settings: Any, emulator: AppSyncEventsEmulator, run: Any, receivers: Any, policy: str
) -> None:
    """With a full queue, a drop policy drops, counts and signals every dropped event."""
    configure(settings, QUEUE_SIZE=1, OVERFLOW=policy)
    release = asyncio.Event()
    handled: list[Any] = []
    router = Router()

    in_flight = asyncio.Event()

    @router.on("/chat/*")
    async def slow(event: ReceivedEvent) -> None:
        in_flight.set()
        await release.wait()
        handled.append(event.payload)

    dropped = receivers(signals.event_dropped)
    running = run(router=router)
    await asyncio.to_thread(emulator.wait_for_subscriptions, 1)
    await publish(emulator, "/chat/a", 1)
    await asyncio.wait_for(in_flight.wait(), 10)
    await publish(emulator, "/chat/a", 2, 3, 4, 5)
    await until(lambda: running.listener.stats.received == 5)
    release.set()
    await until(lambda: running.listener.stats.dispatched == 2)
    stats = running.listener.stats
    assert stats.dropped == 3
    assert len(dropped.calls) == 3
    assert dropped.calls[0]["policy"] == policy
    assert handled[0] == 1  # in flight when the queue filled
    assert handled[1] == (2 if policy == "drop_newest" else 5)
    assert await running.stop() == 0


async def test_block_policy_loses_nothing(
    settings: Any, emulator: AppSyncEventsEmulator, run: Any
) -> None:
    """With the default backpressure every event is dispatched, in order."""
    configure(settings, QUEUE_SIZE=1)
    release = asyncio.Event()
    handled: list[Any] = []
    router = Router()

    @router.on("/chat/*")
    async def slow(event: ReceivedEvent) -> None:
        await release.wait()
        handled.append(event.payload)

    running = run(router=router)
    await asyncio.to_thread(emulator.wait_for_subscriptions, 1)
    await publish(emulator, "/chat/a", *range(20))
    await until(lambda: running.listener.stats.received >= 3)
    release.set()
    await until(lambda: len(handled) == 20)
    assert handled == list(range(20))
    assert running.listener.stats.dropped == 0
    assert await running.stop() == 0


async def test_follow_and_unfollow_at_runtime(
    settings: Any, emulator: AppSyncEventsEmulator, run: Any, receivers: Any
) -> None:
    """follow() adds a subscription (reference-counted); the last unfollow removes it and
    sends subscription_removed."""
    configure(settings)
    removed = receivers(signals.subscription_removed)
    running = run()
    listener = running.listener
    await asyncio.to_thread(emulator.wait_for_subscriptions, 1)
    await listener.follow("/default/today")
    await listener.follow("default/today")
    assert sorted(s.channel for s in emulator.subscriptions) == ["/chat/*", "/default/today"]
    await listener.unfollow("/default/today")
    assert listener.followed == {"/default/today": 1}
    assert removed.calls == []
    await listener.unfollow("/default/today")
    await until(lambda: [s.channel for s in emulator.subscriptions] == ["/chat/*"])
    assert [(c["channel"], c["api"]) for c in removed.calls] == [("/default/today", "default")]
    await listener.follow("/chat/*")  # configured: held anyway, nothing sent
    assert len(emulator.subscriptions) == 1
    assert await running.stop() == 0


async def test_follow_unfollow_follow_while_subscribing_holds_one_subscription(
    settings: Any, emulator: AppSyncEventsEmulator, run: Any
) -> None:
    """A follow, unfollow and follow again before the first subscribe answers leak nothing."""
    configure(settings)
    running = run()
    listener = running.listener
    await asyncio.to_thread(emulator.wait_for_subscriptions, 1)
    first = asyncio.create_task(listener.follow("/default/today"))
    await asyncio.sleep(0)  # one loop turn: the follow runs up to its subscribe's answer
    assert listener.followed == {"/default/today": 1}
    assert not first.done()
    await listener.unfollow("/default/today")  # before the service answered the first
    second = asyncio.create_task(listener.follow("/default/today"))
    await asyncio.gather(first, second)
    assert listener.followed == {"/default/today": 1}
    await until(lambda: len(emulator.subscriptions) == 2)
    assert sorted(s.channel for s in emulator.subscriptions) == ["/chat/*", "/default/today"]
    await listener.unfollow("/default/today")
    await until(lambda: [s.channel for s in emulator.subscriptions] == ["/chat/*"])
    assert await running.stop() == 0


async def test_max_idle_stops(settings: Any, emulator: AppSyncEventsEmulator, run: Any) -> None:
    """--max-idle stops a listener that received nothing, with status 0."""
    configure(settings)
    running = run(max_idle=0.3)
    assert await asyncio.wait_for(running.task, 20) == 0


async def test_health_file_is_touched(
    settings: Any, emulator: AppSyncEventsEmulator, run: Any, tmp_path: Any
) -> None:
    """The health file exists once the listener runs and is touched by inbound frames."""
    configure(settings)
    path = tmp_path / "health"
    running = run(health_file=path)
    await until(path.exists)
    first = path.stat().st_mtime_ns
    await asyncio.to_thread(emulator.wait_for_subscriptions, 1)
    await publish(emulator, "/chat/a", 1)
    await asyncio.sleep(1.1)  # the touch is throttled to once a second: let one pass
    await publish(emulator, "/chat/a", 2)
    await until(lambda: path.stat().st_mtime_ns > first)
    assert await running.stop() == 0


def test_default_sinks_include_the_forwarder(settings: Any) -> None:
    """With forwarding on and a channel layer configured, the forwarder is a sink."""
    from appsync_events.forwarding import ChannelLayerForwarder

    listener = Listener(in_process=True)
    assert any(isinstance(s, ChannelLayerForwarder) for s in listener.sinks)
    settings.CHANNEL_LAYERS = {}
    assert Listener().sinks == []


def test_static_channels_are_the_channels_it_runs_with(settings: Any) -> None:
    """--channel replaces SUBSCRIPTIONS, and the forwarder learns the real set from here."""
    from appsync_events.conf import get_api_config

    configured = {c.path for c in get_api_config().listener.subscriptions}
    assert Listener().static_channels == configured
    assert Listener(channels=["/chat/x/*"]).static_channels == {"/chat/x/*"}


async def test_followed_subscriptions_are_forward_only(
    settings: Any, emulator: AppSyncEventsEmulator, run: Any, receivers: Any
) -> None:
    """Static /chat/* plus followed /chat/rooms/7: handlers run once, the forwarder gets both."""
    from channels.layers import InMemoryChannelLayer

    from appsync_events.forwarding import ChannelLayerForwarder

    configure(settings)
    layer = InMemoryChannelLayer()
    forwarder = ChannelLayerForwarder(layer, control_channel=None, in_process=True)
    browser = await layer.new_channel()
    await layer.group_add(forwarder.group_for("/chat/rooms/7"), browser)
    router = Router()
    handled: list[tuple[str, Any]] = []

    @router.on("/chat/*")
    async def handler(event: ReceivedEvent) -> None:
        handled.append((event.subscription, event.payload))

    got = receivers(signals.event_received)
    seen: list[tuple[str, Any]] = []

    class Recorder:
        async def start(self, listener: Any) -> None:
            pass

        async def dispatch(self, event: ReceivedEvent) -> None:
            seen.append((event.subscription, event.payload))

        async def stop(self) -> None:
            pass

    running = run(router=router, sinks=[Recorder(), forwarder])
    await asyncio.to_thread(emulator.wait_for_subscriptions, 1)
    await running.listener.follow("/chat/rooms/7")
    await running.listener.follow("/chat/*")  # static and followed: still static
    await publish(emulator, "/chat/rooms/7", {"n": 1})
    await until(lambda: len(seen) == 2)
    assert sorted(seen) == [("/chat/*", {"n": 1}), ("/chat/rooms/7", {"n": 1})]
    message = await asyncio.wait_for(layer.receive(browser), 10)
    assert (message["subscription"], message["payload"]) == ("/chat/rooms/7", {"n": 1})
    assert handled == [("/chat/*", {"n": 1})]  # once, from the static subscription
    assert [c["event"].subscription for c in got.calls] == ["/chat/*"]
    assert running.listener.stats.dispatched == 2
    assert await running.stop() == 0


async def test_a_path_both_followed_and_static_dispatches_everything(
    settings: Any, emulator: AppSyncEventsEmulator, run: Any
) -> None:
    """Following a configured path keeps it static: its events still reach handlers."""
    configure(settings)
    router = Router()
    handled: list[Any] = []
    router.add("/chat/*", lambda e: handled.append(e.payload))
    running = run(router=router)
    await asyncio.to_thread(emulator.wait_for_subscriptions, 1)
    await running.listener.follow("/chat/*")
    await publish(emulator, "/chat/a", 1)
    await until(lambda: handled == [1])
    await running.listener.unfollow("/chat/*")
    await publish(emulator, "/chat/a", 2)
    await until(lambda: handled == [1, 2])
    assert await running.stop() == 0


async def test_sync_async_and_failing_receivers_through_the_listener(
    settings: Any, emulator: AppSyncEventsEmulator, run: Any
) -> None:
    """Sync and async event_received receivers both run; a failing one is counted, not fatal."""
    configure(settings)
    got: list[tuple[str, Any]] = []

    def sync_receiver(sender: str, *, event: ReceivedEvent, **kwargs: Any) -> None:
        got.append(("sync", event.payload))

    async def async_receiver(sender: str, *, event: ReceivedEvent, **kwargs: Any) -> None:
        got.append(("async", event.payload))

    async def broken(sender: str, **kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    signals.event_received.connect(async_receiver)
    signals.event_received.connect(broken)
    try:
        running = run()
        await asyncio.to_thread(emulator.wait_for_subscriptions, 1)
        await publish(emulator, "/chat/a", 1)
        await until(lambda: running.listener.stats.dispatched == 1)
        signals.event_received.connect(sync_receiver)  # joins while running
        await publish(emulator, "/chat/a", 2)
        await until(lambda: running.listener.stats.dispatched == 2)
        assert await running.stop() == 0
    finally:
        for receiver in (async_receiver, broken, sync_receiver):
            signals.event_received.disconnect(receiver)
    assert sorted(got) == [("async", 1), ("async", 2), ("sync", 2)]
    assert running.listener.stats.handler_errors == 2


async def test_a_concurrent_follow_returns_once_the_service_accepted_the_path(
    settings: Any, emulator: AppSyncEventsEmulator, run: Any
) -> None:
    """A second follow of a path still subscribing returns only after the service accepted it."""
    configure(settings)
    running = run()
    listener = running.listener
    await asyncio.to_thread(emulator.wait_for_subscriptions, 1)
    first = asyncio.create_task(listener.follow("/default/busy"))
    await asyncio.sleep(0)  # one loop turn: the first follow waits for its subscribe's answer
    assert not first.done()
    await listener.follow("/default/busy")
    assert "/default/busy" in [s.channel for s in emulator.subscriptions]
    await first
    assert listener.followed == {"/default/busy": 2}
    assert await running.stop() == 0


async def test_a_concurrent_follow_fails_when_the_first_one_does(
    settings: Any, emulator: AppSyncEventsEmulator, run: Any
) -> None:
    """When the service refuses a path, a follow waiting on that subscribe fails too."""
    from appsync_events.exceptions import SubscriptionError

    configure(settings, SUBSCRIBE_RETRIES=0)
    running = run()
    listener = running.listener
    await asyncio.to_thread(emulator.wait_for_subscriptions, 1)
    first = asyncio.create_task(listener.follow("/nosuch/room"))
    await asyncio.sleep(0)
    with pytest.raises(SubscriptionError):
        await listener.follow("/nosuch/room")
    with pytest.raises(SubscriptionError):
        await first
    assert listener.followed == {}
    assert await running.stop() == 0


async def test_a_sink_failing_to_start_stops_the_sinks_already_started(
    settings: Any, emulator: AppSyncEventsEmulator
) -> None:
    """When one sink's start() raises, the run fails and the sinks started before it stop."""
    configure(settings)
    calls: list[str] = []

    class Sink:
        def __init__(self, name: str, fail: bool = False) -> None:
            self.name, self.fail = name, fail

        async def start(self, listener: Listener) -> None:
            if self.fail:
                raise RuntimeError("no layer")
            calls.append(f"start {self.name}")

        async def dispatch(self, event: Any) -> None:
            pass

        async def stop(self) -> None:
            calls.append(f"stop {self.name}")

    listener = Listener(sinks=[Sink("a"), Sink("b", fail=True)])
    with pytest.raises(RuntimeError, match="no layer"):
        await listener.run(install_signal_handlers=False)
    assert calls == ["start a", "stop a"]
    assert emulator.connections == []


@pytest.mark.django_db(transaction=True)
async def test_drain_outbox_sends_durable_rows_while_listening(
    settings: Any, emulator: AppSyncEventsEmulator, run: Any
) -> None:
    """--drain-outbox: rows written while nothing drained are sent by the listener's
    drainer (here back to its own subscription), marked sent, and the drainer stops
    with the listener."""
    from asgiref.sync import sync_to_async

    from appsync_events import publish as publish_events
    from appsync_events.models import OutboxEvent

    configure(settings)
    settings.APPSYNC_EVENTS = {
        **settings.APPSYNC_EVENTS,
        "default": {**settings.APPSYNC_EVENTS["default"], "OUTBOX": {"POLL_INTERVAL": 0.05}},
    }
    router = Router()
    got: list[Any] = []
    router.add("/chat/*", lambda event: got.append(event.payload))
    running = run(router=router, drain_outbox=True)
    await emulator.await_for_subscriptions(channel="/chat/*", timeout=10)
    await sync_to_async(publish_events)("/chat/durable", {"n": 1}, {"n": 2}, durable=True)
    await until(lambda: len(got) == 2)
    assert sorted(p["n"] for p in got) == [1, 2]
    assert await running.stop() == 0
    assert running.listener._outbox is None  # stopped with the listener

    def states() -> list[str]:
        return sorted(OutboxEvent.objects.values_list("state", flat=True))

    assert await sync_to_async(states)() == ["sent", "sent"]
    await sync_to_async(forget_thread_connections)()


async def test_shutdown_abandons_a_stuck_sync_handler_at_the_deadline(
    settings: Any,
    emulator: AppSyncEventsEmulator,
    run: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SHUTDOWN_TIMEOUT bounds the whole shutdown: a sync handler that does not return is
    abandoned (ERROR naming it), the socket is still unsubscribed and closed, and run()
    returns EXIT_SHUTDOWN_TIMEOUT."""
    import logging
    import threading

    from appsync_events.listener import EXIT_SHUTDOWN_TIMEOUT

    configure(settings, SHUTDOWN_TIMEOUT=1.0)
    router = Router()
    release = threading.Event()
    entered = threading.Event()

    def stuck_handler(event: ReceivedEvent) -> None:
        entered.set()
        release.wait(60)

    router.add("/chat/*", stuck_handler)
    running = run(router=router)
    try:
        await asyncio.to_thread(emulator.wait_for_subscriptions, 1)
        await publish(emulator, "/chat/a", "one", "two")
        assert await asyncio.to_thread(entered.wait, 10)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with caplog.at_level(logging.ERROR, logger="appsync_events.listener"):
            status = await running.stop()
        took = loop.time() - started
        assert status == EXIT_SHUTDOWN_TIMEOUT
        assert took < 5.0  # the deadline (1 s) plus scheduling slack, never the 60 s
        assert "abandoned handler" in caplog.text
        assert "stuck_handler" in caplog.text
        assert "1 queued events were not dispatched" in caplog.text
        assert emulator.subscriptions == []  # unsubscribed before closing
        # The counts add up: the abandoned event and the queued one are both "queued".
        stats = running.listener.stats
        assert (stats.received, stats.dispatched, stats.queued) == (2, 0, 2)
        assert stats.received == stats.dispatched + stats.dropped + stats.discarded + stats.queued
    finally:
        release.set()


async def test_print_sink_writes_in_order_without_blocking_the_loop() -> None:
    """A stream that blocks (a pipe read slowly) holds back the next line, not the loop."""
    import threading

    release = threading.Event()
    writing = threading.Event()

    class SlowStream(io.StringIO):
        def write(self, text: str) -> int:
            writing.set()
            release.wait(10)
            return super().write(text)

    out = SlowStream()
    sink = JSONLinesSink(out)
    first = asyncio.create_task(
        sink.dispatch(ReceivedEvent("default", "/chat/*", {"n": 1}, '{"n":1}', "s"))
    )
    await asyncio.to_thread(writing.wait, 10)
    # The loop runs other work while the write is stuck.
    ticked = asyncio.Event()
    asyncio.get_running_loop().call_soon(ticked.set)
    await asyncio.wait_for(ticked.wait(), 5)
    assert not first.done()
    second = asyncio.create_task(
        sink.dispatch(ReceivedEvent("default", "/chat/*", {"n": 2}, '{"n":2}', "s"))
    )
    release.set()
    await asyncio.wait_for(asyncio.gather(first, second), 10)
    assert out.getvalue() == '{"channel": "/chat/*", "event": {"n": 1}}\n' + (
        '{"channel": "/chat/*", "event": {"n": 2}}\n'
    )
