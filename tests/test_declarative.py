"""Declarative event classes and the model mixin."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from typing import Any, Literal

import pytest
from asgiref.sync import sync_to_async
from django.db import connection, connections, models, transaction
from django.test.utils import isolate_apps

import appsync_events
from appsync_events.backends import locmem
from appsync_events.declarative import Event, PublishChangesMixin
from appsync_events.events import ReceivedEvent
from appsync_events.exceptions import EventValidationError, InvalidChannelError
from appsync_events.publishing import DeferredPublish
from appsync_events.results import PublishResult

BASE: dict[str, Any] = {
    "HTTP_URL": "http://127.0.0.1:9/event",
    "REGION": "us-east-1",
    "AUTH": {"API_KEY": "da2-tests00000000000000000000000"},
    "NAMESPACES": {"default": {}, "chat": {}, "shop": {}},
    "PUBLISH": {"BACKEND": "locmem"},
}


def forget_thread_connections() -> None:
    """Close and forget this thread's database connections (run in asgiref's worker).

    Async ORM calls open a connection in asgiref's worker thread that outlives the test:
    on PostgreSQL it keeps the test database from being dropped, and with pytest-django
    any later async test that checks old connections would touch it.
    """
    for conn in connections.all(initialized_only=True):
        conn.close()
        del connections[conn.alias]


@pytest.fixture(autouse=True)
def locmem_api(settings):
    """Publish through locmem and start each test with empty records."""
    settings.APPSYNC_EVENTS = {"default": BASE}
    locmem.clear()
    yield
    locmem.clear()


class ChatMessage(appsync_events.Event):
    """A chat message, as the docs show it."""

    channel = "/chat/rooms/{room_id}"

    room_id: int
    text: str
    author: str | None = None
    tags: list[str] = []  # copied per instance


class Priced(Event):
    """An event exercising the richer field types."""

    channel = "/shop/{sku}/{kind}"

    sku: str
    kind: Literal["sale", "refund"]
    price: decimal.Decimal
    ref: uuid.UUID
    at: dt.datetime
    day: dt.date
    ratio: float = 1.0
    extra: dict[str, Any] = {}  # copied per instance

    class Meta:
        type_name = "shop.priced"
        event_id = False


# -- definition-time errors -------------------------------------------------------------


def test_template_must_name_fields():
    """A template placeholder that is not a field is refused at class definition."""
    with pytest.raises(TypeError, match="room_id, which is not a field"):

        class Bad(Event):
            channel = "/chat/{room_id}"
            text: str


def test_template_must_be_a_valid_channel():
    """A template that cannot form a valid channel is refused at class definition."""
    with pytest.raises(TypeError, match="not a valid channel"):

        class Bad(Event):
            channel = "/chat/*/{room_id}"
            room_id: int


def test_reserved_and_unsupported_fields():
    """Reserved names, unsupported types and unknown Meta options are refused."""
    with pytest.raises(TypeError, match="reserved"):

        class Reserved(Event):
            channel = "/chat/a"
            event_id: str

    with pytest.raises(TypeError, match="not supported"):

        class Unsupported(Event):
            channel = "/chat/a"
            when: set[int]

    with pytest.raises(TypeError, match="unknown option"):

        class BadMeta(Event):
            channel = "/chat/a"

            class Meta:
                colour = "red"

    with pytest.raises(TypeError, match=r"Meta\.durable must be True, False or None"):

        class BadValue(Event):
            channel = "/chat/a"

            class Meta:
                durable = "yes"

    with pytest.raises(TypeError, match="format spec"):

        class Spec(Event):
            channel = "/chat/{n:03d}"
            n: int


# -- construction -------------------------------------------------------------------------


def test_validation_lists_every_problem():
    """Construction names every missing, unknown and mistyped field at once."""
    with pytest.raises(EventValidationError) as info:
        ChatMessage(room_id="7", colour="red")
    err = info.value
    assert err.problems == {
        "colour": "unknown field",
        "room_id": "expected int, got str ('7')",
        "text": "required",
    }
    assert err.event_class == "ChatMessage"
    assert isinstance(err, ValueError)


def test_bool_is_not_an_int():
    """True is refused for an int field, although bool subclasses int."""
    with pytest.raises(EventValidationError, match="room_id"):
        ChatMessage(room_id=True, text="x")


def test_template_formatting_and_payload():
    """The channel is the formatted template; the payload carries fields, type and id."""
    message = ChatMessage(room_id=7, text="hi")
    assert message.channel_path == "/chat/rooms/7"
    payload = message.to_payload()
    assert payload["event_type"] == "ChatMessage"
    uuid.UUID(payload["event_id"])
    assert payload["room_id"] == 7
    assert payload == {**payload, "text": "hi", "author": None, "tags": []}
    assert ChatMessage(room_id=7, text="hi").event_id != message.event_id


def test_mutable_defaults_are_not_shared():
    """Each instance gets its own copy of a list default."""
    first = ChatMessage(room_id=1, text="a")
    first.tags.append("x")
    assert ChatMessage(room_id=1, text="b").tags == []


def test_mutable_dict_defaults_are_not_shared():
    """Each instance gets its own copy of a dict default, as of a list default."""
    values = {
        "sku": "a1",
        "kind": "sale",
        "price": decimal.Decimal("1"),
        "ref": uuid.uuid4(),
        "at": dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        "day": dt.date(2024, 1, 1),
    }
    first = Priced(**values)
    first.extra["note"] = "x"
    assert Priced(**values).extra == {}


def test_template_value_must_make_a_valid_channel():
    """A template field whose value breaks the grammar raises InvalidChannelError."""
    with pytest.raises(InvalidChannelError, match=r"ChatMessage\(room_id=-1\)"):
        ChatMessage(room_id=-1, text="x")


def test_rich_types_round_trip():
    """Decimals, UUIDs, datetimes, dates, literals and dicts survive encode and from_event."""
    event = Priced(
        sku="A1",
        kind="sale",
        price=decimal.Decimal("9.99"),
        ref=uuid.UUID(int=5),
        at=dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        day=dt.date(2025, 1, 2),
        ratio=2,
        extra={"a": [1, 2]},
    )
    assert event.channel_path == "/shop/A1/sale"
    text = event.encode()
    assert "event_id" not in json.loads(text)
    parsed = Priced.from_event(text)
    assert parsed == event
    assert isinstance(parsed.price, decimal.Decimal)
    assert isinstance(parsed.at, dt.datetime)
    assert parsed.at.tzinfo is not None
    assert isinstance(parsed.day, dt.date)
    assert parsed.event_id is None
    with pytest.raises(EventValidationError, match="kind"):
        Priced.from_event({**json.loads(text), "kind": "gift"})


def test_from_event_parses_received_events():
    """from_event() accepts a ReceivedEvent, keeps the event id and ignores extra keys."""
    original = ChatMessage(room_id=3, text="yo", author="ann")
    payload = {**original.to_payload(), "added_later": True}
    received = ReceivedEvent("default", "/chat/rooms/*", payload, json.dumps(payload))
    parsed = ChatMessage.from_event(received)
    assert parsed == original
    assert parsed.event_id == original.event_id
    assert parsed.channel_path == "/chat/rooms/3"
    assert ChatMessage.matches(received)
    assert not Priced.matches(received)


def test_from_event_refuses_other_types_and_garbage():
    """from_event() names the problem for another event type, non-objects and bad JSON."""
    with pytest.raises(EventValidationError, match="is a 'Other'"):
        ChatMessage.from_event({"event_type": "Other", "room_id": 1, "text": "x"})
    with pytest.raises(EventValidationError, match="expected an object"):
        ChatMessage.from_event("[1, 2]")
    with pytest.raises(EventValidationError, match="not JSON"):
        ChatMessage.from_event("{nope")
    with pytest.raises(EventValidationError, match="text: required"):
        ChatMessage.from_event({"room_id": 1})


def test_abstract_bases_share_fields_and_meta():
    """A base without a channel shares fields and Meta and cannot be instantiated."""

    class RoomEvent(Event):
        room_id: int

        class Meta:
            api = "default"
            durable = False

    class Joined(RoomEvent):
        channel = "/chat/rooms/{room_id}/presence"
        user: str

    with pytest.raises(TypeError, match="no channel template"):
        RoomEvent(room_id=1)
    joined = Joined(room_id=2, user="bo")
    assert joined.channel_path == "/chat/rooms/2/presence"
    assert Joined._meta.durable is False
    assert Joined._meta.type_name == "Joined"


# -- publishing ---------------------------------------------------------------------------


def test_publish_goes_to_the_formatted_channel():
    """publish() sends the payload to the instance's channel."""
    message = ChatMessage(room_id=7, text="hi")
    result = message.publish()
    assert isinstance(result, PublishResult)
    locmem.assert_published("/chat/rooms/7", message.to_payload())


async def test_apublish():
    """apublish() sends without deferring."""
    message = ChatMessage(room_id=8, text="async")
    result = await message.apublish()
    assert isinstance(result, PublishResult)
    locmem.assert_published("/chat/rooms/8", message.to_payload())


def test_publish_many_groups_by_channel_and_chunks():
    """publish_many() sends one chunked publish per channel, in order."""
    events = [ChatMessage(room_id=i % 2, text=str(i)) for i in range(14)]
    results = ChatMessage.publish_many(events)
    assert len(results) == 2
    assert [r.channel for r in locmem.published] == ["/chat/rooms/0", "/chat/rooms/1"]
    assert [len(t) for (_, _, t) in locmem.requests] == [5, 2, 5, 2]
    assert [e["text"] for e in locmem.published_events("/chat/rooms/1")] == [
        str(i) for i in range(1, 14, 2)
    ]


def test_publish_many_validates_everything_first():
    """A wrong element stops publish_many() before anything is sent."""
    with pytest.raises(TypeError, match="at index 1"):
        ChatMessage.publish_many([ChatMessage(room_id=1, text="a"), "nope"])  # type: ignore[list-item]
    locmem.assert_nothing_published()


async def test_apublish_many():
    """apublish_many() is the async twin of publish_many()."""
    results = await ChatMessage.apublish_many(
        [ChatMessage(room_id=4, text=str(i)) for i in range(6)]
    )
    assert len(results) == 1
    assert [len(t) for (_, _, t) in locmem.requests] == [5, 1]


@pytest.mark.django_db(transaction=True)
def test_meta_on_commit_and_call_override():
    """Meta.on_commit=False publishes inside atomic(); on_commit=True at call time defers."""

    class Immediate(Event):
        channel = "/chat/now"
        n: int

        class Meta:
            on_commit = False

    with transaction.atomic():
        assert isinstance(Immediate(n=1).publish(), PublishResult)
        assert isinstance(Immediate(n=2).publish(on_commit=True), DeferredPublish)
        assert locmem.published_events("/chat/now") == [
            {
                "event_type": "Immediate",
                "event_id": locmem.published[0].payloads[0]["event_id"],
                "n": 1,
            }
        ]
    assert [e["n"] for e in locmem.published_events("/chat/now")] == [1, 2]


# -- the model mixin ----------------------------------------------------------------------


@pytest.fixture
def note_model(transactional_db):
    """A throwaway model using PublishChangesMixin, with its table."""
    with isolate_apps("appsync_events"):

        class Note(PublishChangesMixin, models.Model):
            room_id = models.IntegerField()
            text = models.CharField(max_length=100)
            secret = models.CharField(max_length=100, default="hidden")

            appsync_channel = "/chat/rooms/{room_id}/notes"
            appsync_fields = ("text",)

            class Meta:
                app_label = "appsync_events"

            def __str__(self) -> str:
                return self.text

    with connection.schema_editor() as editor:
        editor.create_model(Note)
    yield Note
    with connection.schema_editor() as editor:
        editor.delete_model(Note)


def test_model_save_and_delete_publish(note_model):
    """save() publishes created then updated; delete() publishes deleted with the old pk."""
    note = note_model.objects.create(room_id=5, text="first")
    note.text = "second"
    note.save(update_fields=["text"])
    pk = note.pk
    note.delete()
    events = locmem.published_events("/chat/rooms/5/notes")
    assert [e["action"] for e in events] == ["created", "updated", "deleted"]
    assert [e["text"] for e in events] == ["first", "second", "second"]
    assert all(e["pk"] == pk and e["room_id"] == 5 for e in events)
    assert events[0]["event_type"] == "appsync_events.note.created"
    assert events[1]["updated_fields"] == ["text"]
    assert "secret" not in events[0]
    assert len({e["event_id"] for e in events}) == 3


def test_model_changes_wait_for_commit_and_rollback_publishes_nothing(note_model):
    """Inside atomic() the events wait for the commit; a rollback publishes nothing."""
    with transaction.atomic():
        note_model.objects.create(room_id=1, text="kept")
        locmem.assert_nothing_published()
    locmem.assert_published("/chat/rooms/1/notes", count=1)
    locmem.clear()

    def lost() -> None:
        with transaction.atomic():
            note_model.objects.create(room_id=1, text="lost")
            raise RuntimeError("rollback")

    with pytest.raises(RuntimeError):
        lost()
    locmem.assert_nothing_published()


def test_bulk_operations_publish_nothing(note_model):
    """bulk_create(), QuerySet.update() and QuerySet.delete() publish nothing (documented)."""
    note_model.objects.bulk_create([note_model(room_id=2, text=str(i)) for i in range(3)])
    note_model.objects.filter(room_id=2).update(text="changed")
    note_model.objects.filter(room_id=2).delete()
    locmem.assert_nothing_published()
    assert not note_model.objects.exists()


async def test_model_asave_and_adelete_publish(note_model):
    """asave() and adelete() publish like save() and delete()."""
    note = note_model(room_id=9, text="async")
    await note.asave()
    await note.adelete()
    # The ORM ran in asgiref's worker thread; close its connection (the test DB is dropped).
    await sync_to_async(forget_thread_connections)()
    assert [e["action"] for e in locmem.published_events("/chat/rooms/9/notes")] == [
        "created",
        "deleted",
    ]


def test_model_actions_can_be_limited(note_model):
    """appsync_actions limits which changes publish."""
    note_model.appsync_actions = ("deleted",)
    try:
        note = note_model.objects.create(room_id=3, text="x")
        note.save()
        locmem.assert_nothing_published()
        note.delete()
        assert [e["action"] for e in locmem.published_events("/chat/rooms/3/notes")] == ["deleted"]
    finally:
        del note_model.appsync_actions


def test_model_without_channel_is_an_error(note_model):
    """A model using the mixin without appsync_channel says what to set."""
    note_model.appsync_channel = ""
    try:
        with pytest.raises(TypeError, match="sets no appsync_channel"):
            note_model.objects.create(room_id=3, text="x")
    finally:
        del note_model.appsync_channel


def test_empty_update_fields_publishes_nothing(note_model):
    """save(update_fields=[]) saves nothing in Django, so it announces nothing."""
    note = note_model.objects.create(room_id=6, text="x")
    locmem.clear()
    note.save(update_fields=[])
    locmem.assert_nothing_published()


class Shipped(Event):
    """Fixed-length tuple fields: one type per position."""

    channel = "/shop/shipped"

    window: tuple[dt.date, dt.date]
    parcel: tuple[uuid.UUID]
    weights: tuple[decimal.Decimal, ...] = ()


def test_fixed_length_tuples_are_coerced_per_position():
    event = Shipped(
        window=(dt.date(2026, 1, 1), dt.date(2026, 1, 3)),
        parcel=(uuid.UUID(int=9),),
        weights=(decimal.Decimal("1.5"), decimal.Decimal("2")),
    )
    parsed = Shipped.from_event(event.encode())
    assert parsed == event
    assert all(type(d) is dt.date for d in parsed.window)
    assert type(parsed.parcel[0]) is uuid.UUID
    assert all(type(w) is decimal.Decimal for w in parsed.weights)
    with pytest.raises(EventValidationError, match="window"):
        Shipped.from_event({**json.loads(event.encode()), "window": ["2026-01-01"]})


def test_update_fields_given_as_a_generator(note_model):
    """A generator is read once by Django's save(); the event still names the fields."""
    note = note_model.objects.create(room_id=8, text="x")
    note.text = "y"
    note.save(update_fields=(name for name in ["text"]))
    events = locmem.published_events("/chat/rooms/8/notes")
    assert events[-1]["updated_fields"] == ["text"]
    note.refresh_from_db()
    assert note.text == "y"


def test_fixture_loading_publishes_nothing(note_model):
    """A raw save (what loaddata does) announces nothing; a normal save still does."""
    note_model(room_id=8, text="fixture").save_base(raw=True)
    locmem.assert_nothing_published()
    note_model.objects.create(room_id=8, text="live")
    assert [e["text"] for e in locmem.published_events("/chat/rooms/8/notes")] == ["live"]
