"""The emulator without Django: the class, ``python -m appsync_events.emulator``, exit statuses.

The child processes started here cannot import Django (``sys.modules["django"] = None``
before anything else is imported), so nothing can lean on it by accident.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from appsync_events.emulator import AppSyncEventsEmulator
from appsync_events.emulator.cli import EmulatorExit, serve
from tests.test_core_without_django import run_without_django

ROOT = Path(__file__).resolve().parent.parent
READY = re.compile(r"AppSync Events emulator listening on (http://127\.0\.0\.1:\d+/event)")

# Run the emulator's __main__ as `python -m` does, with Django unimportable.
WITHOUT_DJANGO = (
    "import sys; sys.modules['django'] = None; import runpy; "
    "runpy.run_module('appsync_events.emulator', run_name='__main__', alter_sys=True)"
)


def start_module(*args: str) -> subprocess.Popen[str]:
    """Start ``python -m appsync_events.emulator ARGS`` without Django."""
    return subprocess.Popen(
        [sys.executable, "-c", WITHOUT_DJANGO, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_emulator_serves_http_publish_without_django():
    """Built from keywords or from APIConfig.from_mapping, the emulator answers a publish,
    and neither it nor its command-line module loads any django module."""
    out = run_without_django(
        """
        import httpx
        import appsync_events.emulator.cli
        from appsync_events.config import APIConfig
        from appsync_events.emulator import AppSyncEventsEmulator

        api = APIConfig.from_mapping(
            "local",
            {
                "HTTP_URL": "http://127.0.0.1:9/event",
                "AUTH": {"API_KEY": "da2-mapping"},
                "NAMESPACES": {"chat": {}},
            },
        )
        for emulator in (
            AppSyncEventsEmulator(port=0, api_keys=["da2-keywords"], namespaces=["chat"]),
            AppSyncEventsEmulator(port=0, api=api),
        ):
            with emulator:
                response = httpx.post(
                    emulator.http_url,
                    json={"channel": "/chat/room", "events": ['{"n":1}']},
                    headers={"x-api-key": emulator.api_key},
                    timeout=10,
                )
                assert response.status_code == 200, response.text
                body = response.json()
                assert body["failed"] == [] and len(body["successful"]) == 1, body
                assert emulator.published_to("/chat/room") == [{"n": 1}]
        loaded = sorted(m for m in sys.modules if m.startswith("django"))
        assert loaded == ["django"] and sys.modules["django"] is None, loaded
        print("served", api.alias)
        """
    )
    assert out.strip() == "served local"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_module_prints_ready_line_serves_and_stops_cleanly(sig):
    """``python -m appsync_events.emulator`` prints the HTTP_URL, serves, and exits 0."""
    proc = start_module("--port", "0", "--api-key", "da2-cli", "--namespace", "news")
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        ready = READY.fullmatch(line)
        assert ready, line
        response = httpx.post(
            ready.group(1),
            json={"channel": "/news/a", "events": ['{"x":1}']},
            headers={"x-api-key": "da2-cli"},
            timeout=10,
        )
        assert response.status_code == 200
        assert response.json()["failed"] == []
    finally:
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert err.splitlines()[-1] == "Stopping the emulator."
    assert "Generated test API key" not in err


@pytest.mark.parametrize("quiet", [False, True])
def test_the_request_log_shows_each_operation_unless_quiet(quiet):
    """Each connection, subscribe, publish and refusal is one stderr line; --quiet hides them."""
    import asyncio
    import json

    import websockets

    from appsync_events.protocol import encode_header_subprotocol

    args = ["--port", "0", "--api-key", "da2-cli", "--namespace", "news"]
    proc = start_module(*args, *(["--quiet"] if quiet else []))
    try:
        assert proc.stdout is not None
        ready = READY.fullmatch(proc.stdout.readline().strip())
        assert ready
        http_url = ready.group(1)
        httpx.post(
            http_url,
            json={"channel": "/news/a", "events": ["1"]},
            headers={"x-api-key": "da2-cli"},
            timeout=10,
        )
        httpx.post(
            http_url,
            json={"channel": "/nope/a", "events": ["1"]},
            headers={"x-api-key": "da2-cli"},
            timeout=10,
        )

        async def subscribe() -> None:
            host = http_url.split("/")[2]
            header = encode_header_subprotocol({"host": host, "x-api-key": "da2-cli"})
            async with websockets.connect(
                http_url.replace("http", "ws", 1) + "/realtime",
                subprotocols=["aws-appsync-event-ws", header],  # type: ignore[list-item]
            ) as ws:
                await ws.send('{"type":"connection_init"}')
                await ws.recv()
                await ws.send(
                    json.dumps(
                        {
                            "type": "subscribe",
                            "id": "s1",
                            "channel": "/news/*",
                            "authorization": {"x-api-key": "da2-cli"},
                        }
                    )
                )
                while json.loads(await ws.recv())["type"] != "subscribe_success":
                    pass

        asyncio.run(subscribe())
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    expected = [
        "PUBLISH /news/a http from 127.0.0.1: 1 events, 0 deliveries",
        "REFUSED publish http from 127.0.0.1: 403 UnauthorizedException",
        "CONNECT conn=",
        "SUBSCRIBE /news/* conn=",
        "CLOSED conn=",
    ]
    for text in expected:
        assert (text in err) is not quiet, (text, err)
    assert "da2-cli" not in err


def test_module_exits_2_with_one_line_for_a_bad_flag():
    """An unknown flag value exits 2 with one line naming the flag."""
    proc = start_module("--port", "eighty")
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert out == ""
    assert err.splitlines() == [
        "python -m appsync_events.emulator: error: argument --port: invalid int value: "
        "'eighty' (see --help)"
    ]


def test_module_exits_2_for_a_bad_value():
    """A value the emulator refuses exits 2 with one line saying what to pass."""
    proc = start_module("--iam", "no-secret")
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert err.splitlines() == [
        "python -m appsync_events.emulator: error: --iam takes ACCESS_KEY_ID:SECRET (test "
        "credentials the emulator verifies signatures with)."
    ]


def test_module_exits_1_naming_the_port_when_it_is_taken():
    """A taken port exits 1 with one line naming it and saying to pass --port (or 0)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = start_module("--port", str(port))
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 1
    assert out == ""
    assert err.splitlines() == [
        f"python -m appsync_events.emulator: error: Port {port} on 127.0.0.1 is already in "
        "use: stop what listens there, or pass --port another value (--port 0 for any free "
        "port)."
    ]


def test_serve_exits_1_when_the_emulator_stops_on_its_own():
    """A server that stops without a signal ends serve() with status 1, not a hang."""
    emulator = AppSyncEventsEmulator(port=0)
    lines: list[str] = []
    ready = threading.Event()

    def out(line: str) -> None:
        lines.append(line)
        ready.set()

    def stop_behind_its_back() -> None:
        if ready.wait(10):
            emulator.stop()

    killer = threading.Thread(target=stop_behind_its_back)
    killer.start()
    try:
        with pytest.raises(EmulatorExit, match="stopped on its own") as caught:
            serve(emulator, out=out, err=lambda line: None)
    finally:
        killer.join(10)
    assert caught.value.status == 1
    assert len(lines) == 1
    assert READY.fullmatch(lines[0]), lines
