"""Forward received events into the Channels channel layer, so consumers push them on.

Each event the listener receives on a subscription is sent with ``group_send`` to the
group of that **subscription's path**, :func:`appsync_events.paths.group_name` with
``FORWARDING['GROUP_PREFIX']`` (``/chat/rooms/7`` → ``appsync.chat.rooms.7``;
``/chat/*`` → ``appsync.chat._``), as this message::

    {
        "type": "appsync.event",        # FORWARDING['MESSAGE_TYPE']
        "api": "default",               # the settings alias
        "subscription": "/chat/rooms/7",  # the subscription path (maybe a wildcard)
        "payload": {...},               # the decoded event
        "received_at": 1718000000.123,  # when the listener read it (POSIX seconds)
        "seq": 42,                      # 1, 2, 3... per group, in sending order
        "run": "5f0c9e2a1b7d",          # this forwarder's run (a new one per start)
    }

so a consumer of your own handles it in ``async def appsync_event(self, message)``
(Channels names the handler after ``type`` with ``.`` replaced by ``_``).
:class:`~appsync_events.consumers.AppSyncEventsConsumer` does that for browsers.

No silent loss: a channel layer drops messages for a consumer that lags (channels_redis
past its ``capacity``, silently) and a restarted listener starts over. ``seq`` and ``run``
let a consumer tell: a ``seq`` that skips numbers means the missing ones were lost for it; a
new ``run`` means the listener restarted (events published meanwhile may be lost). The
browser consumer reports both to the page (a ``gap`` message).

Order and concurrency: each group has its own bounded queue and sender task, so events go
to one group strictly in order while sends to different groups overlap (a fan-out to many
groups is not paced by the slowest ``group_send``). :meth:`ChannelLayerForwarder.dispatch`
returns once the event is queued; it waits only when that group's queue is full
(backpressure up to the socket). :meth:`ChannelLayerForwarder.stop` sends what is queued.

Which subscriptions are forwarded: ``FORWARDING['SUBSCRIPTIONS']`` when set (else every
configured subscription), plus every path browsers follow dynamically
(:mod:`appsync_events.follows`).

Channel-layer errors never stop the listener: ``ChannelFull`` and any other exception
from ``group_send`` is logged (WARNING for ``ChannelFull``, ERROR with traceback for the
rest; repeated lines are throttled to one per second per kind and say how many were
suppressed) and counted in :attr:`ChannelLayerForwarder.stats`. Note that the layers
shipped with Channels do not raise ``ChannelFull`` from ``group_send``: a member whose
channel is full just misses that message (``channels_redis`` logs it at INFO on the
``channels_redis.core`` logger). Raise the layer's ``capacity`` for busy groups.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

from channels.exceptions import ChannelFull

from . import conf
from .exceptions import ConfigurationError
from .follows import FollowController, FollowRegistry
from .paths import Channel, group_name, normalize_channel

if TYPE_CHECKING:
    from .events import ReceivedEvent

__all__ = [
    "ChannelLayerForwarder",
    "Follower",
    "ForwardingStats",
    "forward_message",
    "get_forwarding_layer",
    "is_in_memory_layer",
]

logger = logging.getLogger(__name__)

_LOG_EVERY: Final = 1.0  # seconds between two log lines of one kind


class Follower(Protocol):
    """What the forwarder needs from a listener to follow channels at run time."""

    async def follow(self, path: str) -> Any:
        """Subscribe to ``path``; return when the service accepted it, raise if refused."""

    async def unfollow(self, path: str) -> Any:
        """Drop the subscription to ``path``."""


@dataclass(slots=True)
class ForwardingStats:
    """Counters of one forwarder (they only grow).

    Attributes:
        forwarded: events handed to ``group_send`` without error.
        skipped: events on subscriptions that are not forwarded.
        channel_full: ``group_send`` calls that raised ``ChannelFull``.
        errors: ``group_send`` calls that raised anything else.
    """

    forwarded: int = 0
    skipped: int = 0
    channel_full: int = 0
    errors: int = 0

    def as_dict(self) -> dict[str, int]:
        """Return the counters as a plain dict (for stats lines and health files)."""
        return {
            "forwarded": self.forwarded,
            "skipped": self.skipped,
            "channel_full": self.channel_full,
            "errors": self.errors,
        }


def forward_message(
    event: ReceivedEvent,
    message_type: str = "appsync.event",
    *,
    seq: int | None = None,
    run: str | None = None,
) -> dict[str, Any]:
    """Build the channel-layer message that carries ``event`` (see the module docstring)."""
    message: dict[str, Any] = {
        "type": message_type,
        "api": event.api,
        "subscription": event.subscription,
        "payload": event.payload,
        "received_at": event.received_at.timestamp(),
    }
    if seq is not None:
        message["seq"] = seq
        message["run"] = run
    return message


#: Messages one group's queue holds before :meth:`ChannelLayerForwarder.dispatch` waits.
GROUP_QUEUE_SIZE: Final = 256


#: The fewest group senders a forwarder holds before it sweeps idle ones.
_PRUNE_MIN = 256


class _GroupSender:
    """One group's queue and the task sending it, in order.

    A full queue makes :meth:`ChannelLayerForwarder.dispatch` wait on ``room``, which the
    sender resolves once the queue is down to half: a saturated group wakes the
    dispatcher once per half queue, not once per message.
    """

    __slots__ = ("group", "pending", "room", "seq", "subscription", "task")

    def __init__(self, group: str, subscription: str) -> None:
        self.group = group
        self.subscription = subscription
        self.seq = 0
        self.pending: deque[dict[str, Any]] = deque()
        self.room: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None


def is_in_memory_layer(layer: Any) -> bool:
    """Tell whether ``layer`` only works inside one process (Channels' in-memory layer)."""
    from channels.layers import InMemoryChannelLayer

    return isinstance(layer, InMemoryChannelLayer)


def get_forwarding_layer(api: str = conf.DEFAULT_API) -> Any:
    """Return the channel layer alias ``api`` forwards into.

    Raises:
        ConfigurationError: when ``CHANNEL_LAYERS`` has no such layer.
    """
    from channels.layers import get_channel_layer

    alias = conf.get_api_config(api).forwarding.channel_layer
    layer = get_channel_layer(alias)
    if layer is None:
        raise ConfigurationError(
            f"APPSYNC_EVENTS[{api!r}]['FORWARDING']['CHANNEL_LAYER'] is {alias!r}, but "
            f"CHANNEL_LAYERS has no such layer. Add CHANNEL_LAYERS = {{{alias!r}: "
            "{'BACKEND': 'channels_redis.core.RedisChannelLayer', ...}}, or set "
            "FORWARDING['ENABLED'] to False.",
            api=api,
            key="FORWARDING['CHANNEL_LAYER']",
            check_id="appsync_events.E009",
        )
    return layer


class ChannelLayerForwarder:
    """A listener dispatcher: forwards events to groups and serves browser follows.

    Hand it to the listener (the listener of :mod:`appsync_events.listener` builds one
    from settings for every alias whose ``FORWARDING['ENABLED']`` is true). Its
    :meth:`dispatch` forwards one event; :meth:`start` and :meth:`stop` run the
    control-channel reader that turns browser follows into subscriptions.

    Args:
        channel_layer: the Channels layer to send into.
        api: the settings alias whose events these are.
        message_type: the ``type`` of forwarded messages.
        group_prefix: the prefix of group names.
        subscriptions: the paths to forward; ``None`` forwards every subscription.
        control_channel: the channel consumers send follows to; ``None`` disables
            dynamic follows.
        static: the subscriptions the listener holds anyway (never followed nor
            dropped dynamically); replaced at :meth:`start` by the listener's
            ``static_channels`` when it has them.
        unfollow_grace: seconds to keep a followed subscription after its last follower.
        follow_lease: seconds a follow lives without renewal.
        max_follows: dynamic follows held at most.
        max_follows_per_client: distinct dynamic follows one client holds at most.
        in_process: whether the listener runs inside the ASGI process; with an
            in-memory layer and ``False`` the forwarder warns at start, because no
            consumer in another process can ever see these events.
    """

    def __init__(
        self,
        channel_layer: Any,
        *,
        api: str = conf.DEFAULT_API,
        message_type: str = "appsync.event",
        group_prefix: str = "appsync",
        subscriptions: Iterable[Channel | str] | None = None,
        control_channel: str | None = "appsync-events-control",
        static: Iterable[Channel | str] = (),
        unfollow_grace: float = 5.0,
        follow_lease: float = 60.0,
        max_follows: int = 150,
        max_follows_per_client: int = 20,
        in_process: bool = False,
    ) -> None:
        group_name("/x", prefix=group_prefix)  # validates the prefix early
        self.layer = channel_layer
        self.api = api
        self.message_type = message_type
        self.group_prefix = group_prefix
        self.control_channel = control_channel
        self.in_process = in_process
        self.subscriptions: frozenset[str] | None = (
            None
            if subscriptions is None
            else frozenset(
                s.path if isinstance(s, Channel) else normalize_channel(s, allow_wildcard=True)
                for s in subscriptions
            )
        )
        self.static: frozenset[str] = frozenset(
            s.path if isinstance(s, Channel) else normalize_channel(s, allow_wildcard=True)
            for s in static
        )
        self.unfollow_grace = unfollow_grace
        self.follow_lease = follow_lease
        self.max_follows = max_follows
        self.max_follows_per_client = max_follows_per_client
        #: The counters of this forwarder (:class:`ForwardingStats`).
        self.stats = ForwardingStats()
        self.registry: FollowRegistry | None = None
        self.controller: FollowController | None = None
        #: This forwarder's run: every forwarded message carries it with its ``seq``.
        self.run_id = uuid.uuid4().hex[:12]
        self._groups: dict[str, str] = {}
        self._senders: dict[str, _GroupSender] = {}
        #: Sweep idle senders of paths nobody follows any more when this many exist.
        self._prune_at = _PRUNE_MIN
        self._last_log: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    @classmethod
    def from_settings(
        cls, api: str = conf.DEFAULT_API, *, in_process: bool | None = None
    ) -> ChannelLayerForwarder:
        """Build the forwarder of alias ``api`` from ``APPSYNC_EVENTS[api]['FORWARDING']``.

        Args:
            api: the settings alias.
            in_process: whether the caller runs the listener inside the ASGI process;
                defaults to ``FORWARDING['IN_PROCESS']``.

        Raises:
            ConfigurationError: when forwarding is disabled or the layer is missing.
        """
        config = conf.get_api_config(api)
        forwarding = config.forwarding
        if not forwarding.enabled:
            raise ConfigurationError(
                f"APPSYNC_EVENTS[{api!r}]['FORWARDING']['ENABLED'] is False; "
                "set it to True to forward events to the channel layer.",
                api=api,
                key="FORWARDING['ENABLED']",
            )
        return cls(
            get_forwarding_layer(api),
            api=api,
            message_type=forwarding.message_type,
            group_prefix=forwarding.group_prefix,
            subscriptions=forwarding.subscriptions,
            control_channel=forwarding.control_channel,
            static=config.listener.subscriptions,
            unfollow_grace=forwarding.unfollow_grace,
            follow_lease=forwarding.follow_lease,
            max_follows=forwarding.max_follows,
            max_follows_per_client=forwarding.max_follows_per_client,
            in_process=forwarding.in_process if in_process is None else in_process,
        )

    # -- forwarding --------------------------------------------------------------------

    def group_for(self, subscription: str) -> str:
        """Return the group that events on ``subscription`` are sent to."""
        group = self._groups.get(subscription)
        if group is None:
            group = self._groups[subscription] = group_name(subscription, prefix=self.group_prefix)
        return group

    def forwards(self, subscription: str) -> bool:
        """Tell whether events on ``subscription`` are forwarded."""
        return (
            self.subscriptions is None
            or subscription in self.subscriptions
            or (self.registry is not None and self.registry.is_followed(subscription))
        )

    async def dispatch(self, event: ReceivedEvent) -> None:
        """Queue ``event`` for the group of its subscription path; never raises.

        Returns once the event is queued (waits only while that group's queue is full).
        ``ChannelFull`` and every other layer error is logged and counted in
        :attr:`stats`; the sender goes on with the next event.
        """
        subscription = event.subscription
        if not self.forwards(subscription):
            self.stats.skipped += 1
            return
        group = self.group_for(subscription)
        sender = self._senders.get(group)
        if sender is None:
            if len(self._senders) >= self._prune_at:
                self._prune()
            sender = self._senders[group] = _GroupSender(group, subscription)
        sender.seq += 1
        message = forward_message(event, self.message_type, seq=sender.seq, run=self.run_id)
        pending = sender.pending
        while len(pending) >= GROUP_QUEUE_SIZE:
            if sender.room is None or sender.room.done():
                sender.room = asyncio.get_running_loop().create_future()
            await asyncio.shield(sender.room)
        pending.append(message)
        if sender.task is None or sender.task.done():
            sender.task = asyncio.create_task(self._send_queued(sender), name=f"forward {group}")

    async def _send_queued(self, sender: _GroupSender) -> None:
        """Send ``sender``'s queued messages in order, until its queue is empty."""
        pending = sender.pending
        while pending:
            message = pending.popleft()
            room = sender.room
            if room is not None and not room.done() and len(pending) <= GROUP_QUEUE_SIZE // 2:
                room.set_result(None)
            try:
                await self.layer.group_send(sender.group, message)
            except ChannelFull:
                self.stats.channel_full += 1
                self._log(
                    "channel_full",
                    logging.WARNING,
                    "channel layer full: an event on %s was not forwarded to group %s",
                    sender.subscription,
                    sender.group,
                )
            except Exception:
                self.stats.errors += 1
                self._log(
                    "error",
                    logging.ERROR,
                    "forwarding an event on %s to group %s failed",
                    sender.subscription,
                    sender.group,
                    exc_info=True,
                )
            else:
                self.stats.forwarded += 1

    def _prune(self) -> None:
        """Forget the idle senders (and group names) of paths no browser follows now.

        Browser follows come and go, so without this the per-group state would grow with
        every path ever followed. A path followed again later starts its ``seq`` at 1,
        which a consumer never reads as a gap (only a skipped number or a new run is).
        Without dynamic follows nothing is pruned: the paths are the listener's own.
        """
        registry = self.registry
        if registry is not None:
            for group, sender in list(self._senders.items()):
                path = sender.subscription
                idle = not sender.pending and sender.room is None
                idle = idle and (sender.task is None or sender.task.done())
                if idle and path not in self.static and not registry.is_followed(path):
                    del self._senders[group]
                    self._groups.pop(path, None)
        self._prune_at = max(_PRUNE_MIN, 2 * len(self._senders))

    async def flush(self) -> None:
        """Wait until every queued event was handed to the channel layer."""
        while True:
            busy = [
                s.task for s in self._senders.values() if s.task is not None and not s.task.done()
            ]
            if not busy:
                return
            await asyncio.gather(*busy, return_exceptions=True)

    def _log(self, kind: str, level: int, msg: str, *args: Any, exc_info: bool = False) -> None:
        # A flooded layer must not flood the logs too: one line per kind per second,
        # carrying the number of lines held back since the last one.
        now = time.monotonic()
        if now - self._last_log.get(kind, float("-inf")) < _LOG_EVERY:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        self._last_log[kind] = now
        held = self._suppressed.pop(kind, 0)
        if held:
            msg += " (%d similar failures not logged in the last second)"
            args = (*args, held)
        logger.log(level, msg, *args, exc_info=exc_info)

    # -- lifecycle (called by the listener) ------------------------------------------

    async def start(self, listener: Follower | None = None) -> None:
        """Start serving follows for ``listener`` (which must offer ``follow``/``unfollow``).

        Without a listener, or without a control channel, only forwarding runs.
        """
        if is_in_memory_layer(self.layer) and not self.in_process:
            logger.warning(
                "APPSYNC_EVENTS[%r] forwards into an in-memory channel layer, which only "
                "works inside one process: consumers in your web server will never see "
                "these events. Run the listener inside the ASGI process "
                "(FORWARDING['IN_PROCESS'] = True, see appsync_events.asgi) or use "
                "channels_redis.",
                self.api,
            )
        if listener is None or self.control_channel is None or self.controller is not None:
            return
        held = getattr(listener, "static_channels", None)
        if held is not None:
            # What the listener really holds (``appsync_listen --channel`` replaces the
            # configured SUBSCRIPTIONS): follows of anything else subscribe.
            self.static = frozenset(held)
        self.registry = FollowRegistry(
            listener.follow,
            listener.unfollow,
            # Following a static path that is not forwarded counts its followers, so
            # its events reach them (the listener's follow() of it subscribes nothing).
            static=(
                self.static if self.subscriptions is None else self.static & self.subscriptions
            ),
            grace=self.unfollow_grace,
            lease=self.follow_lease,
            max_follows=self.max_follows,
            max_follows_per_client=self.max_follows_per_client,
        )
        self.controller = FollowController(
            self.registry, self.layer, control_channel=self.control_channel, api=self.api
        )
        await self.controller.start()
        logger.info(
            "forwarding %s events to channel layer groups %s.*; follows on %s",
            self.api,
            self.group_prefix,
            self.control_channel,
        )

    async def stop(self) -> None:
        """Send what is queued, stop serving follows and drop every dynamic follow."""
        await self.flush()
        controller, self.controller = self.controller, None
        if controller is not None:
            await controller.stop()
        self.registry = None
        logger.info("forwarding of %s stopped: %s", self.api, self.stats.as_dict())
