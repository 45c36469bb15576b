"""Follow exhaustion: one client with many sockets cannot take the listener's follows.

A real listener (with its channel-layer forwarder) against the emulator, browsers on the
consumer over the in-memory layer. ``FORWARDING['MAX_FOLLOWS']`` is 16 and
``MAX_FOLLOWS_PER_CLIENT`` 4: a greedy user opens 8 sockets and asks for 5 rooms on each;
it gets 4 and a clear refusal for the rest, and three other users still follow 4 rooms
each. The listener then holds all 16: a fifth user is refused until the greedy one
leaves. At every step the service holds exactly the static subscription plus what the
connected browsers follow, and events reach the browsers that follow their room.
"""

from __future__ import annotations

from typing import Any

from channels.testing.websocket import WebsocketCommunicator
from django.contrib.auth.models import User

from appsync_events.emulator import AppSyncEventsEmulator
from appsync_events.forwarding import ChannelLayerForwarder
from appsync_events.publishing import apublish
from appsync_events.testing.pytest_plugin import (  # noqa: F401 - fixtures
    appsync_emulator,
    appsync_events_emulator,
)
from tests.test_consumers import connect, request

from .conftest import MemoryWatch, Scenario, scale
from .harness import RunningListener, eventually, point_at

STATIC = "/chat/static"
MAX_FOLLOWS, PER_CLIENT, GREEDY_SOCKETS, ROOMS_PER_SOCKET = 16, 4, 8, 5
MiB = 2**20


def held(emulator: AppSyncEventsEmulator) -> set[str]:
    """The channels the service holds a subscription to."""
    return {s.channel for s in emulator.subscriptions}


async def subscribe(ws: WebsocketCommunicator, channel: str) -> dict[str, Any]:
    return await request(ws, action="subscribe", channel=channel, id=channel)


async def one_round(emulator: AppSyncEventsEmulator, figures: Scenario, tag: str) -> None:
    """Greedy client, three fair ones, a late one; check the follows at every step."""
    greedy_user = User(pk=1, username="greedy")
    greedy = [await connect(greedy_user) for _ in range(GREEDY_SOCKETS)]
    outcomes: dict[str, int] = {}
    for n, ws in enumerate(greedy):
        for r in range(ROOMS_PER_SOCKET):
            reply = await subscribe(ws, f"/chat/rooms/{tag}g{n}x{r}")
            kind = reply["type"] if reply["type"] == "subscribed" else reply["code"]
            outcomes[kind] = outcomes.get(kind, 0) + 1
            figures.inputs_tried += 1
    assert outcomes == {
        "subscribed": PER_CLIENT,
        "too_many_subscriptions": GREEDY_SOCKETS * ROOMS_PER_SOCKET - PER_CLIENT,
    }
    figures.inputs_handled += GREEDY_SOCKETS * ROOMS_PER_SOCKET
    greedy_rooms = held(emulator) - {STATIC}
    assert len(greedy_rooms) == PER_CLIENT
    fair: dict[int, tuple[WebsocketCommunicator, list[str]]] = {}
    for pk in (2, 3, 4):
        ws = await connect(User(pk=pk, username=f"user{pk}"))
        rooms = [f"/chat/rooms/{tag}u{pk}x{r}" for r in range(PER_CLIENT)]
        for room in rooms:
            assert (await subscribe(ws, room))["type"] == "subscribed", room
        fair[pk] = (ws, rooms)
    everyone = {STATIC, *greedy_rooms, *(r for _, rooms in fair.values() for r in rooms)}
    await eventually(lambda: held(emulator) == everyone, "the service holding every follow")
    # The listener is full: a late user is refused (the listener's limit), not starved
    # silently, and gets its room once the greedy client leaves.
    late = await connect(User(pk=5, username="late"))
    refused = await subscribe(late, f"/chat/rooms/{tag}late")
    assert (refused["type"], refused["code"]) == ("error", "subscribe_failed"), refused
    assert "MAX_FOLLOWS" in refused["message"]
    for ws in greedy:
        await ws.disconnect()
    await eventually(
        lambda: held(emulator) == everyone - greedy_rooms, "the greedy follows released"
    )
    assert (await subscribe(late, f"/chat/rooms/{tag}late"))["type"] == "subscribed"
    # Events still flow to the browsers following their room.
    for pk, (ws, rooms) in fair.items():
        await apublish(rooms[0], {"tag": tag, "pk": pk})
        figures.events_published += 1
        event = await ws.receive_json_from(timeout=10)
        assert event == {"type": "event", "channel": rooms[0], "payload": {"tag": tag, "pk": pk}}
        figures.events_received += 1
    for ws, _ in fair.values():
        await ws.disconnect()
    await late.disconnect()
    await eventually(lambda: held(emulator) == {STATIC}, "only the static subscription left")


async def test_one_client_cannot_exhaust_the_follows(
    settings: Any,
    appsync_events_emulator: AppSyncEventsEmulator,  # noqa: F811
    figures: Scenario,
) -> None:
    """A greedy client with 8 sockets gets its share of MAX_FOLLOWS and no more; others
    still follow; the service ends holding exactly what is followed."""
    emulator = appsync_events_emulator
    figures.title = "Follow exhaustion (one client, many sockets)"
    figures.family = "security"
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    point_at(
        settings,
        emulator,
        channels=[STATIC],
        FORWARDING={
            "MAX_FOLLOWS": MAX_FOLLOWS,
            "MAX_FOLLOWS_PER_CLIENT": PER_CLIENT,
            "UNFOLLOW_GRACE": 0,
            "FOLLOW_TIMEOUT": 10,
        },
        GRANTS=[{"SUBSCRIBE": ["/chat/rooms/*"]}],
    )
    running = RunningListener(sinks=[ChannelLayerForwarder.from_settings("default")])
    memory = MemoryWatch(figures, "test process (listener, consumers, emulator)", 24 * MiB)
    rounds = scale(2, 15)
    try:
        await eventually(lambda: held(emulator) == {STATIC}, "the static subscription")
        for round_number in range(rounds):
            await one_round(emulator, figures, f"r{round_number}")
            memory.sample()
        assert running.listener.followed == {}
        assert await running.stop() == 0
    finally:
        await running.close()
    memory.check()
    figures.details["rounds"] = rounds
    figures.details["MAX_FOLLOWS / per client"] = f"{MAX_FOLLOWS} / {PER_CLIENT}"
