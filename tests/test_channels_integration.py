"""End to end: emulator → listener → channel layer → consumer → browser socket.

Two set-ups, as the docs describe them: the in-memory layer with the listener inside the
ASGI process (started from the ASGI lifespan), and channels_redis with the listener
running as its own process (``manage.py appsync_listen``).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from channels.layers import get_channel_layer
from channels.testing.websocket import WebsocketCommunicator
from django.contrib.auth.models import User

from appsync_events.asgi import AppSyncEventsLifespan, in_process_listener
from appsync_events.consumers import AppSyncEventsConsumer
from appsync_events.emulator import AppSyncEventsEmulator
from appsync_events.publishing import apublish
from appsync_events.testing.helpers import emulator_settings, start_emulator

from .prereqs import require_redis

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 10.0


@pytest.fixture(scope="module")
def emulator() -> Iterator[AppSyncEventsEmulator]:
    emu = start_emulator("default")
    try:
        yield emu
    finally:
        emu.stop()


def alias_settings(settings: Any, emulator: AppSyncEventsEmulator, **forwarding: Any) -> dict:
    emulator.reset()
    forwarding.setdefault("UNFOLLOW_GRACE", 0)
    forwarding.setdefault("FOLLOW_TIMEOUT", DEADLINE)
    base = {
        "default": {
            **settings.APPSYNC_EVENTS["default"],
            "SUBSCRIPTIONS": ["/chat/static"],
            "FORWARDING": forwarding,
            "GRANTS": [{"SUBSCRIBE": ["/chat/*"], "PUBLISH": ["/chat/*"]}],
        }
    }
    value = emulator_settings(emulator, "default", base=base)
    settings.APPSYNC_EVENTS = value
    return value


async def gone(emulator: AppSyncEventsEmulator, channel: str) -> None:
    """Await the emulator holding no subscription to ``channel``."""
    async with asyncio.timeout(DEADLINE):
        while emulator.state.subscriptions(channel):  # noqa: ASYNC110 - no event to await
            await asyncio.sleep(0.02)


async def socket(**options: Any) -> WebsocketCommunicator:
    ws = WebsocketCommunicator(AppSyncEventsConsumer.as_asgi(**options), "/ws/appsync/")
    ws.scope["user"] = User(username="ada")
    connected, _ = await ws.connect(timeout=DEADLINE)
    assert connected
    return ws


async def request(ws: WebsocketCommunicator, **message: Any) -> dict[str, Any]:
    await ws.send_json_to(message)
    return await ws.receive_json_from(timeout=DEADLINE)


async def exercise(emulator: AppSyncEventsEmulator) -> None:
    """The scenario both set-ups must pass, with a listener already running."""
    await emulator.await_for_subscriptions(channel="/chat/static", timeout=DEADLINE)
    ws = await socket()
    try:
        # A static subscription: confirmed at once, events relayed.
        assert (await request(ws, action="subscribe", channel="/chat/static"))[
            "type"
        ] == "subscribed"
        await apublish("/chat/static", {"n": 1})
        assert await ws.receive_json_from(timeout=DEADLINE) == {
            "type": "event",
            "channel": "/chat/static",
            "payload": {"n": 1},
        }
        # A follow: the listener subscribes to exactly that path at the service.
        assert emulator.state.subscriptions("/chat/rooms/7") == []
        reply = await request(ws, action="subscribe", channel="/chat/rooms/7", id="f")
        assert reply == {"type": "subscribed", "channel": "/chat/rooms/7", "id": "f"}
        assert len(emulator.state.subscriptions("/chat/rooms/7")) == 1
        await apublish("/chat/rooms/7", {"text": "hello"})
        event = await ws.receive_json_from(timeout=DEADLINE)
        assert event == {"type": "event", "channel": "/chat/rooms/7", "payload": {"text": "hello"}}
        # A wildcard follow relays events of channels below it, under the pattern.
        assert (await request(ws, action="subscribe", channel="/chat/lobby/*"))[
            "type"
        ] == "subscribed"
        await apublish("/chat/lobby/a/b", "deep")
        event = await ws.receive_json_from(timeout=DEADLINE)
        assert event == {"type": "event", "channel": "/chat/lobby/*", "payload": "deep"}
        # A browser publish goes through the publishing API to the service, and back.
        reply = await request(ws, action="publish", channel="/chat/static", events=[{"b": 1}])
        assert reply["type"] == "published"
        assert [e["index"] for e in reply["successful"]] == [0]
        assert emulator.published_to("/chat/static")[-1] == {"b": 1}
        event = await ws.receive_json_from(timeout=DEADLINE)
        assert event == {"type": "event", "channel": "/chat/static", "payload": {"b": 1}}
        # The last unfollow ends the service subscription; static ones stay.
        assert (await request(ws, action="unsubscribe", channel="/chat/rooms/7"))[
            "type"
        ] == "unsubscribed"
        await gone(emulator, "/chat/rooms/7")
    finally:
        await ws.disconnect()
    await gone(emulator, "/chat/lobby/*")
    assert len(emulator.state.subscriptions("/chat/static")) == 1


async def test_in_memory_layer_with_the_listener_in_the_asgi_process(settings, emulator):
    """The lifespan starts the listener in-process; browsers get events and follows work."""
    alias_settings(settings, emulator, IN_PROCESS=True)
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    from channels.testing.application import ApplicationCommunicator

    app = AppSyncEventsLifespan(AppSyncEventsConsumer.as_asgi())
    lifespan = ApplicationCommunicator(app, {"type": "lifespan"})
    await lifespan.send_input({"type": "lifespan.startup"})
    assert (await lifespan.receive_output(DEADLINE))["type"] == "lifespan.startup.complete"
    try:
        assert in_process_listener("default") is not None
        await exercise(emulator)
    finally:
        await lifespan.send_input({"type": "lifespan.shutdown"})
        assert (await lifespan.receive_output(DEADLINE))["type"] == "lifespan.shutdown.complete"
    assert in_process_listener("default") is None
    await gone(emulator, "/chat/static")


async def test_first_socket_starts_the_in_process_listener_without_lifespan(settings, emulator):
    """Without lifespan (Daphne), the first browser socket starts the listener."""
    from appsync_events.asgi import astop_in_process_listeners

    alias_settings(settings, emulator, IN_PROCESS=True)
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    assert in_process_listener("default") is None
    ws = await socket()
    try:
        assert in_process_listener("default") is not None
        await emulator.await_for_subscriptions(channel="/chat/static", timeout=DEADLINE)
    finally:
        await ws.disconnect()
        await astop_in_process_listeners()


#: channels_redis's two layers: the core one (lists in Redis, a backlog per consumer) and
#: the pub/sub one (nothing kept in Redis). Both must carry everything.
REDIS_LAYERS = {
    "core": "channels_redis.core.RedisChannelLayer",
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
}


@pytest.fixture(params=sorted(REDIS_LAYERS))
async def redis_layer(settings, request) -> AsyncIterator[dict[str, Any]]:
    """A channels_redis layer (core or pub/sub) on the local Redis, under a prefix of its own."""
    require_redis()
    host = os.environ.get("REDIS_HOST") or "127.0.0.1"
    port = int(os.environ.get("REDIS_PORT") or 6379)
    config = {
        "BACKEND": REDIS_LAYERS[request.param],
        "CONFIG": {"hosts": [(host, port)], "prefix": f"appsync-test-{uuid.uuid4().hex[:8]}"},
    }
    settings.CHANNEL_LAYERS = {"default": config}
    yield config
    layer = get_channel_layer()
    await layer.flush()  # the pub/sub layer also closes its connections here
    if request.param == "core":
        await layer.close_pools()


@pytest.mark.redis
async def test_redis_layer_with_the_listener_in_its_own_process(
    settings, emulator, redis_layer, tmp_path
):
    """``appsync_listen`` in another process forwards through Redis to this one's sockets."""
    value = alias_settings(settings, emulator)
    (tmp_path / "listener_settings.py").write_text(
        "import json, os\n"
        "from tests.settings import *  # noqa: F403\n"
        "APPSYNC_EVENTS = json.loads(os.environ['TEST_APPSYNC_EVENTS'])\n"
        "CHANNEL_LAYERS = json.loads(os.environ['TEST_CHANNEL_LAYERS'])\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "DJANGO_SETTINGS_MODULE": "listener_settings",
        "TEST_APPSYNC_EVENTS": json.dumps(value),
        "TEST_CHANNEL_LAYERS": json.dumps({"default": redis_layer}),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "django",
        "appsync_listen",
        "--api",
        "default",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        try:
            await exercise(emulator)
        except BaseException:
            process.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(process.communicate(), DEADLINE)
            print(err.decode())  # the listener's state lines explain a failure
            raise
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.communicate(), DEADLINE)
        assert process.returncode == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.redis
async def test_redis_layer_consumer_follow_round_trip_in_one_loop(settings, redis_layer):
    """Over Redis, the control channel carries a follow and its answer between processes' roles."""
    from .test_forwarding_follows import FakeListener

    settings.APPSYNC_EVENTS = {
        "default": {
            **settings.APPSYNC_EVENTS["default"],
            "FORWARDING": {"UNFOLLOW_GRACE": 0},
            "GRANTS": [{"SUBSCRIBE": ["/chat/*"]}],
        }
    }
    from appsync_events.events import ReceivedEvent
    from appsync_events.forwarding import ChannelLayerForwarder

    fake = FakeListener()
    forwarder = ChannelLayerForwarder.from_settings()
    await forwarder.start(fake)
    try:
        ws = await socket()
        assert (await request(ws, action="subscribe", channel="/chat/a"))["type"] == "subscribed"
        assert fake.follows == ["/chat/a"]
        await forwarder.dispatch(ReceivedEvent("default", "/chat/a", {"x": 1}, '{"x":1}'))
        assert (await ws.receive_json_from(timeout=DEADLINE))["payload"] == {"x": 1}
        await ws.disconnect()
        await fake.wait_for(lambda: fake.unfollows == ["/chat/a"])
    finally:
        await forwarder.stop()
