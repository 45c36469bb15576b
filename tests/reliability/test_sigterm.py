"""SIGTERM in the middle of a burst of events: ``manage.py appsync_listen`` as a process.

The listener prints every event (``--print``) while the emulator pours events into its
subscription; SIGTERM arrives mid-burst. The process must exit with status 0, and its
counts must agree: what it printed is exactly the first N events in order (nothing
skipped, nothing twice), and every event it read from the socket was either dispatched
or counted as discarded during the shutdown (its final stats line says so).
"""

from __future__ import annotations

import json
import re
import signal
import threading
from pathlib import Path

from appsync_events.emulator import AppSyncEventsEmulator
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
        status = proc.stop(signal.SIGTERM)
    finally:
        published = burst.stop()
    figures.events_published += published
    assert status == 0, proc.err_lines[-20:]
    proc.wait_for("closed")
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
    # Every event read from the socket was dispatched or counted as discarded.
    figures.events_lost += received - dispatched - discarded
    assert received == dispatched + discarded
    assert (errors, reconnects, dropped, queued) == (0, 0, 0, 0)
    assert not any("Traceback" in line for line in proc.err_lines)
    assert service.state.wait_for(lambda: not service.subscriptions, 10.0)
    figures.faults_survived += 1
    figures.details.setdefault("discarded during shutdown", []).append(discarded)


def test_sigterm_during_a_burst(emulator, env, procs, tmp_path: Path, figures):  # noqa: F811
    """SIGTERM mid-burst: exit 0, the printed events are the first N in order, and the
    final counts add up (received = dispatched + discarded)."""
    figures.title = "SIGTERM during a burst (appsync_listen)"
    figures.family = "process"
    (tmp_path / "listen_settings.py").write_text(SETTINGS_MODULE + LOGGING_SETTINGS)
    rounds, before_sigterm = scale(2, 10), scale(400, 20_000)
    for _ in range(rounds):
        one_round(emulator, env, procs, figures, before_sigterm)
    figures.details["rounds"] = rounds
