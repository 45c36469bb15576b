"""The emulator's websocket and HTTP protocol, driven with raw frames and requests.

Scenarios cover the connection lifecycle, the messages, errors, HTTP publish, channels,
fan-out and quotas of the AWS websocket protocol guide
(https://docs.aws.amazon.com/appsync/latest/eventapi/event-api-websocket-protocol.html).
Each test uses the session emulator, reset.
"""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
import websockets

from appsync_events.emulator import AppSyncEventsEmulator
from appsync_events.testing.pytest_plugin import (  # noqa: F401 - fixtures
    appsync_emulator,
    appsync_events_emulator,
)
from tests.test_emulator_helpers import (
    TIMEOUT,
    RawClient,
    api_key_auth,
    connected,
    http_publish,
)

pytestmark = pytest.mark.django_db(databases=[])  # settings only, no database


@pytest.fixture
def emu(appsync_events_emulator: AppSyncEventsEmulator) -> AppSyncEventsEmulator:  # noqa: F811
    """The session emulator, reset, with settings pointing at it."""
    return appsync_events_emulator


# -- connect ---------------------------------------------------------------------------


async def test_connect_selects_subprotocol_and_acks_with_timeout(emu):
    """A header- subprotocol connect is accepted with aws-appsync-event-ws and acked."""
    client = await RawClient.open(emu)
    async with client:
        assert client.ws.subprotocol == "aws-appsync-event-ws"
        await client.send({"type": "connection_init"})
        assert await client.recv() == {"type": "connection_ack", "connectionTimeoutMs": 300000}
        assert await client.recv() == {"type": "ka"}


async def test_connect_auth_from_upgrade_headers_any_case(emu):
    """Auth sent as upgrade headers (Kotlin/Swift style) with mixed-case names is accepted."""
    client = await RawClient.open(
        emu, {"X-Api-Key": emu.api_key, "Host": emu.http_host}, via="headers"
    )
    async with client:
        assert (await client.init())["type"] == "connection_ack"


async def test_connect_auth_from_query_string(emu):
    """The ?header=<base64url> variant is accepted as a convenience."""
    from appsync_events.auth import encode_header_subprotocol

    token = encode_header_subprotocol(api_key_auth(emu))[len("header-") :]
    client = await RawClient.open(emu, via="none", url=f"{emu.realtime_url}?header={token}")
    async with client:
        assert (await client.init())["type"] == "connection_ack"


async def test_connect_with_bad_key_gets_connection_error_then_close(emu):
    """A wrong API key gets connection_error UnauthorizedException 401, then a 1000 close."""
    client = await RawClient.open(emu, api_key_auth(emu, "da2-wrong"))
    await client.send({"type": "connection_init"})
    assert await client.recv() == {
        "type": "connection_error",
        "errors": [
            {
                "errorType": "UnauthorizedException",
                "message": "You are not authorized to make this call.",
                "errorCode": 401,
            }
        ],
    }
    with pytest.raises(websockets.ConnectionClosedOK):
        await client.recv()
    assert client.ws.close_code == 1000


async def test_connect_without_any_auth_is_refused(emu):
    """A connect carrying no credentials at all is refused."""
    client = await RawClient.open(emu, via="none")
    async with client:
        assert (await client.init())["type"] == "connection_error"


async def test_connect_refused_at_open_when_switched(emu):
    """With connect_auth_at='open' the refusal comes unprompted right after the upgrade."""
    emu.configure(connect_auth_at="open")
    client = await RawClient.open(emu, api_key_auth(emu, "da2-wrong"))
    assert (await client.recv())["type"] == "connection_error"
    with pytest.raises(websockets.ConnectionClosedOK):
        await client.recv()


async def test_upgrade_without_subprotocol_is_refused(emu):
    """An upgrade that does not offer aws-appsync-event-ws is refused with HTTP 403."""
    with pytest.raises(websockets.InvalidStatus) as info:
        await RawClient.open(emu, subprotocols=[])
    assert info.value.response.status_code == 403


async def test_upgrade_on_other_path_is_refused(emu):
    """Only /event/realtime upgrades: any other path is a 404 with the JSON error body."""
    with pytest.raises(websockets.InvalidStatus) as info:
        await RawClient.open(emu, url=emu.realtime_url.replace("/event/realtime", "/graphql"))
    assert info.value.response.status_code == 404
    assert json.loads(info.value.response.body)["errors"][0]["errorType"] == "NotFoundException"


async def test_operations_work_without_connection_init(emu):
    """connection_init is optional: a subscribe straight after the upgrade succeeds."""
    async with await RawClient.open(emu) as client:
        answer = await client.subscribe("s1", "/default/a", api_key_auth(emu))
        assert answer == {"type": "subscribe_success", "id": "s1"}


async def test_operations_refused_before_init_when_required(emu):
    """With require_init the subscribe before connection_init is refused."""
    emu.configure(require_init=True)
    async with await RawClient.open(emu) as client:
        answer = await client.subscribe("s1", "/default/a", api_key_auth(emu))
        assert answer["type"] == "subscribe_error"
        assert answer["errors"][0]["errorType"] == "BadRequestException"


async def test_permessage_deflate_is_negotiated(emu):
    """A client offering permessage-deflate gets it, and frames still round-trip."""
    async with await RawClient.open(emu) as client:
        extensions = [type(e).__name__ for e in client.ws.protocol.extensions]
        assert extensions == ["PerMessageDeflate"]
        assert (await client.init())["type"] == "connection_ack"


async def test_keepalive_is_sent_every_interval(emu):
    """ka frames arrive every ka_interval seconds."""
    emu.configure(ka_interval=0.05)
    async with await connected(emu) as client:
        for _ in range(3):
            assert await client.recv() == {"type": "ka"}


# -- subscribe / publish / data -------------------------------------------------------------


async def test_publish_reaches_own_connection_unchanged_one_frame_per_event(emu):
    """A WS publish is delivered to the publisher's own subscription, string for string."""
    auth = api_key_auth(emu)
    async with await connected(emu) as client:
        assert (await client.subscribe("sub-1", "/default/room", auth))["type"] == (
            "subscribe_success"
        )
        events = ['{"msg": "hi"}', "42", '"<b>&amp;</b>"', "null", "[1, 2]"]
        answer = await client.publish("pub-1", "default/room", events, auth)
        assert answer["type"] == "publish_success"
        assert answer["id"] == "pub-1"
        assert answer["failed"] == []
        assert [s["index"] for s in answer["successful"]] == [0, 1, 2, 3, 4]
        for entry in answer["successful"]:
            assert uuid.UUID(entry["identifier"])
        data = await client.data(5)
        assert {d["event"] for d in data} == set(events)
        assert all(d == {"type": "data", "id": "sub-1", "event": d["event"]} for d in data)


async def test_http_publish_success_shape(emu):
    """POST /event answers 200 with successful (UUID per event) and an empty failed."""
    response = await http_publish(emu, "default/x", ['{"a":1}', "2"])
    assert response.status_code == 200
    body = response.json()
    assert body["failed"] == []
    assert [e["index"] for e in body["successful"]] == [0, 1]
    assert len({e["identifier"] for e in body["successful"]}) == 2
    record = emu.published[-1]
    assert record.channel == "/default/x"
    assert record.transport == "http"
    assert record.auth_mode == "API_KEY"
    assert record.payloads == [{"a": 1}, 2]


async def test_http_publish_fans_out_to_websocket_subscribers(emu):
    """An HTTP publish reaches every matching subscription on every connection."""
    auth = api_key_auth(emu)
    async with await connected(emu) as one, await connected(emu) as two:
        await one.subscribe("a", "/default/x", auth)
        await two.subscribe("b", "/default/x", auth)
        await two.subscribe("c", "/default/*", auth)
        response = await http_publish(emu, "/default/x", ['{"n":1}'])
        assert response.status_code == 200
        assert (await one.data(1))[0] == {"type": "data", "id": "a", "event": '{"n":1}'}
        got = await two.data(2)
        assert sorted(d["id"] for d in got) == ["b", "c"]


@pytest.mark.parametrize(
    ("pattern", "channel", "delivered"),
    [
        ("/default/*", "/default/a", True),
        ("/default/*", "/default/a/b/c/d", True),
        ("/default/a/*", "/default/a/b", True),
        ("/default/a/*", "/default/a", False),
        ("/default/a/*", "/default/b/a", False),
        ("/default/a", "/default/a", True),
        ("/default/a", "/default/a/b", False),
        ("default/a/", "/default/a", True),
        ("/default/*", "/chat/a", False),
    ],
)
async def test_wildcard_and_exact_matching(emu, pattern, channel, delivered):
    """Trailing /* matches any depth below (not the parent); exact matches only itself."""
    auth = api_key_auth(emu)
    async with await connected(emu) as client:
        assert (await client.subscribe("s", pattern, auth))["type"] == "subscribe_success"
        assert (await http_publish(emu, channel, ['"x"'])).status_code == 200
        if delivered:
            assert (await client.data(1))[0]["event"] == '"x"'
        else:
            await client.no_frame()


async def test_wildcard_matches_parent_when_switched(emu):
    """With wildcard_matches_parent, /default/a/* also receives /default/a."""
    emu.configure(wildcard_matches_parent=True)
    auth = api_key_auth(emu)
    async with await connected(emu) as client:
        await client.subscribe("s", "/default/a/*", auth)
        await http_publish(emu, "/default/a", ['"p"'])
        assert (await client.data(1))[0]["event"] == '"p"'


async def test_unsubscribe_stops_delivery(emu):
    """unsubscribe answers unsubscribe_success and no more data arrives for the id."""
    auth = api_key_auth(emu)
    async with await connected(emu) as client:
        await client.subscribe("s", "/default/x", auth)
        await client.send({"type": "unsubscribe", "id": "s"})
        assert await client.recv_type("unsubscribe_success") == {
            "type": "unsubscribe_success",
            "id": "s",
        }
        assert emu.subscriptions == []
        await http_publish(emu, "/default/x", ["1"])
        await client.no_frame()


async def test_unsubscribe_unknown_id(emu):
    """unsubscribe of an id that is not subscribed gets UnknownOperationError."""
    async with await connected(emu) as client:
        await client.send({"type": "unsubscribe", "id": "nope"})
        assert await client.recv_type("unsubscribe_error") == {
            "type": "unsubscribe_error",
            "id": "nope",
            "errors": [
                {"errorType": "UnknownOperationError", "message": "Unknown operation id nope"}
            ],
        }


async def test_records_subscriptions_and_connections(emu):
    """The emulator exposes live subscriptions and connections, and forgets them on close."""
    auth = api_key_auth(emu)
    client = await connected(emu)
    await client.subscribe("s1", "default/a", auth)
    [sub] = emu.wait_for_subscriptions(1, channel="/default/a")
    assert (sub.id, sub.channel, sub.auth_mode) == ("s1", "/default/a", "API_KEY")
    [conn] = emu.connections
    assert conn.acked
    assert (conn.subscriptions, conn.auth_mode) == (1, "API_KEY")
    await client.close()
    assert emu.state.wait_for(lambda: not emu.connections, TIMEOUT)


async def test_server_side_publish_feeds_subscribers(emu):
    """emulator.publish() broadcasts JSON values to subscribers without any auth."""
    async with await connected(emu) as client:
        await client.subscribe("s", "/chat/*", api_key_auth(emu))
        record = await _in_thread(emu.publish, "/chat/room", {"text": "hi"}, [1])
        assert record.transport == "inject"
        data = await client.data(2)
        assert [json.loads(d["event"]) for d in data] == [{"text": "hi"}, [1]]


async def test_reset_closes_leftover_connections(emu):
    """reset() closes open websockets (1001) so they never see the next test's events."""
    client = await connected(emu)
    await _in_thread(emu.reset)
    with pytest.raises(websockets.ConnectionClosed):
        await client.recv_type("never")
    assert client.ws.close_code == 1001


async def test_settings_point_at_emulator(emu):
    """The fixture points APPSYNC_EVENTS['default'] at the emulator."""
    from appsync_events.conf import get_api_config

    config = get_api_config()
    assert config.http_url == emu.http_url
    assert config.realtime_url == emu.realtime_url
    assert config.auth["API_KEY"].options["api_key"] in emu.api_keys


async def preflight(url: str, origin: str) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.options(
            url,
            headers={
                "origin": origin,
                "access-control-request-method": "POST",
                "access-control-request-headers": "x-api-key,content-type",
            },
        )


async def test_cors_preflight_is_answered_for_loopback_origins(emu):
    """OPTIONS /event answers a loopback page's preflight, echoing its origin."""
    response = await preflight(emu.http_url, "http://localhost:8000")
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "http://localhost:8000"
    assert response.headers["access-control-allow-headers"] == "x-api-key,content-type"
    assert response.headers["vary"] == "Origin"


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://127.0.0.1.evil.test"])
async def test_cors_is_off_for_other_origins(emu, origin):
    """Any other web page gets no CORS headers: the browser never sends its publish, and a
    publish it sends anyway (no preflight) is answered without CORS headers."""
    response = await preflight(emu.http_url, origin)
    assert response.status_code == 403
    assert "access-control-allow-origin" not in response.headers
    async with httpx.AsyncClient() as client:
        posted = await client.post(emu.http_url, headers={"origin": origin}, content=b"{}")
    assert "access-control-allow-origin" not in posted.headers


async def test_configured_cors_origins_are_allowed():
    """The cors_origins option allows named origins (and '*' all of them)."""
    with AppSyncEventsEmulator(port=0, cors_origins=["https://app.example.com"]) as named:
        allowed = await preflight(named.http_url, "https://app.example.com")
        other = await preflight(named.http_url, "https://other.example.com")
    with AppSyncEventsEmulator(port=0, cors_origins=["*"]) as every:
        anyone = await preflight(every.http_url, "https://other.example.com")
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    assert other.status_code == 403
    assert anyone.headers["access-control-allow-origin"] == "https://other.example.com"


async def _in_thread(func, *args):
    import asyncio

    return await asyncio.to_thread(func, *args)


def test_starting_the_emulator_leaves_uvicorn_logging_alone():
    """Starting the emulator leaves the process's uvicorn.access logger as it was."""
    import logging

    access = logging.getLogger("uvicorn.access")
    handler = logging.NullHandler()
    access.addHandler(handler)
    access.propagate = True
    try:
        with AppSyncEventsEmulator():
            assert access.propagate is True
            assert handler in access.handlers
    finally:
        access.removeHandler(handler)


def test_the_emulators_server_logs_no_credentials_at_debug(caplog):
    """With uvicorn's logger at DEBUG, a connect's header- subprotocol and key are redacted."""
    import asyncio
    import logging

    import websockets

    from appsync_events.auth import encode_header_subprotocol
    from appsync_events.protocol import SUBPROTOCOL

    key = "da2-emulatorlogsecret00000000000"
    uvicorn_error = logging.getLogger("uvicorn.error")
    level = uvicorn_error.level
    uvicorn_error.setLevel(logging.DEBUG)
    try:
        with AppSyncEventsEmulator(api_keys=[key]) as emulator:
            header = encode_header_subprotocol({"host": emulator.http_host, "x-api-key": key})

            async def connect() -> None:
                async with websockets.connect(
                    emulator.realtime_url, subprotocols=[SUBPROTOCOL, header]
                ) as ws:
                    await ws.send('{"type":"connection_init"}')
                    assert "connection_ack" in await ws.recv()

            with caplog.at_level(logging.DEBUG):
                asyncio.run(connect())
    finally:
        uvicorn_error.setLevel(level)
    server_records = [r for r in caplog.records if r.name == "uvicorn.error"]
    assert any("Sec-WebSocket-Protocol" in r.getMessage() for r in server_records)
    # Only the server's records: this test's raw client logs its own handshake unredacted.
    text = "\n".join(r.getMessage() for r in server_records)
    assert header not in text
    assert key not in text
    assert "header-<redacted>" in text
