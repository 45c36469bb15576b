"""The emulator holds against hostile or broken clients: origins, slow and silent
connections, absurd JSON, unbounded history, its own failures."""

from __future__ import annotations

import asyncio
import json
import logging
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


async def test_lone_surrogates_get_the_error_shape_and_the_socket_stays_up() -> None:
    """Strings that are no Unicode text (a lone surrogate escape such as \\ud800) in an id,
    a channel, an event or an API key get the service's error shape; the connection
    stays usable (they used to drop it, or leave it mute)."""
    with AppSyncEventsEmulator(port=0) as emulator:
        auth = {"host": emulator.http_host, "x-api-key": emulator.api_key}
        ws = await open_socket(emulator)
        await ws.send('{"type":"connection_init"}')
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        frames = [
            ('{"type":"subscribe","id":"\\ud800","channel":"/default/a"}', "error", None),
            (
                '{"type":"subscribe","id":"s1","channel":"/default/\\udfff","authorization":'
                + json.dumps(auth)
                + "}",
                "subscribe_error",
                "s1",
            ),
            (
                '{"type":"subscribe","id":"s2","channel":"/default/a","authorization":'
                '{"x-api-key":"\\ud800"}}',
                "subscribe_error",
                "s2",
            ),
            (
                '{"type":"publish","id":"p1","channel":"/default/a","events":["\\"\\ud800\\""],'
                '"authorization":' + json.dumps(auth) + "}",
                "publish_error",
                "p1",
            ),
        ]
        for frame, kind, frame_id in frames:
            await ws.send(frame)
            answer = json.loads(await asyncio.wait_for(_answer(ws), DEADLINE))
            assert answer["type"] == kind, answer
            assert answer.get("id") == frame_id
            assert answer["errors"][0]["errorType"] == "BadRequestException"
            assert "not Unicode" in answer["errors"][0]["message"]
        await ws.send(
            '{"type":"publish","id":"ok","channel":"/default/a","events":["1"],"authorization":'
            + json.dumps(auth)
            + "}"
        )
        assert json.loads(await asyncio.wait_for(_answer(ws), DEADLINE))["type"] == (
            "publish_success"
        )
        await ws.close()
        async with httpx.AsyncClient() as client:
            response = await client.post(
                emulator.http_url,
                content=b'{"channel":"/default/a","events":["\\"\\ud800\\""]}',
                headers={"x-api-key": emulator.api_key},
            )
        assert response.status_code == 400
        assert "not Unicode" in response.json()["errors"][0]["message"]


async def test_a_header_subprotocol_with_a_lone_surrogate_is_no_credential() -> None:
    """A header- subprotocol holding a lone surrogate is treated as no credential: the
    connect is refused with connection_error (it used to be an HTTP 500)."""
    import base64

    with AppSyncEventsEmulator(port=0) as emulator:
        value = base64.urlsafe_b64encode(b'{"x-api-key":"\\ud800"}').decode().rstrip("=")
        async with websockets.connect(
            emulator.realtime_url, subprotocols=[SUBPROTOCOL, "header-" + value], proxy=None
        ) as ws:
            await ws.send('{"type":"connection_init"}')
            answer = json.loads(await asyncio.wait_for(ws.recv(), DEADLINE))
        assert answer["type"] == "connection_error"
        assert answer["errors"][0]["errorType"] == "UnauthorizedException"


async def _answer(ws: Any) -> str:
    """The next frame that is not a keep-alive."""
    while True:
        frame = await ws.recv()
        if json.loads(frame)["type"] != "ka":
            return str(frame)


@pytest.mark.parametrize(
    ("request_bytes", "message"),
    [
        (b"GARBAGE\r\n\r\n", "Not a valid HTTP/1.1 request."),
        (
            b"POST /event HTTP/1.1\r\nHost: x\r\nX-Api-Key: a\x00b\r\nContent-Length: 2\r\n\r\n{}",
            "Not a valid HTTP/1.1 request.",
        ),
        (
            b"POST /event HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}",
            "Not a valid HTTP/1.1 request.",
        ),
        (
            b"POST /event HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
            "HTTP/1.1 requests need a Host header.",
        ),
    ],
    ids=["request-line", "nul-in-header", "content-length", "no-host"],
)
def test_bytes_that_are_no_http_request_get_the_json_400(
    request_bytes: bytes, message: str
) -> None:
    """A request that is not valid HTTP/1.1 gets a 400 with the JSON error shape, then the
    connection closes (uvicorn answered plain text)."""
    with AppSyncEventsEmulator(port=0) as emulator:
        with socket.create_connection((emulator.host, emulator.port), timeout=DEADLINE) as sock:
            sock.sendall(request_bytes)
            received = b""
            while chunk := sock.recv(65536):  # until the server closes
                received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"content-type: application/json" in head.lower()
    assert json.loads(body)["errors"][0] == {"errorType": "BadRequestException", "message": message}


@pytest.mark.parametrize(
    ("subprotocols", "origin", "error_type"),
    [
        (["graphql-ws"], None, "BadRequestException"),
        ([SUBPROTOCOL], "http://evil.example", "UnauthorizedException"),
    ],
    ids=["no-subprotocol", "foreign-origin"],
)
async def test_refused_upgrades_carry_the_json_error_shape(
    subprotocols: list[str], origin: str | None, error_type: str
) -> None:
    """An upgrade refused before it happens (no aws-appsync-event-ws subprotocol, a foreign
    Origin) is a 403 with the JSON error shape (it had an empty text/plain body)."""
    with AppSyncEventsEmulator(port=0) as emulator:
        with pytest.raises(InvalidStatus) as info:
            await websockets.connect(
                emulator.realtime_url,
                subprotocols=subprotocols,  # type: ignore[arg-type]
                origin=origin,  # type: ignore[arg-type]
                proxy=None,
            )
    response = info.value.response
    assert response.status_code == 403
    # The body is JSON; uvicorn writes a refused upgrade's Content-Type itself.
    assert json.loads(response.body)["errors"][0]["errorType"] == error_type


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ('{"type":"subscribe","id":"\\ud800"}', "has no 'channel'"),
        ('{"type":7,"id":"\\udfff"}', "non-string 'type'"),
        ('{"type":"x\\ud800"}', "Unsupported operation: x\\ud800"),
    ],
    ids=["id-of-a-bad-subscribe", "id-of-a-frame-without-type", "unknown-type"],
)
async def test_a_lone_surrogate_in_an_unreadable_frame_is_not_echoed(
    frame: str, message: str
) -> None:
    """A frame the decoder refuses gets its error answer without its id or type when they
    hold a lone surrogate (echoing them made the answer unsendable), and the connection
    stays up."""
    with AppSyncEventsEmulator(port=0) as emulator:
        ws = await open_socket(emulator)
        await ws.send('{"type":"connection_init"}')
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(frame)
        answer = json.loads(await asyncio.wait_for(_answer(ws), DEADLINE))
        assert answer["type"] == "error"
        assert "id" not in answer
        assert message in answer["errors"][0]["message"]
        await ws.send('{"type":"connection_init"}')
        assert json.loads(await asyncio.wait_for(_answer(ws), DEADLINE))["type"] == (
            "connection_ack"
        )
        await ws.close()


async def test_a_client_that_stops_reading_is_cut_off_at_the_frame_bound(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A subscriber that stops reading cannot grow the emulator's memory: past
    MAX_PENDING_FRAMES waiting frames it loses them and is closed with 1008 (one INFO
    line); the other clients are served meanwhile."""
    from appsync_events.emulator import asgi

    monkeypatch.setattr(asgi, "MAX_PENDING_FRAMES", 20)
    big = "x" * 100_000
    with AppSyncEventsEmulator(port=0) as emulator:
        auth = json.dumps({"host": emulator.http_host, "x-api-key": emulator.api_key})

        async def subscriber(**kwargs: Any) -> Any:
            ws = await open_socket(emulator, **kwargs)
            await ws.send('{"type":"connection_init"}')
            assert json.loads(await _answer(ws))["type"] == "connection_ack"
            await ws.send(
                '{"type":"subscribe","id":"s","channel":"/default/*","authorization":' + auth + "}"
            )
            assert json.loads(await _answer(ws))["type"] == "subscribe_success"
            return ws

        # max_queue=1: the client library soon stops reading the socket, as a stuck
        # client would; without compression (the frames would shrink to nothing) the
        # kernel buffers fill after a few MB, then the emulator's queue.
        stalled = await subscriber(max_queue=1, compression=None, ping_interval=None)
        healthy = await subscriber()
        published = 0
        with caplog.at_level(logging.INFO, logger="appsync_events.emulator.asgi"):
            for _ in range(1_000):  # at most 100 MB offered; the bound hits far sooner
                emulator.publish("/default/big", big)
                published += 1
                if "frames behind" in caplog.text:
                    break
                frame = json.loads(await asyncio.wait_for(_answer(healthy), DEADLINE))
                assert frame["type"] == "data"
        assert "fell" in caplog.text
        assert "closing it with 1008" in caplog.text
        # The healthy subscriber is still served.
        emulator.publish("/default/small", "after")
        while True:
            frame = json.loads(await asyncio.wait_for(_answer(healthy), DEADLINE))
            if json.loads(frame["event"]) == "after":
                break
        # The stalled one, once it reads again, gets what was already on its way, then 1008.
        received = 0
        try:
            while True:
                await asyncio.wait_for(stalled.recv(), DEADLINE)
                received += 1
        except ConnectionClosed as closed:
            close = closed.rcvd
        assert close is not None
        assert close.code == 1008
        assert close.reason == "too slow: frames not read"
        assert received < published  # what waited in the emulator was dropped
        await healthy.close()


@pytest.mark.parametrize(
    ("shutdown_waits_for", "warnings"),
    [
        ("force_exit", ["no longer waiting"]),  # open connections that never close
        ("nothing", ["no longer waiting", "stopping its event loop"]),  # a stuck loop task
    ],
)
def test_stop_always_ends_the_server_thread(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    shutdown_waits_for: str,
    warnings: list[str],
) -> None:
    """A graceful shutdown that does not finish is cut short in stages, each with a
    WARNING; stop() returns with the server thread ended either way."""
    from appsync_events.emulator import server as server_module

    monkeypatch.setattr(server_module, "STOP_GRACE", 0.3)

    async def stuck_shutdown(self: Any, sockets: Any = None) -> None:
        while shutdown_waits_for == "nothing" or not self.force_exit:  # noqa: ASYNC110 - as uvicorn polls
            await asyncio.sleep(0.01)

    monkeypatch.setattr(server_module._Server, "shutdown", stuck_shutdown)
    emulator = AppSyncEventsEmulator(port=0).start()
    thread = emulator._thread
    assert thread is not None
    with caplog.at_level(logging.WARNING, logger="appsync_events.emulator.server"):
        emulator.stop()
    assert not thread.is_alive()
    said = [r.getMessage() for r in caplog.records if r.name == "appsync_events.emulator.server"]
    assert len(said) == len(warnings)
    for text, expected in zip(said, warnings, strict=True):
        assert expected in text
    assert not emulator.running
