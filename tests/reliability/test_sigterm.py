"""SIGTERM in the middle of a burst of events: ``manage.py appsync_listen`` as a process.

The listener prints every event (``--print``) while the emulator pours events into its
subscription; SIGTERM arrives mid-burst. The process must exit with status 0, or 3 (the
documented status of a shutdown that gave up on queued events at
``LISTENER['SHUTDOWN_TIMEOUT']``: a slowly read stdout pipe holds ``--print`` back), and
its counts must agree: what it printed is exactly the first N events in order (nothing
skipped, nothing twice), and every event it read from the socket was dispatched, counted
as discarded during the shutdown, or counted as still queued at the deadline (its final
stats line says so).
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from pathlib import Path

from appsync_events.emulator import AppSyncEventsEmulator
from appsync_events.listener import EXIT_SHUTDOWN_TIMEOUT
from tests.test_listen_command import (  # noqa: F401 - fixtures
    SETTINGS_MODULE,
    Proc,
    appsync_emulator,
    appsync_events_emulator,
    emulator,
    env,
    procs,
)

from .conftest import MemoryWatch, Scenario, scale

# The listener's INFO lines (the final stats line above all) on stderr.
LOGGING_SETTINGS = """
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"appsync_events.listener": {"handlers": ["stderr"], "level": "INFO"}},
}
"""
STATS = re.compile(
    r"Listener stats \(api=default\): received=(\d+) dispatched=(\d+) handler_errors=(\d+) "
    r"reconnects=(\d+) dropped=(\d+) queued=(\d+)"
)
MiB = 2**20
#: LISTENER['SHUTDOWN_TIMEOUT'] (the default) of the listener processes.
SHUTDOWN_TIMEOUT = 10.0


class Burst:
    """Publish numbered events to ``/chat/rooms/1`` from a thread until stopped."""

    def __init__(self, service: AppSyncEventsEmulator) -> None:
        self.emulator = service
        self.published = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.is_set():
            n = self.published
            self.emulator.publish("/chat/rooms/1", *({"n": n + i} for i in range(5)))
            self.published += 5

    def stop(self) -> int:
        self.stopped.set()
        self.thread.join(10)
        return self.published


def one_round(
    service: AppSyncEventsEmulator,
    environment: dict[str, str],
    started: list[Proc],
    figures: Scenario,
    before_sigterm: int,
) -> None:
    """Run one listener process through a burst and a SIGTERM; check and count."""
    proc = Proc(["--channel", "/chat/*", "--print"], environment)
    started.append(proc)
    proc.wait_for("subscribed /chat/*")
    memory = MemoryWatch(figures, "listener subprocess", 16 * MiB, pid=proc.popen.pid)
    burst = Burst(service)
    try:
        for step in range(1, 5):
            proc.wait_for('"channel"', stdout=True, count=before_sigterm * step // 4)
            memory.sample()
        figures.faults_tried += 1
        memory.check()
        signalled = time.monotonic()
        status = proc.stop(signal.SIGTERM)
        took = time.monotonic() - signalled
    finally:
        published = burst.stop()
    figures.events_published += published
    # 0, or 3 when the shutdown had to give up on queued events at SHUTDOWN_TIMEOUT (a
    # pipe on stdout that is read slowly holds --print's writes back); never a crash.
    assert status in (0, EXIT_SHUTDOWN_TIMEOUT), "\n".join(proc.err_lines[-30:])
    assert took < SHUTDOWN_TIMEOUT + 10.0, f"SIGTERM took {took:.1f} s"
    proc.wait_for("closed")
    if status == EXIT_SHUTDOWN_TIMEOUT:
        proc.wait_for("shutdown took longer than LISTENER['SHUTDOWN_TIMEOUT']")
    printed = [json.loads(line)["event"]["n"] for line in proc.out_lines]
    stats = [STATS.search(line) for line in proc.err_lines]
    final = [m for m in stats if m is not None][-1]
    received, dispatched, errors, reconnects, dropped, queued = map(int, final.groups())
    discarded = next(
        (int(line.split()[0]) for line in proc.err_lines if "arrived during shutdown" in line), 0
    )
    figures.events_received += len(printed)
    # Dispatched: the first events, in order, once each.
    assert printed == list(range(len(printed)))
    assert len(printed) >= before_sigterm
    assert dispatched == len(printed)
    # Every event read from the socket was dispatched, counted as discarded (it came
    # after SIGTERM), or counted as still queued when the deadline gave up on it.
    figures.events_lost += received - dispatched - discarded - queued
    assert received == dispatched + discarded + queued
    assert (errors, reconnects, dropped) == (0, 0, 0)
    assert queued == 0 or status == EXIT_SHUTDOWN_TIMEOUT
    assert not any("Traceback" in line for line in proc.err_lines)
    assert service.state.wait_for(lambda: not service.subscriptions, 10.0)
    figures.faults_survived += 1
    details = figures.details
    details.setdefault("exit statuses", []).append(status)
    details.setdefault("seconds from SIGTERM to exit", []).append(round(took, 1))
    details.setdefault("discarded during shutdown", []).append(discarded)
    details.setdefault("queued at the deadline", []).append(queued)


def test_sigterm_during_a_burst(emulator, env, procs, tmp_path: Path, figures):  # noqa: F811
    """SIGTERM mid-burst: exit 0 (or 3, the documented status of a shutdown that gave up
    at SHUTDOWN_TIMEOUT), the printed events are the first N in order, and the final
    counts add up (received = dispatched + discarded + still queued)."""
    figures.title = "SIGTERM during a burst (appsync_listen)"
    figures.family = "process"
    (tmp_path / "listen_settings.py").write_text(SETTINGS_MODULE + LOGGING_SETTINGS)
    rounds, before_sigterm = scale(2, 10), scale(400, 20_000)
    for _ in range(rounds):
        one_round(emulator, env, procs, figures, before_sigterm)
    figures.details["rounds"] = rounds
