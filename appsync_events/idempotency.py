"""Idempotent handlers: notice a second delivery of an event and skip it.

Events can reach a handler more than once: the durable outbox and enqueued handlers
(:mod:`appsync_events.tasks`) deliver **at least once**, so a crash at the wrong moment
delivers an event again. Make such handlers idempotent:

.. code-block:: python

    from appsync_events.idempotency import idempotent

    @appsync_events.on("/orders/*", enqueue=True)
    @idempotent
    def charge(event):                      # runs inside transaction.atomic()
        Payment.objects.create(order_id=event.payload["order_id"], ...)

:func:`idempotent` runs the handler inside ``transaction.atomic()`` together with the
insert of one :class:`~appsync_events.models.HandledEvent` row keyed on (handler, event
key). A second delivery finds the row (a unique constraint: also when two workers run
the event at once, the second waits for the first to commit) and is skipped with an INFO
line on logger ``appsync_events.idempotency``. If the handler raises, its work and the
row roll back together, so a retry runs it again. Database work is therefore done
exactly once; effects outside the database (an e-mail, an HTTP call) may still happen
twice when a worker dies after them and before the commit.

For finer control, call :func:`mark_handled` inside your own ``transaction.atomic()``.

**The event key** (:func:`event_key`) is the payload's ``event_id`` when the payload is
a JSON object with one (the declarative :class:`~appsync_events.Event` classes and
:class:`~appsync_events.PublishChangesMixin` put a UUID in every event). Otherwise it is
``"sha256:"`` and the SHA-256 of the alias, the subscription and the raw JSON text: then
two events published with identical payloads on channels under the same subscription
count as one. Give such events an ``event_id`` when they are distinct.

Why a table and not the cache: a cache may evict a key (and with it the memory of a
delivery) and cannot commit with the handler's work; a unique index can.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import logging
from collections.abc import Callable
from typing import Final, TypeVar, overload

from django.db import IntegrityError, router, transaction
from django.db.transaction import TransactionManagementError

from .declarative import ID_KEY
from .events import ReceivedEvent

__all__ = ["MAX_ID_LENGTH", "event_key", "idempotent", "mark_handled"]

logger = logging.getLogger(__name__)

#: The longest ``event_id`` used as the key as is; longer ones are hashed.
MAX_ID_LENGTH: Final = 200
#: The longest handler name the table holds.
MAX_HANDLER_LENGTH: Final = 300

R = TypeVar("R")


def event_key(event: ReceivedEvent) -> str:
    """Return the key an event is recognised by when it is delivered again.

    The payload's ``event_id`` (a non-empty string of at most :data:`MAX_ID_LENGTH`
    characters, or an integer) when the payload is an object holding one; otherwise
    ``"sha256:<hex>"`` over the alias, the subscription and the raw JSON text.
    """
    payload = event.payload
    if isinstance(payload, dict):
        value = payload.get(ID_KEY)
        if isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH:
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    text = "\0".join((event.api, event.subscription, event.raw))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _db(using: str | None) -> str:
    from .models import HandledEvent

    return using or router.db_for_write(HandledEvent)


def _check_name(handler: str) -> None:
    if not isinstance(handler, str) or not 0 < len(handler) <= MAX_HANDLER_LENGTH:
        raise ValueError(
            f"a handler name must be a string of 1 to {MAX_HANDLER_LENGTH} characters, "
            f"not {handler!r:.80}; pass a shorter name="
        )


def mark_handled(event: ReceivedEvent, handler: str, *, using: str | None = None) -> bool:
    """Record that ``handler`` handles ``event``; return ``False`` if it already had.

    Call it inside ``transaction.atomic()``, before the handler's work: the record then
    commits (or rolls back) with that work.

    Args:
        event: the event.
        handler: a name for the handler (its ``module.qualname`` is a good one).
        using: the database alias (default: where the router writes
            :class:`~appsync_events.models.HandledEvent`).

    Returns:
        ``True`` for the first delivery, ``False`` for a duplicate (logged at INFO).

    Raises:
        TransactionManagementError: called outside ``transaction.atomic()``.
        ValueError: the handler name is empty or too long.
    """
    from .models import HandledEvent

    _check_name(handler)
    db = _db(using)
    if not transaction.get_connection(db).in_atomic_block:
        raise TransactionManagementError(
            "mark_handled() must run inside transaction.atomic() (on database "
            f"{db!r}), so the record commits with the handler's work; or use @idempotent."
        )
    key = event_key(event)
    try:
        with transaction.atomic(using=db):  # a savepoint: a duplicate leaves the rest usable
            HandledEvent.objects.using(db).create(handler=handler, key=key)
    except IntegrityError:
        logger.info(
            "Skipped a duplicate delivery of event %s to %s (subscription %s, api=%s)",
            key,
            handler,
            event.subscription,
            event.api,
        )
        return False
    return True


@overload
def idempotent(
    func: Callable[[ReceivedEvent], R], *, name: str | None = ..., using: str | None = ...
) -> Callable[[ReceivedEvent], R | None]: ...


@overload
def idempotent(
    func: None = ..., *, name: str | None = ..., using: str | None = ...
) -> Callable[[Callable[[ReceivedEvent], R]], Callable[[ReceivedEvent], R | None]]: ...


def idempotent(
    func: Callable[[ReceivedEvent], R] | None = None,
    *,
    name: str | None = None,
    using: str | None = None,
) -> (
    Callable[[ReceivedEvent], R | None]
    | Callable[[Callable[[ReceivedEvent], R]], Callable[[ReceivedEvent], R | None]]
):
    """Make a sync handler skip events it has handled already (``@idempotent``).

    The handler runs inside ``transaction.atomic()`` after :func:`mark_handled`; a
    duplicate returns ``None`` without running it. The wrapper keeps the handler's
    ``module.qualname``, so ``enqueue=True`` still finds it on workers.

    Args:
        func: the handler (when used without parentheses).
        name: the name the records are kept under (default: ``module.qualname``).
        using: the database alias of the transaction and the record.

    Raises:
        TypeError: ``func`` is an async function (its work could not share the
            record's transaction; use :func:`mark_handled` in a sync part of it).
        ValueError: the name is empty or longer than 300 characters.
    """

    def decorate(handler: Callable[[ReceivedEvent], R]) -> Callable[[ReceivedEvent], R | None]:
        if inspect.iscoroutinefunction(handler):
            raise TypeError(
                f"@idempotent wraps sync handlers, and {handler.__qualname__} is async: "
                "its awaits could not share the record's transaction. Make it sync, or "
                "call mark_handled() inside transaction.atomic() in a sync part of it."
            )
        record = name or f"{handler.__module__}.{handler.__qualname__}"
        _check_name(record)

        @functools.wraps(handler)
        def wrapper(event: ReceivedEvent) -> R | None:
            db = _db(using)
            with transaction.atomic(using=db):
                if not mark_handled(event, record, using=db):
                    return None
                return handler(event)

        return wrapper

    return decorate(func) if func is not None else decorate
