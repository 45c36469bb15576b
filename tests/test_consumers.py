"""The browser consumer over the in-memory channel layer, with a fake listener behind it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from channels.layers import get_channel_layer
from channels.testing.websocket import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser, User

from appsync_events import signals
from appsync_events.backends import locmem
from appsync_events.consumers import AppSyncEventsConsumer
from appsync_events.events import ReceivedEvent
from appsync_events.forwarding import ChannelLayerForwarder, forward_message
from appsync_events.paths import group_name
from appsync_events.routing import websocket_application, websocket_urlpattern

from .test_forwarding_follows import FakeListener, until

PATH = "/ws/appsync/"


#: What the tests' signed-in users may do unless a test grants otherwise.
MEMBERS_SUBSCRIBE = {"SUBSCRIBE": ["/chat/*"]}


def api_settings(settings: Any, **forwarding: Any) -> None:
    forwarding.setdefault("UNFOLLOW_GRACE", 0)
    forwarding.setdefault("FOLLOW_TIMEOUT", 3)
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.APPSYNC_EVENTS = {
        "default": {
            **settings.APPSYNC_EVENTS["default"],
            "SUBSCRIPTIONS": ["/chat/static"],
            "PUBLISH": {"BACKEND": "locmem"},
            "FORWARDING": forwarding,
            "GRANTS": [MEMBERS_SUBSCRIBE],
        }
    }


def grant(settings: Any, *grants: dict[str, Any]) -> None:
    """Replace the default alias's GRANTS (consumers built afterwards read them)."""
    settings.APPSYNC_EVENTS = {
        "default": {**settings.APPSYNC_EVENTS["default"], "GRANTS": list(grants)}
    }


@contextlib.asynccontextmanager
async def serving(fake: FakeListener) -> AsyncIterator[ChannelLayerForwarder]:
    """A forwarder started for ``fake`` (as the in-process listener runs it), then stopped."""
    forwarder = ChannelLayerForwarder.from_settings("default", in_process=True)
    await forwarder.start(fake)
    try:
        yield forwarder
    finally:
        await forwarder.stop()


@pytest.fixture
async def listener(settings) -> AsyncIterator[FakeListener]:
    """A fake listener behind a started forwarder (as the in-process listener would run it)."""
    api_settings(settings)
    fake = FakeListener()
    async with serving(fake) as forwarder:
        fake.forwarder = forwarder  # type: ignore[attr-defined]
        yield fake


def member() -> User:
    return User(username="ada")


async def connect(user: Any = None, **options: Any) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(AppSyncEventsConsumer.as_asgi(**options), PATH)
    communicator.scope["user"] = member() if user is None else user
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def request(communicator: WebsocketCommunicator, **message: Any) -> dict[str, Any]:
    await communicator.send_json_to(message)
    return await communicator.receive_json_from(timeout=3)


async def deliver(listener: FakeListener, subscription: str, payload: Any) -> None:
    event = ReceivedEvent("default", subscription, payload, json.dumps(payload))
    await listener.forwarder.dispatch(event)  # type: ignore[attr-defined]


async def test_static_subscription_is_confirmed_at_once_and_relays_events(listener):
    """A channel the listener holds statically needs no follow; its events arrive."""
    ws = await connect()
    assert await request(ws, action="subscribe", channel="chat/static", id="s1") == {
        "type": "subscribed",
        "channel": "/chat/static",
        "id": "s1",
    }
    await deliver(listener, "/chat/static", {"text": "hi"})
    assert await ws.receive_json_from(timeout=3) == {
        "type": "event",
        "channel": "/chat/static",
        "payload": {"text": "hi"},
    }
    assert listener.follows == []
    await ws.disconnect()


async def test_follow_subscribes_the_listener_and_the_last_unfollow_ends_it(listener):
    """Two sockets share one follow; it ends when the second one leaves."""
    first = await connect()
    second = await connect()
    assert (await request(first, action="subscribe", channel="/chat/rooms/7"))[
        "type"
    ] == "subscribed"
    assert (await request(second, action="subscribe", channel="/chat/rooms/7"))[
        "type"
    ] == "subscribed"
    assert listener.follows == ["/chat/rooms/7"]
    await deliver(listener, "/chat/rooms/7", {"n": 1})
    for ws in (first, second):
        assert (await ws.receive_json_from(timeout=3))["payload"] == {"n": 1}
    assert await request(first, action="unsubscribe", channel="/chat/rooms/7") == {
        "type": "unsubscribed",
        "channel": "/chat/rooms/7",
    }
    await deliver(listener, "/chat/rooms/7", {"n": 2})
    assert (await second.receive_json_from(timeout=3))["payload"] == {"n": 2}
    assert await first.receive_nothing(timeout=0.1)
    assert listener.unfollows == []
    await second.disconnect()
    await listener.wait_for(lambda: listener.unfollows == ["/chat/rooms/7"])
    await first.disconnect()


async def test_anonymous_and_unauthorized_subscribes_are_refused(listener):
    """Anonymous users, and users a custom hook refuses, get 'forbidden'."""
    anon = await connect(AnonymousUser())
    reply = await request(anon, action="subscribe", channel="/chat/rooms/7", id=3)
    assert reply["type"] == "error"
    assert (reply["code"], reply["channel"], reply["id"]) == ("forbidden", "/chat/rooms/7", 3)

    class RoomsOnly(AppSyncEventsConsumer):
        async def can_subscribe(self, user: Any, channel: str) -> bool:
            return channel.startswith("/chat/rooms/")

    ws = WebsocketCommunicator(RoomsOnly.as_asgi(), PATH)
    ws.scope["user"] = member()
    assert (await ws.connect())[0]
    assert (await request(ws, action="subscribe", channel="/chat/admin"))["code"] == "forbidden"
    assert (await request(ws, action="subscribe", channel="/chat/rooms/1"))["type"] == "subscribed"
    assert listener.follows == ["/chat/rooms/1"]
    await ws.disconnect()
    await anon.disconnect()


async def test_wildcard_follows_only_when_a_grant_contains_it(listener, settings):
    """A pattern is allowed only when a granted pattern contains it, then followed as is."""
    grant(settings, {"SUBSCRIBE": ["/chat/rooms/*"]})
    ws = await connect()
    assert (await request(ws, action="subscribe", channel="/chat/*"))["code"] == "forbidden"
    reply = await request(ws, action="subscribe", channel="/chat/rooms/*")
    assert reply["type"] == "subscribed"
    await ws.disconnect()
    grant(settings, {"SUBSCRIBE": ["/chat/*"]})
    ws = await connect()
    assert (await request(ws, action="subscribe", channel="/chat/*"))["type"] == "subscribed"
    assert listener.follows == ["/chat/rooms/*", "/chat/*"]
    await deliver(listener, "/chat/*", {"room": 7})
    assert await ws.receive_json_from(timeout=3) == {
        "type": "event",
        "channel": "/chat/*",
        "payload": {"room": 7},
    }
    await ws.disconnect()


async def test_refused_follow_reports_subscribe_failed(listener):
    """A subscription the service refuses comes back as 'subscribe_failed'."""
    listener.refuse.add("/chat/secret")
    ws = await connect()
    reply = await request(ws, action="subscribe", channel="/chat/secret", id="x")
    assert (reply["type"], reply["code"], reply["id"]) == ("error", "subscribe_failed", "x")
    assert "UnauthorizedException" in reply["message"]
    # The socket holds nothing: unsubscribing says so.
    reply = await request(ws, action="unsubscribe", channel="/chat/secret")
    assert reply["code"] == "not_subscribed"
    await ws.disconnect()


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ({"x": 1}, "not a JSON object"),
        (1.5, "not a JSON number"),
        (True, "not a JSON boolean"),
        ([1], "not a JSON array"),
        ("x" * 65, "not a string of 65 characters"),
    ],
)
async def test_a_bad_id_is_explained(listener, given, said):
    """The malformed answer to a bad id says what an id may be and what was sent."""
    ws = await connect()
    reply = await request(ws, action="subscribe", channel="/chat/static", id=given)
    assert reply["code"] == "malformed"
    assert reply["message"] == (
        f"'id' must be a string of at most 64 characters or an integer, {said}"
    )
    await ws.disconnect()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "malformed"),
        ("[1, 2]", "malformed"),
        ('{"action": "dance", "channel": "/chat/a"}', "unknown_action"),
        ('{"channel": "/chat/a"}', "unknown_action"),
        ('{"action": "subscribe", "channel": 7}', "invalid_channel"),
        ('{"action": "subscribe", "channel": "/chat/no spaces"}', "invalid_channel"),
        ('{"action": "subscribe", "channel": "/nowhere/a"}', "invalid_channel"),
        ('{"action": "subscribe", "channel": "/chat/a", "id": {"x": 1}}', "malformed"),
        ('{"action": "publish", "channel": "/chat/*", "events": [1]}', "invalid_channel"),
    ],
)
async def test_bad_messages_get_an_error_and_the_socket_stays_open(listener, frame, code):
    """Every malformed message is answered with its error code; the socket keeps working."""
    ws = await connect()
    await ws.send_to(text_data=frame)
    reply = await ws.receive_json_from(timeout=3)
    assert (reply["type"], reply["code"]) == ("error", code)
    assert reply["message"]
    assert (await request(ws, action="subscribe", channel="/chat/static"))["type"] == "subscribed"
    await ws.disconnect()


async def test_binary_and_oversized_frames_are_refused(listener):
    """Binary frames are 'malformed'; frames over max_message_size are 'too_large'."""
    ws = await connect(max_message_size=100)
    await ws.send_to(bytes_data=b"\x00\x01")
    assert (await ws.receive_json_from(timeout=3))["code"] == "malformed"
    big = json.dumps({"action": "subscribe", "channel": "/chat/a", "pad": "x" * 200})
    await ws.send_to(text_data=big)
    reply = await ws.receive_json_from(timeout=3)
    assert reply["code"] == "too_large"
    assert "100" in reply["message"]
    await ws.disconnect()


async def test_rate_limit_drops_excess_messages_and_says_so_once(listener):
    """Past the per-socket limit messages are dropped; one 'rate_limited' error says so."""
    ws = await connect(rate_limit=3, rate_period=60.0)
    for name in ("a", "b", "c"):
        reply = await request(ws, action="subscribe", channel=f"/chat/{name}")
        assert reply["type"] == "subscribed"
    assert (await request(ws, action="subscribe", channel="/chat/d"))["code"] == "rate_limited"
    await ws.send_json_to({"action": "subscribe", "channel": "/chat/e"})
    assert await ws.receive_nothing(timeout=0.1)
    # A dropped request with an id is answered every time, so the page does not wait.
    for request_id in ("r1", 7):
        reply = await request(ws, action="publish", channel="/chat/a", events=[1], id=request_id)
        assert (reply["code"], reply["id"]) == ("rate_limited", request_id)
    await ws.send_to(text_data='{"id": ' + "1" * 10 + ', "action": "nope"')  # not JSON
    assert await ws.receive_nothing(timeout=0.1)
    assert listener.follows == ["/chat/a", "/chat/b", "/chat/c"]
    await ws.disconnect()


async def test_subscription_cap_and_idempotent_subscribe(listener):
    """A socket holds at most max_subscriptions; subscribing twice is confirmed twice."""
    ws = await connect(max_subscriptions=1)
    assert (await request(ws, action="subscribe", channel="/chat/a"))["type"] == "subscribed"
    assert (await request(ws, action="subscribe", channel="chat/a/"))["type"] == "subscribed"
    assert (await request(ws, action="subscribe", channel="/chat/b"))[
        "code"
    ] == "too_many_subscriptions"
    assert listener.follows == ["/chat/a"]
    await ws.disconnect()


async def test_publish_is_off_by_default_and_goes_through_the_publishing_api(listener, settings):
    """Publishing needs a PUBLISH grant; then it reaches the publishing backend and is
    reported; a channel outside the grant stays forbidden."""
    locmem.clear()
    ws = await connect()
    reply = await request(ws, action="publish", channel="/chat/rooms/7", events=[{"t": 1}])
    assert reply["code"] == "forbidden"
    locmem.assert_nothing_published()
    await ws.disconnect()

    grant(settings, {"SUBSCRIBE": ["/chat/*"], "PUBLISH": ["/chat/rooms/*"]})
    ws = await connect()
    reply = await request(ws, action="publish", channel="/chat/lobby", events=[1])
    assert reply["code"] == "forbidden"
    reply = await request(
        ws, action="publish", channel="/chat/rooms/7", events=[{"t": 1}, "two"], id="p"
    )
    assert reply["type"] == "published"
    assert (reply["channel"], reply["id"], reply["failed"]) == ("/chat/rooms/7", "p", [])
    assert [e["index"] for e in reply["successful"]] == [0, 1]
    locmem.assert_published("/chat/rooms/7", {"t": 1})
    locmem.assert_published("/chat/rooms/7", "two")
    assert (await request(ws, action="publish", channel="/chat/rooms/1", events=[]))[
        "code"
    ] == "malformed"
    await ws.disconnect()

    anon = await connect(AnonymousUser())
    reply = await request(anon, action="publish", channel="/chat/rooms/7", events=[1])
    assert reply["code"] == "forbidden"
    await anon.disconnect()


async def test_too_large_browser_event_is_invalid_event(listener, settings):
    """An event over the service's size limit is refused before any network call."""
    grant(settings, {"PUBLISH": ["/chat/*"]})
    ws = await connect(max_message_size=400_000)
    reply = await request(ws, action="publish", channel="/chat/a", events=["x" * 250_000])
    assert reply["code"] == "invalid_event"
    await ws.disconnect()


async def test_follow_timeout_when_no_listener_answers(settings):
    """Without a listener, a follow ends in 'listener_unavailable' after the timeout."""
    api_settings(settings, FOLLOW_TIMEOUT=0.2)
    ws = await connect()
    reply = await request(ws, action="subscribe", channel="/chat/rooms/7", id="t")
    assert (reply["code"], reply["id"]) == ("listener_unavailable", "t")
    assert "0.2" in reply["message"]
    await ws.disconnect()


async def test_repeated_subscribes_waiting_for_an_answer_are_bounded(settings):
    """A page that asks for the same channel again before the listener answered waits with
    its first 8 requests (each gets the answer); the 9th and later hear rate_limited."""
    api_settings(settings, FOLLOW_TIMEOUT=0.5)
    ws = await connect()
    for number in range(10):
        await ws.send_json_to({"action": "subscribe", "channel": "/chat/rooms/7", "id": number})
    replies = [await ws.receive_json_from(timeout=3) for _ in range(10)]
    assert [(r["code"], r["id"]) for r in replies[:2]] == [("rate_limited", 8), ("rate_limited", 9)]
    assert "8 subscribe requests" in replies[0]["message"]
    assert sorted((r["code"], r["id"]) for r in replies[2:]) == [
        ("listener_unavailable", number) for number in range(8)
    ]
    await ws.disconnect()


async def test_full_control_channel_is_reported_not_fatal(settings):
    """``ChannelFull`` on the control channel answers 'listener_unavailable'; the socket lives."""
    api_settings(settings)
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": 1},
        }
    }
    layer = get_channel_layer()
    await layer.send("appsync-events-control", {"type": "filler"})
    ws = await connect()
    reply = await request(ws, action="subscribe", channel="/chat/rooms/7")
    assert reply["code"] == "listener_unavailable"
    assert (await request(ws, action="subscribe", channel="/chat/static"))["type"] == "subscribed"
    await ws.disconnect()


async def test_custom_message_type_and_event_hook(settings):
    """A custom MESSAGE_TYPE is relayed, and event_message can reshape or drop events."""
    api_settings(settings, MESSAGE_TYPE="site.update")

    class Filtered(AppSyncEventsConsumer):
        async def event_message(self, message: dict[str, Any]) -> dict[str, Any] | None:
            if message["payload"].get("secret"):
                return None
            return {"kind": "update", "data": message["payload"]}

    forwarder = ChannelLayerForwarder.from_settings(in_process=True)
    ws = WebsocketCommunicator(Filtered.as_asgi(), PATH)
    ws.scope["user"] = member()
    assert (await ws.connect())[0]
    assert (await request(ws, action="subscribe", channel="/chat/static"))["type"] == "subscribed"
    for payload in ({"secret": True}, {"v": 1}):
        await forwarder.dispatch(ReceivedEvent("default", "/chat/static", payload, ""))
    assert await ws.receive_json_from(timeout=3) == {"kind": "update", "data": {"v": 1}}
    await ws.disconnect()


async def test_disabled_forwarding_refuses_the_socket(settings, caplog):
    """With forwarding off the socket is closed at connect, with a log line saying why."""
    api_settings(settings, ENABLED=False)
    ws = WebsocketCommunicator(AppSyncEventsConsumer.as_asgi(), PATH)
    ws.scope["user"] = member()
    connected, _ = await ws.connect()
    assert not connected
    assert "ENABLED" in caplog.text


def test_unknown_consumer_options_fail_early():
    """A misspelt option fails when the route is built, naming the valid options."""
    with pytest.raises(TypeError, match="max_subscriptions"):
        websocket_urlpattern(max_subscription=3)


@pytest.mark.parametrize("option", ["allow_anonymous", "allow_wildcards", "allow_publish"])
def test_removed_allow_options_say_what_replaces_them(option):
    """The pre-GRANTS options fail loudly (never silently ignored), pointing at GRANTS."""
    with pytest.raises(TypeError, match="GRANTS"):
        websocket_urlpattern(**{option: True})
    with pytest.raises(TypeError, match="GRANTS"):
        type("Legacy", (AppSyncEventsConsumer,), {option: True})


async def test_routing_helper_validates_the_origin_and_authenticates(listener):
    """The one-line app refuses foreign origins and gives the consumer an anonymous user."""
    app = websocket_application()
    evil = WebsocketCommunicator(app, PATH, headers=[(b"origin", b"https://evil.example")])
    connected, _ = await evil.connect()
    assert not connected
    good = WebsocketCommunicator(app, PATH, headers=[(b"origin", b"http://testserver")])
    connected, _ = await good.connect()
    assert connected
    reply = await request(good, action="subscribe", channel="/chat/static")
    assert reply["code"] == "forbidden"  # no session: the AuthMiddlewareStack's AnonymousUser
    await good.disconnect()


@pytest.mark.parametrize("check_origin", [True, False])
async def test_the_bare_route_validates_the_origin_itself(listener, check_origin):
    """websocket_urlpattern() in a router without AllowedHostsOriginValidator still
    refuses a foreign Origin, unless check_origin=False says the stack does it."""
    from channels.auth import AuthMiddlewareStack
    from channels.routing import URLRouter

    app = AuthMiddlewareStack(URLRouter([websocket_urlpattern(check_origin=check_origin)]))
    evil = WebsocketCommunicator(app, PATH, headers=[(b"origin", b"https://evil.example")])
    connected, _ = await evil.connect()
    assert connected is not check_origin
    if connected:
        await evil.disconnect()
    good = WebsocketCommunicator(app, PATH, headers=[(b"origin", b"http://testserver")])
    connected, _ = await good.connect()
    assert connected
    await good.disconnect()


async def test_listener_restart_relearns_follows_from_renewals(settings):
    """Renewals re-send follows, so a listener that lost its state subscribes again."""
    api_settings(settings, FOLLOW_LEASE=0.3)
    fake = FakeListener()
    forwarder = ChannelLayerForwarder.from_settings(in_process=True)
    await forwarder.start(fake)
    ws = await connect()
    assert (await request(ws, action="subscribe", channel="/chat/a"))["type"] == "subscribed"
    await forwarder.stop()  # the listener goes away and drops its follows
    assert fake.unfollows == ["/chat/a"]
    restarted = FakeListener()
    await forwarder.start(restarted)
    try:
        await restarted.wait_for(lambda: restarted.follows == ["/chat/a"])
    finally:
        await ws.disconnect()
        await forwarder.stop()


async def test_a_closed_socket_stops_renewing(settings):
    """After disconnect no renewal arrives, so nothing keeps the follow alive."""
    api_settings(settings, FOLLOW_LEASE=0.3)
    fake = FakeListener()
    async with serving(fake) as forwarder:
        ws = await connect()
        assert (await request(ws, action="subscribe", channel="/chat/a"))["type"] == "subscribed"
        await ws.disconnect()
        await fake.wait_for(lambda: fake.unfollows == ["/chat/a"])
        controller = forwarder.controller
        assert controller is not None
        before = controller.counts["followed"]
        await asyncio.sleep(0.4)  # longer than a renewal period: none may come
        assert controller.counts["followed"] == before
        await until(lambda: not forwarder.registry.is_followed("/chat/a"))


async def test_unreachable_service_is_publish_failed_and_a_veto_is_forbidden(settings):
    """A publish the service cannot take says 'publish_failed'; a pre_publish veto 'forbidden'."""
    import socket

    from appsync_events.exceptions import PublishCancelled
    from appsync_events.signals import pre_publish

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    api_settings(settings)
    alias = dict(settings.APPSYNC_EVENTS["default"])
    alias.pop("PUBLISH")
    alias["HTTP_URL"] = f"http://127.0.0.1:{port}/event"
    alias["TIMEOUTS"] = {"HTTP": 2.0, "CONNECT": 2.0}
    alias["GRANTS"] = [{"PUBLISH": ["/chat/*"]}]
    settings.APPSYNC_EVENTS = {"default": alias}
    ws = await connect()
    reply = await request(ws, action="publish", channel="/chat/a", events=[1])
    assert reply["code"] == "publish_failed"
    assert str(port) not in reply["message"]  # details go to the log, not the browser

    def veto(**kwargs: Any) -> None:
        raise PublishCancelled("not now")

    pre_publish.connect(veto)
    try:
        reply = await request(ws, action="publish", channel="/chat/a", events=[1])
    finally:
        pre_publish.disconnect(veto)
    assert reply["code"] == "forbidden"
    await ws.disconnect()


class ChannelOverrideListener(FakeListener):
    """A listener started with ``appsync_listen --channel /chat/other``."""

    static_channels = frozenset({"/chat/other"})


async def test_the_listeners_real_channels_decide_what_it_subscribes(settings):
    """SUBSCRIPTIONS replaced by --channel: the configured path is confirmed at once and
    its follow makes the listener subscribe; the path the listener really holds needs no
    subscription."""
    api_settings(settings)
    fake = ChannelOverrideListener()
    async with serving(fake) as forwarder:
        ws = await connect()
        for path in ("/chat/static", "/chat/other"):
            reply = await request(ws, action="subscribe", channel=path)
            assert reply["type"] == "subscribed", reply
        await fake.wait_for(lambda: fake.follows == ["/chat/static"])
        await forwarder.dispatch(ReceivedEvent("default", "/chat/static", {"n": 1}, ""))
        assert (await ws.receive_json_from(timeout=3))["payload"] == {"n": 1}
        await ws.disconnect()
        await fake.wait_for(lambda: fake.unfollows == ["/chat/static"])
        assert fake.follows == ["/chat/static"]


async def test_a_static_path_outside_forwarding_subscriptions_reaches_its_followers(settings):
    """FORWARDING['SUBSCRIPTIONS'] leaves the static path out: a browser that subscribes
    to it is a follower, so its events reach it."""
    api_settings(settings, SUBSCRIPTIONS=["/chat/rooms/*"])
    async with serving(FakeListener()) as forwarder:
        assert not forwarder.forwards("/chat/static")
        ws = await connect()
        reply = await request(ws, action="subscribe", channel="/chat/static")
        assert reply["type"] == "subscribed"
        assert forwarder.forwards("/chat/static")
        await forwarder.dispatch(ReceivedEvent("default", "/chat/static", {"n": 2}, ""))
        assert (await ws.receive_json_from(timeout=3))["payload"] == {"n": 2}
        await ws.disconnect()


# -- grants, per-client limits and one answer per request ---------------------------------


async def test_placeholder_grants_bind_the_signed_in_user(listener, settings):
    """``/users/{user.pk}/*`` lets user 5 into /users/5/... and nobody into anyone else's."""
    settings.APPSYNC_EVENTS = {
        "default": {
            **settings.APPSYNC_EVENTS["default"],
            "NAMESPACES": {"default": {}, "chat": {}, "users": {}},
            "GRANTS": [{"SUBSCRIBE": ["/users/{user.pk}/*"]}],
        }
    }
    ws = await connect(User(pk=5, username="ada"))
    assert (await request(ws, action="subscribe", channel="/users/5/inbox"))["type"] == (
        "subscribed"
    )
    assert (await request(ws, action="subscribe", channel="/users/6/inbox"))["code"] == (
        "forbidden"
    )
    assert (await request(ws, action="subscribe", channel="/users/*"))["code"] == "forbidden"
    await ws.disconnect()
    anon = await connect(AnonymousUser())  # no pk: the pattern grants nothing
    assert (await request(anon, action="subscribe", channel="/users/None/inbox"))["code"] == (
        "forbidden"
    )
    await anon.disconnect()


async def test_anonymous_users_get_only_what_is_granted_to_them(listener, settings):
    """An anonymous grant opens its channels to anonymous users only; nothing else opens."""
    grant(
        settings,
        {"SUBSCRIBE": ["/chat/*"]},
        {"WHO": "anonymous", "SUBSCRIBE": ["/chat/lobby"]},
    )
    anon = await connect(AnonymousUser())
    assert (await request(anon, action="subscribe", channel="/chat/lobby"))["type"] == (
        "subscribed"
    )
    assert (await request(anon, action="subscribe", channel="/chat/rooms/1"))["code"] == (
        "forbidden"
    )
    await anon.disconnect()


async def test_no_grants_means_no_browser_may_do_anything(listener, settings):
    """Without GRANTS the consumer refuses every subscribe and publish (deny by default)."""
    grant(settings)
    ws = await connect()
    for message in (
        {"action": "subscribe", "channel": "/chat/static"},
        {"action": "subscribe", "channel": "/chat/rooms/1"},
        {"action": "publish", "channel": "/chat/rooms/1", "events": [1]},
    ):
        assert (await request(ws, **message))["code"] == "forbidden"
    await ws.disconnect()


async def test_every_waiting_subscribe_request_gets_its_answer(listener):
    """Two subscribes of one path before the listener answers: both ids are answered."""
    listener.gate = asyncio.Event()
    ws = await connect()
    await ws.send_json_to({"action": "subscribe", "channel": "/chat/rooms/9", "id": "s1"})
    await ws.send_json_to({"action": "subscribe", "channel": "/chat/rooms/9", "id": "s2"})
    assert await ws.receive_nothing(timeout=0.1)
    listener.gate.set()
    answers = [await ws.receive_json_from(timeout=3) for _ in range(2)]
    assert sorted((a["type"], a["id"]) for a in answers) == [
        ("subscribed", "s1"),
        ("subscribed", "s2"),
    ]
    assert listener.follows == ["/chat/rooms/9"]
    await ws.disconnect()


async def test_unsubscribing_a_pending_subscription_answers_the_waiting_request(listener):
    """An unsubscribe before the listener confirmed answers the subscribe request too."""
    listener.gate = asyncio.Event()
    ws = await connect()
    await ws.send_json_to({"action": "subscribe", "channel": "/chat/rooms/9", "id": "s1"})
    reply = await request(ws, action="unsubscribe", channel="/chat/rooms/9", id="u1")
    assert (reply["type"], reply["code"], reply["id"]) == ("error", "subscribe_failed", "s1")
    assert await ws.receive_json_from(timeout=3) == {
        "type": "unsubscribed",
        "channel": "/chat/rooms/9",
        "id": "u1",
    }
    listener.gate.set()
    await ws.disconnect()


async def test_one_client_cannot_take_every_follow(settings):
    """One user's sockets together follow at most MAX_FOLLOWS_PER_CLIENT channels; another
    user can still follow new channels."""
    api_settings(settings, MAX_FOLLOWS_PER_CLIENT=2, MAX_FOLLOWS=10)
    fake = FakeListener()
    async with serving(fake):
        greedy = User(pk=1, username="greedy")
        sockets = [await connect(greedy), await connect(greedy)]
        replies = [
            await request(ws, action="subscribe", channel=f"/chat/rooms/{n}", id=n)
            for n, ws in enumerate([*sockets, sockets[0]])
        ]
        assert [r["type"] for r in replies] == ["subscribed", "subscribed", "error"]
        assert (replies[2]["code"], replies[2]["id"]) == ("too_many_subscriptions", 2)
        assert "MAX_FOLLOWS_PER_CLIENT" in replies[2]["message"]
        # The same channel again costs nothing; someone else is not affected.
        assert (await request(sockets[1], action="subscribe", channel="/chat/rooms/0"))[
            "type"
        ] == "subscribed"
        other = await connect(User(pk=2, username="other"))
        assert (await request(other, action="subscribe", channel="/chat/rooms/5"))["type"] == (
            "subscribed"
        )
        # Leaving a channel frees a place for the greedy client.
        await request(sockets[0], action="unsubscribe", channel="/chat/rooms/0")
        await request(sockets[1], action="unsubscribe", channel="/chat/rooms/0")
        assert (await request(sockets[0], action="subscribe", channel="/chat/rooms/3"))[
            "type"
        ] == "subscribed"
        for ws in [*sockets, other]:
            await ws.disconnect()


# -- no silent loss: gaps and restarts -------------------------------------------------------


class GatedConsumer(AppSyncEventsConsumer):
    """A consumer that holds every event until the test opens the gate (it lags)."""

    gate: asyncio.Event | None = None

    async def event_message(self, message: dict[str, Any]) -> dict[str, Any] | None:
        if self.gate is not None:
            await self.gate.wait()
        return await super().event_message(message)


async def test_a_lagging_socket_is_told_which_events_it_missed(settings):
    """Past the layer's capacity a lagging consumer loses events; the page gets a gap message
    with the exact missing range, then the events that did arrive."""
    api_settings(settings)
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 3}}
    }
    fake = FakeListener()
    async with serving(fake) as forwarder:
        fake.forwarder = forwarder  # type: ignore[attr-defined]
        GatedConsumer.gate = asyncio.Event()
        ws = WebsocketCommunicator(GatedConsumer.as_asgi(), PATH)
        ws.scope["user"] = member()
        assert (await ws.connect())[0]
        reply = await request(ws, action="subscribe", channel="/chat/static")
        assert reply["type"] == "subscribed"
        GatedConsumer.gate.set()
        await deliver(fake, "/chat/static", 1)  # the baseline: seq 1
        assert (await ws.receive_json_from(timeout=3))["payload"] == 1
        GatedConsumer.gate.clear()
        for n in range(2, 12):  # the consumer is stuck on 2; its channel keeps 3 more
            await deliver(fake, "/chat/static", n)
        await forwarder.flush()
        GatedConsumer.gate.set()
        kept = [(await ws.receive_json_from(timeout=3))["payload"] for _ in range(4)]
        assert kept == [2, 3, 4, 5]  # 6 to 11 were dropped by the full channel, silently
        await deliver(fake, "/chat/static", 12)
        gap = await ws.receive_json_from(timeout=3)
        assert (await ws.receive_json_from(timeout=3))["payload"] == 12
        assert gap["type"] == "gap"
        assert gap["channel"] == "/chat/static"
        assert gap["reason"] == "lagging"
        assert gap["missed"] == {"from": 6, "to": 11}
        assert gap["run"] == forwarder.run_id
        await ws.disconnect()
    GatedConsumer.gate = None


async def test_a_listener_restart_is_reported(settings, caplog: pytest.LogCaptureFixture):
    """Events from a new forwarder run (the listener restarted) come after a gap message,
    logged once as a possible loss of unknown size."""
    api_settings(settings)
    fake = FakeListener()
    ws = await connect()
    async with serving(fake) as first:
        fake.forwarder = first  # type: ignore[attr-defined]
        assert (await request(ws, action="subscribe", channel="/chat/static"))["type"] == (
            "subscribed"
        )
        await deliver(fake, "/chat/static", "before")
        assert (await ws.receive_json_from(timeout=3))["payload"] == "before"
    async with serving(FakeListener()) as restarted:
        fake.forwarder = restarted  # type: ignore[attr-defined]
        await deliver(fake, "/chat/static", "after")
        gap = await ws.receive_json_from(timeout=3)
        assert (gap["type"], gap["reason"], gap["missed"]) == ("gap", "listener_restart", None)
        assert gap["run"] == restarted.run_id
        assert (await ws.receive_json_from(timeout=3))["payload"] == "after"
    await ws.disconnect()
    lines = [r.getMessage() for r in caplog.records if r.name == "appsync_events.consumers"]
    assert lines == [
        "a browser socket may have missed events of /chat/static on group appsync.chat.static "
        f"(listener_restart: what was sent before run {restarted.run_id} is unknown); the page "
        "is told to re-sync"
    ]


async def test_each_gap_is_logged_once_and_signalled_before_the_page_hears_it(
    listener, caplog: pytest.LogCaptureFixture
):
    """A gap is one WARNING naming the group and the range, one ``gap_detected`` signal,
    then the page's message; a receiver that raises is logged and changes nothing."""
    received: list[dict[str, Any]] = []

    async def count(sender: str, **kwargs: Any) -> None:
        received.append({"sender": sender, **kwargs})

    def broken(sender: str, **kwargs: Any) -> None:
        raise RuntimeError("metrics backend down")

    signals.gap_detected.connect(count, dispatch_uid="test-gap-count")
    signals.gap_detected.connect(broken, dispatch_uid="test-gap-broken")
    ws = await connect()
    try:
        assert (await request(ws, action="subscribe", channel="/chat/static"))["type"] == (
            "subscribed"
        )
        layer = get_channel_layer()
        group = group_name("/chat/static", prefix="appsync")
        event = ReceivedEvent("default", "/chat/static", "x", '"x"')
        caplog.set_level(logging.WARNING, logger="appsync_events.consumers")
        for seq in (1, 2, 6, 7):  # 3 to 5 withheld: the socket never saw them
            await layer.group_send(group, forward_message(event, seq=seq, run="r1"))
        replies = [await ws.receive_json_from(timeout=3) for _ in range(5)]
        assert [r["type"] for r in replies] == ["event", "event", "gap", "event", "event"]
        assert replies[2] == {
            "type": "gap",
            "channel": "/chat/static",
            "reason": "lagging",
            "missed": {"from": 3, "to": 5},
            "run": "r1",
        }
        assert received == [
            {
                "sender": "default",
                "signal": signals.gap_detected,
                "api": "default",
                "channel": "/chat/static",
                "group": group,
                "reason": "lagging",
                "missed": (3, 5),
                "run": "r1",
            }
        ]
        gaps = [
            r
            for r in caplog.records
            if r.name == "appsync_events.consumers" and r.levelno == logging.WARNING
        ]
        assert len(gaps) == 1
        assert gaps[0].getMessage() == (
            f"a browser socket missed events of /chat/static on group {group} (lagging): "
            "seq 3 to 5 of run r1; the page is told to re-sync"
        )
        errors = [
            r
            for r in caplog.records
            if r.name == "appsync_events.consumers" and r.levelno == logging.ERROR
        ]
        assert len(errors) == 1
        assert "gap_detected" in errors[0].getMessage()
        assert "metrics backend down" in str(errors[0].exc_info[1])  # type: ignore[index]
    finally:
        signals.gap_detected.disconnect(dispatch_uid="test-gap-count")
        signals.gap_detected.disconnect(dispatch_uid="test-gap-broken")
        await ws.disconnect()


def test_client_key_never_carries_a_session_key_or_an_address() -> None:
    """Per-client limits key on the user, else digests of the session key or the address:
    the key crosses the channel layer, and a session key is a bearer credential."""
    from types import SimpleNamespace

    from django.contrib.auth.models import AnonymousUser

    def key(**scope: Any) -> str:
        consumer = AppSyncEventsConsumer()
        consumer.scope = {"user": AnonymousUser(), **scope}
        consumer.channel_name = "specific.abc!def"
        return consumer.client_key()

    user = SimpleNamespace(is_authenticated=True, pk=42)
    assert key(user=user) == "user:42"
    session = key(session=SimpleNamespace(session_key="s3cr3tsessionkey0123456789abcdef"))
    assert session.startswith("session:")
    assert "s3cr3tsessionkey" not in session
    assert session == key(session=SimpleNamespace(session_key="s3cr3tsessionkey0123456789abcdef"))
    address = key(client=("203.0.113.7", 5555))
    assert address.startswith("ip:")
    assert "203.0.113.7" not in address
    assert key() == "socket:specific.abc!def"
