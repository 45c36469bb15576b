"""The listener with handlers that are slow, that raise, and that never return.

* Slow: a sync handler far slower than the events arrive, with a small queue: the
  reader waits (backpressure), nothing is dropped or reordered, and the keep-alive
  watchdog does not mistake the pause for a dead service.
* Raising: every failure is counted and logged, every event still reaches the sinks,
  the listener keeps its subscriptions.
* Stuck: a handler that never returns cannot hold the shutdown past
  ``LISTENER['SHUTDOWN_TIMEOUT']``; the run ends with exit status 3 and the websocket
  is still closed (the service holds nothing afterwards).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from appsync_events.dispatch import Router
from appsync_events.emulator import AppSyncEventsEmulator
from appsync_events.events import ReceivedEvent
from appsync_events.listener import EXIT_SHUTDOWN_TIMEOUT
from appsync_events.testing.pytest_plugin import (  # noqa: F401 - fixtures
    appsync_emulator,
    appsync_events_emulator,
)

from .conftest import MemoryWatch, scale
from .harness import DEADLINE, RunningListener, emulator_holds, eventually, point_at, tally

MiB = 2**20


@pytest.fixture
def emulator(appsync_events_emulator: AppSyncEventsEmulator) -> AppSyncEventsEmulator:  # noqa: F811
    """The session emulator, reset."""
    return appsync_events_emulator


async def inject(emulator: AppSyncEventsEmulator, channel: str, tag: str, count: int) -> list[Any]:
    """Publish ``count`` numbered events server-side (five a record); return them."""
    events = [{"tag": tag, "n": n} for n in range(count)]
    for offset in range(0, count, 5):
        await asyncio.to_thread(emulator.publish, channel, *events[offset : offset + 5])
    return events


async def test_slow_handler_applies_backpressure(settings, figures, emulator):
    """A sync handler much slower than the event rate, behind a 20-event queue: every
    event is handled once and in order, and the watchdog (1 s) never fires although the
    reader is held back longer than that."""
    figures.title = "Slow handler (backpressure)"
    figures.family = "handlers"
    count = scale(300, 6000)
    emulator.configure(ka_interval=0.2, connection_timeout_ms=1000)
    point_at(settings, emulator, channels=["/chat/*"], listener={"QUEUE_SIZE": 20})
    router = Router()
    handled: list[int] = []

    @router.on("/chat/*")
    def slow(event: ReceivedEvent) -> None:
        time.sleep(0.005)
        handled.append(event.payload["n"])

    running = RunningListener(router=router)
    memory = MemoryWatch(figures, "test process (listener and emulator)", 24 * MiB)
    try:
        await eventually(lambda: emulator_holds(emulator, ["/chat/*"]), "the subscription")
        memory.sample()
        started = time.monotonic()
        events = await inject(emulator, "/chat/rooms/1", "slow", count)
        figures.events_published += count
        await eventually(
            lambda: len(handled) >= count,
            f"{count} slow handler runs",
            timeout=DEADLINE + count / 50,
        )
        took = time.monotonic() - started
        tally(events, running.sink.tagged("slow"), figures)
        assert handled == list(range(count))  # once each, in order
        assert running.count("reconnecting") == 0
        assert took > 1.0  # the reader really waited longer than the watchdog's window
        assert running.listener.stats.dropped == 0
        assert await running.stop() == 0
    finally:
        await running.close()
    memory.sample()
    memory.check()
    figures.details["seconds handling"] = round(took, 1)


async def test_raising_handlers_are_counted_and_change_nothing(settings, figures, emulator):
    """A sync handler failing on every third event and an async one on every fifth:
    each failure is counted, every event still reaches the sink, the subscription holds
    and later events arrive."""
    figures.title = "Raising handlers"
    figures.family = "handlers"
    count = scale(120, 3000)
    point_at(settings, emulator, channels=["/chat/*"])
    router = Router()

    @router.on("/chat/*")
    def every_third(event: ReceivedEvent) -> None:
        if event.payload["n"] % 3 == 0:
            raise ValueError("handler failure on purpose")

    @router.on("/chat/*")
    async def every_fifth(event: ReceivedEvent) -> None:
        if event.payload["n"] % 5 == 0:
            raise RuntimeError("async handler failure on purpose")

    running = RunningListener(router=router)
    memory = MemoryWatch(figures, "test process (listener and emulator)", 24 * MiB)
    try:
        await eventually(lambda: emulator_holds(emulator, ["/chat/*"]), "the subscription")
        memory.sample()
        events = await inject(emulator, "/chat/rooms/1", "raising", count)
        after = await inject(emulator, "/chat/rooms/2", "after", 5)
        figures.events_published += count + 5
        await eventually(
            lambda: len(running.sink.tagged("after")) >= 5, "the events after the failures"
        )
        tally(
            events + after, running.sink.tagged("raising") + running.sink.tagged("after"), figures
        )
        numbers = [e["n"] for e in events + after]
        failures = sum(n % 3 == 0 for n in numbers) + sum(n % 5 == 0 for n in numbers)
        assert running.listener.stats.handler_errors == failures
        assert [e["n"] for e in running.sink.tagged("raising")] == list(range(count))
        assert running.holds(["/chat/*"])
        figures.faults_tried = figures.faults_survived = failures
        assert await running.stop() == 0
    finally:
        await running.close()
    memory.sample()
    memory.check()


async def test_stuck_handlers_cannot_hold_the_shutdown(settings, figures, emulator):
    """A sync handler blocked for ever, or an async one awaiting for ever: the shutdown
    still ends within SHUTDOWN_TIMEOUT (1 s) plus a margin, with exit status 3, and the
    websocket is unsubscribed and closed."""
    figures.title = "Stuck handlers (shutdown bound)"
    figures.family = "handlers"
    cycles = scale(2, 12)
    timeout = 1.0
    point_at(settings, emulator, channels=["/chat/*"], listener={"SHUTDOWN_TIMEOUT": timeout})
    release = threading.Event()  # set at the end: the abandoned threads then finish
    longest = 0.0
    try:
        for cycle in range(cycles):
            kind = "sync" if cycle % 2 == 0 else "async"
            figures.faults_tried += 1
            entered = threading.Event()
            router = Router()
            if kind == "sync":

                def stuck(event: ReceivedEvent, entered: threading.Event = entered) -> None:
                    entered.set()
                    release.wait()

                router.add("/chat/*", stuck)
            else:

                async def stuck_async(
                    event: ReceivedEvent, entered: threading.Event = entered
                ) -> None:
                    entered.set()
                    await asyncio.Event().wait()

                router.add("/chat/*", stuck_async)
            running = RunningListener(router=router)
            try:
                await eventually(lambda: emulator_holds(emulator, ["/chat/*"]), "the subscription")
                await inject(emulator, "/chat/rooms/1", f"stuck-{cycle}", 3)
                await eventually(entered.is_set, f"the {kind} handler starting")
                started = time.monotonic()
                status = await running.stop()
                took = time.monotonic() - started
            finally:
                await running.close()
            longest = max(longest, took)
            assert status == EXIT_SHUTDOWN_TIMEOUT
            assert took < timeout + 2.0, f"the shutdown took {took:.1f} s"
            await eventually(lambda: not emulator.connections, "the websocket closed")
            assert emulator.subscriptions == []
            figures.faults_survived += 1
    finally:
        release.set()
    figures.details["longest shutdown (s)"] = round(longest, 2)
    figures.details["SHUTDOWN_TIMEOUT (s)"] = timeout
