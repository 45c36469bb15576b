"""With every logger at DEBUG, a connect / subscribe / publish in each mode logs no secret.

A small local service stands in for AppSync (the emulator can replace it later): a
``websockets`` server on 127.0.0.1 answering ``connection_ack`` / ``subscribe_success`` /
``publish_success``, and an ASGI app under uvicorn answering ``POST /event``. Both check the
authorization they receive (API key and token equality; IAM by recomputing the SigV4
signature independently), so the test also proves the headers are right on the wire.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.typing import Subprotocol

from appsync_events.auth import (
    aconnect_headers,
    ahttp_headers,
    aoperation_headers,
    decode_header_subprotocol,
    encode_header_subprotocol,
)
from appsync_events.conf import get_api_config
from appsync_events.protocol import (
    SUBPROTOCOL,
    ConnectionAck,
    ConnectionInit,
    ErrorEntry,
    Publish,
    PublishErrorMessage,
    PublishSuccess,
    Subscribe,
    SubscribeErrorMessage,
    SubscribeSuccess,
    SuccessfulEvent,
    decode,
    encode,
    signing_body,
)
from appsync_events.redaction import redacting_logger
from tests.test_auth_iam import reference_signature

API_KEY = "da2-loggingtest0000000000000000"
COGNITO_TOKEN = "eyJcognito.secret-cognito-token.signature-part"
OIDC_TOKEN = "oidc-secret-token-from-environment"
LAMBDA_TOKEN = "lambda-opaque-secret-token"
ACCESS_KEY = "ASIALOGGINGTEST"
SECRET_KEY = "logging-test-secret-key-0123456789abcdef"
SESSION_TOKEN = "logging-test-session-token-ZXhhbXBsZQ//wEaDA"

ALL_LOGGERS = (
    "",
    "appsync_events",
    "websockets",
    "websockets.client",
    "websockets.server",
    "botocore",
    "boto3",
    "asyncio",
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "httpx",
    "httpcore",
)


class Capture(logging.Handler):
    """Keep every record, formatted with tracebacks, as the handler would write it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))


@pytest.fixture
def capture() -> Iterator[Capture]:
    """Put every relevant logger at DEBUG and capture all records at the root."""
    handler = Capture()
    previous = {name: logging.getLogger(name).level for name in ALL_LOGGERS}
    for name in ALL_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        for name, level in previous.items():
            logging.getLogger(name).setLevel(level)


# -- the stand-in service ------------------------------------------------------------------


@dataclass
class Checker:
    """Validates an authorization header object for the mode under test."""

    mode: str
    seen: list[str] = field(default_factory=list)

    def ok(self, headers: dict[str, str], body: bytes) -> bool:
        lowered = {k.lower(): v for k, v in headers.items()}
        if self.mode == "API_KEY":
            good = lowered.get("x-api-key") == API_KEY
        elif self.mode == "AWS_IAM":
            auth = lowered.get("authorization", "")
            good = (
                lowered.get("x-amz-security-token") == SESSION_TOKEN
                and f"Credential={ACCESS_KEY}/" in auth
                and auth.endswith(f"Signature={reference_signature(headers, body, SECRET_KEY)}")
            )
        else:
            expected = {
                "AMAZON_COGNITO_USER_POOLS": COGNITO_TOKEN,
                "OPENID_CONNECT": OIDC_TOKEN,
                "AWS_LAMBDA": LAMBDA_TOKEN,
            }[self.mode]
            good = lowered.get("authorization") == expected
        self.seen.append(f"{'ok' if good else 'BAD'}:{len(body)}")
        return good


async def handle(ws: ServerConnection, checker: Checker) -> None:
    """Answer the AppSync handshake and operations, checking every authorization."""
    assert ws.request is not None
    offered = [p.strip() for p in ws.request.headers["Sec-WebSocket-Protocol"].split(",")]
    header = next(p for p in offered if p.startswith("header-"))
    if not checker.ok(decode_header_subprotocol(header), b"{}"):
        await ws.close(4001, "unauthorized")
        return
    async for frame in ws:
        message = decode(frame)
        if isinstance(message, ConnectionInit):
            await ws.send(encode(ConnectionAck()))
        elif isinstance(message, Subscribe):
            body = signing_body(message.channel).encode()
            if checker.ok(dict(message.authorization), body):
                await ws.send(encode(SubscribeSuccess(id=message.id)))
            else:
                await ws.send(
                    encode(
                        SubscribeErrorMessage(id=message.id, errors=(ErrorEntry("Unauthorized"),))
                    )
                )
        elif isinstance(message, Publish):
            body = signing_body(message.channel, message.events).encode()
            if checker.ok(dict(message.authorization), body):
                successful = tuple(
                    SuccessfulEvent(identifier=str(uuid.uuid4()), index=i)
                    for i in range(len(message.events))
                )
                await ws.send(encode(PublishSuccess(id=message.id, successful=successful)))
            else:
                await ws.send(
                    encode(PublishErrorMessage(id=message.id, errors=(ErrorEntry("Unauthorized"),)))
                )


def http_app(checker: Checker) -> Callable[..., Awaitable[None]]:
    """An ASGI app for POST /event that checks the auth headers and accepts every event."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        if checker.ok(headers, body):
            events = json.loads(body)["events"]
            status = 200
            reply = {
                "successful": [
                    {"identifier": str(uuid.uuid4()), "index": i} for i in range(len(events))
                ],
                "failed": [],
            }
        else:
            status, reply = 401, {"errors": [{"errorType": "UnauthorizedException"}]}
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps(reply).encode()})

    return app


@dataclass
class Service:
    """The running stand-in service."""

    ws_port: int
    http_port: int
    checker: Checker


@pytest.fixture
async def service(request: pytest.FixtureRequest) -> AsyncIterator[Service]:
    """Start the websocket server and the uvicorn HTTP app on 127.0.0.1, port 0."""
    checker = Checker(request.param)
    ws_server = await serve(
        lambda ws: handle(ws, checker),
        "127.0.0.1",
        0,
        subprotocols=[Subprotocol(SUBPROTOCOL)],
        logger=redacting_logger("websockets.server"),
    )
    ws_port = ws_server.sockets[0].getsockname()[1]
    # A socket already listening: connections queue until uvicorn accepts them, so the
    # test needs no readiness polling.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    http_port = sock.getsockname()[1]
    config = uvicorn.Config(
        http_app(checker), log_config=None, log_level="debug", lifespan="off", ws="none"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield Service(ws_port, http_port, checker)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()
        ws_server.close()
        await ws_server.wait_closed()


# -- the modes -----------------------------------------------------------------------------


async def lambda_token(**context: Any) -> str:
    """An async token callable for the Lambda mode."""
    return LAMBDA_TOKEN


def configure(settings: Any, monkeypatch: pytest.MonkeyPatch, mode: str, port: int) -> None:
    """Point the default alias at the stand-in service with credentials for ``mode``."""
    modes: dict[str, dict[str, Any]] = {
        "API_KEY": {"API_KEY": API_KEY},
        # IAM through the standard chain, so botocore's own credential lookup logs too.
        "AWS_IAM": {"AWS_IAM": {}},
        "AMAZON_COGNITO_USER_POOLS": {"AMAZON_COGNITO_USER_POOLS": COGNITO_TOKEN},
        "OPENID_CONNECT": {"OPENID_CONNECT": {"token_env": "APPSYNC_LOGGING_TEST_TOKEN"}},
        "AWS_LAMBDA": {
            "AWS_LAMBDA": {"token_callable": "tests.test_auth_logging.lambda_token", "cache": 60}
        },
    }
    auth = modes[mode]
    monkeypatch.setenv("APPSYNC_LOGGING_TEST_TOKEN", OIDC_TOKEN)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    settings.APPSYNC_EVENTS = {
        "default": {
            "HTTP_URL": f"http://127.0.0.1:{port}/event",
            "REGION": "us-east-1",
            "AUTH": auth,
        }
    }


async def exchange(ws: Any, message: Any) -> Any:
    """Send one message and return the decoded reply."""
    await ws.send(encode(message))
    return decode(await asyncio.wait_for(ws.recv(), 10))


MODES = ["API_KEY", "AWS_IAM", "AMAZON_COGNITO_USER_POOLS", "OPENID_CONNECT", "AWS_LAMBDA"]


@pytest.mark.parametrize("service", MODES, indirect=True)
async def test_no_secret_reaches_any_log_record(service, settings, monkeypatch, capture):
    """Connect, subscribe, websocket publish and HTTP publish leave no secret in any record."""
    mode = service.checker.mode
    configure(settings, monkeypatch, mode, service.ws_port)
    api = get_api_config()
    produced: list[dict[str, str]] = []

    connect_auth = await aconnect_headers(api)
    produced.append(connect_auth)
    header = encode_header_subprotocol(connect_auth)
    channel = "/default/room"
    events = ['{"text":"hello"}', '{"n":2}']
    async with connect(
        f"ws://127.0.0.1:{service.ws_port}/event/realtime",
        subprotocols=[Subprotocol(SUBPROTOCOL), Subprotocol(header)],
        logger=redacting_logger("websockets.client"),
    ) as ws:
        assert isinstance(await exchange(ws, ConnectionInit()), ConnectionAck)
        sub_auth = await aoperation_headers(api, "subscribe", channel)
        produced.append(sub_auth)
        reply = await exchange(ws, Subscribe(id="sub-1", channel=channel, authorization=sub_auth))
        assert isinstance(reply, SubscribeSuccess)
        pub_auth = await aoperation_headers(api, "publish", channel, events)
        produced.append(pub_auth)
        reply = await exchange(
            ws, Publish(id="pub-1", channel=channel, events=tuple(events), authorization=pub_auth)
        )
        assert isinstance(reply, PublishSuccess)
        assert len(reply.successful) == 2

    # Route the HTTP host to the uvicorn port: the signed host stays the API's HTTP host.
    body = json.dumps({"channel": channel, "events": events}, separators=(",", ":")).encode()
    http_auth = await ahttp_headers(api, channel, body)
    produced.append(http_auth)
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"http://127.0.0.1:{service.http_port}/event", content=body, headers=http_auth
        )
    assert response.status_code == 200, response.text
    assert len(service.checker.seen) == 4
    assert all(s.startswith("ok") for s in service.checker.seen)

    secrets = {API_KEY, COGNITO_TOKEN, OIDC_TOKEN, LAMBDA_TOKEN, SECRET_KEY, SESSION_TOKEN, header}
    for headers in produced:
        auth = headers.get("authorization", "")
        if "Signature=" in auth:
            secrets.add(auth.rsplit("Signature=", 1)[1])
    text = "\n".join(capture.lines)
    leaked = sorted(s for s in secrets if s in text)
    assert not leaked, f"{len(leaked)} secret(s) found in log records"
    # The capture really saw the handshake: websockets logged the (redacted) subprotocol.
    assert any(
        r.name == "websockets.client" and "Sec-WebSocket-Protocol" in r.getMessage()
        for r in capture.records
    )
    assert "header-<redacted>" in text
    assert any(r.name.startswith("uvicorn") for r in capture.records)


@pytest.mark.parametrize("service", ["API_KEY"], indirect=True)
async def test_plain_websockets_logger_would_leak(service, settings, monkeypatch, capture):
    """Control: without the redacting logger websockets logs the header- value at DEBUG."""
    configure(settings, monkeypatch, "API_KEY", service.ws_port)
    header = encode_header_subprotocol(await aconnect_headers(get_api_config()))
    async with connect(
        f"ws://127.0.0.1:{service.ws_port}/event/realtime",
        subprotocols=[Subprotocol(SUBPROTOCOL), Subprotocol(header)],
    ) as ws:
        assert isinstance(await exchange(ws, ConnectionInit()), ConnectionAck)
    assert any(header in line for line in capture.lines)
