"""``manage.py appsync_demo``: one process serving the chat, stopping cleanly on a signal."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from appsync_events.emulator import AppSyncEventsEmulator
from tests.browser.demo_process import REPO, DemoProcess, demo_env
from tests.prereqs import require_redis

pytestmark = pytest.mark.slow

# Deadline for conditions awaited by polling the running demo over HTTP.
TIMEOUT = 30.0


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[DemoProcess]:
    """A running demo on free ports with a fresh database."""
    process = DemoProcess(tmp_path / "demo.sqlite3")
    try:
        process.wait_ready()
        yield process
    finally:
        process.kill()


def _refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return False
    except OSError:
        return True


def _post_message(client: httpx.Client, room: str, text: str) -> httpx.Response:
    page = client.get(f"rooms/{room}/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token, page.text
    return client.post(
        f"rooms/{room}/messages/",
        data={"csrfmiddlewaretoken": token.group(1), "author": "ada", "text": text},
        headers={"Accept": "application/json", "Referer": str(page.url)},
    )


def _wait_for_status(client: httpx.Client, key: str, value: object) -> dict[str, object]:
    deadline = time.monotonic() + TIMEOUT
    while True:
        data: dict[str, object] = client.get("status/").json()
        if data[key] == value:
            return data
        if time.monotonic() > deadline:
            raise AssertionError(f"status {key} never became {value!r}: {data}")
        time.sleep(0.05)  # polling a server in another process; no event to await here


def test_demo_serves_the_chat_and_receives_its_own_events(demo: DemoProcess) -> None:
    """The pages are served, and a posted message travels out to AppSync and back in."""
    with httpx.Client(base_url=demo.url, timeout=10.0) as client:
        home = client.get("")
        assert home.status_code == 200
        assert "/rooms/lobby/" in home.text
        assert client.get("static/chat/chat.js").status_code == 200
        status = client.get("status/").json()
        assert status["state"] == "connected"
        assert status["subscriptions"] == ["/chat/*"]

        response = _post_message(client, "lobby", "hello through the emulator")
        assert response.status_code == 201, response.text
        # The view published after its commit; the in-process listener received it on /chat/*.
        data = _wait_for_status(client, "events_received", 1)
        assert data["last_event_at"] is not None
    assert demo.children() == []


@pytest.mark.redis
def test_demo_runs_on_redis_when_redis_url_is_set(tmp_path: Path) -> None:
    """With REDIS_URL the demo forwards through channels_redis, still in one process."""
    require_redis()
    # A database number of its own, so other suites' groups and control channel never mix.
    demo = DemoProcess(tmp_path / "demo.sqlite3", env={"REDIS_URL": "redis://127.0.0.1:6379/13"})
    try:
        demo.wait_ready()
        assert "Channel layer: RedisChannelLayer" in demo.lines
        with httpx.Client(base_url=demo.url, timeout=10.0) as client:
            assert _post_message(client, "lobby", "over redis").status_code == 201
            _wait_for_status(client, "events_received", 1)
        assert demo.stop(signal.SIGTERM) == 0
    finally:
        demo.kill()


def test_demo_uses_the_event_api_named_by_appsync_events_url(tmp_path: Path) -> None:
    """With APPSYNC_EVENTS_URL and a key, the demo starts no emulator and uses that API."""
    key = "da2-external000000000000000000000"
    with AppSyncEventsEmulator("127.0.0.1", 0, api_keys=[key], namespaces=["chat"]) as api:
        demo = DemoProcess(
            tmp_path / "demo.sqlite3",
            env={
                "APPSYNC_EVENTS_URL": api.http_url,
                "APPSYNC_EVENTS_API_KEY": key,
                "AWS_REGION": "us-east-1",
            },
        )
        try:
            demo.wait_for_line(rf"Using the Event API at {re.escape(api.http_url)}")
            url = demo.wait_for_line(r"Demo chat running at (http://\S+/)").group(1)
            demo.wait_for_line(r"\[listener\] subscribed to /chat/\*")
            assert not any("emulator listening" in line for line in demo.lines)
            with httpx.Client(base_url=url, timeout=10.0) as client:
                assert _post_message(client, "lobby", "to the external API").status_code == 201
                _wait_for_status(client, "events_received", 1)
            # The event went through the API the URL named.
            (record,) = api.published
            assert (record.channel, record.auth_mode, record.transport) == (
                "/chat/rooms/lobby",
                "API_KEY",
                "http",
            )
            assert demo.stop(signal.SIGTERM) == 0
        finally:
            demo.kill()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_demo_stops_cleanly_on_a_signal(demo: DemoProcess, sig: signal.Signals) -> None:
    """SIGTERM and SIGINT stop the server, the listener and the emulator, with status 0."""
    assert demo.children() == []
    assert not _refused(demo.port)
    assert not _refused(demo.emulator_port)
    assert demo.stop(sig) == 0, "\n".join(demo.lines)
    assert demo.lines[-1] == "Demo stopped.", "\n".join(demo.lines)
    assert "[listener] closed" in demo.lines
    # Nothing listens any more: no thread or child process outlived the command.
    assert _refused(demo.port)
    assert _refused(demo.emulator_port)


def test_demo_says_which_port_is_taken(tmp_path: Path) -> None:
    """A web port in use ends the command with status 1 and a line saying what to do."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "manage.py", "appsync_demo", "--port", str(port)],
            cwd=REPO,
            env=demo_env(tmp_path / "demo.sqlite3"),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert f"Port {port} on 127.0.0.1 is in use" in result.stderr
    assert "--port" in result.stderr
