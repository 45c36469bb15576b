"""Pieces the reliability scenarios share: a running listener that records what it gets,
deadlines for awaited conditions, settings pointing at an emulator, numbered events.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import time
from collections.abc import Callable, Iterable
from typing import Any

from appsync_events import signals
from appsync_events.dispatch import Router
from appsync_events.emulator import AppSyncEventsEmulator
from appsync_events.events import ReceivedEvent
from appsync_events.listener import Listener
from appsync_events.publishing import apublish
from appsync_events.testing.helpers import emulator_settings

from .conftest import Scenario

#: Seconds any awaited condition may take on a loaded 2-core machine.
DEADLINE = 20.0


async def eventually(
    condition: Callable[[], bool],
    what: str,
    timeout: float = DEADLINE,  # noqa: ASYNC109 - one deadline per awaited condition
) -> None:
    """Wait until ``condition()`` holds, re-checked every few milliseconds, or fail saying
    ``what`` was awaited."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        await asyncio.sleep(0.01)


def point_at(
    settings: Any,
    emulator: AppSyncEventsEmulator | tuple[str, str],
    *,
    channels: Iterable[str] = (),
    listener: dict[str, Any] | None = None,
    timeouts: dict[str, Any] | None = None,
    **alias: Any,
) -> dict[str, Any]:
    """Point the ``default`` alias at ``emulator`` with fast reconnects; return the setting.

    Args:
        emulator: a started emulator, or ``(http_url, api_key)`` of one running elsewhere.
        channels: the alias's ``SUBSCRIPTIONS``.
        listener: ``LISTENER`` options on top of a fast backoff.
        timeouts: ``TIMEOUTS`` options.
        **alias: other keys of the alias (``FORWARDING``, ``GRANTS``...).
    """
    base = copy.deepcopy(settings.APPSYNC_EVENTS)
    section = base["default"]
    section["SUBSCRIPTIONS"] = list(channels)
    section["LISTENER"] = {"BACKOFF_INITIAL": 0.05, "BACKOFF_MAX": 0.5, **(listener or {})}
    section["TIMEOUTS"] = {"CONNECT": 2.0, "HANDSHAKE": 2.0, **(timeouts or {})}
    section.update(alias)
    if isinstance(emulator, AppSyncEventsEmulator):
        value = emulator_settings(emulator, "default", base=base)
    else:
        section.pop("REALTIME_URL", None)
        section["HTTP_URL"], section["AUTH"] = emulator[0], {"API_KEY": emulator[1]}
        value = base
    settings.APPSYNC_EVENTS = value
    return value


class RecordingSink:
    """A listener sink keeping every event it is handed: ``(subscription, payload)``."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    async def start(self, listener: Any) -> None:
        """Nothing to start."""

    async def dispatch(self, event: ReceivedEvent) -> None:
        """Keep the event."""
        self.events.append((event.subscription, event.payload))

    async def stop(self) -> None:
        """Nothing to stop."""

    def tagged(self, tag: str) -> list[Any]:
        """The payloads whose ``"tag"`` member is ``tag``, in arrival order."""
        return [p for _, p in self.events if isinstance(p, dict) and p.get("tag") == tag]


class RunningListener:
    """A :class:`Listener` run as a task, with a recording sink and its state changes.

    Args:
        router: the handler router (an empty one by default: no project handler runs).
        **options: more :class:`Listener` arguments.
    """

    def __init__(self, *, router: Router | None = None, **options: Any) -> None:
        self.sink = RecordingSink()
        options.setdefault("sinks", [self.sink])
        self.listener = Listener(router=router or Router(), **options)
        self.states: list[str] = []
        signals.connection_state_changed.connect(self._state, weak=False)
        self.task = asyncio.create_task(self.listener.run(install_signal_handlers=False))

    def _state(self, sender: Any, state: str, **kwargs: Any) -> None:
        self.states.append(state)

    def count(self, state: str) -> int:
        """How many times the client reported ``state`` (``"reconnecting"``...)."""
        return self.states.count(state)

    def holds(self, channels: Iterable[str]) -> bool:
        """Whether the client holds an active subscription to each of ``channels``."""
        client = self.listener.client
        if client is None:
            return False
        active = {s.channel for s in client.subscriptions if s.state == "active"}
        return set(channels) <= active

    async def stop(self) -> int:
        """Ask the listener to stop; return its exit status."""
        signals.connection_state_changed.disconnect(self._state)
        self.listener.request_stop("scenario over")
        return await asyncio.wait_for(self.task, DEADLINE)

    async def close(self) -> None:
        """Stop the listener if it still runs (after a failure, say); forget its states."""
        signals.connection_state_changed.disconnect(self._state)
        if not self.task.done():
            await self.stop()


def emulator_holds(emulator: AppSyncEventsEmulator, channels: Iterable[str]) -> bool:
    """Whether the emulator holds a subscription to each of ``channels`` on an open,
    acknowledged connection."""
    acked = {c.id for c in emulator.connections if c.acked}
    live = {s.channel for s in emulator.subscriptions if s.connection_id in acked}
    return set(channels) <= live


async def publish_numbered(
    channel: str, tag: str, count: int, figures: Scenario, start: int = 0
) -> list[dict[str, Any]]:
    """Publish ``count`` events ``{"tag": tag, "n": i}`` to ``channel`` over HTTP (five a
    request), count them in ``figures``, and return them."""
    events = [{"tag": tag, "n": n} for n in range(start, start + count)]
    for offset in range(0, len(events), 5):
        await apublish(channel, *events[offset : offset + 5])
    figures.events_published += len(events)
    return events


def tally(expected: list[Any], received: list[Any], figures: Scenario) -> None:
    """Count received, lost and duplicated events of ``expected`` in ``figures``."""
    counts = collections.Counter(repr(e) for e in received)
    figures.events_received += len(received)
    figures.events_lost += sum(1 for e in expected if counts[repr(e)] == 0)
    figures.duplicates += sum(c - 1 for c in counts.values() if c > 1)
