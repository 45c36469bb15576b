"""The demo chat: views, model, publishing (locmem backend), status panel and consumer."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from asgiref.testing import ApplicationCommunicator
from channels.layers import BaseChannelLayer, get_channel_layer
from django.conf import LazySettings
from django.contrib.staticfiles import finders
from django.test import Client
from django.urls import reverse

from appsync_events import signals
from appsync_events.backends import locmem
from appsync_events.events import ReceivedEvent
from appsync_events.follows import FOLLOW, FOLLOW_RESULT
from appsync_events.paths import group_name
from demo_project.chat.consumers import ChatConsumer
from demo_project.chat.events import MessagePosted, message_data
from demo_project.chat.forms import room_slug
from demo_project.chat.models import Message
from demo_project.chat.status import EVENT_UPDATE_INTERVAL, STATUS_GROUP, status

# Deadline for awaiting a websocket message or a channel-layer message.
TIMEOUT = 5.0


@pytest.fixture(autouse=True)
def _locmem_publishing(settings: LazySettings) -> Iterator[None]:
    """Publish through the in-memory backend, grant what the demo grants, and start every
    test with no records."""
    from demo_project.settings import APPSYNC_EVENTS as DEMO

    config = copy.deepcopy(settings.APPSYNC_EVENTS)
    config["default"]["PUBLISH"] = {"BACKEND": "locmem"}
    config["default"]["GRANTS"] = DEMO["default"]["GRANTS"]
    settings.APPSYNC_EVENTS = config
    locmem.clear()
    status.reset()
    yield
    locmem.clear()
    status.reset()


def _post(client: Client, room: str, **data: str) -> Any:
    return client.post(
        reverse("chat:post", kwargs={"room": room}), data, HTTP_ACCEPT="application/json"
    )


# -- helpers -----------------------------------------------------------------------------------


def test_room_slug_turns_names_into_channel_segments() -> None:
    """Typed room names become valid channel segments: no '_', no edge '-', at most 50."""
    assert room_slug("Café Talk!") == "cafe-talk"
    assert room_slug("  snake_case__room ") == "snake-case-room"
    assert room_slug("-- ok --") == "ok"
    assert room_slug("!!!") == ""
    long = room_slug("a" * 49 + " b" + "c" * 10)
    assert len(long) <= 50
    assert not long.endswith("-")


def test_message_posted_channel_and_wildcard() -> None:
    """The event class names the room's channel and the all-rooms wildcard."""
    assert MessagePosted.channel_for(room="lobby") == "/chat/rooms/lobby"
    assert MessagePosted.wildcard() == "/chat/rooms/*"


@pytest.mark.django_db
def test_message_posted_payload_carries_the_room_and_an_event_id() -> None:
    """The payload holds the template field (room), the message, its type and a unique id."""
    message = Message.objects.create(room="lobby", author="ada", text="hi")
    first = MessagePosted.from_message(message)
    second = MessagePosted.from_message(message)
    payload = json.loads(first.encode())
    assert payload["event_type"] == "MessagePosted"
    assert (payload["room"], payload["id"], payload["author"], payload["text"]) == (
        "lobby",
        message.pk,
        "ada",
        "hi",
    )
    assert payload["event_id"] != second.to_payload()["event_id"]
    assert first.channel_path == "/chat/rooms/lobby"
    # A receiver rebuilds the typed event, timestamp included, from the payload alone.
    again = MessagePosted.from_event(payload)
    assert again.created_at == message.created_at.replace(
        microsecond=message.created_at.microsecond // 1000 * 1000
    )
    assert again.room == "lobby"


# -- pages -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_index_lists_default_and_active_rooms(client: Client) -> None:
    """The home page offers the default rooms and every room that has messages."""
    Message.objects.create(room="dev-talk", author="ada", text="hi")
    response = client.get(reverse("chat:index"))
    assert response.status_code == 200
    for room in ("lobby", "random", "dev-talk"):
        assert reverse("chat:room", kwargs={"room": room}).encode() in response.content


@pytest.mark.django_db
def test_index_post_redirects_to_the_slugged_room(client: Client) -> None:
    """Opening a room by name redirects to its slug."""
    response = client.post(reverse("chat:index"), {"name": "Team Chat"})
    assert response.status_code == 302
    assert response["Location"] == reverse("chat:room", kwargs={"room": "team-chat"})


@pytest.mark.django_db
def test_index_post_refuses_a_name_without_letters(client: Client) -> None:
    """A name with no letter or digit cannot become a room; the form says so."""
    response = client.post(reverse("chat:index"), {"name": "!!!"})
    assert response.status_code == 200
    assert b"Use at least one letter or digit" in response.content


@pytest.mark.django_db
def test_room_page_shows_history_and_follows_its_channel(client: Client) -> None:
    """A room page renders its messages only, and tells the script what to follow."""
    Message.objects.create(room="lobby", author="ada", text="hello lobby")
    Message.objects.create(room="random", author="bob", text="elsewhere")
    response = client.get(reverse("chat:room", kwargs={"room": "lobby"}))
    assert response.status_code == 200
    body = response.content.decode()
    assert 'data-channel="/chat/rooms/lobby"' in body
    assert 'data-ws-url="/ws/appsync/"' in body
    assert "hello lobby" in body
    assert "elsewhere" not in body


@pytest.mark.django_db
def test_room_page_hints_at_a_second_tab_and_a_publish_command(
    client: Client, settings: LazySettings
) -> None:
    """The room page says what to try: a second tab, or the exact ``appsync_publish``
    command for its channel (naming the emulator's port when it is not the default)."""
    body = client.get(reverse("chat:room", kwargs={"room": "lobby"})).content.decode()
    assert "open this room in a second tab" in body
    command = (
        "python manage.py appsync_publish /chat/rooms/lobby "
        "&#x27;{&quot;author&quot;: &quot;shell&quot;, &quot;text&quot;: &quot;Hello from a "
        "shell&quot;}&#x27;"
    )
    assert f'<code id="publish-command">{command}</code>' in body

    settings.USE_EMULATOR = True
    settings.EMULATOR_PORT = 8765
    config = copy.deepcopy(settings.APPSYNC_EVENTS)
    config["default"]["HTTP_URL"] = "http://127.0.0.1:40123/event"
    settings.APPSYNC_EVENTS = config
    body = client.get(reverse("chat:room", kwargs={"room": "lobby"})).content.decode()
    assert f'<code id="publish-command">APPSYNC_EVENTS_EMULATOR_PORT=40123 {command}' in body


@pytest.mark.django_db
def test_pages_name_their_icon_and_favicon_ico_redirects_to_it(client: Client) -> None:
    """Every page links the SVG icon, which exists, and /favicon.ico redirects to it
    instead of answering 404."""
    icon = "/static/chat/favicon.svg"
    for name in ("chat:index", "chat:all_rooms"):
        assert f'<link rel="icon" href="{icon}"'.encode() in client.get(reverse(name)).content
    response = client.get("/favicon.ico")
    assert (response.status_code, response["Location"]) == (302, icon)
    found = finders.find("chat/favicon.svg")
    assert isinstance(found, str)
    assert Path(found).read_text().startswith("<svg")


@pytest.mark.django_db
def test_home_page_follows_nothing_and_says_so(client: Client) -> None:
    """The home page has no channel: its panel says so instead of a "pending" that never
    resolves, and it has no re-sync notice."""
    body = client.get(reverse("chat:index")).content.decode()
    assert '<span id="page-follow" data-state="none">no channel on this page</span>' in body
    assert 'data-state="pending"' not in body
    assert "sync-notice" not in body
    assert "data-messages-url" not in body
    room = client.get(reverse("chat:room", kwargs={"room": "lobby"})).content.decode()
    assert '<span id="page-follow" data-state="pending">pending</span>' in room
    assert '<p id="sync-notice" class="notice" role="status" hidden></p>' in room
    assert 'data-messages-url="/messages/?room=lobby"' in room
    everything = client.get(reverse("chat:all_rooms")).content.decode()
    assert 'data-messages-url="/messages/"' in everything


@pytest.mark.django_db
def test_messages_json_is_what_a_page_reloads_after_a_gap(client: Client) -> None:
    """``/messages/`` answers the newest messages oldest first, of one room with
    ``?room=``, and refuses a room name that is no channel segment."""
    ada = Message.objects.create(room="lobby", author="ada", text="one")
    bob = Message.objects.create(room="random", author="bob", text="two")
    eve = Message.objects.create(room="lobby", author="eve", text="three")
    url = reverse("chat:messages")
    response = client.get(url, {"room": "lobby"})
    assert response.status_code == 200
    assert response.json() == {"messages": [message_data(ada), message_data(eve)]}
    assert client.get(url).json() == {"messages": [message_data(m) for m in (ada, bob, eve)]}
    assert client.get(url, {"room": "nobody"}).json() == {"messages": []}
    refused = client.get(url, {"room": "bad_name"})
    assert refused.status_code == 400
    assert list(refused.json()["errors"]) == ["room"]
    assert client.post(url).status_code == 405


def test_room_urls_accept_only_valid_channel_segments(client: Client) -> None:
    """Room names that are not channel segments (underscore, edge dash) are not found."""
    assert client.get("/rooms/bad_name/").status_code == 404
    assert client.get("/rooms/-edge/").status_code == 404
    assert client.get("/rooms/" + "a" * 51 + "/").status_code == 404


@pytest.mark.django_db
def test_all_rooms_page_follows_the_wildcard_and_tags_rooms(client: Client) -> None:
    """The all-rooms page shows every room's messages with their room, on /chat/rooms/*."""
    Message.objects.create(room="lobby", author="ada", text="one")
    Message.objects.create(room="random", author="bob", text="two")
    response = client.get(reverse("chat:all_rooms"))
    body = response.content.decode()
    assert 'data-channel="/chat/rooms/*"' in body
    assert "one" in body
    assert "two" in body
    assert 'class="room-tag" href="/rooms/random/"' in body


@pytest.mark.django_db
def test_history_is_the_newest_messages_oldest_first(client: Client) -> None:
    """A page opens with the newest 50 messages, in the order they were posted."""
    for i in range(55):
        Message.objects.create(room="lobby", author="ada", text=f"msg-{i:02d}")
    body = client.get(reverse("chat:room", kwargs={"room": "lobby"})).content.decode()
    assert "msg-04" not in body
    assert body.index("msg-05") < body.index("msg-54")


# -- posting and publishing -------------------------------------------------------------------


@pytest.mark.django_db
def test_posting_saves_and_publishes_after_commit(
    client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    """A post saves the message, and publishes it to the room's channel only on commit."""
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = _post(client, "lobby", author="ada", text="  hello  ")
        locmem.assert_nothing_published()
    assert response.status_code == 201
    message = Message.objects.get()
    assert (message.room, message.author, message.text) == ("lobby", "ada", "hello")
    assert response.json() == message_data(message)
    assert len(callbacks) == 1

    callbacks[0]()
    events = locmem.published_events("/chat/rooms/lobby")
    assert len(events) == 1
    received = MessagePosted.from_event(events[0])
    assert (received.id, received.room, received.author, received.text) == (
        message.pk,
        "lobby",
        "ada",
        "hello",
    )
    assert locmem.published_events("/chat/rooms/random") == []


@pytest.mark.django_db(transaction=True)
def test_posting_publishes_nothing_when_the_transaction_rolls_back(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure after the save rolls it back, and no event announces the lost message."""

    original = MessagePosted.publish

    def publish_then_fail(self: MessagePosted) -> Any:
        # Queue the real publish, then fail inside the same atomic block.
        original(self)
        raise RuntimeError("boom")

    monkeypatch.setattr(MessagePosted, "publish", publish_then_fail)
    with pytest.raises(RuntimeError, match="boom"):
        _post(client, "lobby", author="ada", text="hi")
    assert Message.objects.count() == 0
    locmem.assert_nothing_published()


@pytest.mark.django_db(transaction=True)
def test_posting_outside_a_test_transaction_publishes_at_once(client: Client) -> None:
    """With real commits, the event is published as the view's transaction commits."""
    response = _post(client, "dev-talk", author="bob", text="live")
    assert response.status_code == 201
    locmem.assert_published("/chat/rooms/dev-talk", count=1)
    (event,) = locmem.published_events("/chat/rooms/dev-talk")
    assert event["room"] == "dev-talk"
    assert event["text"] == "live"


@pytest.mark.django_db
def test_invalid_post_answers_errors_and_publishes_nothing(
    client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    """A blank message is refused with the form's errors, as JSON or as the page."""
    with django_capture_on_commit_callbacks(execute=True):
        response = _post(client, "lobby", author="ada", text="   ")
        page = client.post(reverse("chat:post", kwargs={"room": "lobby"}), {"author": ""})
    assert response.status_code == 400
    assert "text" in response.json()["errors"]
    assert page.status_code == 400
    assert b"This field is required." in page.content
    assert Message.objects.count() == 0
    locmem.assert_nothing_published()


@pytest.mark.django_db
def test_form_post_without_javascript_redirects_to_the_room(
    client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    """A plain form post (no fetch) redirects back to the room, and still publishes."""
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("chat:post", kwargs={"room": "lobby"}), {"author": "ada", "text": "hi"}
        )
    assert response.status_code == 302
    assert response["Location"] == reverse("chat:room", kwargs={"room": "lobby"})
    locmem.assert_published("/chat/rooms/lobby", count=1)


def test_posting_needs_post(client: Client) -> None:
    """GET on the posting URL is refused."""
    assert client.get(reverse("chat:post", kwargs={"room": "lobby"})).status_code == 405


# -- the status panel ---------------------------------------------------------------------------


def _layer() -> BaseChannelLayer:
    layer = get_channel_layer()
    assert layer is not None
    return layer


def _event(payload: Any, subscription: str = "/chat/*") -> ReceivedEvent:
    return ReceivedEvent(
        api="default",
        subscription=subscription,
        payload=payload,
        raw=json.dumps(payload),
        received_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )


def test_status_counts_each_event_once_across_subscriptions() -> None:
    """One event delivered on three matching subscriptions counts as one event."""
    payload = {"event_id": "e1", "room": "lobby"}
    assert status.record_event(_event(payload, "/chat/*")) is True
    assert status.record_event(_event(payload, "/chat/rooms/*")) is False
    assert status.record_event(_event(payload, "/chat/rooms/lobby")) is False
    assert status.record_event(_event({"event_id": "e2"})) is True
    assert status.record_event(_event("no id, raw text")) is True
    snapshot = status.snapshot()
    assert snapshot["events_received"] == 3
    assert snapshot["deliveries"] == 5
    assert snapshot["last_event_at"] == "2026-01-02T03:04:05+00:00"


def test_status_forgets_subscriptions_when_the_connection_drops() -> None:
    """Subscriptions are listed while connected and cleared on any other state."""
    status.set_state("connected", None, None)
    status.add_subscription("/chat/*")
    assert status.snapshot()["subscriptions"] == ["/chat/*"]
    status.set_state("reconnecting", "keep-alive timeout", 2.0)
    snapshot = status.snapshot()
    assert snapshot["subscriptions"] == []
    assert (snapshot["state"], snapshot["reason"], snapshot["retry_in"]) == (
        "reconnecting",
        "keep-alive timeout",
        2.0,
    )


@pytest.mark.django_db
def test_status_view_returns_the_snapshot(client: Client) -> None:
    """The status URL answers what the panel shows."""
    status.set_state("connected", None, None)
    data = client.get(reverse("chat:status")).json()
    assert data["state"] == "connected"
    assert data["events_received"] == 0


async def test_lifecycle_signals_feed_the_status_and_reach_the_pages() -> None:
    """The listener's signals update the status and broadcast it to the status group; a
    burst of events makes one snapshot."""
    layer = _layer()
    page = await layer.new_channel()
    await layer.group_add(STATUS_GROUP, page)
    try:
        await signals.connection_state_changed.asend(
            sender="default", api="default", state="connected", reason=None, retry_in=None
        )
        message = await asyncio.wait_for(layer.receive(page), TIMEOUT)
        assert message["type"] == "demo.status"
        assert message["status"]["state"] == "connected"

        await signals.subscription_established.asend(
            sender="default", api="default", channel="/chat/*", subscription_id="s1"
        )
        message = await asyncio.wait_for(layer.receive(page), TIMEOUT)
        assert message["status"]["subscriptions"] == ["/chat/*"]

        await signals.subscription_removed.asend(
            sender="default", api="default", channel="/chat/*", subscription_id="s1"
        )
        message = await asyncio.wait_for(layer.receive(page), TIMEOUT)
        assert message["status"]["subscriptions"] == []

        for n in range(50):  # a burst: one coalesced snapshot, not fifty
            await signals.event_received.asend(
                sender="default", api="default", event=_event({"event_id": f"x{n}"})
            )
        message = await asyncio.wait_for(layer.receive(page), TIMEOUT)
        assert message["status"]["events_received"] == 50
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(layer.receive(page), 2 * EVENT_UPDATE_INTERVAL)
    finally:
        await layer.group_discard(STATUS_GROUP, page)


# -- the consumer ------------------------------------------------------------------------------


class _Socket:
    """A browser websocket driven straight through ASGI (``channels.testing`` needs daphne)."""

    def __init__(self, path: str = "/ws/appsync/") -> None:
        scope = {
            "type": "websocket",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": [(b"host", b"127.0.0.1")],
            "subprotocols": [],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }
        self.app = ApplicationCommunicator(ChatConsumer.as_asgi(), scope)  # type: ignore[no-untyped-call]

    async def connect(self) -> bool:
        await self.app.send_input({"type": "websocket.connect"})  # type: ignore[no-untyped-call]
        reply = await self.app.receive_output(TIMEOUT)  # type: ignore[no-untyped-call]
        return bool(reply["type"] == "websocket.accept")

    async def send_json_to(self, data: Any) -> None:
        await self.app.send_input({"type": "websocket.receive", "text": json.dumps(data)})  # type: ignore[no-untyped-call]

    async def receive_json_from(self) -> Any:
        message = await self.app.receive_output(TIMEOUT)  # type: ignore[no-untyped-call]
        assert message["type"] == "websocket.send", message
        return json.loads(message["text"])

    async def disconnect(self) -> None:
        await self.app.send_input({"type": "websocket.disconnect", "code": 1000})  # type: ignore[no-untyped-call]
        await self.app.wait(TIMEOUT)  # type: ignore[no-untyped-call]


async def test_consumer_sends_the_status_on_connect() -> None:
    """A page gets the listener's status as soon as its socket opens."""
    status.set_state("connected", None, None)
    communicator = _Socket()
    assert await communicator.connect()
    try:
        first = await communicator.receive_json_from()
        assert first["type"] == "status"
        assert first["status"]["state"] == "connected"
        # Later snapshots are relayed too.
        status.set_state("reconnecting", "network", 1.0)
        layer = _layer()
        await layer.group_send(STATUS_GROUP, {"type": "demo.status", "status": status.snapshot()})
        relayed = await communicator.receive_json_from()
        assert relayed["status"]["state"] == "reconnecting"
    finally:
        await communicator.disconnect()


async def test_consumer_follows_a_room_and_relays_its_events() -> None:
    """An anonymous page follows a room through the listener and receives its events."""
    layer = _layer()
    communicator = _Socket()
    assert await communicator.connect()
    try:
        await communicator.receive_json_from()  # the status
        await communicator.send_json_to({"action": "subscribe", "channel": "/chat/rooms/lobby"})
        # Play the listener: read the follow from the control channel, confirm it.
        follow = await asyncio.wait_for(layer.receive("appsync-events-control"), TIMEOUT)
        assert follow["type"] == FOLLOW
        assert follow["channel"] == "/chat/rooms/lobby"
        await layer.send(
            follow["follower"],
            {"type": FOLLOW_RESULT, "api": "default", "channel": follow["channel"], "ok": True},
        )
        reply = await communicator.receive_json_from()
        assert reply == {"type": "subscribed", "channel": "/chat/rooms/lobby"}

        payload = {"event_id": "e1", "id": 1, "room": "lobby", "author": "ada", "text": "hi"}
        await layer.group_send(
            group_name("/chat/rooms/lobby"),
            {
                "type": "appsync.event",
                "api": "default",
                "subscription": "/chat/rooms/lobby",
                "payload": payload,
                "received_at": 0.0,
            },
        )
        event = await communicator.receive_json_from()
        assert event == {"type": "event", "channel": "/chat/rooms/lobby", "payload": payload}
    finally:
        await communicator.disconnect()


@pytest.mark.parametrize("channel", ["/chat/*", "/chat/other/x", "/chat/rooms/a/b"])
async def test_consumer_refuses_channels_outside_the_rooms(channel: str) -> None:
    """Pages may follow one room or /chat/rooms/*, nothing else of the namespace."""
    communicator = _Socket()
    assert await communicator.connect()
    try:
        await communicator.receive_json_from()  # the status
        await communicator.send_json_to({"action": "subscribe", "channel": channel})
        reply = await communicator.receive_json_from()
        assert reply["type"] == "error"
        assert reply["code"] == "forbidden"
    finally:
        await communicator.disconnect()


async def test_consumer_refuses_publishing_from_the_browser() -> None:
    """Messages are posted through the view; the socket never publishes."""
    communicator = _Socket()
    assert await communicator.connect()
    try:
        await communicator.receive_json_from()  # the status
        await communicator.send_json_to(
            {"action": "publish", "channel": "/chat/rooms/lobby", "events": [{"text": "x"}]}
        )
        reply = await communicator.receive_json_from()
        assert (reply["type"], reply["code"]) == ("error", "forbidden")
    finally:
        await communicator.disconnect()
    locmem.assert_nothing_published()
