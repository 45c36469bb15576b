"""The follow registry (reference counts, grace, leases) and the control-channel controller."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer

from appsync_events.exceptions import SubscriptionError
from appsync_events.follows import (
    FOLLOW_RESULT,
    ClientFollowLimitError,
    FollowController,
    FollowLimitError,
    FollowRegistry,
    follow_message,
    unfollow_message,
)

DEADLINE = 5.0


class FakeListener:
    """Records follows; can be told to refuse or to hold a subscribe until released."""

    def __init__(self) -> None:
        self.follows: list[str] = []
        self.unfollows: list[str] = []
        self.refuse: set[str] = set()
        self.gate: asyncio.Event | None = None
        self.changed = asyncio.Condition()

    async def follow(self, path: str) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if path in self.refuse:
            raise SubscriptionError("UnauthorizedException", channel=path)
        self.follows.append(path)
        async with self.changed:
            self.changed.notify_all()

    async def unfollow(self, path: str) -> None:
        self.unfollows.append(path)
        async with self.changed:
            self.changed.notify_all()

    async def wait_for(self, predicate: Any) -> None:
        async with asyncio.timeout(DEADLINE):
            async with self.changed:
                await self.changed.wait_for(predicate)


async def until(predicate: Any) -> None:
    """Await ``predicate()`` turning true within the deadline.

    Polls: the counters under test have no event to await.
    """
    async with asyncio.timeout(DEADLINE):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


class Clock:
    """A hand-moved monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def registry_for(listener: FakeListener, **kwargs: Any) -> FollowRegistry:
    kwargs.setdefault("grace", 0.0)
    return FollowRegistry(listener.follow, listener.unfollow, **kwargs)


async def test_first_follower_subscribes_once_and_others_only_count():
    """Two followers of one path make one subscription and a count of two."""
    listener = FakeListener()
    registry = registry_for(listener)
    await registry.follow("/chat/a", "c1")
    await registry.follow("/chat/a", "c2")
    assert listener.follows == ["/chat/a"]
    assert registry.followers("/chat/a") == 2
    assert registry.held() == {"/chat/a"}


async def test_last_unfollow_unsubscribes_after_grace():
    """The subscription ends only when the last follower leaves."""
    listener = FakeListener()
    registry = registry_for(listener)
    await registry.follow("/chat/a", "c1")
    await registry.follow("/chat/a", "c2")
    registry.unfollow("/chat/a", "c1")
    await asyncio.sleep(0)
    assert listener.unfollows == []
    registry.unfollow("/chat/a", "c2")
    await listener.wait_for(lambda: listener.unfollows == ["/chat/a"])
    assert registry.held() == frozenset()
    assert not registry.is_followed("/chat/a")


async def test_follow_within_grace_keeps_the_subscription():
    """A follower coming back within the grace period cancels the unsubscribe."""
    listener = FakeListener()
    registry = registry_for(listener, grace=30.0)
    await registry.follow("/chat/a", "c1")
    registry.unfollow("/chat/a", "c1")
    pending = registry._entries["/chat/a"].release
    assert pending is not None
    await registry.follow("/chat/a", "c1")
    with pytest.raises(asyncio.CancelledError):
        await pending
    assert listener.follows == ["/chat/a"]
    assert listener.unfollows == []
    assert registry.held() == {"/chat/a"}


async def test_static_paths_are_never_followed_nor_dropped():
    """Following a statically held path touches no subscription."""
    listener = FakeListener()
    registry = registry_for(listener, static=["chat/*"])
    await registry.follow("/chat/*", "c1")
    registry.unfollow("/chat/*", "c1")
    await asyncio.sleep(0)
    assert listener.follows == []
    assert listener.unfollows == []
    assert registry.followers("/chat/*") == 0


async def test_refused_subscribe_forgets_the_follower():
    """A subscribe the service refuses raises and leaves nothing behind."""
    listener = FakeListener()
    listener.refuse.add("/chat/secret")
    registry = registry_for(listener)
    with pytest.raises(SubscriptionError):
        await registry.follow("/chat/secret", "c1")
    assert registry.followers("/chat/secret") == 0
    assert not registry.is_followed("/chat/secret")


async def test_max_follows_is_enforced():
    """Past ``max_follows`` dynamic paths a new path is refused, a held one still counts."""
    listener = FakeListener()
    registry = registry_for(listener, max_follows=1)
    await registry.follow("/chat/a", "c1")
    with pytest.raises(FollowLimitError):
        await registry.follow("/chat/b", "c1")
    await registry.follow("/chat/a", "c2")
    assert registry.followers("/chat/a") == 2


async def test_expired_leases_drop_followers_and_the_subscription():
    """A follower that stops renewing is dropped when its lease runs out."""
    listener = FakeListener()
    clock = Clock()
    registry = registry_for(listener, lease=60.0, clock=clock)
    await registry.follow("/chat/a", "gone")
    clock.now += 30
    await registry.follow("/chat/b", "alive")
    clock.now += 31
    assert registry.expire() == 1
    await listener.wait_for(lambda: listener.unfollows == ["/chat/a"])
    assert registry.held() == {"/chat/b"}
    await registry.follow("/chat/b", "alive")  # a renewal extends the lease
    clock.now += 59
    assert registry.expire() == 0


async def test_one_client_follows_at_most_its_share_across_followers():
    """A client's followers together hold at most max_follows_per_client distinct paths;
    a path it already follows is free; expiry and unfollow give the places back."""
    listener = FakeListener()
    clock = Clock()
    registry = registry_for(listener, lease=60.0, max_follows_per_client=2, clock=clock)
    await registry.follow("/chat/a", "socket-1", "user:1")
    await registry.follow("/chat/b", "socket-2", "user:1")
    with pytest.raises(ClientFollowLimitError, match="MAX_FOLLOWS_PER_CLIENT"):
        await registry.follow("/chat/c", "socket-3", "user:1")
    await registry.follow("/chat/a", "socket-3", "user:1")  # already followed: free
    await registry.follow("/chat/c", "socket-4", "user:2")  # another client
    assert registry.paths_of("user:1") == {"/chat/a", "/chat/b"}
    registry.unfollow("/chat/b", "socket-2")
    await registry.follow("/chat/c", "socket-3", "user:1")
    clock.now += 61  # every lease runs out
    registry.expire()
    assert registry.paths_of("user:1") == frozenset()
    await registry.follow("/chat/d", "socket-1", "user:1")
    await registry.follow("/chat/e", "socket-1", "user:1")


async def test_a_follower_without_a_client_is_its_own_client():
    """Follows without a client key are limited per follower (older consumers)."""
    registry = registry_for(FakeListener(), max_follows_per_client=1)
    await registry.follow("/chat/a", "socket-1")
    await registry.follow("/chat/b", "socket-2")
    with pytest.raises(ClientFollowLimitError):
        await registry.follow("/chat/c", "socket-1")


async def test_concurrent_follows_subscribe_once():
    """Followers arriving while the subscribe is in flight share it."""
    listener = FakeListener()
    listener.gate = asyncio.Event()
    registry = registry_for(listener)
    first = asyncio.create_task(registry.follow("/chat/a", "c1"))
    second = asyncio.create_task(registry.follow("/chat/a", "c2"))
    await asyncio.sleep(0)
    listener.gate.set()
    await asyncio.gather(first, second)
    assert listener.follows == ["/chat/a"]
    assert registry.followers("/chat/a") == 2


async def test_unfollow_during_subscribe_ends_it_afterwards():
    """Leaving while the subscribe is in flight still ends in no subscription."""
    listener = FakeListener()
    listener.gate = asyncio.Event()
    registry = registry_for(listener)
    registry.add("/chat/a", "c1")
    pending = asyncio.create_task(registry.ensure("/chat/a", "c1"))
    await asyncio.sleep(0)
    registry.unfollow("/chat/a", "c1")
    listener.gate.set()
    await pending
    await listener.wait_for(lambda: listener.unfollows == ["/chat/a"])
    assert registry.held() == frozenset()


async def test_aclose_drops_every_dynamic_follow_and_refuses_new_ones():
    """Closing the registry unsubscribes everything at once."""
    listener = FakeListener()
    registry = registry_for(listener, grace=30.0)
    await registry.follow("/chat/a", "c1")
    await registry.follow("/chat/b", "c1")
    await registry.aclose()
    assert sorted(listener.unfollows) == ["/chat/a", "/chat/b"]
    with pytest.raises(Exception, match="closed"):
        await registry.follow("/chat/c", "c1")


# -- the controller over a real (in-memory) channel layer -------------------------------


@pytest.fixture
async def layer():
    layer = InMemoryChannelLayer()
    yield layer
    await layer.flush()


@pytest.fixture
async def controller(layer):
    listener = FakeListener()
    registry = registry_for(listener)
    ctl = FollowController(registry, layer, control_channel="ctl", api="default")
    ctl.listener = listener  # type: ignore[attr-defined]
    await ctl.start()
    yield ctl
    await ctl.stop()


async def receive(layer, channel: str) -> dict[str, Any]:
    async with asyncio.timeout(DEADLINE):
        return await layer.receive(channel)


async def test_follow_over_the_control_channel_is_acknowledged(layer, controller):
    """A follow sent on the control channel subscribes and answers ok to the follower."""
    reply_to = await layer.new_channel()
    await layer.send("ctl", follow_message("default", "chat/rooms/7", reply_to))
    answer = await receive(layer, reply_to)
    assert answer == {
        "type": FOLLOW_RESULT,
        "api": "default",
        "channel": "/chat/rooms/7",
        "ok": True,
    }
    assert controller.listener.follows == ["/chat/rooms/7"]
    assert controller.counts["followed"] == 1


async def test_refused_follow_is_answered_with_the_reason(layer, controller):
    """A subscribe the service refuses is answered ok=False, code 'refused'."""
    controller.listener.refuse.add("/chat/secret")
    reply_to = await layer.new_channel()
    await layer.send("ctl", follow_message("default", "/chat/secret", reply_to))
    answer = await receive(layer, reply_to)
    assert answer["ok"] is False
    assert answer["code"] == "refused"
    assert "UnauthorizedException" in answer["message"]
    assert controller.counts["failed"] == 1


async def test_limit_and_invalid_channel_answers(layer, controller):
    """Over the follow limit answers 'limit'; a malformed path answers 'invalid'."""
    controller.registry.max_follows = 0
    reply_to = await layer.new_channel()
    await layer.send("ctl", follow_message("default", "/chat/a", reply_to))
    assert (await receive(layer, reply_to))["code"] == "limit"
    await layer.send("ctl", follow_message("default", "/chat/no space", reply_to))
    answer = await receive(layer, reply_to)
    assert answer["code"] == "invalid"
    assert controller.counts["invalid"] == 1


async def test_unfollow_over_the_control_channel_ends_the_subscription(layer, controller):
    """The last unfollow on the control channel unsubscribes."""
    listener = controller.listener
    await layer.send("ctl", follow_message("default", "/chat/a", "c1", ack=False))
    await listener.wait_for(lambda: listener.follows == ["/chat/a"])
    await layer.send("ctl", unfollow_message("default", "/chat/a", "c1"))
    await listener.wait_for(lambda: listener.unfollows == ["/chat/a"])
    assert controller.counts["unfollowed"] == 1


async def test_follow_then_unfollow_in_one_breath_leaves_nothing(layer, controller):
    """A follow and its unfollow sent back to back never leak a subscription."""
    listener = controller.listener
    listener.gate = asyncio.Event()
    await layer.send("ctl", follow_message("default", "/chat/a", "c1", ack=False))
    await layer.send("ctl", unfollow_message("default", "/chat/a", "c1"))
    await until(lambda: controller.counts["unfollowed"] > 0)
    listener.gate.set()
    await until(lambda: not controller.registry.is_followed("/chat/a"))
    assert listener.follows == listener.unfollows


async def test_messages_for_another_alias_or_malformed_are_dropped_and_logged(
    layer, controller, caplog
):
    """A follow for another alias and a message without follower are logged, not applied."""
    await layer.send("ctl", follow_message("other", "/chat/a", "c1"))
    await layer.send("ctl", {"type": "appsync.follow", "channel": "/chat/a"})
    await until(lambda: controller.counts["invalid"] >= 2)
    assert controller.listener.follows == []
    assert "alias 'other'" in caplog.text
    assert "malformed control message" in caplog.text


async def test_an_unanswerable_follower_is_counted(caplog):
    """A full reply channel is logged and counted; the follow itself stands."""
    small = InMemoryChannelLayer(capacity=1)
    registry = registry_for(FakeListener())
    ctl = FollowController(registry, small, control_channel="ctl", api="default")
    await ctl.start()
    try:
        reply_to = await small.new_channel()
        await small.send(reply_to, {"type": "filler"})
        await small.send("ctl", follow_message("default", "/chat/a", reply_to))
        await until(lambda: ctl.counts["reply_failed"] > 0)
        assert registry.held() == {"/chat/a"}
        assert "could not answer the follow" in caplog.text
    finally:
        await ctl.stop()
