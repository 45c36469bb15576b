"""The listener against a failing service: restarts, freezes, dropped TCP, broken frames,
refused reconnects and keep-alive silence.

Every cycle injects one fault, awaits the listener holding all its subscriptions again
(seen from the client and, where the emulator runs in this process, from the service),
then publishes numbered events and awaits every one of them: events published after
recovery must all arrive, exactly once. Events published while the service is down are
not part of any promise (AppSync keeps no history) and are not published at all.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from appsync_events.emulator import AppSyncEventsEmulator
from appsync_events.testing.pytest_plugin import (  # noqa: F401 - fixtures
    appsync_emulator,
    appsync_events_emulator,
)

from .conftest import ROOT, MemoryWatch, Scenario, scale
from .harness import (
    DEADLINE,
    RunningListener,
    emulator_holds,
    eventually,
    point_at,
    publish_numbered,
    tally,
)

KEY = "da2-reliabilityfaults0000000000"
#: What the listener holds: a wildcard and an exact channel, in two namespaces.
CHANNELS = ("/chat/*", "/default/alerts")
MiB = 2**20


async def publish_and_await(
    running: RunningListener, tag: str, figures: Scenario, per_channel: int
) -> None:
    """Publish ``per_channel`` numbered events to a channel under each subscription and
    await them all; count them (lost and duplicated ones too) in ``figures``."""
    expected = [
        *await publish_numbered("/chat/rooms/7", tag, per_channel, figures),
        *await publish_numbered("/default/alerts", tag, per_channel, figures, start=per_channel),
    ]
    try:
        await eventually(
            lambda: len(running.sink.tagged(tag)) >= len(expected),
            f"the {len(expected)} events of {tag} reaching the listener",
        )
    finally:
        tally(expected, running.sink.tagged(tag), figures)
    assert sorted(e["n"] for e in running.sink.tagged(tag)) == [e["n"] for e in expected]


async def test_emulator_restarts_on_the_same_port(settings, figures):
    """The service stops and a new one starts on the same port, again and again: the
    listener resubscribes each time and every event published afterwards arrives."""
    figures.title = "Emulator restart (same port)"
    figures.family = "service faults"
    cycles, per_channel = scale(3, 40), scale(5, 25)
    options = {"api_keys": [KEY], "namespaces": ["default", "chat"], "ka_interval": 1.0}
    emulator = AppSyncEventsEmulator("127.0.0.1", 0, **options).start()
    port = emulator.port
    point_at(settings, emulator, channels=CHANNELS)
    running = RunningListener()
    memory = MemoryWatch(figures, "test process (listener and emulator)", 24 * MiB)
    try:
        await eventually(lambda: running.holds(CHANNELS), "the first subscriptions")
        for cycle in range(cycles):
            figures.faults_tried += 1
            before = running.count("reconnecting")
            await asyncio.to_thread(emulator.stop)
            # The service stays down until the listener has failed to reach it once.
            await eventually(
                lambda before=before: running.count("reconnecting") >= before + 2,
                "a reconnect attempt failing on the closed port",
            )
            emulator = AppSyncEventsEmulator("127.0.0.1", port, **options)
            await asyncio.to_thread(emulator.start)
            await eventually(
                lambda emulator=emulator: (
                    running.holds(CHANNELS) and emulator_holds(emulator, CHANNELS)
                ),
                f"the subscriptions after restart {cycle + 1}",
            )
            await publish_and_await(running, f"restart-{cycle}", figures, per_channel)
            figures.faults_survived += 1
            memory.sample()
        assert await running.stop() == 0
        assert emulator.subscriptions == []  # unsubscribed at shutdown
    finally:
        await running.close()
        await asyncio.to_thread(emulator.stop)
    memory.sample()
    memory.check()
    figures.details["restarts"] = cycles


@pytest.fixture
def frozen_emulator() -> Iterator[tuple[subprocess.Popen[str], str]]:
    """The emulator in its own process (``python -m appsync_events.emulator``), with a
    quick keep-alive; yields the process and its ``HTTP_URL``; stopped with SIGTERM."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "appsync_events.emulator",
            "--port",
            "0",
            "--api-key",
            KEY,
            "--namespace",
            "default",
            "--namespace",
            "chat",
            "--ka-interval",
            "0.25",
            "--connection-timeout-ms",
            "1000",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on http://" in line, line + (proc.stderr.read() if proc.stderr else "")
        yield proc, line.rsplit(" ", 1)[1].strip()
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(DEADLINE) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


async def test_emulator_freezes(settings, figures, frozen_emulator):
    """A service process frozen with SIGSTOP (its sockets open and silent) is noticed,
    retried while frozen and held again once it thaws (SIGCONT), and every event
    published afterwards arrives."""
    figures.title = "Emulator freeze (SIGSTOP)"
    figures.family = "service faults"
    proc, http_url = frozen_emulator
    cycles, per_channel = scale(2, 25), scale(5, 25)
    point_at(settings, (http_url, KEY), channels=CHANNELS, timeouts={"CONNECT": 1.0})
    running = RunningListener()
    listener_memory = MemoryWatch(figures, "test process (listener)", 24 * MiB)
    emulator_memory = MemoryWatch(figures, "emulator process", 16 * MiB, pid=proc.pid)
    try:
        await eventually(lambda: running.holds(CHANNELS), "the first subscriptions")
        for cycle in range(cycles):
            figures.faults_tried += 1
            before = running.count("reconnecting")
            proc.send_signal(signal.SIGSTOP)
            try:
                # The loss, then at least one attempt timing out against the frozen process.
                await eventually(
                    lambda before=before: running.count("reconnecting") >= before + 2,
                    "the listener giving up on the frozen service and retrying",
                )
            finally:
                proc.send_signal(signal.SIGCONT)
            await eventually(
                lambda: running.holds(CHANNELS), f"the subscriptions after thaw {cycle + 1}"
            )
            await publish_and_await(running, f"freeze-{cycle}", figures, per_channel)
            figures.faults_survived += 1
            listener_memory.sample()
            emulator_memory.sample()
        assert await running.stop() == 0
    finally:
        await running.close()
    listener_memory.sample()
    emulator_memory.sample()
    listener_memory.check()
    emulator_memory.check()


@pytest.fixture
def emulator(appsync_events_emulator: AppSyncEventsEmulator) -> AppSyncEventsEmulator:  # noqa: F811
    """The session emulator (fault proxy on), reset."""
    return appsync_events_emulator


#: The network faults, applied in turn.
NETWORK_FAULTS = ("drop", "truncated", "garbage", "refused reconnects")


async def test_dropped_connections_and_broken_frames(settings, figures, emulator):
    """TCP connections cut without a close frame, truncated frames, bytes that are no
    websocket at all, and reconnects refused twice: after each, the listener holds its
    subscriptions again and every event published afterwards arrives."""
    figures.title = "TCP drop, broken frames, refused reconnects"
    figures.family = "network faults"
    cycles, per_channel = scale(4, 120), scale(5, 10)
    point_at(settings, emulator, channels=CHANNELS)
    running = RunningListener()
    memory = MemoryWatch(figures, "test process (listener and emulator)", 24 * MiB)
    kinds: dict[str, int] = dict.fromkeys(NETWORK_FAULTS, 0)
    try:
        await eventually(lambda: running.holds(CHANNELS), "the first subscriptions")
        for cycle in range(cycles):
            kind = NETWORK_FAULTS[cycle % len(NETWORK_FAULTS)]
            figures.faults_tried += 1
            old = {c.id for c in emulator.connections}
            before = running.count("reconnecting")
            if kind == "refused reconnects":
                emulator.faults.reject_next_connects(2)
                hit = await asyncio.to_thread(emulator.drop_connections)
            elif kind == "drop":
                hit = await asyncio.to_thread(emulator.drop_connections)
            else:
                hit = await asyncio.to_thread(emulator.send_broken_frame, kind)
            assert hit == 1
            await eventually(
                lambda before=before: running.count("reconnecting") > before,
                f"the listener noticing the {kind}",
            )
            await eventually(
                lambda old=old: (
                    running.holds(CHANNELS)
                    and emulator_holds(emulator, CHANNELS)
                    and not old & {c.id for c in emulator.connections}
                ),
                f"the subscriptions after {kind} {cycle + 1}",
            )
            assert emulator.faults.pending_connect_rejections == 0
            await publish_and_await(running, f"{kind}-{cycle}", figures, per_channel)
            figures.faults_survived += 1
            kinds[kind] += 1
            memory.sample()
        assert await running.stop() == 0
    finally:
        await running.close()
    memory.sample()
    memory.check()
    figures.details["faults by kind"] = kinds


async def test_keepalive_silence(settings, figures, emulator):
    """The service stops sending ``ka`` while the socket stays open: the listener's
    watchdog gives up on the connection after connectionTimeoutMs, reconnects, and every
    event published once keep-alives resume arrives."""
    figures.title = "Keep-alive silence"
    figures.family = "network faults"
    cycles, per_channel = scale(3, 40), scale(5, 10)
    emulator.configure(ka_interval=0.2, connection_timeout_ms=1000)
    point_at(settings, emulator, channels=CHANNELS)
    running = RunningListener()
    memory = MemoryWatch(figures, "test process (listener and emulator)", 24 * MiB)
    try:
        await eventually(lambda: running.holds(CHANNELS), "the first subscriptions")
        for cycle in range(cycles):
            figures.faults_tried += 1
            old = {c.id for c in emulator.connections}
            before = running.count("reconnecting")
            emulator.faults.stop_keepalive()
            try:
                await eventually(
                    lambda before=before: running.count("reconnecting") > before,
                    "the watchdog giving up on the silent connection",
                )
            finally:
                emulator.faults.resume_keepalive()
            await eventually(
                lambda old=old: (
                    running.holds(CHANNELS)
                    and emulator_holds(emulator, CHANNELS)
                    and not old & {c.id for c in emulator.connections}
                ),
                f"the subscriptions after silence {cycle + 1}",
            )
            await publish_and_await(running, f"silence-{cycle}", figures, per_channel)
            figures.faults_survived += 1
            memory.sample()
        assert await running.stop() == 0
    finally:
        await running.close()
    memory.sample()
    memory.check()
