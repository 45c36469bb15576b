"""The README's getting-started path, followed step by step on a fresh ``startproject``.

The steps come from README.md itself (the ``<!-- step: ... -->`` markers read by
:mod:`tests.readme_steps`), so a README edit that breaks the path breaks this test. In a
temporary directory the test runs each ``shell`` command, writes and appends the files the
README shows, starts each ``serve`` command and waits for its ready line, opens the page
in Chromium, publishes with the README's command and waits for the text the README says
the page shows.

What differs from a newcomer's terminal, and why:

* Nothing is installed: ``python -m venv``, activating it and ``pip install`` are checked
  (the install names this package) but not run. Every command runs with the test's own
  virtualenv first on ``PATH`` (``python``, ``django-admin``, ``uvicorn``) and
  ``PYTHONPATH`` set to this checkout, so the project imports the ``appsync_events``
  under test.
* Servers get ``--port 0`` (both commands take it) and the test reads the port they
  print, so a demo or another run on 8765 or 8000 cannot interfere. The settings file
  gets one statement after the README's (:data:`SETTINGS_OVERRIDE`): ``HTTP_URL`` from
  the variable :data:`URL_VARIABLE` when set, which the test sets to the emulator's
  printed URL for the processes started after it.
* No ``DJANGO_SETTINGS_MODULE`` and no AppSync or Redis variables reach the commands (the
  project's ``manage.py`` and ``asgi.py`` choose ``mysite.settings`` themselves).

Python Playwright drives Debian's Chromium (never ``playwright install``); the test skips
when Chromium is missing, and fails instead under ``CI=true``. On failure, a screenshot
is written to ``test-artifacts/`` and every process's output is printed.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.browser.conftest import TIMEOUT_MS
from tests.browser.demo_process import FOREIGN, REPO, ChildProcess, screenshot_pages
from tests.readme_steps import Step, read_steps

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(240)]

#: The virtualenv running the tests: its python, django-admin and uvicorn stand in for the
#: ones ``pip install`` would have put on PATH.
BIN = Path(sys.executable).parent
#: Set for the processes started after the emulator: its URL, for the project's HTTP_URL.
URL_VARIABLE = "README_TEST_EMULATOR_URL"
SETTINGS_OVERRIDE = f"""

# Added by tests/browser/test_readme_quickstart.py: the emulator's port, chosen at run time.
import os as _os

if _os.environ.get("{URL_VARIABLE}"):
    APPSYNC_EVENTS["default"]["HTTP_URL"] = _os.environ["{URL_VARIABLE}"]
"""
#: Lines of the install step the test checks but does not run.
NOT_RUN = ("python -m venv ", ". .venv/bin/activate", "source .venv/bin/activate")
#: What each server prints once it serves: the URL it serves on.
READY = {
    "appsync_emulator": re.compile(r"emulator listening on (http://127\.0\.0\.1:\d+/event)"),
    "uvicorn": re.compile(r"Uvicorn running on (http://127\.0\.0\.1:\d+)"),
}
COMMAND_TIMEOUT = 120.0
READY_TIMEOUT = 60.0


def _environment() -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in FOREIGN and k != "DJANGO_SETTINGS_MODULE"
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(REPO)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Quickstart:
    """Follows the README's steps in a directory, and keeps the servers it started."""

    def __init__(self, root: Path, browser: Any) -> None:
        self.cwd = root
        self.env = _environment()
        self.browser = browser
        self.context: Any = None
        self.page: Any = None
        self.servers: list[ChildProcess] = []
        self.site_url = ""
        self.outputs: list[str] = []

    def run(self, steps: list[Step]) -> None:
        """Apply every step in order."""
        for step in steps:
            getattr(self, f"_{step.kind}")(step)

    def _shell(self, step: Step) -> None:
        for line in step.commands():
            for command in (c.strip() for c in line.split("&&")):
                self._command(command, step)

    def _command(self, command: str, step: Step) -> None:
        if command.startswith(NOT_RUN):
            return
        if command.startswith("pip install "):
            assert "django-appsync-events" in command, f"README.md line {step.line}: {command}"
            return
        argv = shlex.split(command, comments=True)
        if argv[0] == "cd":
            self.cwd = self.cwd / argv[1]
            return
        result = subprocess.run(
            argv,
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        self.outputs.append(f"$ {command}\n{result.stdout}{result.stderr}")
        assert result.returncode == 0, (
            f"README.md line {step.line}: {command!r} exited {result.returncode}:\n"
            f"{result.stdout}{result.stderr}"
        )

    def _append(self, step: Step) -> None:
        path = self.cwd / step.argument
        assert path.is_file(), f"README.md line {step.line}: {step.argument} does not exist"
        text = path.read_text(encoding="utf-8") + "\n" + step.body
        if path.name == "settings.py":
            text += SETTINGS_OVERRIDE
        path.write_text(text, encoding="utf-8")

    def _write(self, step: Step) -> None:
        path = self.cwd / step.argument
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(step.body, encoding="utf-8")

    def _serve(self, step: Step) -> None:
        (command,) = step.commands()
        argv = shlex.split(command, comments=True)
        kinds = [name for name in READY if name in argv]
        assert kinds, f"README.md line {step.line}: the test cannot tell when {command!r} is ready"
        server = ChildProcess([*argv, "--port", "0"], cwd=self.cwd, env=self.env, name=command)
        self.servers.append(server)
        url = server.wait_for_line(READY[kinds[0]], READY_TIMEOUT).group(1)
        if kinds[0] == "appsync_emulator":
            self.env[URL_VARIABLE] = url
        else:
            self.site_url = url

    def _open(self, step: Step) -> None:
        assert self.site_url, f"README.md line {step.line}: no site was started before"
        self.context = self.browser.new_context()
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.page.goto(self.site_url + urlsplit(step.argument).path)

    def _expect(self, step: Step) -> None:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        assert self.page is not None, f"README.md line {step.line}: no page is open"
        try:
            self.page.get_by_text(step.argument).wait_for()
        except PlaywrightTimeout:
            raise AssertionError(
                f"README.md line {step.line}: the page never showed {step.argument!r}; it "
                f"shows:\n{self.page.inner_text('body')}"
            ) from None

    def close(self) -> None:
        """Close the browser context and stop every server (the last started first)."""
        if self.context is not None:
            self.context.close()
            self.context = self.page = None
        for server in reversed(self.servers):
            try:
                server.stop(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()

    def screenshot(self, name: str) -> None:
        """Save a screenshot of the page, if one is open, to ``test-artifacts/``."""
        if self.page is not None:
            screenshot_pages(name, {"page": self.page})

    def print_outputs(self) -> None:
        """Print what every command and server said (servers: once stopped, so all of it)."""
        for output in self.outputs:
            print(output)
        for server in self.servers:
            print(f"$ {server.name}\n" + "\n".join(server.lines))


@pytest.fixture
def quickstart(tmp_path: Path, browser: Any) -> Iterator[Quickstart]:
    """A follower of the README in an empty directory; its servers are stopped afterwards."""
    follower = Quickstart(tmp_path, browser)
    try:
        yield follower
    finally:
        follower.close()


def test_readme_path_reaches_a_browser(quickstart: Quickstart) -> None:
    """Following only the README, a new project's page shows an event published to its room."""
    steps = read_steps()
    assert steps, "README.md marks no steps"
    try:
        quickstart.run(steps)
    except BaseException:
        quickstart.screenshot("test_readme_path_reaches_a_browser")
        quickstart.close()
        quickstart.print_outputs()
        raise
    # The page showed the published event (the last step): every server is still up.
    assert [s.process.poll() for s in quickstart.servers] == [None] * len(quickstart.servers)
