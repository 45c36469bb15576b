"""Interop: the official AWS JS client (npm ``aws-amplify``, ``events``) against the emulator.

Each test runs ``node tests/interop/js/driver.mjs`` with a scenario on stdin (see that
folder's README) against an emulator on a free loopback port, and checks what the
official client observed *and* what the emulator recorded.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appsync_events.emulator import AppSyncEventsEmulator, NamespaceSpec
from tests.prereqs import require_node

pytestmark = pytest.mark.node

JS_DIR = Path(__file__).resolve().parent / "js"
AKID = "AKIDINTEROP"
SECRET = "interopsecretkey0000000000000000000000000"
API_KEY = "da2-interop00000000000000000000"
NAMESPACES = [
    NamespaceSpec("default"),
    NamespaceSpec("iam", ("AWS_IAM",), ("AWS_IAM",)),
    NamespaceSpec("pool", ("AMAZON_COGNITO_USER_POOLS",), ("AMAZON_COGNITO_USER_POOLS",)),
    NamespaceSpec("lam", ("AWS_LAMBDA",), ("AWS_LAMBDA",)),
]


@pytest.fixture(scope="module")
def node() -> str:
    """The node executable (skips, or fails under CI=true, when missing)."""
    return require_node()


@pytest.fixture(scope="module")
def module_emulator() -> Iterator[AppSyncEventsEmulator]:
    """One emulator for the module: API key, IAM credentials, a namespace per mode."""
    with AppSyncEventsEmulator(
        api_keys=[API_KEY],
        iam_credentials={AKID: SECRET},
        namespaces=NAMESPACES,
        lambda_authorizer=lambda request: {
            "isAuthorized": request["authorizationToken"] == "lambda-ok",
            "handlerContext": {"who": "lambda"},
        },
    ) as emulator:
        yield emulator


@pytest.fixture
def emu(module_emulator: AppSyncEventsEmulator) -> AppSyncEventsEmulator:
    """The module emulator, reset."""
    module_emulator.reset()
    return module_emulator


def run(node: str, emu: AppSyncEventsEmulator, steps: list[dict[str, Any]], **config: Any):
    """Run one scenario with the official client; return its observations by kind."""
    scenario = {
        "endpoint": emu.http_url,
        "region": "us-east-1",
        "authMode": "apiKey",
        "apiKey": API_KEY,
        "timeout_ms": 45000,
        "steps": steps,
        **config,
    }
    proc = subprocess.run(
        [node, "driver.mjs"],
        cwd=JS_DIR,
        input=json.dumps(scenario),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert proc.returncode == 0, (proc.stdout, proc.stderr[-2000:])
    assert lines[-1]["kind"] == "done", lines
    return Observations(lines)


class Observations(list):
    """The driver's output lines, with lookups by kind."""

    def of(self, kind: str) -> list[dict[str, Any]]:
        """Every line of ``kind``."""
        return [line for line in self if line["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        """The single line of ``kind``."""
        found = self.of(kind)
        assert len(found) == 1, (kind, list(self))
        return found[0]


def test_connect_subscribe_post_publish_wildcard_batch(node, emu):
    """Amplify connects, subscribes to a wildcard, publishes over WS and posts a batch over
    HTTP; every event arrives once, unchanged, including at depth."""
    out = run(
        node,
        emu,
        [
            {"op": "connect", "channel": "/default/*", "as": "c1"},
            {"op": "subscribe", "channel_ref": "c1", "as": "s1"},
            {"op": "connect", "channel": "default/rooms/7/chat", "as": "c2"},
            {"op": "publish", "channel_ref": "c2", "event": {"via": "ws"}},
            {"op": "post", "channel": "/default/deep/a/b/c", "event": [1, "two", {"three": 3}]},
            {"op": "wait_data", "count": 4, "timeout_ms": 10000},
            {"op": "close_all"},
        ],
    )
    assert out.one("subscribed")["sub"] == "s1"
    publish = out.one("publish_result")
    assert publish["frame"]["type"] == "publish_success"
    assert publish["frame"]["failed"] == []
    assert len(publish["frame"]["successful"]) == 1
    assert out.one("post_result")
    data = [line["data"] for line in out.of("data")]
    assert sorted(json.dumps(d["event"]) for d in data) == sorted(
        json.dumps(v) for v in [{"via": "ws"}, 1, "two", {"three": 3}]
    )
    assert {d["type"] for d in data} == {"data"}
    assert len({d["id"] for d in data}) == 1
    assert out.one("wait_ok")["count"] == 4
    transports = sorted(r.transport for r in emu.published)
    assert transports == ["http", "websocket"]
    assert emu.published[0].channel in ("/default/rooms/7/chat", "/default/deep/a/b/c")


def test_unsubscribe_and_channel_close(node, emu):
    """Amplify's unsubscribe reaches the emulator and ends the subscription there."""
    out = run(
        node,
        emu,
        [
            {"op": "connect", "channel": "/default/x", "as": "c1"},
            {"op": "subscribe", "channel_ref": "c1", "as": "s1"},
            {"op": "unsubscribe", "sub_ref": "s1"},
            {"op": "sleep", "ms": 300},
            {"op": "close", "channel_ref": "c1"},
        ],
        trace=True,
    )
    assert out.one("unsubscribed")
    sent = [line["frame"] for line in out.of("ws_send")]
    unsub = [f for f in sent if isinstance(f, dict) and f.get("type") == "unsubscribe"]
    assert len(unsub) == 1
    received = [line["frame"] for line in out.of("ws_recv")]
    assert {"type": "unsubscribe_success", "id": unsub[0]["id"]} in received
    subscribe = next(f for f in sent if isinstance(f, dict) and f.get("type") == "subscribe")
    assert "payload" in subscribe  # Amplify's legacy extra, ignored by the emulator


def test_api_key_rejection(node, emu):
    """A wrong API key fails Amplify's connect and its HTTP post (401 Unauthorized)."""
    out = run(
        node,
        emu,
        [
            {"op": "connect", "channel": "/default/x", "as": "c1"},
            {"op": "post", "channel": "/default/x", "event": {"a": 1}},
        ],
        apiKey="da2-wrong000000000000000000000",
    )
    error = out.one("connect_error")["error"]
    assert "UnauthorizedException" in json.dumps(error)
    post = out.one("post_error")
    assert post["status"] == 401
    assert post["body"]["errors"][0]["errorType"] == "UnauthorizedException"
    assert emu.published == []


def test_iam_signed_by_amplify(node, emu):
    """Amplify's own SigV4 (credentials provider) passes the emulator's verification for
    connect, subscribe, WS publish and HTTP post."""
    out = run(
        node,
        emu,
        [
            {"op": "connect", "channel": "/iam/room", "as": "c1"},
            {"op": "subscribe", "channel_ref": "c1", "as": "s1"},
            {"op": "publish", "channel_ref": "c1", "event": {"signed": "ws"}},
            {"op": "post", "channel": "/iam/room", "event": {"signed": "http"}},
            {"op": "wait_data", "count": 2, "timeout_ms": 10000},
            {"op": "close_all"},
        ],
        authMode="iam",
        credentials={"accessKeyId": AKID, "secretAccessKey": SECRET},
    )
    assert out.one("subscribed")
    assert out.one("publish_result")["frame"]["type"] == "publish_success"
    assert out.one("post_result")
    assert sorted(json.dumps(line["data"]["event"]) for line in out.of("data")) == [
        '{"signed": "http"}',
        '{"signed": "ws"}',
    ]
    assert {r.auth_mode for r in emu.published} == {"AWS_IAM"}


def test_iam_wrong_secret_is_refused(node, emu):
    """Amplify signing with a wrong secret gets the signature error on connect."""
    out = run(
        node,
        emu,
        [
            {"op": "connect", "channel": "/iam/room", "as": "c1"},
            {"op": "post", "channel": "/iam/room", "event": 1},
        ],
        authMode="iam",
        credentials={"accessKeyId": AKID, "secretAccessKey": "not-the-secret"},
    )
    error = out.one("connect_error")["error"]
    assert error["message"] == "BadRequestException"
    assert error["nonRetryable"] is True
    post = out.one("post_error")
    assert post["status"] == 403
    assert "signature we calculated does not match" in post["body"]["errors"][0]["message"]


@pytest.mark.parametrize(("escape", "accepted"), [("html", False), ("none", True)])
def test_iam_ws_publish_with_angle_brackets(node, emu, escape, accepted):
    """An IAM WS publish of '<', '>', '&' fails like the service by default (its signature
    check escapes the body's HTML characters: the emulator's ``ws_signing_escape``), and
    passes with ws_signing_escape='none'; HTTP post of the same event always passes."""
    emu.configure(ws_signing_escape=escape)
    event = {"html": "<b>Tom & Jerry</b>"}
    out = run(
        node,
        emu,
        [
            {"op": "connect", "channel": "/iam/room", "as": "c1"},
            {"op": "publish", "channel_ref": "c1", "event": event},
            {"op": "post", "channel": "/iam/room", "event": event},
            {"op": "close_all"},
        ],
        authMode="iam",
        credentials={"accessKeyId": AKID, "secretAccessKey": SECRET},
    )
    assert out.one("post_result")
    if accepted:
        assert out.one("publish_result")["frame"]["type"] == "publish_success"
    else:
        frame = out.one("publish_error")["frame"]
        assert frame["type"] == "publish_error"
        assert frame["errors"][0]["errorType"] == "BadRequestException"


def test_api_key_ws_publish_with_html_characters(node, emu):
    """A WS publish of an event holding '<', '>' and '&' arrives byte for byte."""
    event = {"html": "<script>a && b</script>", "gt": ">"}
    out = run(
        node,
        emu,
        [
            {"op": "connect", "channel": "/default/html", "as": "c1"},
            {"op": "subscribe", "channel_ref": "c1", "as": "s1"},
            {"op": "publish", "channel_ref": "c1", "event": event},
            {"op": "wait_data", "count": 1},
            {"op": "close_all"},
        ],
        trace=True,
    )
    assert out.one("data")["data"]["event"] == event
    [published] = emu.published
    sent = next(
        line["frame"] for line in out.of("ws_send") if line["frame"].get("type") == "publish"
    )
    assert published.events == tuple(sent["events"])  # unchanged, escaping and all
    data_frames = [line["frame"] for line in out.of("ws_recv") if line["frame"]["type"] == "data"]
    assert data_frames[0]["event"] == sent["events"][0]


def test_user_pool_token(node, emu):
    """Amplify's userPool mode (token sent without Bearer) is verified as a JWT."""
    token = emu.issue_token(subject="amplify-user")
    out = run(
        node,
        emu,
        [
            {"op": "connect", "channel": "/pool/room", "as": "c1"},
            {"op": "subscribe", "channel_ref": "c1", "as": "s1"},
            {"op": "post", "channel": "/pool/room", "event": {"from": "pool"}},
            {"op": "wait_data", "count": 1},
            {"op": "close_all"},
        ],
        authMode="userPool",
        token=token,
        trace=True,
    )
    assert out.one("data")["data"]["event"] == {"from": "pool"}
    connect_auth = out.of("ws_dial")[0]["connectAuth"]
    assert connect_auth["Authorization"] == token or connect_auth.get("authorization") == token
    assert emu.published[0].auth_mode == "AMAZON_COGNITO_USER_POOLS"


def test_user_pool_expired_and_missing_token(node, emu):
    """An expired token and a userPool connect without any token are both refused."""
    expired = run(
        node,
        emu,
        [{"op": "connect", "channel": "/pool/room", "as": "c1"}],
        authMode="userPool",
        token=emu.issue_token(expires_in=-60),
    )
    assert "UnauthorizedException" in json.dumps(expired.one("connect_error"))
    missing = run(
        node,
        emu,
        [{"op": "connect", "channel": "/pool/room", "as": "c1"}],
        authMode="userPool",
    )
    assert missing.one("connect_error")


def test_lambda_token(node, emu):
    """Amplify's lambda mode reaches the configured authorizer, which allows or denies."""
    allowed = run(
        node,
        emu,
        [
            {"op": "connect", "channel": "/lam/room", "as": "c1"},
            {"op": "subscribe", "channel_ref": "c1", "as": "s1"},
            {"op": "publish", "channel_ref": "c1", "event": 7},
            {"op": "wait_data", "count": 1},
            {"op": "close_all"},
        ],
        authMode="lambda",
        token="lambda-ok",
    )
    assert allowed.one("data")["data"]["event"] == 7
    denied = run(
        node,
        emu,
        [{"op": "post", "channel": "/lam/room", "event": 1}],
        authMode="lambda",
        token="lambda-no",
    )
    assert denied.one("post_error")["status"] == 401


def test_ws_publish_of_six_events_is_refused(node, emu):
    """Amplify does not limit WS batches: the emulator answers InvalidInputError."""
    out = run(
        node,
        emu,
        [
            {"op": "connect", "channel": "/default/x", "as": "c1"},
            {"op": "publish", "channel_ref": "c1", "event": [1, 2, 3, 4, 5, 6]},
            {"op": "close_all"},
        ],
    )
    frame = out.one("publish_error")["frame"]
    assert frame["errors"] == [
        {"errorType": "InvalidInputError", "message": "input exceeded 5 event limit"}
    ]
