"""The browser consumer: :class:`AppSyncEventsConsumer`.

Browsers never talk to AppSync (and never hold AWS credentials): they open a websocket
to your Django ASGI server, and this consumer subscribes them to channel-layer groups
that the listener forwards events into (:mod:`appsync_events.forwarding`).

Messages from the browser (JSON text frames; ``id`` is optional and echoed back)::

    {"action": "subscribe",   "channel": "/chat/rooms/7", "id": "s1"}
    {"action": "unsubscribe", "channel": "/chat/rooms/7"}
    {"action": "publish",     "channel": "/chat/rooms/7", "events": [{"text": "hi"}]}

Messages to the browser::

    {"type": "subscribed",   "channel": "/chat/rooms/7", "id": "s1"}
    {"type": "unsubscribed", "channel": "/chat/rooms/7"}
    {"type": "event",        "channel": "/chat/rooms/7", "payload": {...}}
    {"type": "published",    "channel": "/chat/rooms/7",
                             "successful": [{"index": 0, "identifier": "..."}],
                             "failed": [{"index": 1, "code": "...", "message": "..."}]}
    {"type": "error", "code": "forbidden", "message": "...", "channel": "...", "id": "..."}
    {"type": "gap",          "channel": "/chat/rooms/7", "reason": "lagging",
                             "missed": {"from": 12, "to": 17}, "run": "..."}

A ``gap`` comes before the event that revealed it: events of that subscription were lost
on the way (the channel layer dropped them for a socket that lagged, or the listener
restarted: ``"reason": "listener_restart"``). The page should re-sync what it shows.
Each gap is also logged once at WARNING and sent as the
:data:`~appsync_events.signals.gap_detected` signal (see
:meth:`AppSyncEventsConsumer.report_gap`).

In an ``event``, ``channel`` is the *subscription* path the browser subscribed to (for a
wildcard, ``/chat/*``): AppSync does not say which concrete channel an event was
published to (see :mod:`appsync_events.events`).

Error codes (the socket stays open after every one of them):

========================== ==========================================================
``malformed``              not a JSON object, a binary frame, or a bad ``id``
``too_large``              the frame is over ``max_message_size`` characters
``rate_limited``           more than ``rate_limit`` messages in ``rate_period`` seconds
                           (every dropped request with an ``id`` is answered; others
                           hear it once until a message gets through), or a 9th
                           subscribe to a channel whose first is still unanswered
``unknown_action``         ``action`` is missing or not one of the three above
``invalid_channel``        the channel breaks the grammar, or its namespace is unknown
``forbidden``              ``can_subscribe`` / ``can_publish`` said no (by default: no
                           ``GRANTS`` entry contains the channel)
``too_many_subscriptions`` the socket already holds ``max_subscriptions``, or its user
                           (session, address) follows ``FORWARDING['MAX_FOLLOWS_PER_CLIENT']``
                           channels across all its sockets
``not_subscribed``         ``unsubscribe`` of a channel the socket does not hold
``listener_unavailable``   the listener did not confirm a follow in time, or its
                           control channel is full or unreachable
``subscribe_failed``       the listener could not subscribe (the service refused, or
                           it holds ``FORWARDING['MAX_FOLLOWS']`` follows already)
``invalid_event``          a published event is not JSON-encodable or too large
``publish_failed``         the service refused the publish or could not be reached
========================== ==========================================================

Every subscription is *followed*: the consumer tells the listener over the control
channel (:mod:`appsync_events.follows`). A channel in the alias's ``SUBSCRIPTIONS``
(and forwarded) is confirmed at once, and its follow is not awaited: the listener holds
it anyway, or, when ``appsync_listen --channel`` replaced the configured subscriptions,
subscribes to it on that follow. Any other channel is confirmed when the listener
answers the follow.

Authorization is denied by default: a browser may subscribe to a channel (or pattern),
or publish to a channel, only when a pattern of ``APPSYNC_EVENTS[api]['GRANTS']`` granted
to its user contains it (see :mod:`appsync_events.grants`)::

    "GRANTS": [
        {"SUBSCRIBE": ["/chat/*"], "PUBLISH": ["/chat/rooms/*"]},   # signed-in users
        {"WHO": "anonymous", "SUBSCRIBE": ["/chat/lobby"]},
    ]

Override :meth:`AppSyncEventsConsumer.can_subscribe` and
:meth:`AppSyncEventsConsumer.can_publish` (async; wrap ORM work in
``channels.db.database_sync_to_async``) to decide otherwise.

Every request that carries an ``id`` gets exactly one answer with that ``id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from channels.db import database_sync_to_async
from channels.exceptions import ChannelFull
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from . import conf, instrumentation, signals
from .exceptions import (
    AppSyncEventsError,
    ConfigurationError,
    InvalidChannelError,
    PublishCancelled,
    ValidationError,
)
from .follows import FOLLOW_RESULT, follow_message, unfollow_message
from .grants import GrantOperation, is_granted
from .limits import EVENTS_PER_PUBLISH
from .paths import group_name, parse_channel

__all__ = ["AppSyncEventsConsumer"]

logger = logging.getLogger(__name__)

_MAX_ID_LENGTH: Final = 64
#: Subscribe requests for one channel that may wait for the listener's answer at once;
#: a page that asks again and again meanwhile hears ``rate_limited``.
_MAX_WAITING_REQUESTS: Final = 8
_ACTIONS: Final = ("subscribe", "unsubscribe", "publish")


def _valid_id(value: Any) -> str | int | None:
    """``value`` when it is a usable request id (a short string or an integer)."""
    if (isinstance(value, str) and len(value) <= _MAX_ID_LENGTH) or (
        isinstance(value, int) and not isinstance(value, bool)
    ):
        return value
    return None


def _json_type(value: Any) -> str:
    """The JSON type name of a decoded value (for error messages)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, float):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


@dataclass(slots=True)
class _Subscription:
    """One channel this socket subscribed to.

    ``request_ids``: the ids of the subscribe requests waiting for the listener's answer
    (a page may ask twice before the first answer); each gets the answer.
    """

    path: str
    group: str
    confirmed: bool = False
    request_ids: list[str | int | None] = field(default_factory=list)
    timeout: asyncio.TimerHandle | None = None
    #: The forwarder run and sequence number of the last event relayed (gap detection).
    run: str | None = None
    seq: int = 0


class _Reject(Exception):
    """A client request refused with an ``error`` reply (never leaves the consumer)."""

    def __init__(self, code: str, message: str, channel: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.channel = channel


#: Class options that existed before GRANTS; passing one says what replaces it.
_REMOVED_OPTIONS: Final = {
    "allow_anonymous": "grant anonymous users with {'WHO': 'anonymous', 'SUBSCRIBE': [...]}",
    "allow_wildcards": "grant a wildcard pattern such as '/chat/*' in SUBSCRIBE",
    "allow_publish": "grant the channels in PUBLISH",
}


def _digest(value: str) -> str:
    """A short SHA-256 digest of ``value``: an identifier that reveals nothing of it."""
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def _refuse_removed_options(where: str, names: Any) -> None:
    """Raise ``TypeError`` when a pre-GRANTS option is set: it would grant nothing now."""
    removed = sorted(set(names) & set(_REMOVED_OPTIONS))
    if removed:
        raise TypeError(
            f"{where}: {', '.join(removed)} no longer exist(s): browsers may do only what "
            "APPSYNC_EVENTS[api]['GRANTS'] grants; "
            + "; ".join(_REMOVED_OPTIONS[name] for name in removed)
            + " (see docs/channels.md)."
        )


class AppSyncEventsConsumer(AsyncJsonWebsocketConsumer):
    """Relay AppSync Events to browsers over a Channels websocket.

    The protocol, the replies and the error codes are in the module docstring. One
    socket holds at most ``max_subscriptions`` channels and may send ``rate_limit``
    messages per ``rate_period`` seconds (a token bucket: short bursts are fine). Bad
    messages are answered with an ``error`` message; the socket stays open.

    Every option below is a class attribute: set it in a subclass, or pass it to
    ``as_asgi(...)`` (unknown names raise ``TypeError``).

    What a user may do comes from the alias's ``GRANTS`` (deny by default), checked in
    :meth:`can_subscribe` and :meth:`can_publish`.

    Attributes:
        api: the ``APPSYNC_EVENTS`` alias whose events are relayed.
        max_subscriptions: channels one socket may hold.
        max_message_size: the largest accepted text frame, in characters.
        rate_limit: messages one socket may send per ``rate_period`` seconds.
        rate_period: the window of ``rate_limit``, in seconds.
        follow_timeout: seconds to wait for the listener to confirm a follow
            (``None``: ``FORWARDING['FOLLOW_TIMEOUT']``).
    """

    api: ClassVar[str] = conf.DEFAULT_API
    max_subscriptions: ClassVar[int] = 20
    max_message_size: ClassVar[int] = 64 * 1024
    rate_limit: ClassVar[int] = 20
    rate_period: ClassVar[float] = 1.0
    follow_timeout: ClassVar[float | None] = None

    #: The names ``as_asgi(...)`` accepts.
    options: ClassVar[frozenset[str]] = frozenset(
        {
            "api",
            "max_subscriptions",
            "max_message_size",
            "rate_limit",
            "rate_period",
            "follow_timeout",
        }
    )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _refuse_removed_options(cls.__name__, vars(cls))

    @classmethod
    def check_options(cls, options: Any) -> None:
        """Refuse option names ``as_asgi(...)`` does not take, saying what to use instead.

        Raises:
            TypeError: naming the unknown options and the valid ones (or, for the options
                that predate ``GRANTS``, what replaces them).
        """
        _refuse_removed_options(f"{cls.__name__}.as_asgi()", options)
        unknown = sorted(set(options) - cls.options)
        if unknown:
            raise TypeError(
                f"{cls.__name__}.as_asgi() got unknown option(s) {', '.join(unknown)}; "
                f"valid options are {', '.join(sorted(cls.options))}."
            )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.check_options(kwargs)
        for name, value in kwargs.items():
            setattr(self, name, value)
        super().__init__(*args)
        self.config: conf.APIConfig | None = None
        self.subscriptions: dict[str, _Subscription] = {}
        self._tokens = float(self.rate_limit)
        self._refilled_at = 0.0
        self._rate_limited = False
        self._renewer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Future[None]] = set()
        self._counted = False  # in the open-sockets gauge
        try:
            self.config = conf.get_api_config(self.api)
        except ConfigurationError:
            # Reported (with the socket closed) in connect(), where a log line belongs.
            self.config = None
        else:
            # Per instance: the stubs declare it a ClassVar, Channels reads it per instance.
            setattr(self, "channel_layer_alias", self.config.forwarding.channel_layer)  # noqa: B010

    @property
    def _config(self) -> conf.APIConfig:
        if self.config is None:  # only before connect() succeeded
            raise RuntimeError("the consumer has no configuration before connect()")
        return self.config

    # -- authorization hooks ---------------------------------------------------------

    async def can_subscribe(self, user: Any, channel: str) -> bool:
        """Return whether ``user`` may receive the events of ``channel``.

        ``channel`` is the normalised path the browser asked for, which may be a
        wildcard pattern (``/chat/*``): it is never expanded, so allowing it allows
        everything below it. The default: a ``GRANTS`` entry for this user has a
        ``SUBSCRIBE`` pattern containing ``channel``.
        """
        return await self.granted(user, "subscribe", channel)

    async def can_publish(self, user: Any, channel: str) -> bool:
        """Return whether ``user`` may publish to ``channel`` (a concrete path).

        The default: a ``GRANTS`` entry for this user has a ``PUBLISH`` pattern
        containing ``channel``.
        """
        return await self.granted(user, "publish", channel)

    async def granted(self, user: Any, operation: GrantOperation, channel: str) -> bool:
        """Tell whether the alias's ``GRANTS`` let ``user`` ``operation`` on ``channel``.

        Runs in a worker thread: ``perm:``, ``group:`` and ``check:`` grants may query the
        database.
        """
        grants = self._config.grants
        if not grants:
            return False
        return bool(await database_sync_to_async(is_granted)(grants, user, operation, channel))

    def client_key(self) -> str:
        """Who is behind this socket, for per-client limits across sockets.

        ``"user:<pk>"`` for a signed-in user, else ``"session:<digest>"`` when the scope
        has a saved session, else ``"ip:<digest>"``, else this socket's channel name. The
        key travels to the listener over the channel layer, so a session key (a bearer
        credential: the session cookie) or an address is sent only as a SHA-256 digest.
        """
        user = self.scope.get("user")
        if getattr(user, "is_authenticated", False):
            return f"user:{user.pk}"  # type: ignore[union-attr]
        session = self.scope.get("session")
        key = getattr(session, "session_key", None)
        if key:
            return f"session:{_digest(key)}"
        client = self.scope.get("client")
        if client:
            return f"ip:{_digest(str(client[0]))}"
        return f"socket:{self.channel_name}"

    async def event_message(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """Turn a forwarded channel-layer message into the browser's ``event`` message.

        Override to reshape or filter events per user; return ``None`` to drop one.
        """
        return {"type": "event", "channel": message["subscription"], "payload": message["payload"]}

    # -- connection lifecycle -----------------------------------------------------------

    async def connect(self) -> None:
        """Accept the socket; refuse it when the alias's forwarding is unusable."""
        try:
            config = self.config or conf.get_api_config(self.api)
            if not config.forwarding.enabled:
                raise ConfigurationError(
                    f"APPSYNC_EVENTS[{self.api!r}]['FORWARDING']['ENABLED'] is False, so no "
                    "events reach browsers; enable it or remove the consumer's route.",
                    api=self.api,
                )
            if self.channel_layer is None:
                raise ConfigurationError(
                    f"CHANNEL_LAYERS has no layer {self.channel_layer_alias!r} for "
                    f"APPSYNC_EVENTS[{self.api!r}]['FORWARDING']['CHANNEL_LAYER'].",
                    api=self.api,
                )
            if config.forwarding.in_process:
                from .asgi import ensure_in_process_listener

                await ensure_in_process_listener(self.api)
        except ConfigurationError as exc:
            logger.error("refusing a browser websocket: %s", exc)
            instrumentation.consumer_refused(self.api, "not_configured")
            await self.close()
            return
        self.config = config
        self._refilled_at = asyncio.get_running_loop().time()
        await self.accept()
        instrumentation.consumer_socket(self.api, opened=True)
        self._counted = True
        self._renewer = asyncio.create_task(self._renew_follows())

    async def disconnect(self, code: int) -> None:
        """Leave every group and tell the listener this socket no longer follows."""
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None
        for sub in list(self.subscriptions.values()):
            await self._drop(sub)
        if self._counted:
            self._counted = False
            instrumentation.consumer_socket(self.api, opened=False)

    # -- inbound ------------------------------------------------------------------------

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        """Validate and rate-limit one client frame, then act on it."""
        request_id: str | int | None = None
        try:
            if not self._take_token():
                # A request with an id is answered, so the page's request settles now;
                # anything else hears it once, until a message gets through again.
                request_id = self._request_id(text_data)
                if request_id is None and self._rate_limited:
                    return
                self._rate_limited = True
                raise _Reject(
                    "rate_limited",
                    f"more than {self.rate_limit} messages in {self.rate_period:g} s; "
                    "messages are dropped until the rate falls",
                )
            self._rate_limited = False
            if text_data is None:
                raise _Reject("malformed", "send JSON text frames, not binary ones")
            if len(text_data) > self.max_message_size:
                raise _Reject(
                    "too_large",
                    f"the message has {len(text_data)} characters; "
                    f"at most {self.max_message_size} are accepted",
                )
            try:
                content = json.loads(text_data)
            except ValueError:
                raise _Reject("malformed", "the message is not valid JSON") from None
            if not isinstance(content, dict):
                raise _Reject("malformed", "the message must be a JSON object")
            request_id = _valid_id(content.get("id"))
            if request_id is None and content.get("id") is not None:
                given = content["id"]
                raise _Reject(
                    "malformed",
                    f"'id' must be a string of at most {_MAX_ID_LENGTH} characters or an "
                    f"integer, not "
                    + (
                        f"a string of {len(given)} characters"
                        if isinstance(given, str)
                        else f"a JSON {_json_type(given)}"
                    ),
                )
            await self.receive_json(content)
        except _Reject as reject:
            await self._error(reject.code, reject.message, reject.channel, request_id)

    async def receive_json(self, content: dict[str, Any], **kwargs: Any) -> None:
        """Act on one decoded client message (see the module docstring)."""
        action = content.get("action")
        if action not in _ACTIONS:
            raise _Reject(
                "unknown_action",
                f"'action' must be one of {', '.join(_ACTIONS)}, not {action!r}",
            )
        raw_channel = content.get("channel")
        if not isinstance(raw_channel, str):
            raise _Reject("invalid_channel", "'channel' must be a string such as '/chat/rooms/7'")
        if action == "subscribe":
            await self.subscribe(raw_channel, content.get("id"))
        elif action == "unsubscribe":
            await self.unsubscribe(raw_channel, content.get("id"))
        else:
            await self.publish(raw_channel, content, content.get("id"))

    def _request_id(self, text_data: str | None) -> str | int | None:
        """The valid ``id`` of a frame that is dropped unparsed otherwise, if any."""
        if text_data is None or len(text_data) > self.max_message_size:
            return None
        try:
            content = json.loads(text_data)
        except ValueError:
            return None
        return _valid_id(content.get("id")) if isinstance(content, dict) else None

    def _take_token(self) -> bool:
        now = asyncio.get_running_loop().time()
        rate = self.rate_limit / self.rate_period
        self._tokens = min(float(self.rate_limit), self._tokens + (now - self._refilled_at) * rate)
        self._refilled_at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def _path(self, raw: str, *, allow_wildcard: bool) -> str:
        try:
            channel = parse_channel(raw, allow_wildcard=allow_wildcard)
        except InvalidChannelError as exc:
            raise _Reject("invalid_channel", exc.message, raw[:300]) from None
        namespaces = self._config.namespaces
        if namespaces and channel.namespace not in namespaces:
            raise _Reject(
                "invalid_channel",
                f"namespace {channel.namespace!r} does not exist",
                channel.path,
            )
        return channel.path

    # -- subscribe / unsubscribe ---------------------------------------------------

    async def subscribe(self, raw_channel: str, request_id: str | int | None = None) -> None:
        """Subscribe this socket to ``raw_channel`` (checked with :meth:`can_subscribe`)."""
        config = self._config
        path = self._path(raw_channel, allow_wildcard=True)
        existing = self.subscriptions.get(path)
        if existing is not None:
            if existing.confirmed:
                await self._reply("subscribed", path, request_id)
            elif len(existing.request_ids) < _MAX_WAITING_REQUESTS:
                existing.request_ids.append(request_id)  # answered with the first one
            else:
                raise _Reject(
                    "rate_limited",
                    f"{_MAX_WAITING_REQUESTS} subscribe requests for this channel already "
                    "wait for an answer",
                    path,
                )
            return
        if len(self.subscriptions) >= self.max_subscriptions:
            raise _Reject(
                "too_many_subscriptions",
                f"this connection already holds {self.max_subscriptions} subscriptions",
                path,
            )
        if not await self.can_subscribe(self.scope.get("user"), path):
            raise _Reject("forbidden", "you may not subscribe to this channel", path)
        sub = _Subscription(
            path,
            group_name(path, prefix=config.forwarding.group_prefix),
            request_ids=[request_id],
        )
        self.subscriptions[path] = sub
        instrumentation.consumer_follows(self.api, 1)
        await self.channel_layer.group_add(sub.group, self.channel_name)
        static = self._configured(config, path)
        if static:
            sub.confirmed = True
            await self._answer(sub, "subscribed")
        try:
            # Also for a configured path (unacknowledged): the listener knows what it
            # really holds (appsync_listen --channel replaces SUBSCRIPTIONS) and
            # subscribes to a path it does not hold; for its own it changes nothing.
            await self.channel_layer.send(
                config.forwarding.control_channel,
                follow_message(
                    self.api, path, self.channel_name, ack=not static, client=self.client_key()
                ),
            )
        except ChannelFull:
            logger.warning(
                "control channel %s is full: is the listener of %r running?",
                config.forwarding.control_channel,
                self.api,
            )
            if static:
                return
            await self._forget(sub)
            raise _Reject(
                "listener_unavailable", "the event listener is not keeping up; retry later", path
            ) from None
        except Exception:
            logger.exception("sending a follow of %s to the control channel failed", path)
            if static:
                return
            await self._forget(sub)
            raise _Reject(
                "listener_unavailable", "the event listener cannot be reached", path
            ) from None
        if static:
            return
        timeout = self.follow_timeout
        if timeout is None:
            timeout = config.forwarding.follow_timeout
        sub.timeout = asyncio.get_running_loop().call_later(
            timeout, self._spawn_timeout, sub, timeout
        )

    @staticmethod
    def _configured(config: conf.APIConfig, path: str) -> bool:
        """Whether ``path`` is one of the alias's forwarded ``SUBSCRIPTIONS``."""
        forwarded = config.forwarding.subscriptions
        return any(
            s.path == path and (forwarded is None or any(f.path == path for f in forwarded))
            for s in config.listener.subscriptions
        )

    def _spawn_timeout(self, sub: _Subscription, waited: float) -> None:
        # Keep a reference: the loop holds only weak ones to tasks.
        task = asyncio.ensure_future(self._follow_timed_out(sub, waited))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _follow_timed_out(self, sub: _Subscription, waited: float) -> None:
        if self.subscriptions.get(sub.path) is not sub or sub.confirmed:
            return
        await self._drop(sub)
        logger.warning(
            "the listener of %r did not confirm a follow of %s within %g s",
            self.api,
            sub.path,
            waited,
        )
        await self._answer(
            sub,
            "listener_unavailable",
            f"the event listener did not confirm the subscription within {waited:g} s",
        )

    async def follow_result(self, message: dict[str, Any]) -> None:
        """Handle the listener's answer to a follow (``appsync.follow.result``)."""
        path = message.get("channel")
        sub = self.subscriptions.get(path) if isinstance(path, str) else None
        if sub is None or sub.confirmed:
            return  # an answer for a subscription this socket gave up meanwhile
        if sub.timeout is not None:
            sub.timeout.cancel()
            sub.timeout = None
        if message.get("ok"):
            sub.confirmed = True
            await self._answer(sub, "subscribed")
            return
        await self._forget(sub)
        code = "too_many_subscriptions" if message.get("code") == "client_limit" else None
        await self._answer(
            sub,
            code or "subscribe_failed",
            str(message.get("message") or "the listener could not subscribe"),
        )

    async def unsubscribe(self, raw_channel: str, request_id: str | int | None = None) -> None:
        """Unsubscribe this socket from ``raw_channel``."""
        path = self._path(raw_channel, allow_wildcard=True)
        sub = self.subscriptions.get(path)
        if sub is None:
            raise _Reject("not_subscribed", "this connection is not subscribed to it", path)
        await self._drop(sub)
        if not sub.confirmed:  # subscribe requests still waiting: each gets its answer
            await self._answer(
                sub,
                "subscribe_failed",
                "unsubscribed before the listener confirmed the subscription",
            )
        await self._reply("unsubscribed", path, request_id)

    async def _forget(self, sub: _Subscription) -> None:
        """Leave the group of ``sub`` (the listener was never told to follow it)."""
        if sub.timeout is not None:
            sub.timeout.cancel()
            sub.timeout = None
        if self.subscriptions.get(sub.path) is sub:
            del self.subscriptions[sub.path]
            instrumentation.consumer_follows(self.api, -1)
        try:
            await self.channel_layer.group_discard(sub.group, self.channel_name)
        except Exception:
            logger.exception("leaving group %s failed", sub.group)

    async def _drop(self, sub: _Subscription) -> None:
        """Leave the group of ``sub`` and tell the listener (unfollow)."""
        await self._forget(sub)
        try:
            await self.channel_layer.send(
                self._config.forwarding.control_channel,
                unfollow_message(self.api, sub.path, self.channel_name),
            )
        except Exception:
            # The follow lease runs out by itself: the listener drops it after
            # FORWARDING['FOLLOW_LEASE'] seconds without a renewal.
            logger.warning("could not send the unfollow of %s", sub.path, exc_info=True)

    async def _renew_follows(self) -> None:
        forwarding = self._config.forwarding
        interval = forwarding.follow_lease / 3
        while True:
            await asyncio.sleep(interval)
            for sub in list(self.subscriptions.values()):
                try:
                    await self.channel_layer.send(
                        forwarding.control_channel,
                        follow_message(
                            self.api,
                            sub.path,
                            self.channel_name,
                            ack=False,
                            client=self.client_key(),
                        ),
                    )
                except Exception:
                    logger.warning("could not renew the follow of %s", sub.path, exc_info=True)

    # -- publish ------------------------------------------------------------------------

    async def publish(
        self, raw_channel: str, content: dict[str, Any], request_id: str | int | None = None
    ) -> None:
        """Publish the message's ``events`` to ``raw_channel`` (checked with
        :meth:`can_publish`) through :func:`appsync_events.publishing.apublish`."""
        path = self._path(raw_channel, allow_wildcard=False)
        events = content.get("events")
        if not isinstance(events, list) or not 1 <= len(events) <= EVENTS_PER_PUBLISH:
            raise _Reject(
                "malformed",
                f"'events' must be a list of 1 to {EVENTS_PER_PUBLISH} events",
                path,
            )
        if not await self.can_publish(self.scope.get("user"), path):
            raise _Reject("forbidden", "you may not publish to this channel", path)
        from .publishing import apublish
        from .results import PublishResult

        try:
            result = await apublish(path, *events, api=self.api)
        except ValidationError as exc:
            raise _Reject("invalid_event", exc.message, path) from None
        except PublishCancelled:
            raise _Reject("forbidden", "the publish was refused", path) from None
        except AppSyncEventsError as exc:
            logger.warning("a browser publish to %s failed: %s", path, exc)
            raise _Reject("publish_failed", "the event service refused the publish", path) from None
        except ConfigurationError:
            logger.exception("a browser publish to %s failed", path)
            raise _Reject("publish_failed", "publishing is not configured", path) from None
        reply: dict[str, Any] = {"type": "published", "channel": path}
        if isinstance(result, PublishResult):
            reply["successful"] = [
                {"index": e.index, "identifier": e.identifier} for e in result.successful
            ]
            reply["failed"] = [
                {"index": e.index, "code": e.code, "message": e.message} for e in result.failed
            ]
        else:  # queued in the durable outbox
            reply["queued"] = True
        if request_id is not None:
            reply["id"] = request_id
        await self.send_json(reply)

    # -- outbound -----------------------------------------------------------------------

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Route forwarded events and follow answers; everything else as Channels does.

        Forwarded events are matched on ``FORWARDING['MESSAGE_TYPE']`` whatever its
        value, and skip Channels' per-message ``close_old_connections`` thread hop: no
        database is touched to relay an event.
        """
        kind = message.get("type")
        if self.config is not None and kind == self.config.forwarding.message_type:
            await self.relay_event(message)
        elif kind == FOLLOW_RESULT:
            await self.follow_result(message)
        else:
            await super().dispatch(message)

    async def relay_event(self, message: dict[str, Any]) -> None:
        """Send one forwarded event to the browser, if this socket still holds it.

        Before it, a ``gap`` message when events were lost on the way (see
        :meth:`check_sequence`).
        """
        sub = self.subscriptions.get(message.get("subscription"))  # type: ignore[arg-type]
        if sub is None:
            return  # left the group meanwhile
        if message.get("api", self.api) != self.api:
            return  # another alias forwarding into the same group prefix
        await self.check_sequence(sub, message)
        out = await self.event_message(message)
        if out is not None:
            await self.send_json(out)

    async def check_sequence(self, sub: _Subscription, message: dict[str, Any]) -> None:
        """Tell the browser when events of ``sub`` were lost before ``message``.

        The forwarder numbers each group's events (``seq``) per run (``run``). A number
        skipped means the channel layer dropped events for this socket (it lagged past
        the layer's capacity); a new run means the listener restarted (events published
        meanwhile may be lost). Either way the page gets, before the event::

            {"type": "gap", "channel": "/chat/rooms/7", "reason": "lagging",
             "missed": {"from": 12, "to": 17}, "run": "5f0c9e2a1b7d"}

        ``reason`` is ``"lagging"`` or ``"listener_restart"`` (``missed`` then counts the
        new run's events missed, or is ``null``: what the old run sent after the last
        event received cannot be known). The page re-syncs (reloads what it shows).
        """
        seq, run = message.get("seq"), message.get("run")
        if not isinstance(seq, int) or isinstance(seq, bool) or not isinstance(run, str):
            return  # an older forwarder: no numbering
        previous_run, previous = sub.run, sub.seq
        sub.run, sub.seq = run, seq
        if previous_run is None:
            return  # the first event since subscribing: nothing to compare with
        if run != previous_run:
            reason, first = "listener_restart", 1
        elif seq > previous + 1:
            reason, first = "lagging", previous + 1
        else:
            return
        await self.report_gap(sub, reason, (first, seq - 1) if seq > first else None, run)

    async def report_gap(
        self, sub: _Subscription, reason: str, missed: tuple[int, int] | None, run: str
    ) -> None:
        """Report one gap of ``sub``: the single place every gap goes through.

        Logs it once at WARNING (with the group and the range), sends the
        :data:`~appsync_events.signals.gap_detected` signal (a metrics counter or an alert
        connects there), then sends the page its ``gap`` message (see
        :meth:`check_sequence`). A receiver that raises is logged and never stops the
        page from hearing of the gap.

        Args:
            sub: the subscription that lost events.
            reason: ``"lagging"`` or ``"listener_restart"``.
            missed: the first and last ``seq`` missed (inclusive), or ``None`` when unknown.
            run: the forwarder run of the event that revealed the gap.
        """
        if missed is not None:
            logger.warning(
                "a browser socket missed events of %s on group %s (%s): seq %d to %d of run "
                "%s; the page is told to re-sync",
                sub.path,
                sub.group,
                reason,
                missed[0],
                missed[1],
                run,
            )
        else:
            logger.warning(
                "a browser socket may have missed events of %s on group %s (%s: what was "
                "sent before run %s is unknown); the page is told to re-sync",
                sub.path,
                sub.group,
                reason,
                run,
            )
        instrumentation.consumer_gap(self.api, reason, missed)
        if signals.gap_detected.has_listeners(self.api):
            responses = await signals.gap_detected.asend_robust(
                sender=self.api,
                api=self.api,
                channel=sub.path,
                group=sub.group,
                reason=reason,
                missed=missed,
                run=run,
            )
            for receiver, result in responses:
                if isinstance(result, BaseException):
                    logger.error(
                        "a receiver of gap_detected failed: %s",
                        getattr(receiver, "__qualname__", receiver),
                        exc_info=(type(result), result, result.__traceback__),
                    )
        await self.send_json(
            {
                "type": "gap",
                "channel": sub.path,
                "reason": reason,
                "missed": {"from": missed[0], "to": missed[1]} if missed else None,
                "run": run,
            }
        )

    async def _answer(self, sub: _Subscription, kind: str, message: str | None = None) -> None:
        """Answer every subscribe request waiting on ``sub``: ``subscribed`` or an error."""
        request_ids, sub.request_ids = sub.request_ids, []
        for request_id in request_ids:
            if kind == "subscribed":
                await self._reply(kind, sub.path, request_id)
            else:
                await self._error(kind, message or kind, sub.path, request_id)

    async def _reply(self, kind: str, channel: str, request_id: str | int | None) -> None:
        reply: dict[str, Any] = {"type": kind, "channel": channel}
        if request_id is not None:
            reply["id"] = request_id
        await self.send_json(reply)

    async def _error(
        self,
        code: str,
        message: str,
        channel: str | None = None,
        request_id: str | int | None = None,
    ) -> None:
        instrumentation.consumer_refused(self.api, code)
        reply: dict[str, Any] = {"type": "error", "code": code, "message": message}
        if channel is not None:
            reply["channel"] = channel
        if request_id is not None:
            reply["id"] = request_id
        await self.send_json(reply)
