"""``manage.py appsync_listen`` as a real subprocess against the emulator.

Covers the command contract: ``--print`` JSON lines on stdout, state lines on stderr,
``--max-events``, SIGTERM → clean shutdown with exit 0, configuration errors → exit 2,
and ``--exclusive`` failover between two processes on a PostgreSQL advisory lock.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from appsync_events.emulator import AppSyncEventsEmulator
from appsync_events.testing.helpers import emulator_settings
from appsync_events.testing.pytest_plugin import (  # noqa: F401 - fixtures
    appsync_emulator,
    appsync_events_emulator,
)
from tests.prereqs import require_postgres

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 30.0  # seconds: process start-up on a loaded 2-core machine included

SETTINGS_MODULE = """\
import json, os
from tests.settings import *  # noqa: F403
APPSYNC_EVENTS = json.loads(os.environ["APPSYNC_EVENTS_JSON"])
"""


class Proc:
    """A running ``appsync_listen`` with its stdout and stderr read line by line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "manage.py", "appsync_listen", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: queue.Queue[str] = queue.Queue()
        self.err_lines: list[str] = []
        self.out_lines: list[str] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._pump, args=(self.popen.stdout, True), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.popen.stderr, False), daemon=True).start()

    def _pump(self, stream: Any, is_out: bool) -> None:
        for line in stream:
            with self._cond:
                (self.out_lines if is_out else self.err_lines).append(line.rstrip("\n"))
                self._cond.notify_all()

    def wait_for(self, text: str, *, stdout: bool = False, count: int = 1) -> None:
        """Wait until ``count`` lines of stderr (or stdout) contain ``text``."""
        deadline = time.monotonic() + DEADLINE
        exited_at: float | None = None
        with self._cond:
            while sum(text in line for line in self._lines(stdout)) < count:
                now = time.monotonic()
                if exited_at is None and self.popen.poll() is not None:
                    exited_at = now  # give the pump threads a moment to read the rest
                if now > deadline or (exited_at is not None and now - exited_at > 1.0):
                    raise AssertionError(
                        f"{text!r} not seen; stderr: {self.err_lines}; stdout: {self.out_lines}"
                    )
                self._cond.wait(0.2)

    def _lines(self, stdout: bool) -> list[str]:
        return self.out_lines if stdout else self.err_lines

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        return self.popen.wait(DEADLINE)


@pytest.fixture
def emulator(appsync_events_emulator: AppSyncEventsEmulator) -> AppSyncEventsEmulator:  # noqa: F811
    """The reset session emulator."""
    return appsync_events_emulator


@pytest.fixture
def env(emulator: AppSyncEventsEmulator, tmp_path: Path) -> dict[str, str]:
    """The environment of a subprocess whose settings point at the emulator."""
    (tmp_path / "listen_settings.py").write_text(SETTINGS_MODULE)
    config = emulator_settings(emulator)
    config["default"]["LISTENER"] = {"BACKOFF_INITIAL": 0.1, "BACKOFF_MAX": 1.0}
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "DJANGO_SETTINGS_MODULE": "listen_settings",
        "APPSYNC_EVENTS_JSON": json.dumps(config),
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Started processes; killed at the end if still running."""
    started: list[Proc] = []
    yield started
    for proc in started:
        if proc.popen.poll() is None:
            proc.popen.kill()
            proc.popen.wait(DEADLINE)


def test_print_writes_json_lines_and_max_events_exits_0(
    emulator: AppSyncEventsEmulator, env: dict[str, str], procs: list[Proc]
) -> None:
    """--print writes {"channel", "event"} per event to stdout; --max-events ends with 0."""
    proc = Proc(["--channel", "/chat/*", "--print", "--max-events", "2"], env)
    procs.append(proc)
    proc.wait_for("subscribed /chat/*")
    emulator.publish("/chat/rooms/1", {"text": "héllo"}, [1, 2])
    assert proc.popen.wait(DEADLINE) == 0
    assert [json.loads(line) for line in proc.out_lines] == [
        {"channel": "/chat/*", "event": {"text": "héllo"}},
        {"channel": "/chat/*", "event": [1, 2]},
    ]
    assert any("connected" in line for line in proc.err_lines)
    assert not any("{" in line for line in proc.err_lines if "channel" in line)


def test_sigterm_shuts_down_cleanly(
    emulator: AppSyncEventsEmulator, env: dict[str, str], procs: list[Proc]
) -> None:
    """SIGTERM: the command unsubscribes, closes and exits with status 0."""
    proc = Proc(["--channel", "/chat/a", "--channel", "/chat/b"], env)
    procs.append(proc)
    proc.wait_for("subscribed", count=2)
    assert len(emulator.subscriptions) == 2
    assert proc.stop(signal.SIGTERM) == 0
    assert any("stopping: received SIGTERM" in line for line in proc.err_lines)
    assert proc.err_lines[-1] == "closed"
    emulator.state.wait_for(lambda: not emulator.subscriptions, 5.0)
    assert emulator.subscriptions == []


def test_sigint_shuts_down_cleanly(
    emulator: AppSyncEventsEmulator, env: dict[str, str], procs: list[Proc]
) -> None:
    """SIGINT (Ctrl-C) is a clean shutdown too."""
    proc = Proc(["--channel", "/chat/a"], env)
    procs.append(proc)
    proc.wait_for("subscribed")
    assert proc.stop(signal.SIGINT) == 0


def test_rejected_connect_stays_up_and_says_why(
    emulator: AppSyncEventsEmulator, env: dict[str, str], procs: list[Proc]
) -> None:
    """A rejected connect is retried with backoff and reported on stderr; no crash."""
    emulator.faults.reject_next_connects(1)
    proc = Proc(["--channel", "/chat/a"], env)
    procs.append(proc)
    proc.wait_for("REJECTED by the service")
    proc.wait_for("subscribed /chat/a")
    assert proc.stop() == 0


def test_configuration_errors_exit_2(settings: Any) -> None:
    """An unknown alias or an invalid channel is a CommandError with return code 2."""
    with pytest.raises(CommandError) as info:
        call_command("appsync_listen", api="nope")
    assert info.value.returncode == 2
    with pytest.raises(CommandError) as info:
        call_command("appsync_listen", channels=["/bad_channel"])
    assert info.value.returncode == 2
    with pytest.raises(CommandError, match="nothing to listen to") as info:
        call_command("appsync_listen")
    assert info.value.returncode == 2


def test_sigterm_with_a_stuck_sync_handler_exits_3_within_the_timeout(
    emulator: AppSyncEventsEmulator, env: dict[str, str], procs: list[Proc], tmp_path: Path
) -> None:
    """A sync handler blocked for 60 s does not hold the process: SIGTERM exits with 3 about
    SHUTDOWN_TIMEOUT later, naming the abandoned handler."""
    app = tmp_path / "stuckapp"
    app.mkdir()
    (app / "__init__.py").write_text("")
    (app / "appsync_handlers.py").write_text(
        "import time\n"
        "import appsync_events\n\n"
        "@appsync_events.on('/chat/*')\n"
        "def stuck_for_a_minute(event):\n"
        "    print('handler entered', flush=True)\n"
        "    time.sleep(60)\n"
    )
    settings_file = tmp_path / "listen_settings.py"
    settings_file.write_text(SETTINGS_MODULE + "INSTALLED_APPS = [*INSTALLED_APPS, 'stuckapp']\n")
    config = json.loads(env["APPSYNC_EVENTS_JSON"])
    config["default"]["LISTENER"]["SHUTDOWN_TIMEOUT"] = 1.0
    proc = Proc(["--channel", "/chat/*"], {**env, "APPSYNC_EVENTS_JSON": json.dumps(config)})
    procs.append(proc)
    proc.wait_for("subscribed /chat/*")
    emulator.publish("/chat/a", "one")
    proc.wait_for("handler entered", stdout=True)
    started = time.monotonic()
    assert proc.stop() == 3
    assert time.monotonic() - started < 15.0  # 1 s deadline plus process exit, never 60 s
    proc.wait_for("shutdown took longer than LISTENER['SHUTDOWN_TIMEOUT']")
    proc.wait_for("abandoned handler stuckapp.appsync_handlers.stuck_for_a_minute")
    assert emulator.subscriptions == []


def test_a_setting_mistake_exits_2_with_one_line(env: dict[str, str]) -> None:
    """A mistake in APPSYNC_EVENTS (here REGION) exits 2 with one line, not a check dump."""
    config = json.loads(env["APPSYNC_EVENTS_JSON"])
    config["default"]["REGION"] = "nowhere"
    result = subprocess.run(
        [sys.executable, "manage.py", "appsync_listen", "--channel", "/chat/*"],
        cwd=ROOT,
        env={**env, "APPSYNC_EVENTS_JSON": json.dumps(config)},
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "APPSYNC_EVENTS['default']['REGION']" in lines[0]
    assert "appsync_events.E003" in lines[0]


def test_a_wrong_url_exits_1_naming_the_url_and_status(
    env: dict[str, str], emulator: AppSyncEventsEmulator
) -> None:
    """An HTTP_URL whose websocket upgrade gets 404 stops the listener (no retry loop):
    exit 1, the URL and the status in the last line."""
    config = json.loads(env["APPSYNC_EVENTS_JSON"])
    config["default"]["HTTP_URL"] = emulator.http_url.replace("/event", "/wrong/event")
    result = subprocess.run(
        [sys.executable, "manage.py", "appsync_listen", "--channel", "/chat/*"],
        cwd=ROOT,
        env={**env, "APPSYNC_EVENTS_JSON": json.dumps(config)},
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("CommandError: the listener stopped:")
    assert "/wrong/event/realtime" in last
    assert "HTTP 404" in last
    assert "reconnecting" not in result.stderr


def test_call_command_max_idle(emulator: AppSyncEventsEmulator, capsys: Any) -> None:
    """In-process call_command with --max-idle returns after the idle time."""
    call_command("appsync_listen", channels=["/chat/*"], max_idle=0.5)
    assert "closed" in capsys.readouterr().err


@pytest.mark.django_db(transaction=True)
def test_drain_outbox_flag_runs_the_drainer(emulator: AppSyncEventsEmulator, capsys: Any) -> None:
    """--drain-outbox drains the alias's outbox inside the listener (a state line says so)."""
    call_command("appsync_listen", channels=["/chat/*"], max_idle=0.5, drain_outbox=True)
    err = capsys.readouterr().err
    assert "draining the outbox of 'default'" in err
    assert "closed" in err


@pytest.mark.postgres
def test_exclusive_failover_between_two_processes(
    emulator: AppSyncEventsEmulator, env: dict[str, str], procs: list[Proc]
) -> None:
    """Of two --exclusive listeners one dispatches; SIGKILL it and the standby takes over."""
    require_postgres()
    env = {**env, "APPSYNC_EVENTS_TEST_DB": "postgres"}
    first = Proc(["--channel", "/chat/*", "--print", "--exclusive"], env)
    procs.append(first)
    first.wait_for("subscribed /chat/*")
    second = Proc(["--channel", "/chat/*", "--print", "--exclusive"], env)
    procs.append(second)
    second.wait_for("waiting for lease")
    emulator.publish("/chat/a", "one")
    first.wait_for('"one"', stdout=True)
    assert len(emulator.subscriptions) == 1  # the standby holds no subscription
    first.popen.kill()  # SIGKILL: no cleanup; PostgreSQL frees the lock with the session
    first.popen.wait(DEADLINE)
    second.wait_for("acquired")
    second.wait_for("subscribed /chat/*")
    emulator.state.wait_for(lambda: len(emulator.subscriptions) == 1, 10.0)
    emulator.publish("/chat/a", "two")
    second.wait_for('"two"', stdout=True)
    assert not any('"one"' in line for line in second.out_lines)
    assert second.stop() == 0


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("appsync_listen", []),
        ("appsync_outbox", ["--once"]),
        ("appsync_publish", ["/chat/a", "1"]),
        ("appsync_emulator", []),
    ],
)
def test_every_command_takes_skip_checks(name: str, args: list[str]) -> None:
    """--skip-checks works as on any Django command (our commands run the checks themselves)."""
    from django.core.management import load_command_class

    command = load_command_class("appsync_events", name)
    options = command.create_parser("manage.py", name).parse_args(["--skip-checks", *args])
    assert options.skip_checks is True
