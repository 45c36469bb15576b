"""Interop: the official AWS JS client (``aws-amplify`` ``events``, ``authMode: 'lambda'``)
with a token minted by Django, against the emulator running the real Lambda authorizer.

The scenario runner and its output are those of ``test_amplify.py`` (``js/driver.mjs``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User

from appsync_events.emulator import AppSyncEventsEmulator, NamespaceSpec
from appsync_events.lambda_authorizer import KEYS_ENV
from appsync_events.tokens import mint
from tests.interop.test_amplify import run
from tests.prereqs import require_node

pytestmark = pytest.mark.node

KEY = "interop-direct-key-0123456789abcdef01234"


@pytest.fixture(scope="module")
def node_path() -> str:
    """The node executable (skips, or fails under CI=true, when missing)."""
    return require_node()


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch, settings: Any) -> Iterator[AppSyncEventsEmulator]:
    """The emulator running the authorizer module; Django holds the same signing key."""
    monkeypatch.setenv(KEYS_ENV, json.dumps({"k1": KEY}))
    settings.APPSYNC_EVENTS = {
        "default": {
            **settings.APPSYNC_EVENTS["default"],
            "NAMESPACES": {"lam": {}},
            "TOKENS": {"SIGNING_KEYS": {"k1": KEY}},
        }
    }
    with AppSyncEventsEmulator(
        namespaces=[NamespaceSpec("lam", ("AWS_LAMBDA",), ("AWS_LAMBDA",))],
        lambda_authorizer="appsync_events.lambda_authorizer.handler",
    ) as emu:
        yield emu


def test_official_client_connects_subscribes_and_publishes_with_a_minted_token(
    node_path: str, emulator: AppSyncEventsEmulator
) -> None:
    """Amplify in lambda mode, with a token from ``mint()``: connect, subscribe and publish
    (websocket and HTTP) on granted channels; a subscribe and a post elsewhere are refused."""
    user = User(pk=7, username="amplify")
    token = mint(user, subscribe=["/lam/rooms/*"], publish=["/lam/rooms/7"])
    out = run(
        node_path,
        emulator,
        [
            {"op": "connect", "channel": "/lam/rooms/7", "as": "c1"},
            {"op": "subscribe", "channel_ref": "c1", "as": "s1"},
            {"op": "publish", "channel_ref": "c1", "event": {"via": "ws"}},
            {"op": "post", "channel": "/lam/rooms/7", "event": {"via": "http"}},
            {"op": "wait_data", "count": 2, "timeout_ms": 10000},
            {"op": "connect", "channel": "/lam/secret", "as": "c2"},
            {"op": "subscribe", "channel_ref": "c2", "as": "s2"},
            {"op": "post", "channel": "/lam/rooms/8", "event": {"via": "http"}},
            {"op": "close_all"},
        ],
        authMode="lambda",
        token=token,
        trace=True,
    )
    assert out.of("connected") == [
        {"kind": "connected", "as": "c1", "step": 0},
        {"kind": "connected", "as": "c2", "step": 5},
    ]
    assert out.one("subscribed")["sub"] == "s1"
    assert out.one("publish_result")["frame"]["type"] == "publish_success"
    assert sorted(json.dumps(line["data"]["event"]) for line in out.of("data")) == [
        '{"via": "http"}',
        '{"via": "ws"}',
    ]
    refused = out.one("subscribe_failed")
    assert refused["sub"] == "s2"
    assert "Unauthorized" in json.dumps(refused["error"])
    assert out.one("post_error")["status"] == 401
    dial = out.of("ws_dial")[0]["connectAuth"]
    assert dial["Authorization"] == token
    assert {r.auth_mode for r in emulator.published} == {"AWS_LAMBDA"}
    assert sorted(r.transport for r in emulator.published) == ["http", "websocket"]
