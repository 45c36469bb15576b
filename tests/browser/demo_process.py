"""Run ``manage.py appsync_demo`` (or any server) as a child process and read what it says.

Shared by the command's tests and the browser tests. The demo picks free ports (``--port 0
--emulator-port 0``) and a fresh SQLite file, and never sees the developer's AppSync or
Redis variables, so it always runs on the embedded emulator and the in-memory layer.
:class:`ChildProcess` is the same plumbing for any command (the README quickstart's
servers).
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "ARTIFACTS",
    "FOREIGN",
    "REPO",
    "ChildProcess",
    "DemoProcess",
    "demo_env",
    "screenshot_pages",
]

REPO = Path(__file__).resolve().parents[2]

#: Where a failing browser test leaves its screenshots.
ARTIFACTS = REPO / "test-artifacts"


def screenshot_pages(prefix: str, pages: Mapping[str, Any]) -> None:
    """Save a full-page screenshot of each page to ``test-artifacts/<prefix>-<name>.png``.

    For a test that failed: a page that cannot be captured (it crashed) is named in a
    line and skipped, so the real failure is not hidden.
    """
    ARTIFACTS.mkdir(exist_ok=True)
    for name, page in pages.items():
        try:
            page.screenshot(path=str(ARTIFACTS / f"{prefix}-{name}.png"), full_page=True)
        except Exception as exc:  # a crashed page must not hide the real failure
            print(f"could not screenshot {name}: {exc}")


#: Variables that would point a project somewhere else than the emulator and the memory layer.
FOREIGN = (
    "APPSYNC_EVENTS_URL",
    "APPSYNC_EVENTS_REALTIME_URL",
    "APPSYNC_EVENTS_AUTH",
    "APPSYNC_EVENTS_API_KEY",
    "APPSYNC_EVENTS_TOKEN",
    "APPSYNC_EVENTS_IN_PROCESS",
    "REDIS_URL",
    "PORT",
    "APPSYNC_EVENTS_EMULATOR_PORT",
    "APPSYNC_EVENTS_TOKEN_KEYS",
    "DEMO_DIRECT",
)

_URL_RE = re.compile(r"Demo chat running at (http://127\.0\.0\.1:(\d+)/)")
_EMULATOR_RE = re.compile(r"emulator listening on http://127\.0\.0\.1:(\d+)/event")


def demo_env(database: Path) -> dict[str, str]:
    """Return the environment the demo runs with: this one, minus foreign AppSync/Redis."""
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN}
    env.update(
        DJANGO_SETTINGS_MODULE="demo_project.settings",
        DEMO_DATABASE=str(database),
        PYTHONUNBUFFERED="1",
    )
    return env


class ChildProcess:
    """A command in a child process, its standard output and error lines queued.

    Args:
        argv: the command and its arguments.
        cwd: the directory it runs in.
        env: its whole environment.
        name: how failure messages name it (default: the command line).
    """

    def __init__(
        self, argv: list[str], *, cwd: Path, env: dict[str, str], name: str | None = None
    ) -> None:
        self.argv = argv
        self.name = name or " ".join(argv)
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for_line(self, pattern: str | re.Pattern[str], timeout: float = 30.0) -> re.Match[str]:
        """Return the match of the first output line matching ``pattern``.

        Raises:
            AssertionError: the process ended or ``timeout`` passed first (with its output).
        """
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        for line in self.lines:
            found = regex.search(line)
            if found:
                return found
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"no line matching {regex.pattern!r} within {timeout} s; output:\n"
                    + "\n".join(self.lines)
                )
            try:
                item = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if item is None:
                self._queue.put(None)  # keep the end marker for later calls
                raise AssertionError(
                    f"{self.name} exited ({self.process.poll()}) before printing "
                    f"{regex.pattern!r}; output:\n" + "\n".join(self.lines)
                )
            self.lines.append(item)
            found = regex.search(item)
            if found:
                return found

    def children(self) -> list[int]:
        """Return the pids of this process's own child processes."""
        pids: list[int] = []
        for task in Path(f"/proc/{self.process.pid}/task").glob("*/children"):
            pids.extend(int(p) for p in task.read_text().split())
        return pids

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig``, wait for the exit, and return the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        finally:
            self._reader.join(timeout)
            while True:
                line = self._queue.get_nowait() if not self._queue.empty() else None
                if line is None:
                    break
                self.lines.append(line)

    def kill(self) -> None:
        """Kill the process if it still runs (cleanup after a failed test)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


class DemoProcess(ChildProcess):
    """``manage.py appsync_demo`` in a child process, with its output lines queued.

    Args:
        database: the SQLite file the demo uses (created and migrated by the command).
        extra_args: more command-line arguments.
        env: variables to set on top of :func:`demo_env` (``REDIS_URL``...).
    """

    def __init__(self, database: Path, *extra_args: str, env: dict[str, str] | None = None) -> None:
        super().__init__(
            [
                sys.executable,
                "manage.py",
                "appsync_demo",
                "--port",
                "0",
                "--emulator-port",
                "0",
                *extra_args,
            ],
            cwd=REPO,
            env={**demo_env(database), **(env or {})},
            name="the demo",
        )
        self.database = database
        self.url = ""
        self.port = 0
        self.emulator_port = 0

    def wait_ready(self, timeout: float = 60.0) -> str:
        """Wait until the page is served and the listener subscribed; return the URL."""
        self.emulator_port = int(self.wait_for_line(_EMULATOR_RE, timeout).group(1))
        match = self.wait_for_line(_URL_RE, timeout)
        self.url, self.port = match.group(1), int(match.group(2))
        self.wait_for_line(r"\[listener\] subscribed to /chat/\*", timeout)
        return self.url
