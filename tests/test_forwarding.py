"""The channel-layer forwarder: group per subscription path, message shape, errors never fatal."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer, get_channel_layer

from appsync_events import forwarding
from appsync_events.events import ReceivedEvent
from appsync_events.exceptions import ConfigurationError
from appsync_events.follows import FOLLOW_RESULT, follow_message
from appsync_events.forwarding import ChannelLayerForwarder, forward_message
from appsync_events.paths import group_name

from .test_forwarding_follows import FakeListener

DEADLINE = 5.0


def event(subscription: str = "/chat/rooms/7", payload: Any = None) -> ReceivedEvent:
    payload = {"text": "hi"} if payload is None else payload
    return ReceivedEvent("default", subscription, payload, '{"text":"hi"}', "sub-1")


class RaisingLayer(InMemoryChannelLayer):
    """An in-memory layer whose ``group_send`` raises what it is told to."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        raise self.error


async def receive(layer: Any, channel: str) -> dict[str, Any]:
    async with asyncio.timeout(DEADLINE):
        return await layer.receive(channel)


async def test_event_reaches_the_group_of_its_subscription_path():
    """A member of the subscription's group receives the documented message."""
    layer = InMemoryChannelLayer()
    member = await layer.new_channel()
    await layer.group_add("appsync.chat.rooms.7", member)
    forwarder = ChannelLayerForwarder(layer)
    received = event()
    await forwarder.dispatch(received)
    message = await receive(layer, member)
    assert message == {
        "type": "appsync.event",
        "api": "default",
        "subscription": "/chat/rooms/7",
        "payload": {"text": "hi"},
        "received_at": received.received_at.timestamp(),
        "seq": 1,
        "run": forwarder.run_id,
    }
    assert message == forward_message(received, seq=1, run=forwarder.run_id)
    await forwarder.flush()
    assert forwarder.stats.as_dict() == {
        "forwarded": 1,
        "skipped": 0,
        "channel_full": 0,
        "errors": 0,
    }


async def test_wildcard_subscriptions_use_their_own_group_and_prefix_and_type():
    """``/chat/*`` goes to ``PREFIX.chat._`` with the configured message type."""
    layer = InMemoryChannelLayer()
    member = await layer.new_channel()
    await layer.group_add(group_name("/chat/*", prefix="site1"), member)
    forwarder = ChannelLayerForwarder(layer, group_prefix="site1", message_type="chat.event")
    await forwarder.dispatch(event("/chat/*"))
    message = await receive(layer, member)
    assert message["type"] == "chat.event"
    assert message["subscription"] == "/chat/*"
    assert forwarder.group_for("/chat/*") == "site1.chat._"


async def test_only_configured_subscriptions_are_forwarded():
    """With ``subscriptions`` set, other subscriptions are skipped and counted."""
    layer = InMemoryChannelLayer()
    member = await layer.new_channel()
    await layer.group_add("appsync.chat.a", member)
    await layer.group_add("appsync.chat.b", member)
    forwarder = ChannelLayerForwarder(layer, subscriptions=["chat/b"])
    await forwarder.dispatch(event("/chat/a"))
    await forwarder.dispatch(event("/chat/b"))
    assert (await receive(layer, member))["subscription"] == "/chat/b"
    await forwarder.flush()
    assert forwarder.stats.skipped == 1
    assert forwarder.stats.forwarded == 1


async def test_channel_full_is_logged_counted_and_not_raised(caplog):
    """``ChannelFull`` from the layer is a WARNING and a count, never an exception."""
    forwarder = ChannelLayerForwarder(RaisingLayer(ChannelFull("x")))
    with caplog.at_level(logging.WARNING, logger="appsync_events.forwarding"):
        await forwarder.dispatch(event())
        await forwarder.flush()
    assert forwarder.stats.channel_full == 1
    assert forwarder.stats.forwarded == 0
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "channel layer full" in record.getMessage()
    assert "appsync.chat.rooms.7" in record.getMessage()


async def test_other_layer_errors_are_logged_with_traceback_and_counted(caplog):
    """Any other exception from ``group_send`` is an ERROR with traceback and a count."""
    forwarder = ChannelLayerForwarder(RaisingLayer(ConnectionError("redis went away")))
    with caplog.at_level(logging.ERROR, logger="appsync_events.forwarding"):
        await forwarder.dispatch(event())
        await forwarder.flush()
    assert forwarder.stats.errors == 1
    (record,) = caplog.records
    assert record.exc_info is not None
    assert "redis went away" in caplog.text


async def test_repeated_failures_are_throttled_in_the_log_but_all_counted(caplog, monkeypatch):
    """Within a second only the first failure is logged; the next line says how many were held."""
    now = [100.0]
    monkeypatch.setattr(forwarding.time, "monotonic", lambda: now[0])
    forwarder = ChannelLayerForwarder(RaisingLayer(ChannelFull("x")))
    with caplog.at_level(logging.WARNING, logger="appsync_events.forwarding"):
        for _ in range(5):
            await forwarder.dispatch(event())
        await forwarder.flush()
        now[0] += 1.5
        await forwarder.dispatch(event())
        await forwarder.flush()
    assert forwarder.stats.channel_full == 6
    # Only the forwarder's own lines: the frozen clock also makes asyncio's debug mode
    # report the step as a slow callback.
    lines = [r for r in caplog.records if r.name == "appsync_events.forwarding"]
    assert len(lines) == 2
    assert "4 similar failures not logged" in lines[1].getMessage()


async def test_a_real_full_member_channel_does_not_stop_forwarding():
    """With the in-memory layer, a full member misses the event; other members get it."""
    layer = InMemoryChannelLayer(capacity=1)
    full = await layer.new_channel()
    healthy = await layer.new_channel()
    await layer.send(full, {"type": "filler"})
    for member in (full, healthy):
        await layer.group_add("appsync.chat.rooms.7", member)
    forwarder = ChannelLayerForwarder(layer)
    await forwarder.dispatch(event())
    await forwarder.flush()
    assert (await receive(layer, healthy))["payload"] == {"text": "hi"}
    assert (await receive(layer, full))["type"] == "filler"
    assert forwarder.stats.errors == 0


class GatedLayer:
    """Records ``group_send`` calls; sends to the groups in ``closed`` wait for ``gate``."""

    def __init__(self, *closed: str) -> None:
        self.closed = set(closed)
        self.gate = asyncio.Event()
        self.sent: list[tuple[str, int]] = []
        self.started: list[str] = []

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        self.started.append(group)
        if group in self.closed:
            await self.gate.wait()
        self.sent.append((group, message["seq"]))


async def until(condition: Any) -> None:
    """Let the event loop run until ``condition()`` holds (a bounded number of passes)."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


async def test_a_slow_group_does_not_delay_another_and_each_keeps_its_order():
    """Events of a group whose send hangs wait; another group's events go out meanwhile."""
    slow, fast = group_name("/chat/slow"), group_name("/chat/fast")
    layer = GatedLayer(slow)
    forwarder = ChannelLayerForwarder(layer, control_channel=None)
    for _ in range(3):
        await forwarder.dispatch(event("/chat/slow"))
        await forwarder.dispatch(event("/chat/fast"))
    await until(lambda: len([g for g, _ in layer.sent if g == fast]) == 3)
    assert [g for g, _ in layer.sent] == [fast] * 3  # the slow group's first send still hangs
    layer.gate.set()
    await forwarder.flush()
    assert [seq for g, seq in layer.sent if g == slow] == [1, 2, 3]
    assert [seq for g, seq in layer.sent if g == fast] == [1, 2, 3]
    assert forwarder.stats.forwarded == 6


async def test_dispatch_waits_while_its_group_queue_is_full():
    """A group's full queue makes dispatch wait until the sender drained it; nothing is lost."""
    layer = GatedLayer(group_name("/chat/slow"))
    forwarder = ChannelLayerForwarder(layer, control_channel=None)
    total = forwarding.GROUP_QUEUE_SIZE + 2

    async def dispatch_all() -> None:
        for _ in range(total):
            await forwarder.dispatch(event("/chat/slow"))

    task = asyncio.create_task(dispatch_all())
    await until(lambda: layer.started)  # the first event is in the hung send
    slow = forwarder._senders[group_name("/chat/slow")]
    assert len(slow.pending) == forwarding.GROUP_QUEUE_SIZE - 1
    assert not task.done()  # the queue filled up before the sender started: dispatch waits
    await forwarder.dispatch(event("/chat/other"))  # another group is not held up
    layer.gate.set()
    await asyncio.wait_for(task, DEADLINE)
    await forwarder.flush()
    assert [seq for g, seq in layer.sent if g == group_name("/chat/slow")] == list(
        range(1, total + 1)
    )
    assert forwarder.stats.forwarded == total + 1


def test_from_settings_reads_the_forwarding_section(settings):
    """The settings' prefix, type, control channel and static subscriptions are used."""
    settings.APPSYNC_EVENTS = {
        "default": {
            **settings.APPSYNC_EVENTS["default"],
            "SUBSCRIPTIONS": ["/chat/*"],
            "FORWARDING": {
                "GROUP_PREFIX": "x1",
                "MESSAGE_TYPE": "chat.event",
                "CONTROL_CHANNEL": "ctl-1",
                "SUBSCRIPTIONS": ["/chat/*"],
                "UNFOLLOW_GRACE": 0,
                "MAX_FOLLOWS": 3,
            },
        }
    }
    forwarder = ChannelLayerForwarder.from_settings("default")
    assert forwarder.layer is get_channel_layer()
    assert (forwarder.group_prefix, forwarder.message_type) == ("x1", "chat.event")
    assert forwarder.control_channel == "ctl-1"
    assert forwarder.static == {"/chat/*"}
    assert forwarder.subscriptions == {"/chat/*"}
    assert (forwarder.unfollow_grace, forwarder.max_follows) == (0, 3)


def test_from_settings_refuses_disabled_forwarding_and_missing_layers(settings):
    """A disabled alias or a missing channel layer is a ConfigurationError saying what to do."""
    base = settings.APPSYNC_EVENTS["default"]
    settings.APPSYNC_EVENTS = {"default": {**base, "FORWARDING": {"ENABLED": False}}}
    with pytest.raises(ConfigurationError, match="ENABLED"):
        ChannelLayerForwarder.from_settings()
    settings.APPSYNC_EVENTS = {"default": {**base, "FORWARDING": {"CHANNEL_LAYER": "nope"}}}
    with pytest.raises(ConfigurationError, match="CHANNEL_LAYERS has no such layer"):
        ChannelLayerForwarder.from_settings()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("CONTROL_CHANNEL", "bad name!", "Channels channel name"),
        ("MESSAGE_TYPE", "bad type", "Channels message type"),
        ("IN_PROCESS", "yes", "True or False"),
        ("FOLLOW_LEASE", 0, "greater than 0"),
        ("MAX_FOLLOWS", 1.5, "integer"),
    ],
)
def test_forwarding_settings_are_validated(settings, key, value, message):
    """Every added FORWARDING key is validated with a message naming it."""
    from appsync_events.conf import get_api_config

    base = settings.APPSYNC_EVENTS["default"]
    settings.APPSYNC_EVENTS = {"default": {**base, "FORWARDING": {key: value}}}
    with pytest.raises(ConfigurationError, match=message) as info:
        get_api_config()
    assert key in str(info.value)


async def test_in_memory_layer_outside_the_asgi_process_warns_at_start(caplog):
    """Starting over an in-memory layer without ``in_process`` logs why it cannot work."""
    forwarder = ChannelLayerForwarder(InMemoryChannelLayer(), in_process=False)
    with caplog.at_level(logging.WARNING, logger="appsync_events.forwarding"):
        await forwarder.start()
    assert "only works inside one process" in caplog.text
    caplog.clear()
    quiet = ChannelLayerForwarder(InMemoryChannelLayer(), in_process=True)
    with caplog.at_level(logging.WARNING, logger="appsync_events.forwarding"):
        await quiet.start()
    assert caplog.text == ""


async def test_started_forwarder_serves_follows_and_forwards_them_despite_the_filter():
    """A follow on the control channel subscribes, and its events are forwarded."""
    layer = InMemoryChannelLayer()
    listener = FakeListener()
    forwarder = ChannelLayerForwarder(
        layer, subscriptions=["/chat/static"], unfollow_grace=0, in_process=True
    )
    await forwarder.start(listener)
    try:
        member = await layer.new_channel()
        await layer.group_add("appsync.chat.rooms.7", member)
        await layer.send(
            "appsync-events-control", follow_message("default", "/chat/rooms/7", member)
        )
        answer = await receive(layer, member)
        assert answer["type"] == FOLLOW_RESULT
        assert answer["ok"] is True
        assert listener.follows == ["/chat/rooms/7"]
        await forwarder.dispatch(event("/chat/rooms/7"))
        assert (await receive(layer, member))["subscription"] == "/chat/rooms/7"
        await forwarder.dispatch(event("/chat/other"))
        assert forwarder.stats.skipped == 1
    finally:
        await forwarder.stop()
    assert listener.unfollows == ["/chat/rooms/7"]


async def test_senders_of_paths_nobody_follows_are_forgotten():
    """Per-group state stays bounded while browsers follow and leave 600 paths in turn;
    the sender of a path still followed keeps its numbering."""
    layer = InMemoryChannelLayer()
    listener = FakeListener()
    forwarder = ChannelLayerForwarder(layer, unfollow_grace=0, in_process=True)
    await forwarder.start(listener)
    registry = forwarder.registry
    assert registry is not None
    try:
        await registry.follow("/chat/kept", "f-kept")
        await forwarder.dispatch(event("/chat/kept"))
        for i in range(600):
            path = f"/chat/r{i}"
            await registry.follow(path, "f1")
            await forwarder.dispatch(event(path))
            await forwarder.flush()
            registry.unfollow(path, "f1")
            await listener.wait_for(lambda: len(listener.unfollows) == i + 1)  # noqa: B023
        await forwarder.dispatch(event("/chat/kept"))
        held = {s.subscription: s.seq for s in forwarder._senders.values()}
        assert len(held) <= 256
        assert held["/chat/kept"] == 2
    finally:
        await forwarder.stop()
