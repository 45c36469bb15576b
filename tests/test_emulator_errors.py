"""Every error and quota of the emulator, with raw frames and requests.

Covers the authorization and event errors, the channel and id grammar, the quotas and
the generic ``error`` answers to frames that are no operation.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets

from appsync_events.emulator import AppSyncEventsEmulator, NamespaceSpec
from appsync_events.testing.pytest_plugin import (  # noqa: F401 - fixtures
    appsync_emulator,
    appsync_events_emulator,
)
from tests.test_emulator_helpers import TIMEOUT, RawClient, api_key_auth, connected, http_publish

pytestmark = pytest.mark.django_db(databases=[])

UNAUTHORIZED = {
    "errorType": "UnauthorizedException",
    "message": "You are not authorized to make this call.",
}


@pytest.fixture
def emu(appsync_events_emulator: AppSyncEventsEmulator) -> AppSyncEventsEmulator:  # noqa: F811
    """The session emulator, reset."""
    return appsync_events_emulator


# -- authorization ---------------------------------------------------------------------------


async def test_ws_publish_with_bad_key(emu):
    """A WS publish whose authorization holds a wrong key gets publish_error Unauthorized."""
    async with await connected(emu) as client:
        answer = await client.publish("p", "/default/a", ["1"], api_key_auth(emu, "da2-bad"))
        assert answer == {"type": "publish_error", "id": "p", "errors": [UNAUTHORIZED]}


async def test_ws_subscribe_with_bad_key(emu):
    """A subscribe with a wrong key gets subscribe_error Unauthorized."""
    async with await connected(emu) as client:
        answer = await client.subscribe("s", "/default/a", api_key_auth(emu, "da2-bad"))
        assert answer == {"type": "subscribe_error", "id": "s", "errors": [UNAUTHORIZED]}


async def test_ws_operation_without_authorization_is_refused(emu):
    """A subscribe without an authorization member is refused (the field is required)."""
    async with await connected(emu) as client:
        await client.send({"type": "subscribe", "id": "s", "channel": "/default/a"})
        answer = await client.recv_type("subscribe_error")
        assert answer["errors"] == [UNAUTHORIZED]


async def test_ws_operation_inherits_connection_auth_when_switched(emu):
    """With inherit_connection_auth, a subscribe without authorization uses the connect's."""
    emu.configure(inherit_connection_auth=True)
    async with await connected(emu) as client:
        await client.send({"type": "subscribe", "id": "s", "channel": "/default/a"})
        assert (await client.recv_type("subscribe_success", "subscribe_error"))["type"] == (
            "subscribe_success"
        )


async def test_http_publish_with_bad_key(emu):
    """HTTP publish with a wrong key answers 401 with an Unauthorized errors body."""
    response = await http_publish(emu, "/default/a", ["1"], {"x-api-key": "da2-bad"})
    assert response.status_code == 401
    assert response.json() == {"errors": [UNAUTHORIZED]}


async def test_http_publish_without_credentials(emu):
    """HTTP publish with no credentials answers 401."""
    response = await http_publish(emu, "/default/a", ["1"], {})
    assert response.status_code == 401


@pytest.mark.parametrize("op", ["publish", "subscribe"])
async def test_ws_unknown_namespace_is_unauthorized_without_message(emu, op):
    """A channel in an undeclared namespace gets UnauthorizedException with no message."""
    auth = api_key_auth(emu)
    async with await connected(emu) as client:
        if op == "publish":
            answer = await client.publish("x", "bad/channel", ["1"], auth)
        else:
            answer = await client.subscribe("x", "bad/channel", auth)
        assert answer == {
            "type": f"{op}_error",
            "id": "x",
            "errors": [{"errorType": "UnauthorizedException"}],
        }


async def test_http_unknown_namespace(emu):
    """HTTP publish to an undeclared namespace answers 403 UnauthorizedException."""
    response = await http_publish(emu, "bad/channel", ["1"])
    assert response.status_code == 403
    assert response.json() == {"errors": [{"errorType": "UnauthorizedException"}]}


async def test_mode_not_allowed_on_namespace(emu):
    """API-key credentials on an IAM-only namespace: HTTP 403 and WS publish_error."""
    emu.configure(
        namespaces={
            "default": NamespaceSpec("default"),
            "iam-auth": NamespaceSpec("iam-auth", ("AWS_IAM",), ("AWS_IAM",)),
        }
    )
    response = await http_publish(emu, "/iam-auth/x", ["1"])
    assert response.status_code == 403
    assert response.json()["errors"][0]["errorType"] == "UnauthorizedException"
    async with await connected(emu) as client:
        answer = await client.subscribe("s", "/iam-auth/x", api_key_auth(emu))
        assert answer["errors"][0]["errorType"] == "UnauthorizedException"


async def test_connect_mode_not_allowed(emu):
    """A connect whose mode is not a connection auth mode is refused."""
    emu.configure(connection_auth_modes=("AWS_IAM",))
    async with await RawClient.open(emu) as client:
        assert (await client.init())["type"] == "connection_error"


# -- events ------------------------------------------------------------------------------


async def test_ws_six_events(emu):
    """A WS publish of 6 events gets publish_error InvalidInputError."""
    async with await connected(emu) as client:
        answer = await client.publish("p", "/default/a", ["1"] * 6, api_key_auth(emu))
        assert answer == {
            "type": "publish_error",
            "id": "p",
            "errors": [
                {"errorType": "InvalidInputError", "message": "input exceeded 5 event limit"}
            ],
        }


async def test_http_six_events(emu):
    """HTTP publish of 6 events answers 400 BadRequestException."""
    response = await http_publish(emu, "/default/a", ["1"] * 6)
    assert response.status_code == 400
    assert response.json() == {
        "errors": [{"errorType": "BadRequestException", "message": "Input exceeded 5 event limit"}]
    }
    assert emu.published == []


async def test_no_events(emu):
    """A publish with an empty events list is refused on both transports."""
    assert (await http_publish(emu, "/default/a", [])).status_code == 400
    async with await connected(emu) as client:
        answer = await client.publish("p", "/default/a", [], api_key_auth(emu))
        assert answer["errors"][0]["errorType"] == "InvalidInputError"


async def test_event_too_large_fails_alone(emu):
    """An event over 240 KB lands in failed with EventTooLargeException; the rest is sent."""
    big = json.dumps("x" * 240_001)
    auth = api_key_auth(emu)
    async with await connected(emu) as client:
        await client.subscribe("s", "/default/a", auth)
        answer = await client.publish("p", "/default/a", ["1", big, "3"], auth)
        assert answer["type"] == "publish_success"
        assert [e["index"] for e in answer["successful"]] == [0, 2]
        [failed] = answer["failed"]
        assert failed["index"] == 1
        assert failed["code"] == "EventTooLargeException"
        assert failed["message"] == "Transformed event is larger than 240KB"
        assert failed["identifier"]
        assert sorted(d["event"] for d in await client.data(2)) == ["1", "3"]
        await client.no_frame()


async def test_http_event_too_large(emu):
    """HTTP publish reports an oversize event in failed with status 200."""
    response = await http_publish(emu, "/default/a", [json.dumps("y" * 250_000)])
    assert response.status_code == 200
    assert response.json()["successful"] == []
    assert response.json()["failed"][0]["code"] == "EventTooLargeException"


async def test_event_that_is_not_json(emu):
    """An event string that is not JSON is refused (InvalidInputError / 400)."""
    async with await connected(emu) as client:
        answer = await client.publish("p", "/default/a", ["{nope"], api_key_auth(emu))
        assert answer["errors"] == [
            {"errorType": "InvalidInputError", "message": "Event at index 0 is not valid JSON"}
        ]
    assert (await http_publish(emu, "/default/a", ["{nope"])).status_code == 400


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"events":["1"]}', b'{"channel":"/default/a","events":[1]}'],
)
async def test_http_malformed_body(emu, body):
    """A body that is not {channel, events: [strings]} answers 400 BadRequestException."""
    response = await http_publish(emu, "", [], body=body)
    assert response.status_code == 400
    assert response.json()["errors"][0]["errorType"] == "BadRequestException"


async def test_http_request_too_large(emu):
    """A body over 1.2 MB answers 413 BadRequestException."""
    body = json.dumps({"channel": "/default/a", "events": ['"' + "z" * 1_300_000 + '"']})
    response = await http_publish(emu, "", [], body=body.encode())
    assert response.status_code == 413
    assert response.json()["errors"][0]["errorType"] == "BadRequestException"


async def test_http_other_routes(emu):
    """GET /event is 405 and other paths are 404."""
    async with httpx.AsyncClient() as client:
        assert (await client.get(emu.http_url)).status_code == 405
        assert (await client.post(emu.http_url.replace("/event", "/graphql"))).status_code == 404


# -- channels and ids ------------------------------------------------------------------------


VALID_CHANNELS = [
    "/news",
    "default",
    "default/a",
    "/default/a/",
    "/default/a-b/C9",
    "/default/" + "a" * 50,
    "/default/b/c/d/e",
]
INVALID_CHANNELS = [
    "",
    "/",
    "//default",
    "/default//a",
    "/default/a_b",
    "/default/a.b",
    "/default/-a",
    "/default/a-",
    "/default/" + "a" * 51,
    "/default/b/c/d/e/f",
    "/default/a b",
]


@pytest.mark.parametrize("channel", VALID_CHANNELS)
async def test_valid_channels_publish(emu, channel):
    """Channels the grammar admits are published (unknown namespaces aside)."""
    response = await http_publish(emu, channel, ["1"])
    namespace = channel.strip("/").split("/")[0]
    assert response.status_code == (200 if namespace in ("default", "chat") else 403)


@pytest.mark.parametrize("channel", INVALID_CHANNELS)
async def test_invalid_channels_refused(emu, channel):
    """Channels breaking the grammar get BadRequestException on every operation."""
    auth = api_key_auth(emu)
    response = await http_publish(emu, channel, ["1"])
    assert response.status_code == 400
    assert response.json()["errors"][0]["errorType"] == "BadRequestException"
    async with await connected(emu) as client:
        answer = await client.subscribe("s", channel, auth)
        assert answer["type"] == "subscribe_error"
        assert answer["errors"][0]["errorType"] == "BadRequestException"
        answer = await client.publish("p", channel, ["1"], auth)
        assert answer["errors"][0]["errorType"] == "BadRequestException"


@pytest.mark.parametrize(
    ("pattern", "ok"),
    [
        ("/default/*", True),
        ("/default/a/b/c/*", True),
        ("/default/a/b/c/d/*", False),
        ("/*", False),
        ("/default/*/a", False),
        ("/default/a*", False),
    ],
)
async def test_wildcard_grammar(emu, pattern, ok):
    """Only a whole, final '*' after a namespace is a valid subscription wildcard."""
    async with await connected(emu) as client:
        answer = await client.subscribe("s", pattern, api_key_auth(emu))
        assert answer["type"] == ("subscribe_success" if ok else "subscribe_error")


async def test_publish_to_wildcard_refused(emu):
    """A publish needs a concrete channel."""
    async with await connected(emu) as client:
        answer = await client.publish("p", "/default/*", ["1"], api_key_auth(emu))
        assert answer["errors"][0]["errorType"] == "BadRequestException"
    assert (await http_publish(emu, "/default/*", ["1"])).status_code == 400


@pytest.mark.parametrize("bad_id", ["", "a" * 129, "has space", "dot.ted", "ü"])
async def test_bad_operation_ids(emu, bad_id):
    """Ids outside ^[A-Za-z0-9_+-]{1,128}$ are refused for subscribe and publish."""
    auth = api_key_auth(emu)
    async with await connected(emu) as client:
        answer = await client.subscribe(bad_id, "/default/a", auth)
        assert answer["type"] == "subscribe_error"
        assert answer["errors"][0]["errorType"] == "BadRequestException"
        answer = await client.publish(bad_id, "/default/a", ["1"], auth)
        assert answer["type"] == "publish_error"


async def test_good_operation_ids(emu):
    """The longest id and every allowed character are accepted."""
    async with await connected(emu) as client:
        for sub_id in ["a" * 128, "A-z_0+9"]:
            answer = await client.subscribe(sub_id, "/default/a", api_key_auth(emu))
            assert answer["type"] == "subscribe_success"


async def test_duplicate_subscription_id(emu):
    """A second subscribe with a live id is refused; the first keeps working."""
    auth = api_key_auth(emu)
    async with await connected(emu) as client:
        await client.subscribe("dup", "/default/a", auth)
        answer = await client.subscribe("dup", "/default/b", auth)
        assert answer["type"] == "subscribe_error"
        assert answer["errors"][0]["errorType"] == "DuplicatedOperationError"
        assert [s.channel for s in emu.subscriptions] == ["/default/a"]


async def test_subscription_id_reusable_after_unsubscribe(emu):
    """After unsubscribe the id may be used again (Amplify re-uses ids on resubscribe)."""
    auth = api_key_auth(emu)
    async with await connected(emu) as client:
        await client.subscribe("s", "/default/a", auth)
        await client.send({"type": "unsubscribe", "id": "s"})
        await client.recv_type("unsubscribe_success")
        assert (await client.subscribe("s", "/default/b", auth))["type"] == "subscribe_success"


async def test_same_subscription_id_on_two_connections(emu):
    """Subscription ids are per connection."""
    auth = api_key_auth(emu)
    async with await connected(emu) as one, await connected(emu) as two:
        assert (await one.subscribe("s", "/default/a", auth))["type"] == "subscribe_success"
        assert (await two.subscribe("s", "/default/a", auth))["type"] == "subscribe_success"


# -- quotas ----------------------------------------------------------------------------------


async def test_max_subscriptions_per_connection(emu):
    """The 201st subscription on one connection gets MaxSubscriptionsReachedError."""
    auth = api_key_auth(emu)
    async with await connected(emu) as client:
        for i in range(200):
            await client.send(
                {"type": "subscribe", "id": f"s{i}", "channel": "/default/a", "authorization": auth}
            )
        answers = [
            await client.recv_type("subscribe_success", "subscribe_error") for _ in range(200)
        ]
        assert {a["type"] for a in answers} == {"subscribe_success"}
        answer = await client.subscribe("s200", "/default/a", auth)
        assert answer["type"] == "subscribe_error"
        assert answer["errors"][0]["errorType"] == "MaxSubscriptionsReachedError"


async def test_max_subscriptions_configurable(emu):
    """max_subscriptions is a switch."""
    emu.configure(max_subscriptions=1)
    auth = api_key_auth(emu)
    async with await connected(emu) as client:
        await client.subscribe("a", "/default/a", auth)
        answer = await client.subscribe("b", "/default/a", auth)
        assert answer["errors"][0]["errorType"] == "MaxSubscriptionsReachedError"


async def test_publish_rate_limit_per_connection(emu):
    """More than 25 WS publishes within a second on one connection get LimitExceededError."""
    auth = api_key_auth(emu)
    async with await connected(emu) as client:
        for i in range(26):
            await client.send(
                {
                    "type": "publish",
                    "id": f"p{i}",
                    "channel": "/default/a",
                    "events": ["1"],
                    "authorization": auth,
                }
            )
        answers = [await client.recv_type("publish_success", "publish_error") for _ in range(26)]
        kinds = [a["type"] for a in answers]
        assert kinds.count("publish_error") >= 1
        limited = next(a for a in answers if a["type"] == "publish_error")
        assert limited["errors"][0]["errorType"] == "LimitExceededError"
        # The limit is per connection: another connection publishes fine meanwhile.
        async with await connected(emu) as other:
            assert (await other.publish("q", "/default/a", ["1"], auth))["type"] == (
                "publish_success"
            )


async def test_http_publish_is_not_rate_limited_per_connection(emu):
    """The per-connection publish quota does not apply to HTTP publish."""
    emu.configure(publishes_per_second=1)
    statuses = [(await http_publish(emu, "/default/a", ["1"])).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]


async def test_max_lifetime_closes_connection(emu):
    """A connection is closed (1000) once max_lifetime has passed."""
    emu.configure(max_lifetime=0.2)
    client = await connected(emu)
    with pytest.raises(websockets.ConnectionClosedOK):
        await client.recv_type("never", within=TIMEOUT)
    assert client.ws.close_code == 1000


# -- frames that are no operation -----------------------------------------------------------


async def test_unknown_message_type(emu):
    """An unknown type gets a generic error with UnsupportedOperation, keeping its id."""
    async with await connected(emu) as client:
        await client.send({"type": "start", "id": "x1"})
        assert await client.recv_type("error") == {
            "type": "error",
            "id": "x1",
            "errors": [
                {"errorType": "UnsupportedOperation", "message": "Unsupported operation: start"}
            ],
        }


@pytest.mark.parametrize("frame", ["not json", "[1]", '{"id": "x"}', b"\x00\x01binary"])
async def test_malformed_frames(emu, frame):
    """Frames that are no protocol message get an error; the connection stays usable."""
    async with await connected(emu) as client:
        await client.send(frame)
        answer = await client.recv_type("error")
        assert answer["errors"][0]["errorType"] == "BadRequestException"
        assert (await client.subscribe("s", "/default/a", api_key_auth(emu)))["type"] == (
            "subscribe_success"
        )


async def test_message_missing_a_field_answers_by_its_id(emu):
    """A subscribe without a channel gets subscribe_error for its id."""
    async with await connected(emu) as client:
        await client.send({"type": "subscribe", "id": "s9", "authorization": api_key_auth(emu)})
        answer = await client.recv_type("subscribe_error")
        assert answer["id"] == "s9"
        assert answer["errors"][0]["errorType"] == "BadRequestException"


async def test_connection_init_twice_acks_again(emu):
    """A second connection_init is answered with another ack (harmless)."""
    async with await connected(emu) as client:
        assert (await client.init())["type"] == "connection_ack"


async def test_error_table_override(emu):
    """An emulator built with errors={...} answers with the overridden shape."""
    custom = AppSyncEventsEmulator(
        errors={"duplicate_subscription": {"error_type": "SubscriptionProcessingError"}}
    )
    async with custom:
        async with await connected(custom) as client:
            auth = api_key_auth(custom)
            await client.subscribe("d", "/default/a", auth)
            answer = await client.subscribe("d", "/default/a", auth)
            assert answer["errors"][0]["errorType"] == "SubscriptionProcessingError"


async def test_unknown_error_case_is_refused():
    """An override naming an unknown case is a configuration error."""
    from appsync_events.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="unknown emulator error case"):
        AppSyncEventsEmulator(errors={"nope": {}})


async def test_unknown_option_is_refused():
    """An unknown emulator option is a configuration error naming the valid ones."""
    from appsync_events.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="max_subscriptions"):
        AppSyncEventsEmulator(max_subscription=3)


async def test_many_connections_publish_concurrently(emu):
    """Concurrent publishers on several connections each get their answers."""
    auth = api_key_auth(emu)
    clients = [await connected(emu) for _ in range(5)]
    try:
        answers = await asyncio.gather(
            *(c.publish(f"p{i}", "/default/a", [str(i)], auth) for i, c in enumerate(clients))
        )
        assert [a["id"] for a in answers] == [f"p{i}" for i in range(5)]
        assert len(emu.published) == 5
    finally:
        for c in clients:
            await c.close()
