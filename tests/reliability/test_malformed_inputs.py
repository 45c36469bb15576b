"""A battery of malformed inputs against the emulator, over both transports.

Websocket frames (invalid JSON, binary, wrong types, unknown types, bad ids and
channels, bad authorization objects, too many, empty, oversize and non-JSON events,
deep nesting, unicode, NUL and lone-surrogate tricks, frames past the size limit),
HTTP publishes (bodies, headers, methods, paths, and requests that are not valid HTTP
at all) and websocket upgrades (bad ``header-`` subprotocols, origins, paths).

Each answer must have the service's error shape: a JSON ``errors`` list of objects with
an ``errorType`` (``connection_error``, ``subscribe_error``, ``publish_error``,
``unsubscribe_error`` or ``error`` on the websocket; a 4xx JSON body over HTTP), or be
the documented partial success (``failed`` entries for oversize events). No 5xx, and no
websocket closed unless the websocket protocol says so (a frame over the size limit:
1009). After each input the attacked websocket still publishes, and the emulator still
serves a normal HTTP publish to a subscriber.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
import websockets

from appsync_events.emulator import AppSyncEventsEmulator
from appsync_events.protocol import SUBPROTOCOL
from tests.test_emulator_helpers import RawClient

from .conftest import MemoryWatch, Scenario, scale

UVICORN_VERSION = tuple(int(part) for part in uvicorn.__version__.split(".")[:2])

KEY = "da2-reliabilitymalformed0000000"
ERROR_TYPES = frozenset(
    {"error", "subscribe_error", "publish_error", "unsubscribe_error", "connection_error"}
)
ANSWER_TIMEOUT = 10.0
MiB = 2**20

# -- the inputs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """Websocket frames sent in turn on one connection; the last one's answer is judged.

    ``expect``: ``"error"`` (an error shape), ``"failed"`` (``publish_success`` with
    ``failed`` entries), ``"answer"`` (any protocol answer: success or error shape) or
    ``"close"`` (the websocket protocol closes the connection with ``close_code``).
    """

    name: str
    frames: tuple[str | bytes, ...]
    expect: str = "error"
    close_code: int | None = None


def frame(name: str, *frames: str | bytes | dict[str, Any], expect: str = "error") -> Frame:
    """A :class:`Frame`; dicts are sent as JSON."""
    return Frame(name, tuple(json.dumps(f) if isinstance(f, dict) else f for f in frames), expect)


AUTH = {"x-api-key": KEY}  # "host" is added per emulator in auth()


def sub(channel: Any = "/default/a", sub_id: Any = "s1", authorization: Any = None, **extra: Any):
    """A subscribe message (authorization defaults to the good API key)."""
    message = {"type": "subscribe", "id": sub_id, "channel": channel}
    message["authorization"] = AUTH if authorization is None else authorization
    return message | extra


def pub(events: Any = ('{"a":1}',), channel: Any = "/default/a", pub_id: Any = "p1", **kw: Any):
    """A publish message (authorization defaults to the good API key)."""
    message = {"type": "publish", "id": pub_id, "channel": channel, "events": events}
    message["authorization"] = kw.pop("authorization", AUTH)
    return message | kw


DEEP = "[" * 200_000 + "]" * 200_000
BIG_EVENT = json.dumps("x" * 245_000)

WEBSOCKET_INPUTS: list[Frame] = [
    frame("invalid JSON", "not json{"),
    frame("empty text frame", ""),
    frame("binary frame", b"\x00\xffbinary"),
    frame("binary frame holding valid JSON", b'{"type":"connection_init"}'),
    frame("JSON array", "[]"),
    frame("JSON string", '"subscribe"'),
    frame("JSON number", "42"),
    frame("JSON null", "null"),
    frame("object without type", "{}"),
    frame("integer type", '{"type":42}'),
    frame("null type with id", '{"type":null,"id":"x"}'),
    frame("server type ka", '{"type":"ka"}'),
    frame("server type data", '{"type":"data","id":"x","event":"{}"}'),
    frame("unknown type, 10,000 characters", json.dumps({"type": "x" * 10_000})),
    frame("UTF-8 BOM before the JSON", "\ufeff" + json.dumps(sub())),
    frame("JSON nested 200,000 deep", DEEP),
    frame(
        "nesting past the parser in an unknown member",
        json.dumps(sub())[:-1] + ',"x":' + DEEP + "}",
    ),
    frame("10 MB of non-JSON text", "x" * 10_000_000),
    frame("subscribe without id", {"type": "subscribe", "channel": "/default/a"}),
    frame("subscribe with an integer id", sub(sub_id=1)),
    frame("subscribe with an empty id", sub(sub_id="")),
    frame("subscribe with a 129-character id", sub(sub_id="a" * 129)),
    frame("subscribe with spaces in the id", sub(sub_id="bad id!")),
    frame("subscribe with a unicode id", sub(sub_id="ünïcode")),
    frame("subscribe with NUL in the id", sub(sub_id="a\x00b")),
    frame("subscribe with a lone surrogate id", sub(sub_id="\ud800")),
    frame("subscribe without channel", {"type": "subscribe", "id": "s1", "authorization": AUTH}),
    frame("subscribe with an integer channel", sub(channel=7)),
    frame("subscribe to an empty channel", sub(channel="")),
    frame("subscribe to /", sub(channel="/")),
    frame("subscribe with an empty segment", sub(channel="//default//a")),
    frame("subscribe with a wildcard mid-path", sub(channel="/default/*/a")),
    frame("subscribe to six segments", sub(channel="/default/a/b/c/d/e")),
    frame("subscribe with a 51-character segment", sub(channel="/default/" + "x" * 51)),
    frame("subscribe with NUL in the channel", sub(channel="/default/a\x00b")),
    frame("subscribe with a lone surrogate channel", sub(channel="/default/\ud800")),
    frame("subscribe to a unicode channel", sub(channel="/default/ä")),
    frame("subscribe to a channel with a space", sub(channel="/default/a b")),
    frame("subscribe to %2F", sub(channel="/default/%2F")),
    frame("subscribe to ..", sub(channel="/default/..")),
    frame("subscribe to an unknown namespace", sub(channel="/nosuchnamespace/a")),
    frame(
        "subscribe without authorization",
        {"type": "subscribe", "id": "s1", "channel": "/default/a"},
    ),
    frame("subscribe with a string authorization", sub(authorization="x-api-key")),
    frame("subscribe with an integer header value", sub(authorization={"x-api-key": 123})),
    frame("subscribe with a wrong API key", sub(authorization={"x-api-key": "da2-wrong"})),
    frame("subscribe with a non-ASCII API key", sub(authorization={"x-api-key": "é" * 30})),
    frame("subscribe with a lone surrogate API key", sub(authorization={"x-api-key": "\ud800"})),
    frame(
        "subscribe with a garbage bearer token",
        sub(authorization={"authorization": "Bearer x.y.z"}),
    ),
    frame(
        "subscribe with a garbage SigV4 header",
        sub(authorization={"authorization": "AWS4-HMAC-SHA256 x"}),
    ),
    frame(
        "subscribe with 10,000 headers",
        sub(authorization={**AUTH, **{f"x-h{i}": "v" for i in range(10_000)}}),
        expect="answer",
    ),
    frame("subscribe twice with one id", sub(sub_id="dup"), sub(sub_id="dup")),
    frame("unsubscribe an unknown id", {"type": "unsubscribe", "id": "nope"}),
    frame("unsubscribe without id", {"type": "unsubscribe"}),
    frame(
        "publish without events",
        {"type": "publish", "id": "p1", "channel": "/default/a", "authorization": AUTH},
    ),
    frame("publish events as a string", pub(events="[1]")),
    frame("publish events as numbers", pub(events=[1, 2])),
    frame("publish no event", pub(events=[])),
    frame("publish six events", pub(events=["1"] * 6)),
    frame("publish an event that is not JSON", pub(events=["{not json"])),
    frame("publish an event nested 200,000 deep", pub(events=[DEEP])),
    frame("publish a lone surrogate event", pub(events=['"\ud800"'])),
    frame("publish a lone surrogate inside a valid event", pub(events=['{"a":"\ud800"}', "1"])),
    frame("publish to a wildcard", pub(channel="/default/*")),
    frame("publish to an unknown namespace", pub(channel="/nosuchnamespace/a")),
    frame("publish to a channel with NUL", pub(channel="/default/\x00")),
    frame("publish with a wrong API key", pub(authorization={"x-api-key": "da2-wrong"})),
    frame("publish with a lone surrogate API key", pub(authorization={"x-api-key": "\udfff"})),
    frame("publish an event over 240 KB", pub(events=[BIG_EVENT, "1"]), expect="failed"),
    frame(
        "publish five events over 240 KB (1.2 MB frame)",
        pub(events=[BIG_EVENT] * 5),
        expect="failed",
    ),
    frame("publish NaN", pub(events=["NaN"]), expect="answer"),
    frame("connection_init a second time", '{"type":"connection_init"}', expect="answer"),
    Frame("a 17 MB frame (over the 16 MiB limit)", ("x" * 17_000_000,), "close", 1009),
]


@dataclass(frozen=True)
class Http:
    """One HTTP request: ``raw`` bytes on a socket, or method, path, body and headers.

    ``expect``: ``"error"`` (a 4xx JSON error shape), ``"failed"`` (200 with ``failed``
    entries) or ``"answer"`` (either, or a plain success).
    """

    name: str
    body: bytes = b""
    headers: dict[str, str] | None = None
    method: str = "POST"
    path: str = "/event"
    raw: bytes | None = None
    expect: str = "error"


def body(channel: Any = "/default/a", events: Any = ('{"a":1}',), **extra: Any) -> bytes:
    """A publish body."""
    value: dict[str, Any] = {
        "channel": channel,
        "events": list(events) if isinstance(events, tuple) else events,
    }
    return json.dumps(value | extra).encode()


def raw_request(head: str, payload: bytes = b"") -> bytes:
    """Bytes of a hand-written request (``\\n`` in ``head`` become CRLF)."""
    return head.replace("\n", "\r\n").encode("latin-1") + b"\r\n" + payload


HTTP_INPUTS: list[Http] = [
    Http("empty body"),
    Http("body that is not JSON", b"not json"),
    Http("binary body", b"\x00\xff\xfe\x01"),
    Http("JSON array body", b"[]"),
    Http("JSON string body", b'"channel"'),
    Http("JSON null body", b"null"),
    Http("empty object", b"{}"),
    Http("integer channel", body(channel=7)),
    Http("no events", json.dumps({"channel": "/default/a"}).encode()),
    Http("events as a string", body(events="[1]")),
    Http("events as numbers", body(events=[1])),
    Http("no event", body(events=[])),
    Http("six events", body(events=["1"] * 6)),
    Http("an event that is not JSON", body(events=["{nope"])),
    Http("an event nested 200,000 deep", body(events=[DEEP])),
    Http("body nested 200,000 deep", DEEP.encode()),
    Http("a lone surrogate event", b'{"channel":"/default/a","events":["\\"\\ud800\\""]}'),
    Http("a lone surrogate channel", b'{"channel":"/default/\\udc00","events":["1"]}'),
    Http("a NUL in the channel", body(channel="/default/a\x00")),
    Http("a wildcard channel", body(channel="/default/*")),
    Http("an unknown namespace", body(channel="/nosuchnamespace/a")),
    Http("a body over 1.2 MB", body(events=[json.dumps("x" * 1_300_000)])),
    Http("an event over 240 KB", body(events=[BIG_EVENT, "1"]), expect="failed"),
    Http("no credentials", body(), headers={}),
    Http("a wrong API key", body(), headers={"x-api-key": "da2-wrong"}),
    Http(
        "a latin-1 API key",
        raw=raw_request(
            "POST /event HTTP/1.1\nHost: x\nX-Api-Key: \xe9\xe9\xe9\n"
            f"Content-Length: {len(body())}\n",
            body(),
        ),
    ),
    Http("a garbage bearer token", body(), headers={"authorization": "Bearer x.y.z"}),
    Http("a garbage SigV4 header", body(), headers={"authorization": "AWS4-HMAC-SHA256 x"}),
    Http(
        "a 60 KB header", body(), headers={"x-api-key": KEY, "x-big": "a" * 60_000}, expect="answer"
    ),
    Http(
        "text/plain content type",
        body(),
        headers={"x-api-key": KEY, "content-type": "text/plain"},
        expect="answer",
    ),
    Http(
        "UTF-16 body",
        json.dumps({"channel": "/default/a", "events": ["1"]}).encode("utf-16"),
        expect="answer",
    ),
    Http("GET /event", method="GET"),
    Http("PUT /event", body(), method="PUT"),
    Http("DELETE /event", method="DELETE"),
    Http("POST to another path", body(), path="/graphql"),
    Http("POST to a path with ..", body(), path="/event/../admin"),
    Http("garbage request line", raw=raw_request("GARBAGE\n")),
    Http(
        "NUL in a header value",
        raw=raw_request(
            "POST /event HTTP/1.1\nHost: x\nX-Api-Key: a\x00b\nContent-Length: 2\n", b"{}"
        ),
    ),
    Http(
        "Content-Length that is not a number",
        raw=raw_request("POST /event HTTP/1.1\nHost: x\nContent-Length: abc\n", b"{}"),
    ),
    Http(
        "chunked body with a bad chunk size",
        raw=raw_request(
            "POST /event HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n", b"zz\r\n{}\r\n0\r\n\r\n"
        ),
    ),
    Http(
        "a 200 KB header line",
        raw=raw_request(
            "POST /event HTTP/1.1\nHost: x\nX-Big: " + "a" * 200_000 + "\nContent-Length: 2\n",
            b"{}",
        ),
    ),
    Http(
        "HTTP/1.1 without Host", raw=raw_request("POST /event HTTP/1.1\nContent-Length: 2\n", b"{}")
    ),
]


@dataclass(frozen=True)
class Upgrade:
    """A websocket upgrade; ``expect``: ``"connection_error"`` after ``connection_init``,
    or ``"refused"`` (a 4xx answer to the upgrade: a JSON error shape, unless ``plain``:
    refused by the websocket library itself before the emulator sees the request)."""

    name: str
    subprotocols: tuple[str, ...] = (SUBPROTOCOL,)
    origin: str | None = None
    path: str = "/event/realtime"
    expect: str = "connection_error"
    raw: bytes | None = None
    plain: bool = False


def header(value: bytes) -> str:
    """A ``header-`` subprotocol carrying ``value``, base64url without padding."""
    return "header-" + base64.urlsafe_b64encode(value).decode().rstrip("=")


UPGRADE_HEAD = (
    "GET /event/realtime HTTP/1.1\nHost: x\nUpgrade: websocket\nConnection: Upgrade\n"
    "Sec-WebSocket-Protocol: aws-appsync-event-ws\n"
)
UPGRADE_INPUTS: list[Upgrade] = [
    Upgrade("no header- subprotocol (no credentials)"),
    Upgrade("a header- subprotocol that is not base64url", (SUBPROTOCOL, "header-a.b!c")),
    Upgrade("a header- subprotocol holding a JSON array", (SUBPROTOCOL, header(b"[1,2]"))),
    Upgrade("a header- subprotocol holding integers", (SUBPROTOCOL, header(b'{"x-api-key":1}'))),
    Upgrade(
        "a header- subprotocol with a lone surrogate",
        (SUBPROTOCOL, header(b'{"x-api-key":"\\ud800"}')),
    ),
    Upgrade(
        "a header- subprotocol with a wrong key", (SUBPROTOCOL, header(b'{"x-api-key":"da2-no"}'))
    ),
    Upgrade("no aws-appsync-event-ws subprotocol", ("graphql-ws",), expect="refused"),
    Upgrade("a foreign Origin", origin="https://evil.example", expect="refused"),
    Upgrade("an upgrade on a wrong path", path="/event/other", expect="refused"),
    Upgrade(
        "an unsupported Sec-WebSocket-Version",
        raw=raw_request(
            UPGRADE_HEAD
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\nSec-WebSocket-Version: 99\n"
        ),
        expect="refused",
        plain=True,
    ),
    Upgrade(
        "a malformed Sec-WebSocket-Key",
        raw=raw_request(UPGRADE_HEAD + "Sec-WebSocket-Key: short\nSec-WebSocket-Version: 13\n"),
        expect="refused",
        plain=True,
    ),
]

# -- checks ----------------------------------------------------------------------------------


def assert_error_shape(answer: Any, where: str) -> None:
    """``answer`` carries a non-empty ``errors`` list of objects with an ``errorType``."""
    assert isinstance(answer, dict), f"{where}: {answer!r}"
    errors = answer.get("errors")
    assert isinstance(errors, list), f"{where}: no errors list in {answer!r}"
    assert errors, f"{where}: empty errors list"
    for entry in errors:
        assert isinstance(entry, dict), f"{where}: {entry!r}"
        assert isinstance(entry.get("errorType"), str), f"{where}: {entry!r}"


def assert_failed_entries(answer: Any, where: str) -> None:
    """``answer`` is a publish success whose ``failed`` list is not empty."""
    assert isinstance(answer, dict), f"{where}: {answer!r}"
    assert answer.get("type", "publish_success") == "publish_success", f"{where}: {answer!r}"
    assert answer["failed"], f"{where}: no failed entries in {answer!r}"
    for entry in answer["failed"]:
        assert isinstance(entry["index"], int), f"{where}: {entry!r}"


class Probe:
    """A subscriber to ``/default/probe`` proving the emulator still serves normally."""

    def __init__(self, emulator: AppSyncEventsEmulator, client: RawClient) -> None:
        self.emulator = emulator
        self.client = client
        self.sent = 0

    async def check(self, http: httpx.AsyncClient, figures: Scenario) -> None:
        """Publish one event over HTTP and await it on the subscription."""
        self.sent += 1
        response = await http.post(
            self.emulator.http_url,
            json={"channel": "/default/probe", "events": [json.dumps({"probe": self.sent})]},
            headers={"x-api-key": KEY},
        )
        figures.events_published += 1
        assert response.status_code == 200, response.text
        data = await self.client.recv_type("data", within=ANSWER_TIMEOUT)
        assert json.loads(data["event"]) == {"probe": self.sent}
        figures.events_received += 1


def auth(emulator: AppSyncEventsEmulator) -> dict[str, str]:
    return {"host": emulator.http_host, "x-api-key": KEY}


async def victim(emulator: AppSyncEventsEmulator) -> RawClient:
    client = await RawClient.open(emulator, auth(emulator))
    assert (await client.init())["type"] == "connection_ack"
    return client


async def answer_to(client: RawClient) -> dict[str, Any]:
    """The next frame that is not a keep-alive or a data frame."""
    return await client.recv_type(
        *ERROR_TYPES,
        "subscribe_success",
        "publish_success",
        "unsubscribe_success",
        "connection_ack",
        within=ANSWER_TIMEOUT,
    )


async def still_publishes(client: RawClient, emulator: AppSyncEventsEmulator, number: int) -> None:
    """The attacked connection still publishes (the answer to this very request)."""
    pub_id = f"check{number}"
    await client.send(pub(pub_id=pub_id, channel="/default/check", authorization=auth(emulator)))
    while True:
        answer = await answer_to(client)
        if answer.get("id") == pub_id:
            break
    assert answer["type"] == "publish_success", answer


async def run_frame(
    case: Frame, client: RawClient, emulator: AppSyncEventsEmulator, number: int
) -> RawClient:
    """Send ``case``; judge the answer; return the connection to use next."""
    for text in case.frames[:-1]:
        await client.send(text)
        await answer_to(client)
    await client.send(case.frames[-1])
    where = f"websocket input {case.name!r}"
    if case.expect == "close":
        with pytest.raises(websockets.ConnectionClosed):
            await answer_to(client)
        assert client.ws.close_code == case.close_code, where
        await client.close()
        return await victim(emulator)
    answer = await answer_to(client)
    if case.expect == "failed":
        assert_failed_entries(answer, where)
    elif case.expect == "error" or answer["type"] in ERROR_TYPES:
        assert answer["type"] in ERROR_TYPES, f"{where}: {answer!r}"
        assert_error_shape(answer, where)
    await still_publishes(client, emulator, number)
    return client


def send_raw(emulator: AppSyncEventsEmulator, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` on a new TCP connection; return the status, headers and body."""
    with socket.create_connection((emulator.host, emulator.port), timeout=ANSWER_TIMEOUT) as sock:
        try:
            sock.sendall(data)
        except OSError:
            pass  # the server may answer and close before reading everything
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed without an answer: {received!r}"
            received += chunk
        head, _, rest = received.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
        }
        if "content-length" in headers:
            length = int(headers["content-length"])
            while len(rest) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                rest += chunk
        elif headers.get("transfer-encoding") == "chunked":
            while not rest.endswith(b"0\r\n\r\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                rest += chunk
            rest = _dechunk(rest)
        return status, headers, rest


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


def judge_http(case: Http, status: int, headers: dict[str, str], content: bytes) -> None:
    where = f"HTTP input {case.name!r}: {status} {content[:200]!r}"
    assert status < 500, where
    assert headers.get("content-type", "").startswith("application/json"), where
    answer = json.loads(content)
    if status >= 400:
        assert case.expect in ("error", "answer"), where
        assert_error_shape(answer, where)
    elif case.expect == "failed":
        assert_failed_entries(answer, where)
    else:
        assert case.expect == "answer", where
        assert isinstance(answer.get("successful"), list), where


async def run_http(case: Http, emulator: AppSyncEventsEmulator, http: httpx.AsyncClient) -> None:
    if case.raw is not None:
        status, headers, content = await asyncio.to_thread(send_raw, emulator, case.raw)
    else:
        given = {"x-api-key": KEY} if case.headers is None else case.headers
        response = await http.request(
            case.method,
            f"http://{emulator.http_host}{case.path}",
            content=case.body,
            headers={"content-type": "application/json", **given},
        )
        status, headers, content = response.status_code, dict(response.headers), response.content
    judge_http(case, status, headers, content)


async def run_upgrade(case: Upgrade, emulator: AppSyncEventsEmulator) -> None:
    where = f"upgrade input {case.name!r}"
    if case.raw is not None:
        status, _, content = await asyncio.to_thread(send_raw, emulator, case.raw)
        assert 400 <= status < 500, f"{where}: {status}"
        if not case.plain:
            assert_error_shape(json.loads(content), where)
        return
    url = f"ws://{emulator.http_host}{case.path}"
    connecting = websockets.connect(
        url,
        subprotocols=list(case.subprotocols),  # type: ignore[arg-type]
        origin=case.origin,  # type: ignore[arg-type]
        open_timeout=ANSWER_TIMEOUT,
        proxy=None,
    )
    if case.expect == "refused":
        with pytest.raises(websockets.InvalidStatus) as info:
            await connecting
        response = info.value.response
        assert 400 <= response.status_code < 500, where
        # The body is the JSON error shape; uvicorn writes a refused upgrade's
        # Content-Type itself.
        assert_error_shape(json.loads(response.body or b"null"), f"{where}: {response.body!r}")
        return
    client = RawClient(await connecting)
    assert case.expect == "connection_error", f"{where}: the upgrade was accepted"
    async with client:
        answer = await client.init()
        assert answer["type"] == "connection_error", f"{where}: {answer!r}"
        assert_error_shape(answer, where)


# -- the scenario -----------------------------------------------------------------------------


@pytest.fixture
async def battery_emulator() -> AsyncIterator[AppSyncEventsEmulator]:
    """An emulator of its own, with no publish rate limit (the battery publishes fast)."""
    emulator = AppSyncEventsEmulator(
        "127.0.0.1",
        0,
        api_keys=[KEY],
        namespaces=["default"],
        publishes_per_second=1_000_000,
        # Tokens that are no JWT of the API reach the Lambda mode: refuse them all (without
        # an authorizer the emulator accepts any token, as docs/emulator.md says).
        lambda_authorizer=lambda request: {"isAuthorized": False},
    )
    async with emulator:
        yield emulator


def test_the_battery_is_large_enough() -> None:
    """At least 60 malformed inputs, over both transports (websocket and HTTP)."""
    assert len(WEBSOCKET_INPUTS) >= 60
    assert len(HTTP_INPUTS) + len(UPGRADE_INPUTS) >= 40
    names = [c.name for c in (*WEBSOCKET_INPUTS, *HTTP_INPUTS, *UPGRADE_INPUTS)]
    assert len(names) == len(set(names))


def _uvicorn_refusal_quirk(record: logging.LogRecord) -> bool:
    """uvicorn before 0.55.0 logs this ERROR after every upgrade refused with an HTTP
    answer (docs/emulator.md, "Loggers"); the answer itself is checked input by input."""
    return (
        UVICORN_VERSION < (0, 55)
        and record.name == "uvicorn.error"
        and record.getMessage() == "ASGI callable returned without completing handshake."
    )


async def test_malformed_inputs_get_error_shapes_and_change_nothing(
    battery_emulator: AppSyncEventsEmulator, figures: Scenario, caplog: pytest.LogCaptureFixture
) -> None:
    """Every malformed input gets the service's error shape (or the documented close or
    partial success), the emulator logs no failure of its own, and afterwards it still
    serves a subscriber and the attacked websocket still publishes."""
    emulator = battery_emulator
    figures.title = "Malformed inputs (websocket and HTTP)"
    figures.family = "hostile input"
    passes = scale(2, 25)
    memory = MemoryWatch(figures, "test process (emulator)", 48 * MiB)
    subscriber = await victim(emulator)
    assert (await subscriber.subscribe("probe", "/default/probe", auth(emulator)))["type"] == (
        "subscribe_success"
    )
    probe = Probe(emulator, subscriber)
    client = await victim(emulator)
    tried: dict[str, int] = {"websocket": 0, "http": 0, "upgrade": 0}
    failures: list[str] = []
    number = 0

    async def attempt(transport: str, name: str, run: Any) -> None:
        figures.inputs_tried += 1
        tried[transport] += 1
        try:
            await run()
            await probe.check(http, figures)
        except Exception as exc:  # every input is tried; the failures are listed at the end
            failures.append(f"{transport} input {name!r}: {type(exc).__name__}: {exc}"[:500])
        else:
            figures.inputs_handled += 1

    async with httpx.AsyncClient(timeout=ANSWER_TIMEOUT, trust_env=False) as http:
        try:
            for _ in range(passes):
                for case in WEBSOCKET_INPUTS:
                    number += 1

                    async def attack(case: Frame = case, number: int = number) -> None:
                        nonlocal client
                        try:
                            client = await run_frame(case, client, emulator, number)
                        except Exception:
                            await client.close()
                            client = await victim(emulator)
                            raise

                    await attempt("websocket", case.name, attack)
                for http_case in HTTP_INPUTS:
                    await attempt(
                        "http", http_case.name, lambda c=http_case: run_http(c, emulator, http)
                    )
                for upgrade in UPGRADE_INPUTS:
                    await attempt(
                        "upgrade", upgrade.name, lambda c=upgrade: run_upgrade(c, emulator)
                    )
                memory.sample()
        finally:
            await client.close()
            await subscriber.close()
    figures.details["distinct inputs"] = (
        len(WEBSOCKET_INPUTS) + len(HTTP_INPUTS) + len(UPGRADE_INPUTS)
    )
    figures.details["inputs by transport"] = tried
    figures.details["passes"] = passes
    assert not failures, "\n".join(failures)
    own_failures = [
        r.getMessage()[:300]
        for r in caplog.records
        if r.levelno >= logging.ERROR
        and r.name.startswith(("appsync_events", "uvicorn"))
        and not _uvicorn_refusal_quirk(r)
    ]
    assert not own_failures, own_failures
    memory.check()
