"""publish() / apublish(): validation before I/O, chunking, signals, on_commit, results."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from typing import Any
from unittest import mock

import pytest
from asgiref.sync import sync_to_async
from django.db import connections, transaction
from django.utils.translation import gettext_lazy

from appsync_events import publishing
from appsync_events.backends import locmem
from appsync_events.batching import chunk_indices, encode_events, request_body
from appsync_events.exceptions import (
    EventEncodingError,
    EventTooLargeError,
    InvalidChannelError,
    PublishCancelled,
    PublishError,
    ValidationError,
)
from appsync_events.limits import MAX_EVENT_BYTES, MAX_REQUEST_BYTES
from appsync_events.publishing import DeferredPublish, apublish, publish
from appsync_events.results import PublishResult
from appsync_events.signals import pre_publish, publish_failed, published

BASE: dict[str, Any] = {
    "HTTP_URL": "http://127.0.0.1:9/event",
    "REGION": "us-east-1",
    "AUTH": {"API_KEY": "da2-tests00000000000000000000000"},
    "NAMESPACES": {"default": {}, "chat": {}},
}


def reject_bad(channel: str, event: str) -> str | None:
    """Locmem rejecter used by tests: refuse events whose JSON mentions "bad"."""
    return "HandlerRefused" if "bad" in event else None


def forget_thread_connections() -> None:
    """Close and forget this thread's database connections (run in asgiref's worker).

    Async ORM calls open a connection in asgiref's worker thread that outlives the test:
    on PostgreSQL it keeps the test database from being dropped, and with pytest-django
    any later async test that checks old connections would touch it.
    """
    for conn in connections.all(initialized_only=True):
        conn.close()
        del connections[conn.alias]


@pytest.fixture
def locmem_api(settings):
    """Route the default alias to the locmem backend and start with empty records."""
    settings.APPSYNC_EVENTS = {"default": {**BASE, "PUBLISH": {"BACKEND": "locmem"}}}
    locmem.clear()
    yield
    locmem.clear()


@pytest.fixture
def receivers():
    """Connect mock receivers to the three publishing signals; disconnect afterwards."""
    mocks = {"pre": mock.Mock(), "ok": mock.Mock(), "failed": mock.Mock()}
    pre_publish.connect(mocks["pre"], weak=False)
    published.connect(mocks["ok"], weak=False)
    publish_failed.connect(mocks["failed"], weak=False)
    yield mocks
    pre_publish.disconnect(mocks["pre"])
    published.disconnect(mocks["ok"])
    publish_failed.disconnect(mocks["failed"])


# -- encoding, size, grammar: before any request --------------------------------------


def test_django_types_are_encoded():
    """Datetimes, Decimals, UUIDs and lazy strings encode with DjangoJSONEncoder."""
    when = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    ident = uuid.UUID(int=1)
    (text,) = encode_events(
        [{"at": when, "price": decimal.Decimal("1.50"), "id": ident, "s": gettext_lazy("hi")}]
    )
    assert json.loads(text) == {
        "at": "2025-01-02T03:04:05Z",
        "price": "1.50",
        "id": str(ident),
        "s": "hi",
    }
    assert " " not in text  # compact


def test_unserialisable_event_names_type_and_index(locmem_api):
    """The error for an unserialisable event names its position and type; nothing is sent."""
    with pytest.raises(EventEncodingError) as info:
        publish("/chat/a", {"ok": 1}, {"s": {1, 2}})
    assert info.value.index == 1
    assert "index 1" in str(info.value)
    assert "set" in str(info.value)
    assert isinstance(info.value, TypeError)
    locmem.assert_nothing_published()


def test_nan_is_refused(locmem_api):
    """NaN cannot travel as JSON and is refused before sending."""
    with pytest.raises(EventEncodingError):
        publish("/chat/a", float("nan"))
    locmem.assert_nothing_published()


def test_oversized_event_is_refused_before_any_request(locmem_api):
    """An event over 240,000 bytes raises EventTooLargeError and nothing is sent."""
    with pytest.raises(EventTooLargeError) as info:
        publish("/chat/a", "ok", "x" * MAX_EVENT_BYTES)
    assert info.value.index == 1
    assert info.value.size == MAX_EVENT_BYTES + 2  # the JSON quotes
    assert info.value.limit == MAX_EVENT_BYTES
    assert locmem.requests == []


def test_event_at_the_limit_is_accepted(locmem_api):
    """An event of exactly 240,000 encoded bytes is sent."""
    publish("/chat/a", "x" * (MAX_EVENT_BYTES - 2))
    assert len(locmem.requests) == 1


@pytest.mark.parametrize("channel", ["/chat/*", "/chat//a", "/a/b/c/d/e/f", "/chat/a_b", ""])
def test_bad_channels_are_refused_before_any_request(locmem_api, channel):
    """Wildcards and grammar violations raise InvalidChannelError; nothing is sent."""
    with pytest.raises(InvalidChannelError):
        publish(channel, {"x": 1})
    assert locmem.requests == []


def test_publish_needs_events(locmem_api):
    """Calling publish() without events is a validation error."""
    with pytest.raises(ValidationError, match="at least one event"):
        publish("/chat/a")


# -- chunking ---------------------------------------------------------------------------


def test_twelve_events_go_as_five_five_two(locmem_api):
    """Twelve events are sent in three requests of 5, 5 and 2, indices kept."""
    result = publish("/chat/a", *range(12))
    assert isinstance(result, PublishResult)
    assert [len(texts) for (_, _, texts) in locmem.requests] == [5, 5, 2]
    assert [e.index for e in result.successful] == list(range(12))
    assert len(set(result.identifiers.values())) == 12
    (record,) = locmem.published
    assert record.payloads == list(range(12))
    assert [len(r) for r in record.requests] == [5, 5, 2]


def test_size_bounds_chunks():
    """Requests stay under 1,200,000 bytes even with fewer than five events each."""
    events = ["x" * 230_000] * 12
    texts = encode_events(events)
    chunks = chunk_indices("/chat/a", texts)
    assert [i for c in chunks for i in c] == list(range(12))
    for chunk in chunks:
        assert len(request_body("/chat/a", [texts[i] for i in chunk])) <= MAX_REQUEST_BYTES
        assert len(chunk) <= 5
    assert [len(c) for c in chunks] == [5, 5, 2]
    # Escaping counts: quotes double the size inside the request body.
    quoted = encode_events(['"' * 110_000] * 6)
    chunks = chunk_indices("/chat/a", quoted)
    assert max(len(c) for c in chunks) < 5
    for chunk in chunks:
        assert len(request_body("/chat/a", [quoted[i] for i in chunk])) <= MAX_REQUEST_BYTES


def test_chunk_sizes_are_exact_at_the_boundary():
    """A request that would exceed the byte bound by one byte is split; at the bound it is not."""
    empty = len(request_body("/c/a", []))
    one = len(json.dumps(json.dumps("a")))  # an event's size inside the body
    limit = empty + 2 * one + 1  # exactly two events and a comma
    texts = encode_events(["a", "a", "a"])
    assert chunk_indices("/c/a", texts, max_bytes=limit) == [[0, 1], [2]]
    assert chunk_indices("/c/a", texts, max_bytes=limit - 1) == [[0], [1], [2]]


# -- results and failures by caller index -----------------------------------------------


def test_partial_failure_reports_caller_indices(settings):
    """Events refused by the service are reported by their index in the caller's call."""
    settings.APPSYNC_EVENTS = {
        "default": {
            **BASE,
            "PUBLISH": {
                "BACKEND": "locmem",
                "OPTIONS": {"REJECT": "tests.test_publish.reject_bad"},
            },
        }
    }
    locmem.clear()
    events = [{"n": i, "v": "bad" if i in (3, 7, 11) else "good"} for i in range(12)]
    result = publish("/chat/a", *events)
    assert isinstance(result, PublishResult)
    assert [e.index for e in result.failed] == [3, 7, 11]
    assert {e.code for e in result.failed} == {"HandlerRefused"}
    assert [e.index for e in result.successful] == [i for i in range(12) if i not in (3, 7, 11)]
    assert not result.ok
    with pytest.raises(PublishError, match=r"indices \[3, 7, 11\]"):
        result.raise_for_failures()


# -- signals -----------------------------------------------------------------------------


def test_signals_are_sent(locmem_api, receivers):
    """pre_publish sees the encoded events; published sees the result."""
    result = publish("/chat/a", {"x": 1}, api="default")
    receivers["pre"].assert_called_once()
    kwargs = receivers["pre"].call_args.kwargs
    assert kwargs["channel"] == "/chat/a"
    assert kwargs["events"] == ('{"x":1}',)
    assert kwargs["api"] == "default"
    receivers["ok"].assert_called_once()
    assert receivers["ok"].call_args.kwargs["result"] is result
    receivers["failed"].assert_not_called()


def test_pre_publish_veto(locmem_api):
    """A pre_publish receiver raising PublishCancelled stops the publish."""

    def veto(**kwargs):
        if "secret" in kwargs["events"][0]:
            raise PublishCancelled("not this one")

    pre_publish.connect(veto, weak=False)
    try:
        with pytest.raises(PublishCancelled):
            publish("/chat/a", {"secret": True})
        publish("/chat/a", {"public": True})
    finally:
        pre_publish.disconnect(veto)
    assert locmem.published_events("/chat/a") == [{"public": True}]


def test_failure_sends_publish_failed_and_raises(settings, receivers):
    """A refused publish raises and sends publish_failed with deferred=False."""
    settings.APPSYNC_EVENTS = {"default": {**BASE, "PUBLISH": {"OPTIONS": {"RETRIES": 0}}}}
    with pytest.raises(PublishError, match="could not connect"):
        publish("/chat/a", {"x": 1})
    receivers["failed"].assert_called_once()
    kwargs = receivers["failed"].call_args.kwargs
    assert kwargs["deferred"] is False
    assert isinstance(kwargs["error"], PublishError)
    receivers["ok"].assert_not_called()


def test_failing_published_receiver_does_not_fail_publish(locmem_api, caplog):
    """An exception in a published receiver is logged, not raised to the publisher."""

    def broken(**kwargs):
        raise RuntimeError("receiver bug")

    published.connect(broken, weak=False)
    try:
        result = publish("/chat/a", 1)
    finally:
        published.disconnect(broken)
    assert isinstance(result, PublishResult)
    assert "receiver" in caplog.text


# -- transactions ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_publish_in_atomic_waits_for_commit(locmem_api, receivers):
    """Inside atomic() the publish waits for the commit and fills in the handle."""
    with transaction.atomic():
        handle = publish("/chat/a", {"x": 1})
        assert isinstance(handle, DeferredPublish)
        assert handle.state == "pending"
        receivers["pre"].assert_called_once()  # the veto point is the call itself
        locmem.assert_nothing_published()
    assert handle.done
    assert isinstance(handle.result, PublishResult)
    locmem.assert_published("/chat/a", {"x": 1}, count=1)


@pytest.mark.django_db(transaction=True)
def test_rollback_publishes_nothing(locmem_api):
    """A rolled-back transaction publishes nothing."""
    handles: list[Any] = []

    def work() -> None:
        with transaction.atomic():
            handles.append(publish("/chat/a", {"x": 1}))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        work()
    assert handles[0].state == "pending"
    locmem.assert_nothing_published()


@pytest.mark.django_db(transaction=True)
def test_on_commit_can_be_disabled_per_call_and_per_alias(settings):
    """on_commit=False (per call or per alias) publishes immediately inside atomic()."""
    settings.APPSYNC_EVENTS = {"default": {**BASE, "PUBLISH": {"BACKEND": "locmem"}}}
    locmem.clear()
    with transaction.atomic():
        result = publish("/chat/a", 1, on_commit=False)
        assert isinstance(result, PublishResult)
        locmem.assert_published("/chat/a", 1)
    settings.APPSYNC_EVENTS = {
        "default": {**BASE, "PUBLISH": {"BACKEND": "locmem", "ON_COMMIT": False}}
    }
    with transaction.atomic():
        assert isinstance(publish("/chat/a", 2), PublishResult)
        locmem.assert_published("/chat/a", 2)
    locmem.clear()


@pytest.mark.django_db(transaction=True)
def test_failure_after_commit_is_logged_and_signalled(settings, receivers, caplog):
    """A publish failing after the commit does not raise; it logs and sends publish_failed."""
    settings.APPSYNC_EVENTS = {"default": {**BASE, "PUBLISH": {"OPTIONS": {"RETRIES": 0}}}}
    with transaction.atomic():
        handle = publish("/chat/a", {"x": 1})
    assert isinstance(handle, DeferredPublish)
    assert handle.state == "failed"
    assert isinstance(handle.error, PublishError)
    receivers["failed"].assert_called_once()
    assert receivers["failed"].call_args.kwargs["deferred"] is True
    assert "after commit failed" in caplog.text


# -- async -------------------------------------------------------------------------------


async def test_apublish_sends_now(locmem_api, receivers):
    """apublish() validates, signals and sends without deferring."""
    result = await apublish("/chat/a", *range(7))
    assert isinstance(result, PublishResult)
    assert [len(t) for (_, _, t) in locmem.requests] == [5, 2]
    receivers["pre"].assert_called_once()
    receivers["ok"].assert_called_once()


async def test_apublish_validates_before_io(locmem_api):
    """apublish() raises the same validation errors, before sending anything."""
    with pytest.raises(InvalidChannelError):
        await apublish("/chat/*", 1)
    with pytest.raises(EventEncodingError):
        await apublish("/chat/a", object())
    locmem.assert_nothing_published()


async def test_apublish_veto(locmem_api):
    """An async pre_publish receiver can veto apublish()."""

    async def veto(**kwargs):
        raise PublishCancelled("no")

    pre_publish.connect(veto, weak=False)
    try:
        with pytest.raises(PublishCancelled):
            await apublish("/chat/a", 1)
    finally:
        pre_publish.disconnect(veto)
    locmem.assert_nothing_published()


@pytest.mark.django_db(transaction=True)
async def test_sync_to_async_atomic_block_defers(locmem_api):
    """publish() inside atomic() inside sync_to_async waits for that block's commit."""

    def work() -> DeferredPublish:
        with transaction.atomic():
            handle = publish("/chat/a", "in-tx")
            assert isinstance(handle, DeferredPublish)
            assert locmem.published == []
        return handle

    handle = await sync_to_async(work)()
    await sync_to_async(forget_thread_connections)()  # the worker thread's DB connection
    assert handle.state == "sent"
    locmem.assert_published("/chat/a", "in-tx")


def test_deferred_publish_repr():
    """The handle's repr shows its state, alias, channel and count."""
    handle = DeferredPublish("default", "/chat/a", ("1",))
    assert repr(handle) == "<DeferredPublish pending api='default' channel='/chat/a' events=1>"
    assert not handle.done


def test_module_exports():
    """The publishing module exports what the docs use."""
    assert set(publishing.__all__) >= {"publish", "apublish", "DeferredPublish"}


@pytest.mark.django_db(transaction=True)
def test_savepoint_rollback_discards_only_its_publishes(locmem_api):
    """A publish inside a rolled-back savepoint is dropped; the outer commit sends the rest."""

    def inner() -> None:
        with transaction.atomic():
            publish("/chat/a", "inner")
            raise RuntimeError("savepoint rollback")

    with transaction.atomic():
        publish("/chat/a", "outer")
        with pytest.raises(RuntimeError):
            inner()
    assert locmem.published_events("/chat/a") == ["outer"]


async def test_apublish_failure_sends_publish_failed(settings, receivers):
    """An async publish that fails raises and sends publish_failed (deferred=False)."""
    settings.APPSYNC_EVENTS = {"default": {**BASE, "PUBLISH": {"OPTIONS": {"RETRIES": 0}}}}
    with pytest.raises(PublishError, match="could not connect"):
        await apublish("/chat/a", {"x": 1})
    receivers["failed"].assert_called_once()
    assert receivers["failed"].call_args.kwargs["deferred"] is False
    receivers["ok"].assert_not_called()
    from appsync_events.backends import get_backend

    await get_backend().aclose()
