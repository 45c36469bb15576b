"""Dynamic follows: browsers ask the listener to hold subscriptions it was not configured with.

A browser that follows a channel the listener does not hold makes its consumer send a
*follow* on the **control channel** of the channel layer (``FORWARDING['CONTROL_CHANNEL']``,
default ``"appsync-events-control"``). The listener reads that channel, subscribes to the
exact path once, and counts followers; after the last follower leaves it waits
``FORWARDING['UNFOLLOW_GRACE']`` seconds (a reloading page follows again at once) and
unsubscribes. Statically configured subscriptions are never counted nor dropped.

The control-channel protocol (every message is a Channels message dict)
-------------------------------------------------------------------------

Consumer → listener, sent with ``channel_layer.send(control_channel, message)``:

``{"type": "appsync.follow", ...}``
    ::

        {"type": "appsync.follow", "api": ALIAS, "channel": PATH, "follower": REPLY, "ack": BOOL,
         "client": CLIENT}

    Hold a subscription to ``PATH`` (a normalised channel path, possibly ending in
    ``/*``) on behalf of ``REPLY`` (the consumer's ``channel_name``). ``CLIENT`` names
    who is behind the socket (``"user:42"``, ``"session:…"``, ``"ip:…"``; the follower
    itself when absent): one client follows at most ``FORWARDING['MAX_FOLLOWS_PER_CLIENT']``
    distinct paths across all its sockets. The follow is a
    *lease* of ``FORWARDING['FOLLOW_LEASE']`` seconds; the consumer re-sends it (with
    ``"ack": false``) every third of that, so followers whose process died without
    saying goodbye expire, and a restarted listener learns its follows again.

``{"type": "appsync.unfollow", "api": ALIAS, "channel": PATH, "follower": REPLY}``
    The consumer ``REPLY`` no longer follows ``PATH``.

Listener → consumer, sent with ``channel_layer.send(REPLY, message)`` for a follow
with ``"ack": true``:

``{"type": "appsync.follow.result", "api": ALIAS, "channel": PATH, "ok": true}``
    The subscription is established (or was already held); events on ``PATH`` now reach
    the group ``group_name(PATH, prefix=FORWARDING['GROUP_PREFIX'])``.

``{"type": "appsync.follow.result", ..., "ok": false, ...}``
    ::

        {"type": "appsync.follow.result", "api": ALIAS, "channel": PATH, "ok": false,
         "code": CODE, "message": TEXT}

    The follow failed. ``CODE`` is ``"invalid"`` (a malformed request), ``"refused"``
    (the service refused the subscription), ``"limit"`` (the listener already holds
    ``FORWARDING['MAX_FOLLOWS']`` dynamic follows), ``"client_limit"`` (this client
    already follows ``FORWARDING['MAX_FOLLOWS_PER_CLIENT']`` paths) or ``"error"``
    (anything else).

A message for another alias, or of an unknown type, is logged and dropped. Several
listeners reading one control channel would share its messages between them (a channel
is a queue): give every alias its own control channel, and run one listener per alias
(``appsync_listen --exclusive`` keeps standbys idle).

No Django settings are read here: :class:`FollowRegistry` is pure bookkeeping over two
callables, and :class:`FollowController` runs it against a channel layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from .exceptions import AppSyncEventsError, InvalidChannelError
from .paths import normalize_channel

__all__ = [
    "FOLLOW",
    "FOLLOW_RESULT",
    "UNFOLLOW",
    "ClientFollowLimitError",
    "FollowController",
    "FollowLimitError",
    "FollowRegistry",
    "follow_message",
    "unfollow_message",
]

logger = logging.getLogger(__name__)

#: ``type`` of a follow request on the control channel.
FOLLOW: Final = "appsync.follow"
#: ``type`` of an unfollow on the control channel.
UNFOLLOW: Final = "appsync.unfollow"
#: ``type`` of the listener's answer to a follow with ``"ack": true``.
FOLLOW_RESULT: Final = "appsync.follow.result"

Subscriber = Callable[[str], Awaitable[Any]]


class FollowLimitError(AppSyncEventsError):
    """Raised when a follow would exceed ``FORWARDING['MAX_FOLLOWS']``."""


class ClientFollowLimitError(FollowLimitError):
    """Raised when a follow would exceed ``FORWARDING['MAX_FOLLOWS_PER_CLIENT']``."""


def follow_message(
    api: str, channel: str, follower: str, *, ack: bool = True, client: str | None = None
) -> dict[str, Any]:
    """Build the control-channel message asking the listener to hold ``channel``."""
    message = {"type": FOLLOW, "api": api, "channel": channel, "follower": follower, "ack": ack}
    if client is not None:
        message["client"] = client
    return message


def unfollow_message(api: str, channel: str, follower: str) -> dict[str, Any]:
    """Build the control-channel message saying ``follower`` left ``channel``."""
    return {"type": UNFOLLOW, "api": api, "channel": channel, "follower": follower}


@dataclass(slots=True)
class _Entry:
    """One dynamically followed path: its followers' lease deadlines and its state."""

    followers: dict[str, float] = field(default_factory=dict)
    subscribed: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    release: asyncio.Task[None] | None = None


class FollowRegistry:
    """Reference-counts dynamic follows and holds one subscription per followed path.

    A path gains its subscription with the first follower and loses it ``grace``
    seconds after the last follower leaves (or its lease runs out), unless someone
    follows again meanwhile. Paths in ``static`` are the listener's configured
    subscriptions: following them is always fine and never changes them.

    Operations on one path are serialised by a per-path lock, so a follow racing an
    unfollow never subscribes twice nor leaves a subscription nobody follows. Follower
    bookkeeping happens synchronously, before the first ``await``, so calls made in
    message order take effect in message order.

    Args:
        subscribe: ``await subscribe(path)`` establishes a subscription (raising when the
            service refuses it), e.g. ``listener.follow``.
        unsubscribe: ``await unsubscribe(path)`` drops it, e.g. ``listener.unfollow``.
        static: paths the listener holds anyway.
        grace: seconds to keep a subscription after its last follower left.
        lease: seconds a follow lives without renewal.
        max_follows: dynamic paths held at most.
        max_follows_per_client: distinct dynamic paths one client follows at most.
        clock: a monotonic clock (injectable for tests).
    """

    def __init__(
        self,
        subscribe: Subscriber,
        unsubscribe: Subscriber,
        *,
        static: Iterable[str] = (),
        grace: float = 5.0,
        lease: float = 60.0,
        max_follows: int = 150,
        max_follows_per_client: int = 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._subscribe = subscribe
        self._unsubscribe = unsubscribe
        self.static: frozenset[str] = frozenset(
            normalize_channel(p, allow_wildcard=True) for p in static
        )
        self.grace = grace
        self.lease = lease
        self.max_follows = max_follows
        self.max_follows_per_client = max_follows_per_client
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        #: Follower → the client behind it (bounded: followers expire with their lease).
        self._clients: dict[str, str] = {}
        self._closed = False

    # -- queries -------------------------------------------------------------------

    def followers(self, path: str) -> int:
        """Return how many followers ``path`` has now (0 for static paths)."""
        entry = self._entries.get(path)
        return len(entry.followers) if entry else 0

    def held(self) -> frozenset[str]:
        """Return the dynamic paths whose subscription is established now."""
        return frozenset(p for p, e in self._entries.items() if e.subscribed)

    def is_followed(self, path: str) -> bool:
        """Tell whether events on subscription ``path`` are wanted by a follower."""
        return path in self._entries

    # -- changes ---------------------------------------------------------------------

    def paths_of(self, client: str) -> frozenset[str]:
        """Return the dynamic paths some follower of ``client`` follows."""
        return frozenset(
            path
            for path, entry in self._entries.items()
            if any(self._clients.get(f) == client for f in entry.followers)
        )

    async def follow(self, path: str, follower: str, client: str | None = None) -> None:
        """Count ``follower`` on ``path`` (or renew its lease) and hold the subscription.

        The same as :meth:`add` followed by :meth:`ensure`.

        Raises:
            FollowLimitError: when ``max_follows`` paths are held already, or
                (:class:`ClientFollowLimitError`) ``client`` follows its maximum.
            Exception: whatever ``subscribe`` raised; the follower is then not counted.
        """
        self.add(path, follower, client)
        await self.ensure(path, follower)

    def add(self, path: str, follower: str, client: str | None = None) -> None:
        """Count ``follower`` on ``path`` or renew its lease, without subscribing yet.

        Args:
            path: the normalised path.
            follower: the consumer's reply channel.
            client: who is behind the follower (default: the follower itself).

        Raises:
            FollowLimitError: when ``max_follows`` paths are held already, or
                (:class:`ClientFollowLimitError`) ``client`` follows its maximum.
        """
        if path in self.static:
            return
        client = client or follower
        entry = self._entries.get(path)
        if follower not in (entry.followers if entry else ()):
            held = self.paths_of(client)
            if path not in held and len(held) >= self.max_follows_per_client:
                raise ClientFollowLimitError(
                    f"this client already follows {len(held)} channels "
                    f"(FORWARDING['MAX_FOLLOWS_PER_CLIENT'] = {self.max_follows_per_client})",
                    channel=path,
                )
        if entry is None:
            if self._closed:
                raise AppSyncEventsError("the follow registry is closed", channel=path)
            if len(self._entries) >= self.max_follows:
                raise FollowLimitError(
                    f"the listener already holds {len(self._entries)} dynamic follows "
                    f"(FORWARDING['MAX_FOLLOWS'] = {self.max_follows})",
                    channel=path,
                )
            entry = self._entries[path] = _Entry()
        entry.followers[follower] = self._clock() + self.lease
        self._clients[follower] = client
        if entry.release is not None:
            entry.release.cancel()
            entry.release = None

    async def ensure(self, path: str, follower: str) -> None:
        """Establish the subscription of ``path`` for ``follower`` (added with :meth:`add`).

        Returns at once when it is held already, or when ``follower`` left meanwhile.

        Raises:
            Exception: whatever ``subscribe`` raised; ``follower`` is then forgotten.
        """
        entry = self._entries.get(path)
        if entry is None or entry.subscribed:
            return
        async with entry.lock:
            if entry.subscribed or follower not in entry.followers:
                return
            try:
                await self._subscribe(path)
            except BaseException:
                entry.followers.pop(follower, None)
                self._forget_client(follower)
                if not entry.followers and self._entries.get(path) is entry:
                    del self._entries[path]
                raise
            entry.subscribed = True
            logger.info("following %s for %d follower(s)", path, len(entry.followers))

    def unfollow(self, path: str, follower: str) -> None:
        """Forget ``follower`` on ``path``; schedule the unsubscribe if it was the last."""
        entry = self._entries.get(path)
        if entry is None or entry.followers.pop(follower, None) is None:
            return
        self._forget_client(follower)
        if not entry.followers:
            self._schedule_release(path, entry)

    def expire(self) -> int:
        """Drop followers whose lease ran out; return how many were dropped."""
        now = self._clock()
        dropped = 0
        for path, entry in list(self._entries.items()):
            stale = [f for f, deadline in entry.followers.items() if deadline <= now]
            for follower in stale:
                del entry.followers[follower]
                self._forget_client(follower)
            if stale:
                dropped += len(stale)
                logger.info("%d follow lease(s) of %s expired", len(stale), path)
                if not entry.followers:
                    self._schedule_release(path, entry)
        return dropped

    def _forget_client(self, follower: str) -> None:
        """Drop ``follower``'s client once it follows nothing any more."""
        if not any(follower in e.followers for e in self._entries.values()):
            self._clients.pop(follower, None)

    async def aclose(self) -> None:
        """Stop taking follows and drop every dynamic subscription now (no grace)."""
        self._closed = True
        self._clients.clear()
        for path, entry in list(self._entries.items()):
            entry.followers.clear()
            if entry.release is not None:
                entry.release.cancel()
                entry.release = None
            await self._release(path, entry)

    def _schedule_release(self, path: str, entry: _Entry) -> None:
        if entry.release is None:
            entry.release = asyncio.create_task(
                self._release_later(path, entry), name=f"appsync-unfollow {path}"
            )

    async def _release_later(self, path: str, entry: _Entry) -> None:
        # The grace period is a real delay, not synchronisation: a browser reloading a
        # page unfollows and follows again within it, and keeps its subscription.
        if self.grace > 0:
            await asyncio.sleep(self.grace)
        entry.release = None
        await self._release(path, entry)

    async def _release(self, path: str, entry: _Entry) -> None:
        async with entry.lock:
            if entry.followers or self._entries.get(path) is not entry:
                return
            del self._entries[path]
            if not entry.subscribed:
                return
            entry.subscribed = False
            try:
                await self._unsubscribe(path)
            except Exception:
                logger.exception("unsubscribing the last follow of %s failed", path)
            else:
                logger.info("unfollowed %s: no followers left", path)


class FollowController:
    """Reads the control channel and applies follows to a :class:`FollowRegistry`.

    Runs inside the listener (its lifecycle is driven by
    :class:`~appsync_events.forwarding.ChannelLayerForwarder`). Each request is handled
    in its own task so one slow subscribe never holds up the others; bookkeeping
    happens in arrival order (see :class:`FollowRegistry`).

    Args:
        registry: the registry to apply follows to.
        channel_layer: the Channels layer the consumers use.
        control_channel: the channel name to read.
        api: the alias; requests for another alias are logged and dropped.
    """

    def __init__(
        self,
        registry: FollowRegistry,
        channel_layer: Any,
        *,
        control_channel: str,
        api: str,
    ) -> None:
        self.registry = registry
        self.layer = channel_layer
        self.control_channel = control_channel
        self.api = api
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        #: Requests handled, by outcome (``"followed"``, ``"unfollowed"``, ``"failed"``,
        #: ``"invalid"``, ``"reply_failed"``).
        self.counts: dict[str, int] = dict.fromkeys(
            ("followed", "unfollowed", "failed", "invalid", "reply_failed"), 0
        )

    async def start(self) -> None:
        """Start reading the control channel and expiring stale leases."""
        if self._runner is not None:
            return
        self._runner = asyncio.create_task(self._run(), name="appsync-follow-control")
        self._sweeper = asyncio.create_task(self._sweep(), name="appsync-follow-sweeper")

    async def stop(self) -> None:
        """Stop reading, wait for requests in flight, and drop every dynamic follow."""
        for task in (self._runner, self._sweeper):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._runner = self._sweeper = None
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.registry.aclose()

    async def _run(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.control_channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                # A broken layer connection must not end follows for good: log it and
                # read again after a pause (channels_redis reconnects by itself).
                logger.exception("reading control channel %s failed", self.control_channel)
                await asyncio.sleep(1.0)
                continue
            self.handle(message)

    async def _sweep(self) -> None:
        interval = max(self.registry.lease / 3, 0.05)
        while True:
            await asyncio.sleep(interval)
            self.registry.expire()

    def handle(self, message: Mapping[str, Any]) -> asyncio.Task[None] | None:
        """Apply one control message; return the task answering it, if any."""
        kind = message.get("type") if isinstance(message, Mapping) else None
        api = message.get("api") if isinstance(message, Mapping) else None
        follower = message.get("follower") if isinstance(message, Mapping) else None
        if kind not in (FOLLOW, UNFOLLOW) or not isinstance(follower, str) or not follower:
            self.counts["invalid"] += 1
            logger.warning("dropped a malformed control message of type %r", kind)
            return None
        raw_channel = message.get("channel")
        try:
            path = normalize_channel(str(raw_channel), allow_wildcard=True)
        except InvalidChannelError as exc:
            self.counts["invalid"] += 1
            logger.warning("dropped a control message with an invalid channel: %s", exc)
            if kind == FOLLOW and message.get("ack"):
                return self._spawn(self._reply(follower, str(raw_channel), "invalid", str(exc)))
            return None
        if api != self.api:
            self.counts["invalid"] += 1
            logger.error(
                "control channel %s carried a %s for alias %r, but this listener serves %r; "
                "give each alias its own FORWARDING['CONTROL_CHANNEL']",
                self.control_channel,
                kind,
                api,
                self.api,
            )
            return None
        if kind == UNFOLLOW:
            self.registry.unfollow(path, follower)
            self.counts["unfollowed"] += 1
            return None
        ack = bool(message.get("ack"))
        client = message.get("client")
        try:
            # Bookkeeping now, in arrival order; only the subscribe runs in a task.
            self.registry.add(path, follower, client if isinstance(client, str) else None)
        except AppSyncEventsError as exc:
            self.counts["failed"] += 1
            logger.warning("refused a follow of %s: %s", path, exc)
            if isinstance(exc, ClientFollowLimitError):
                code = "client_limit"
            elif isinstance(exc, FollowLimitError):
                code = "limit"
            else:
                code = "error"
            return self._spawn(self._reply(follower, path, code, exc.message)) if ack else None
        return self._spawn(self._follow(path, follower, ack=ack))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _follow(self, path: str, follower: str, *, ack: bool) -> None:
        try:
            await self.registry.ensure(path, follower)
        except AppSyncEventsError as exc:
            self.counts["failed"] += 1
            logger.warning("the follow of %s failed: %s", path, exc)
            if ack:
                await self._reply(follower, path, "refused", str(exc))
            return
        except Exception as exc:
            self.counts["failed"] += 1
            logger.exception("the follow of %s failed", path)
            if ack:
                await self._reply(follower, path, "error", type(exc).__name__)
            return
        self.counts["followed"] += 1
        if ack:
            await self._reply(follower, path, None, None)

    async def _reply(self, follower: str, path: str, code: str | None, text: str | None) -> None:
        message: dict[str, Any] = {
            "type": FOLLOW_RESULT,
            "api": self.api,
            "channel": path,
            "ok": code is None,
        }
        if code is not None:
            message["code"] = code
            message["message"] = text
        try:
            await self.layer.send(follower, message)
        except Exception:
            # ChannelFull or a layer fault: the consumer's own follow timeout tells the
            # browser; the follow itself stands (its lease expires if nobody renews it).
            self.counts["reply_failed"] += 1
            logger.warning("could not answer the follow of %s to %s", path, follower, exc_info=True)
