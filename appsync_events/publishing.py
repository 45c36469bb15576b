"""``publish()`` and ``apublish()``: what views, tasks and models call.

.. code-block:: python

    from appsync_events import publish

    publish("/chat/rooms/7", {"text": "hi"}, {"text": "again"})

What happens, in order:

1. **Validation, before any I/O**: the channel grammar (no wildcard), every event's
   JSON encoding (``DjangoJSONEncoder`` or ``PUBLISH['ENCODER']``) and its size
   (240,000 bytes). Errors name the event's position and type.
2. **pre_publish** is sent; a receiver may veto by raising
   :class:`~appsync_events.exceptions.PublishCancelled`, which ``publish()`` raises.
3. **Durable** (``durable=True``, or ``PUBLISH['DURABLE']``): the events are written to
   the :class:`~appsync_events.models.OutboxEvent` table on the ``using`` database, inside
   the caller's transaction if there is one; ``manage.py appsync_outbox`` sends them.
   Returns a :class:`DeferredPublish` in state ``"queued"``.
4. **Deferred** (``on_commit=True``, the default, and the thread's ``using`` connection is
   inside ``transaction.atomic()``): sending waits for ``transaction.on_commit``; a rollback
   discards it. Returns a :class:`DeferredPublish` in state ``"pending"``; its ``result`` or
   ``error`` is filled in after the commit. A failure then is logged and sent to
   ``publish_failed`` with ``deferred=True``: nobody else can see it.
5. Otherwise the alias's backend sends now, in chunks of at most 5 events and 1.2 MB,
   and a :class:`~appsync_events.results.PublishResult` is returned (``published`` is
   sent); a failure raises (``publish_failed`` is sent with ``deferred=False``).

``apublish()`` never defers to a commit: Django's async ORM runs every query in
autocommit mode, so async code is never inside a transaction. Code that opens
``transaction.atomic()`` inside ``sync_to_async(...)`` runs synchronously in a thread and
should call ``publish()`` there, which defers as above.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from asgiref.sync import sync_to_async
from django.db import DEFAULT_DB_ALIAS, connections, transaction

from .backends import get_backend
from .batching import encode_events, load_encoder
from .conf import DEFAULT_API, APIConfig, get_api_config
from .exceptions import AppSyncEventsError, ValidationError
from .paths import Channel, parse_channel
from .results import PublishResult
from .signals import pre_publish, publish_failed, published

__all__ = [
    "DeferredPublish",
    "apublish",
    "apublish_encoded",
    "publish",
    "publish_encoded",
]

logger = logging.getLogger(__name__)

DeferredState = Literal["pending", "queued", "sent", "failed"]


@dataclass(eq=False)
class DeferredPublish:
    """The handle ``publish()`` returns when it does not send right away.

    Attributes:
        api: the alias.
        channel: the normalised channel.
        events: the encoded JSON texts.
        durable: whether the events went to the outbox.
        state: ``"pending"`` (waiting for the commit; stays so if the transaction rolls
            back, as nothing is then sent), ``"queued"`` (written to the outbox, in the
            caller's transaction if any: a rollback removes the rows; the drainer sends
            committed ones), ``"sent"`` or ``"failed"`` (after the commit).
        result: the :class:`PublishResult` once sent.
        error: the exception once failed.
        outbox_ids: the primary keys of the outbox rows (durable only).
    """

    api: str
    channel: str
    events: tuple[str, ...]
    durable: bool = False
    state: DeferredState = "pending"
    result: PublishResult | None = None
    error: BaseException | None = None
    outbox_ids: tuple[int, ...] = field(default=())

    @property
    def done(self) -> bool:
        """Whether the publish has finished (sent or failed) in this process."""
        return self.state in ("sent", "failed")

    def __repr__(self) -> str:
        return (
            f"<DeferredPublish {self.state} api={self.api!r} channel={self.channel!r} "
            f"events={len(self.events)}>"
        )


def _channel(channel: str | Channel) -> str:
    if isinstance(channel, Channel):
        if channel.wildcard:
            return parse_channel(channel.path).path  # raises: publishing needs a concrete one
        return channel.path
    return parse_channel(channel).path


def _encode(
    config: APIConfig, events: Sequence[Any], encoder: type[json.JSONEncoder] | None
) -> tuple[str, ...]:
    if not events:
        raise ValidationError(
            "publish() needs at least one event after the channel, e.g. "
            "publish('/chat/a', {'text': 'hi'}).",
            api=config.alias,
        )
    return encode_events(events, encoder=encoder or load_encoder(config.publish.encoder))


def _log_receiver_errors(name: str, responses: list[tuple[Any, Any]]) -> None:
    # Receivers of published/publish_failed must never turn a publish into a failure.
    for receiver, response in responses:
        if isinstance(response, Exception):
            logger.error(
                "%s receiver %r raised",
                name,
                receiver,
                exc_info=(type(response), response, response.__traceback__),
            )


def _report_failure(
    api: str, channel: str, events: tuple[str, ...], error: BaseException, *, deferred: bool
) -> None:
    responses = publish_failed.send_robust(
        sender=api, api=api, channel=channel, events=events, error=error, deferred=deferred
    )
    _log_receiver_errors("publish_failed", responses)


def _report_success(api: str, channel: str, result: PublishResult) -> None:
    responses = published.send_robust(sender=api, api=api, channel=channel, result=result)
    _log_receiver_errors("published", responses)


def _send_now(
    api: str, channel: str, events: tuple[str, ...], *, deferred: bool, backend: str | None = None
) -> PublishResult:
    try:
        result = get_backend(api, backend=backend).send(channel, events)
    except AppSyncEventsError as exc:
        _report_failure(api, channel, events, exc, deferred=deferred)
        raise
    _report_success(api, channel, result)
    return result


async def _asend_now(
    api: str, channel: str, events: tuple[str, ...], *, backend: str | None = None
) -> PublishResult:
    try:
        result = await get_backend(api, backend=backend).asend(channel, events)
    except AppSyncEventsError as exc:
        responses = await publish_failed.asend_robust(
            sender=api, api=api, channel=channel, events=events, error=exc, deferred=False
        )
        _log_receiver_errors("publish_failed", responses)
        raise
    responses = await published.asend_robust(sender=api, api=api, channel=channel, result=result)
    _log_receiver_errors("published", responses)
    return result


def _run_deferred(handle: DeferredPublish) -> None:
    """The ``on_commit`` callback: send, record the outcome, never raise."""
    try:
        handle.result = _send_now(handle.api, handle.channel, handle.events, deferred=True)
    except Exception as exc:
        handle.state, handle.error = "failed", exc
        if not isinstance(exc, AppSyncEventsError):
            # _send_now reported AppSyncEventsErrors already; report anything else too.
            _report_failure(handle.api, handle.channel, handle.events, exc, deferred=True)
        logger.exception(
            "Publish to %s on %r after commit failed; %d events not delivered",
            handle.channel,
            handle.api,
            len(handle.events),
        )
    else:
        handle.state = "sent"


def publish_encoded(
    api: str,
    channel: str,
    events: tuple[str, ...],
    *,
    on_commit: bool | None = None,
    durable: bool | None = None,
    using: str | None = None,
    backend: str | None = None,
) -> PublishResult | DeferredPublish:
    """Publish events already validated and encoded (steps 2-5 of the module docstring).

    For callers that built the JSON texts themselves (the declarative classes, the
    model mixin, the commands); ``channel`` must be normalised and ``events`` within the
    limits. ``backend`` (a short name or dotted path) overrides the alias's backend for
    an immediate send.
    """
    config = get_api_config(api)
    pre_publish.send(sender=api, api=api, channel=channel, events=events)
    db = using or DEFAULT_DB_ALIAS
    if config.publish.durable if durable is None else durable:
        from .outbox import enqueue

        ids = enqueue(api, channel, events, using=db)
        return DeferredPublish(api, channel, events, durable=True, state="queued", outbox_ids=ids)
    defer = config.publish.on_commit if on_commit is None else on_commit
    if defer and connections[db].in_atomic_block:
        handle = DeferredPublish(api, channel, events)
        transaction.on_commit(lambda: _run_deferred(handle), using=db)
        return handle
    return _send_now(api, channel, events, deferred=False, backend=backend)


def publish(
    channel: str | Channel,
    *events: Any,
    api: str = DEFAULT_API,
    on_commit: bool | None = None,
    durable: bool | None = None,
    using: str | None = None,
    encoder: type[json.JSONEncoder] | None = None,
) -> PublishResult | DeferredPublish:
    """Publish ``events`` to ``channel`` through the alias's backend.

    Args:
        channel: a concrete channel (``/chat/rooms/7``; the leading ``/`` is optional).
        *events: JSON-serialisable values, one event each.
        api: the ``APPSYNC_EVENTS`` alias.
        on_commit: inside ``transaction.atomic()``, wait for the commit (default:
            ``PUBLISH['ON_COMMIT']``, itself ``True`` by default).
        durable: write to the outbox table instead (default ``PUBLISH['DURABLE']``).
        using: the database alias whose transaction (and outbox table) counts.
        encoder: a ``JSONEncoder`` subclass (default ``PUBLISH['ENCODER']``).

    Returns:
        a :class:`PublishResult` when sent now; a :class:`DeferredPublish` when deferred
        to the commit or queued in the outbox (narrow with ``isinstance``).

    Raises:
        InvalidChannelError: the channel breaks the grammar or is a wildcard.
        EventEncodingError: an event is not serialisable (``index`` says which).
        EventTooLargeError: an event is over 240,000 bytes once encoded.
        PublishCancelled: a ``pre_publish`` receiver vetoed.
        PublishError: the service refused the (first) request, or the network failed.
        PartialPublishError: a later request failed; ``accepted`` lists what went out.
        ConfigurationError: the alias or its backend is misconfigured.
    """
    config = get_api_config(api)
    path = _channel(channel)
    encoded = _encode(config, events, encoder)
    return publish_encoded(api, path, encoded, on_commit=on_commit, durable=durable, using=using)


async def apublish(
    channel: str | Channel,
    *events: Any,
    api: str = DEFAULT_API,
    durable: bool | None = None,
    using: str | None = None,
    encoder: type[json.JSONEncoder] | None = None,
) -> PublishResult | DeferredPublish:
    """Publish from async code; see :func:`publish`.

    Never deferred to a commit (async code runs outside transactions; see the module
    docstring). With ``durable`` the outbox rows are written in a thread, in autocommit
    mode, and a :class:`DeferredPublish` in state ``"queued"`` is returned; otherwise the
    events are sent now without blocking the event loop.
    """
    config = get_api_config(api)
    path = _channel(channel)
    encoded = _encode(config, events, encoder)
    return await apublish_encoded(api, path, encoded, durable=durable, using=using)


async def apublish_encoded(
    api: str,
    channel: str,
    events: tuple[str, ...],
    *,
    durable: bool | None = None,
    using: str | None = None,
) -> PublishResult | DeferredPublish:
    """Async twin of :func:`publish_encoded` (never deferred to a commit)."""
    config = get_api_config(api)
    await pre_publish.asend(sender=api, api=api, channel=channel, events=events)
    if config.publish.durable if durable is None else durable:
        from .outbox import enqueue

        ids = await sync_to_async(enqueue)(api, channel, events, using=using or DEFAULT_DB_ALIAS)
        return DeferredPublish(api, channel, events, durable=True, state="queued", outbox_ids=ids)
    return await _asend_now(api, channel, events)
