"""No secret, nor any 8-character piece of one, reaches a log record at DEBUG.

For each of the five auth modes, against the emulator (in this process, so its own
records count too): a connect refused once then accepted, a subscribe, a websocket
publish, an HTTP publish, the events received, a close; every logger at DEBUG
(``appsync_events``, ``websockets``, ``uvicorn``, ``botocore``, ``asyncio``, ``httpx``,
the root) through the capture of ``tests/test_auth_logging.py``. The secrets are the
configured ones (API key, IAM secret key and session token, the JWTs, the Lambda token)
and what travelled on the wire (every authorization value the emulator received, the
SigV4 signatures, the ``header-`` subprotocol).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from appsync_events.client import AppSyncEventsClient
from appsync_events.emulator import (
    AppSyncEventsEmulator,
    HandlerContext,
    NamespaceHandlers,
    NamespaceSpec,
)
from appsync_events.events import ReceivedEvent
from appsync_events.protocol import encode_header_subprotocol
from appsync_events.publishing import apublish
from tests.test_auth_logging import (  # noqa: F401 - the capture fixture
    ACCESS_KEY,
    API_KEY,
    LAMBDA_TOKEN,
    MODES,
    SECRET_KEY,
    SESSION_TOKEN,
    Capture,
    capture,
)

from .conftest import Scenario, scale
from .harness import eventually

FRAGMENT = 8
WRONG_KEY = "da2-q7vx2mw9kz4tj8pn3rc6hb5yfd1s"  # random-looking: no word of a log line


def auth_setting(mode: str, emulator: AppSyncEventsEmulator, monkeypatch: Any) -> dict[str, Any]:
    """The alias's ``AUTH`` for ``mode``; returns it, and the tokens it uses."""
    if mode == "API_KEY":
        return {"API_KEY": API_KEY}
    if mode == "AWS_IAM":
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
        return {"AWS_IAM": {}}
    if mode == "AMAZON_COGNITO_USER_POOLS":
        return {mode: emulator.issue_token(mode=mode, subject="ada")}
    if mode == "OPENID_CONNECT":
        monkeypatch.setenv("APPSYNC_RELIABILITY_OIDC", emulator.issue_token(mode=mode))
        return {mode: {"token_env": "APPSYNC_RELIABILITY_OIDC"}}
    return {mode: {"token_callable": "tests.test_auth_logging.lambda_token", "cache": 60}}


def fragments(secret: str) -> set[str]:
    """Every ``FRAGMENT``-character piece of ``secret`` (the whole of a shorter one)."""
    if len(secret) <= FRAGMENT:
        return {secret}
    return {secret[i : i + FRAGMENT] for i in range(len(secret) - FRAGMENT + 1)}


def wire_secrets(headers: dict[str, str]) -> dict[str, str]:
    """The secret parts of an authorization header object seen on the wire."""
    found: dict[str, str] = {}
    for name, value in headers.items():
        if name == "x-api-key" or name == "x-amz-security-token":
            found[name] = value
        elif name == "authorization":
            if value.startswith("AWS4-HMAC-SHA256"):
                found["SigV4 signature"] = value.rsplit("Signature=", 1)[1]
            else:
                found["authorization"] = value.removeprefix("Bearer ")
    return found


def record_headers(seen: list[dict[str, str]]) -> NamespaceHandlers:
    """Handler stand-ins keeping the authorization headers of every operation."""

    def record(ctx: HandlerContext) -> None:
        seen.append(dict(ctx.headers))

    return NamespaceHandlers(on_publish=record, on_subscribe=record)


async def one_mode(
    mode: str,
    emulator: AppSyncEventsEmulator,
    settings: Any,
    monkeypatch: Any,
    figures: Scenario,
) -> dict[str, str]:
    """Run every operation in ``mode``; return the secrets involved, by label."""
    seen: list[dict[str, str]] = []
    await asyncio.to_thread(emulator.reset)
    emulator.configure(
        namespaces={"default": NamespaceSpec("default", (mode,), (mode,))},
        connection_auth_modes=(mode,),
        handlers={"default": record_headers(seen)},
    )
    secrets: dict[str, str] = {"wrong API key": WRONG_KEY}
    settings.APPSYNC_EVENTS = {
        "default": {
            "HTTP_URL": emulator.http_url,
            "REGION": "us-east-1",
            "AUTH": auth_setting(mode, emulator, monkeypatch),
            "NAMESPACES": {"default": {}},
            "LISTENER": {"BACKOFF_INITIAL": 0.05, "BACKOFF_MAX": 0.2},
        }
    }
    for name, value in settings.APPSYNC_EVENTS["default"]["AUTH"].items():
        if isinstance(value, str):
            secrets[f"{name} setting"] = value
    received: list[Any] = []

    async def on_event(event: ReceivedEvent) -> None:
        received.append(event.payload)

    emulator.faults.reject_next_connects(1)  # the refusal is logged too
    client = AppSyncEventsClient("default", on_event=on_event)
    try:
        await client.connect()
        await client.subscribe("/default/room")
        connections = emulator.state.all_connections()
        assert len(connections) == 1
        connect_headers = dict(connections[0].headers)
        await client.publish("/default/room", ['{"n":1}'])
        await apublish("/default/room", {"n": 2})
        figures.events_published += 2
        await eventually(lambda: len(received) >= 2, f"both events in {mode}")
        figures.events_received += len(received)
    finally:
        await client.aclose()
    async with httpx.AsyncClient(trust_env=False) as http:  # a refused credential
        refused = await http.post(
            emulator.http_url,
            content=json.dumps({"channel": "/default/room", "events": ["1"]}),
            headers={"x-api-key": WRONG_KEY},
        )
    assert refused.status_code in (401, 403)
    assert len(seen) >= 3, seen  # subscribe, websocket publish, HTTP publish
    for number, headers in enumerate([connect_headers, *seen]):
        for label, value in wire_secrets(headers).items():
            secrets[f"{label} #{number}"] = value
    secrets["header- subprotocol"] = encode_header_subprotocol(connect_headers)
    return secrets


async def test_no_secret_fragment_in_any_log_record(
    settings: Any,
    monkeypatch: Any,
    capture: Capture,  # noqa: F811
    figures: Scenario,
) -> None:
    """In every auth mode, with every logger at DEBUG, no log record holds a secret or any
    8-character piece of one; the capture really saw DEBUG records of the client, the
    emulator, websockets and uvicorn."""
    figures.title = "Secrets at DEBUG (five auth modes)"
    figures.family = "security"
    rounds = scale(1, 3)
    checked = 0
    emulator = AppSyncEventsEmulator(
        "127.0.0.1",
        0,
        api_keys=[API_KEY],
        iam_credentials={ACCESS_KEY: SECRET_KEY},
        iam_session_tokens={ACCESS_KEY: SESSION_TOKEN},
        lambda_authorizer=lambda request: {
            "isAuthorized": request["authorizationToken"] == LAMBDA_TOKEN
        },
    )
    async with emulator:
        for _ in range(rounds):
            for mode in MODES:
                figures.inputs_tried += 1
                secrets = await one_mode(mode, emulator, settings, monkeypatch, figures)
                text = "\n".join(capture.lines)
                leaks = sorted(
                    f"{label}: {piece!r}"
                    for label, secret in secrets.items()
                    for piece in fragments(secret)
                    if piece in text
                )
                checked += sum(len(fragments(s)) for s in secrets.values())
                assert not leaks, f"{mode}: {len(leaks)} secret fragment(s) logged: {leaks[:10]}"
                figures.inputs_handled += 1
    names = {r.name for r in capture.records}
    for expected in ("appsync_events.client", "websockets.client", "uvicorn.error", "botocore"):
        assert any(n == expected or n.startswith(expected + ".") for n in names), (expected, names)
    assert any(r.levelname == "DEBUG" for r in capture.records)
    figures.details["log records"] = len(capture.records)
    figures.details["fragments checked"] = checked
    figures.details["modes"] = list(MODES)
