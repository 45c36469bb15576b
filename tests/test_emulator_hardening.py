"""The emulator holds against hostile or broken clients: origins, slow and silent
connections, absurd JSON, unbounded history, its own failures."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from appsync_events.emulator import AppSyncEventsEmulator
from appsync_events.protocol import SUBPROTOCOL, encode_header_subprotocol

DEADLINE = 10.0


def header(emulator: AppSyncEventsEmulator) -> str:
    return encode_header_subprotocol({"host": emulator.http_host, "x-api-key": emulator.api_key})


async def open_socket(emulator: AppSyncEventsEmulator, **kwargs: Any) -> Any:
    return await websockets.connect(
        emulator.realtime_url,
        subprotocols=[SUBPROTOCOL, header(emulator)],  # type: ignore[list-item]
        proxy=None,
        **kwargs,
    )


async def test_websocket_upgrades_from_foreign_origins_are_refused() -> None:
    """A browser page of another origin cannot open a websocket to the emulator (403);
    loopback pages, listed origins and clients sending no Origin can."""
    with AppSyncEventsEmulator(port=0, cors_origins=["https://app.example.com"]) as emulator:
        with pytest.raises(InvalidStatus) as info:
            await open_socket(emulator, origin="http://evil.example")
        assert info.value.response.status_code == 403
        for origin in ("http://localhost:8000", "http://127.0.0.1:3000", "https://app.example.com"):
            ws = await open_socket(emulator, origin=origin)
            await ws.close()
        ws = await open_socket(emulator)  # no Origin header at all
        await ws.close()


async def test_a_silent_websocket_is_closed_after_init_timeout() -> None:
    """A socket that sends nothing after the upgrade is closed with 1000 after init_timeout;
    one that sent connection_init stays open."""
    with AppSyncEventsEmulator(port=0, init_timeout=0.3) as emulator:
        silent = await open_socket(emulator)
        talking = await open_socket(emulator)
        await talking.send('{"type":"connection_init"}')
        assert json.loads(await talking.recv())["type"] == "connection_ack"
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(silent.recv(), DEADLINE)
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 1000
        await asyncio.sleep(0.5)  # past the timeout: the talking socket must still be open
        await talking.send(
            '{"type":"subscribe","id":"s1","channel":"/default/x",'
            f'"authorization":{{"x-api-key":"{emulator.api_key}"}}}}'
        )
        assert json.loads(await asyncio.wait_for(talking.recv(), DEADLINE))["type"] in (
            "ka",
            "subscribe_success",
        )
        await talking.close()


def test_a_half_sent_request_is_cut_after_handshake_timeout() -> None:
    """A TCP client that never completes its request head is disconnected after
    handshake_timeout; a complete request in time is served, also a second one on the
    same kept-alive connection."""
    with AppSyncEventsEmulator(port=0, handshake_timeout=0.3) as emulator:
        host, port = emulator.host, emulator.port
        with socket.create_connection((host, port), timeout=DEADLINE) as slow:
            slow.sendall(b"POST /event HTTP/1.1\r\nHost: x\r\n")  # no blank line, ever
            started = time.monotonic()
            assert slow.recv(1024) == b""  # the server closed it
            assert time.monotonic() - started < DEADLINE / 2
        with httpx.Client() as client:
            for _ in range(2):
                response = client.post(emulator.http_url, content=b"{}")
                assert response.status_code == 400  # served: the service's error shape
                time.sleep(0.5)  # longer than the deadline, between complete requests


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 200_000,
        b'{"channel":"/default/a","events":[' + b"[" * 100_000 + b"]}",
        b'{"channel":"/default/a","events":["' + b"[" * 100_000 + b'"]}',
    ],
    ids=["deep-body", "deep-events-member", "deep-event-text"],
)
def test_absurdly_nested_json_over_http_gets_the_400_shape(body: bytes) -> None:
    """JSON nested past any parser's depth is a 400 with the service's error shape over HTTP
    (as over the websocket), never a plain-text 500."""
    with AppSyncEventsEmulator(port=0, max_request_bytes=2_000_000) as emulator:
        response = httpx.post(
            emulator.http_url, content=body, headers={"x-api-key": emulator.api_key}
        )
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert errors[0]["errorType"] == "BadRequestException"


def test_an_internal_failure_is_a_json_500(monkeypatch: pytest.MonkeyPatch) -> None:
    """Should the emulator itself fail on a request, the answer is JSON with an errors
    array, and the cause goes to the log."""
    with AppSyncEventsEmulator(port=0) as emulator:

        async def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("emulator bug")

        monkeypatch.setattr(emulator.state, "http_publish", broken)
        response = httpx.post(emulator.http_url, content=b"{}")
    assert response.status_code == 500
    assert response.json()["errors"][0]["errorType"] == "InternalFailureException"


def test_the_publish_history_is_bounded() -> None:
    """The history keeps the newest history_size records within history_bytes; the total
    still counts every publish; waiting for more than it keeps is refused."""
    with AppSyncEventsEmulator(port=0, history_size=3, history_bytes=1_000) as emulator:
        for n in range(5):
            emulator.publish("/default/a", n)
        assert [r.payloads for r in emulator.published] == [[2], [3], [4]]
        assert emulator.state.published_total == 5
        emulator.publish("/default/a", "x" * 600)
        emulator.publish("/default/a", "y" * 600)  # the two together exceed 1,000 bytes
        assert [len(r.events[0]) for r in emulator.published] == [602]
        with pytest.raises(ValueError, match="history_size"):
            emulator.wait_for_published(4)


def test_memory_stays_flat_under_many_large_publishes() -> None:
    """Publishing far more than the byte bound keeps at most the bound in the history."""
    with AppSyncEventsEmulator(port=0, history_bytes=2_000_000) as emulator:
        event = "z" * 200_000
        for _ in range(100):  # 20 MB published
            emulator.publish("/default/a", event)
        held = sum(len(e) for r in emulator.published for e in r.events)
        assert held <= 2_000_000
        assert emulator.state.published_total == 100


@pytest.mark.parametrize(
    ("options", "text"),
    [
        ({"history_size": 0}, "history_size must be a positive integer"),
        ({"history_bytes": "1MB"}, "history_bytes must be a positive integer"),
        ({"init_timeout": -1}, "init_timeout must be a positive number"),
        ({"handshake_timeout": True}, "handshake_timeout must be a positive number"),
        ({"cors_origins": "https://x.example"}, "cors_origins must be a list"),
    ],
)
def test_bad_hardening_options_are_refused(options: dict[str, Any], text: str) -> None:
    """Each hardening option is validated with a message saying what it takes."""
    from appsync_events.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match=text):
        AppSyncEventsEmulator(port=0, **options)
