"""The durable outbox: events written with the caller's transaction, sent by a drainer.

Delivery is **at-least-once**: a row is marked ``sent`` only after the service accepted
its event, so a drainer that dies between the two sends the event again once its lease
expires. Order is best-effort: rows are claimed in insertion order and a batch goes out in
that order per channel, but retries, concurrent drainers and AppSync itself (which
promises no order) may reorder events. Receivers that care de-duplicate by the event id
the declarative classes put in every payload.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from django.db import DEFAULT_DB_ALIAS

__all__ = ["OutboxDrainer", "enqueue"]


def enqueue(
    api: str, channel: str, events: Sequence[str], *, using: str = DEFAULT_DB_ALIAS
) -> tuple[int, ...]:
    """Write ``events`` (encoded texts for one normalised channel) as pending outbox rows.

    Runs on the ``using`` connection, so inside the caller's transaction when there is one:
    a rollback removes the rows with the data they announce.

    Returns:
        the new rows' primary keys, in event order.
    """
    from ..models import OutboxEvent

    batch = uuid.uuid4()
    rows = [
        OutboxEvent(api=api, channel=channel, payload=text, batch=batch, position=index)
        for index, text in enumerate(events)
    ]
    created = OutboxEvent.objects.using(using).bulk_create(rows, batch_size=500)
    return tuple(row.pk for row in created if row.pk is not None)


def __getattr__(name: str) -> object:
    # The drainer imports models; keep ``import appsync_events.outbox`` app-registry free.
    if name == "OutboxDrainer":
        from .drainer import OutboxDrainer

        return OutboxDrainer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
