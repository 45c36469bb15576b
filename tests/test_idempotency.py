"""The idempotency helper: the event key, mark_handled and @idempotent."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from django.db import transaction
from django.db.transaction import TransactionManagementError

from appsync_events.declarative import Event
from appsync_events.events import ReceivedEvent
from appsync_events.idempotency import event_key, idempotent, mark_handled
from appsync_events.models import HandledEvent


class Ping(Event):
    """A declarative event: every payload carries an event_id."""

    channel = "/chat/rooms/{room}"
    room: int


def received(payload: Any, subscription: str = "/chat/*", api: str = "default") -> ReceivedEvent:
    """An event as the listener builds it from ``payload``."""
    raw = json.dumps(payload)
    return ReceivedEvent(api, subscription, json.loads(raw), raw, "sub-1")


def test_the_key_is_the_event_id_of_declarative_events() -> None:
    """Declarative events are keyed on their UUID event_id."""
    ping = Ping(room=7)
    assert event_key(received(ping.to_payload())) == ping.event_id


@pytest.mark.parametrize(
    ("payload", "key"),
    [({"event_id": "abc"}, "abc"), ({"event_id": 42}, "42"), ({"event_id": "x" * 200}, "x" * 200)],
)
def test_an_event_id_string_or_integer_is_the_key(payload: Any, key: str) -> None:
    """A string (up to 200 characters) or integer event_id is used as is."""
    assert event_key(received(payload)) == key


@pytest.mark.parametrize(
    "payload", [{"n": 1}, {"event_id": ""}, {"event_id": True}, {"event_id": "x" * 201}, [1], "s"]
)
def test_otherwise_the_key_hashes_alias_subscription_and_raw_text(payload: Any) -> None:
    """Without a usable event_id the key is a SHA-256 of alias, subscription and raw text."""
    key = event_key(received(payload))
    assert key.startswith("sha256:")
    assert len(key) == len("sha256:") + 64
    assert event_key(received(payload)) == key  # the same delivery again
    assert event_key(received(payload, subscription="/news/*")) != key
    assert event_key(received(payload, api="other")) != key


@pytest.mark.django_db(transaction=True)  # no test-wide transaction around it
def test_mark_handled_needs_a_transaction() -> None:
    """Outside transaction.atomic() the record could not commit with the work: refused."""
    with pytest.raises(TransactionManagementError, match=r"inside transaction\.atomic\(\)"):
        mark_handled(received({"event_id": "a"}), "h")


@pytest.mark.django_db
def test_mark_handled_tells_the_first_delivery_from_a_duplicate(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One record per handler and key: a second delivery is False and logged."""
    caplog.set_level(logging.INFO, "appsync_events.idempotency")
    event = received({"event_id": "a"})
    with transaction.atomic():
        assert mark_handled(event, "h1")
        assert not mark_handled(event, "h1")  # the transaction stays usable
        assert mark_handled(event, "h2")  # another handler has its own record
    assert sorted(HandledEvent.objects.values_list("handler", "key")) == [("h1", "a"), ("h2", "a")]
    assert caplog.messages == [
        "Skipped a duplicate delivery of event a to h1 (subscription /chat/*, api=default)"
    ]
    with pytest.raises(ValueError, match="1 to 300 characters"):
        with transaction.atomic():
            mark_handled(event, "h" * 301)


@pytest.mark.django_db
def test_idempotent_runs_a_handler_once_per_event() -> None:
    """A second delivery returns None without running the handler."""
    calls: list[Any] = []

    @idempotent
    def handler(event: ReceivedEvent) -> str:
        calls.append(event.payload["n"])
        return "done"

    assert handler(received({"event_id": "e1", "n": 1})) == "done"
    assert handler(received({"event_id": "e1", "n": 1})) is None
    assert handler(received({"event_id": "e2", "n": 2})) == "done"
    assert calls == [1, 2]
    [name] = set(HandledEvent.objects.values_list("handler", flat=True))
    assert name == f"{__name__}.{handler.__qualname__}"
    assert handler.__name__ == "handler"  # wraps: workers find it by the same name


@pytest.mark.django_db
def test_a_failing_handler_leaves_no_record_so_a_retry_runs_it() -> None:
    """The record rolls back with the handler's work; the next delivery runs it again."""
    attempts: list[int] = []

    @idempotent(name="flaky")
    def handler(event: ReceivedEvent) -> None:
        attempts.append(1)
        HandledEvent.objects.create(handler="side-effect", key=str(len(attempts)))
        if len(attempts) == 1:
            raise RuntimeError("first try fails")

    event = received({"event_id": "e"})
    with pytest.raises(RuntimeError):
        handler(event)
    assert not HandledEvent.objects.exists()  # neither the record nor the work
    handler(event)
    handler(event)
    assert len(attempts) == 2
    assert sorted(HandledEvent.objects.values_list("handler", "key")) == [
        ("flaky", "e"),
        ("side-effect", "2"),
    ]


def test_idempotent_refuses_async_handlers_and_long_names() -> None:
    """Async handlers cannot share the record's transaction; names are at most 300 long."""

    async def handler(event: ReceivedEvent) -> None: ...

    with pytest.raises(TypeError, match="wraps sync handlers"):
        idempotent(handler)
    with pytest.raises(ValueError, match="1 to 300 characters"):
        idempotent(name="x" * 301)(lambda event: None)
