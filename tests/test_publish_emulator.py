"""Publishing against the emulator: real HTTP on loopback, chunking, failures, commands."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction

from appsync_events import Event, apublish, publish
from appsync_events.backends import close_backends
from appsync_events.emulator import AppSyncEventsEmulator, NamespaceHandlers
from appsync_events.exceptions import (
    EventTooLargeError,
    InvalidChannelError,
    PartialPublishError,
    PublishError,
)
from appsync_events.publishing import DeferredPublish
from appsync_events.results import PublishResult
from appsync_events.testing.helpers import start_emulator, use_emulator


@pytest.fixture(scope="module")
def shared_emulator() -> Iterator[AppSyncEventsEmulator]:
    """One emulator for this module (namespaces of the test settings' default alias)."""
    emulator = start_emulator("default")
    yield emulator
    emulator.stop()


@pytest.fixture
def emulator(shared_emulator, settings) -> Iterator[AppSyncEventsEmulator]:
    """The module's emulator, reset, with the default alias pointing at it."""
    with use_emulator(shared_emulator) as emu:
        yield emu
    close_backends()


def refuse_marked(ctx) -> list[dict[str, Any]]:
    """An onPublish stand-in refusing events whose payload has "refuse": true."""
    return [
        {"id": e.id, "error": "refused by handler"}
        if isinstance(e.payload, dict) and e.payload.get("refuse")
        else {"id": e.id, "payload": e.payload}
        for e in ctx.events
    ]


def test_twelve_events_are_three_requests(emulator):
    """Twelve events reach the service as requests of 5, 5 and 2, every one accepted."""
    result = publish("/chat/a", *[{"n": i} for i in range(12)])
    assert isinstance(result, PublishResult)
    assert result.ok
    assert [len(r.events) for r in emulator.published] == [5, 5, 2]
    assert {r.transport for r in emulator.published} == {"http"}
    assert emulator.published_to("/chat/a") == [{"n": i} for i in range(12)]
    # The identifiers the service gave are reported by the caller's indices.
    service_ids = [i for r in emulator.published for i in r.identifiers]
    assert [result.identifiers[i] for i in range(12)] == service_ids


def test_size_based_chunking_against_the_service(emulator):
    """Big events go in requests the service accepts (under 1.2 MB), fewer than five each."""
    events = ["x" * 230_000 for _ in range(7)]
    result = publish("/chat/big", *events)
    assert isinstance(result, PublishResult)
    assert result.ok
    sizes = [len(r.events) for r in emulator.published]
    assert sum(sizes) == 7
    assert max(sizes) <= 5
    assert sizes == [5, 2]  # 5 x 230 KB = 1.15 MB fits; the limit is the byte count


def test_quote_heavy_events_are_split_by_size(emulator):
    """Events that double in size when escaped are split so every request fits."""
    events = ['"' * 110_000 for _ in range(5)]
    result = publish("/chat/quotes", *events)
    assert isinstance(result, PublishResult)
    assert result.ok
    assert [len(r.events) for r in emulator.published] == [2, 2, 1]


def test_validation_errors_send_nothing(emulator):
    """Size and grammar errors are raised before any request reaches the service."""
    with pytest.raises(EventTooLargeError):
        publish("/chat/a", "ok", "x" * 240_001)
    with pytest.raises(InvalidChannelError):
        publish("/chat/*", "ok")
    with pytest.raises(InvalidChannelError):
        publish("/chat/bad_name", "ok")
    assert emulator.published == []


def test_refused_events_by_caller_index(emulator):
    """Events a handler refuses are reported failed by the caller's indices."""
    emulator.configure(handlers={"chat": NamespaceHandlers(on_publish=refuse_marked)})
    events = [{"n": i, "refuse": i in (2, 6, 10)} for i in range(12)]
    result = publish("/chat/a", *events)
    assert isinstance(result, PublishResult)
    assert [e.index for e in result.failed] == [2, 6, 10]
    assert all(e.message == "refused by handler" for e in result.failed)
    assert len(result.successful) == 9
    with pytest.raises(PublishError):
        result.raise_for_failures()
    assert [e["n"] for e in emulator.published_to("/chat/a")] == [
        i for i in range(12) if i not in (2, 6, 10)
    ]


def test_failure_part_way_says_what_was_accepted(emulator):
    """A publish refused on its third request raises PartialPublishError naming indices."""
    calls = []

    def third_fails(ctx):
        calls.append(ctx)
        if len(calls) == 3:
            from appsync_events.emulator import HandlerError

            raise HandlerError("stop here")
        return None

    emulator.configure(handlers={"chat": NamespaceHandlers(on_publish=third_fails)})
    with pytest.raises(PartialPublishError) as info:
        publish("/chat/a", *range(12))
    assert info.value.accepted == tuple(range(10))
    assert info.value.not_sent == (10, 11)
    assert info.value.status == 403
    assert len(emulator.published_to("/chat/a")) == 10


def test_wrong_api_key_is_a_publish_error(emulator, settings):
    """A key the service refuses raises PublishError with the service's error type."""
    settings.APPSYNC_EVENTS = {
        "default": {**settings.APPSYNC_EVENTS["default"], "AUTH": {"API_KEY": "da2-wrong"}}
    }
    with pytest.raises(PublishError) as info:
        publish("/chat/a", 1)
    assert info.value.error_types == ("UnauthorizedException",)
    assert "da2-wrong" not in str(info.value)


def test_unknown_namespace_is_refused(emulator, settings):
    """Publishing to a namespace the service lacks is refused by the service."""
    settings.APPSYNC_EVENTS = {
        "default": {**settings.APPSYNC_EVENTS["default"], "NAMESPACES": ["default", "chat", "x"]}
    }
    with pytest.raises(PublishError):
        publish("/x/a", 1)


async def test_apublish_against_the_service(emulator):
    """apublish() chunks over the async pool and the service accepts everything."""
    result = await apublish("/chat/async", *range(6))
    assert isinstance(result, PublishResult)
    assert result.ok
    assert [len(r.events) for r in emulator.published] == [5, 1]


@pytest.mark.django_db(transaction=True)
def test_on_commit_against_the_service(emulator):
    """Inside atomic() nothing reaches the service before the commit; rollback sends nothing."""
    with transaction.atomic():
        handle = publish("/chat/tx", "committed")
        assert isinstance(handle, DeferredPublish)
        assert emulator.published == []
    assert handle.state == "sent"
    assert emulator.published_to("/chat/tx") == ["committed"]

    def rolled_back() -> None:
        with transaction.atomic():
            publish("/chat/tx", "rolled back")
            raise RuntimeError

    with pytest.raises(RuntimeError):
        rolled_back()
    assert emulator.published_to("/chat/tx") == ["committed"]


def test_event_class_round_trip(emulator):
    """A declarative event published to the service parses back from what it delivered."""

    class Posted(Event):
        channel = "/chat/rooms/{room}"
        room: str
        text: str

    event = Posted(room="lobby", text="hi")
    event.publish()
    (record,) = emulator.published
    assert record.channel == "/chat/rooms/lobby"
    assert Posted.from_event(record.events[0]) == event


# -- manage.py appsync_publish ---------------------------------------------------------


def run_publish(*args: str) -> tuple[int, str]:
    """Run appsync_publish; return (exit status, stdout)."""
    out = io.StringIO()
    try:
        call_command("appsync_publish", *args, stdout=out)
    except CommandError as exc:
        return exc.returncode, out.getvalue()
    return 0, out.getvalue()


def test_command_publishes_and_prints_json(emulator):
    """Exit 0 when every event is accepted; the result is printed as JSON."""
    status, out = run_publish("/chat/cmd", '{"a": 1}', "2", '"three"')
    assert status == 0
    printed = json.loads(out)
    assert [e["index"] for e in printed["successful"]] == [0, 1, 2]
    assert printed["failed"] == []
    assert emulator.published_to("/chat/cmd") == [{"a": 1}, 2, "three"]


def test_command_via_http(emulator):
    """--via http uses the HTTP backend."""
    status, _ = run_publish("/chat/cmd", "1", "--via", "http")
    assert status == 0
    assert emulator.published[0].transport == "http"


def test_command_exit_1_when_events_fail(emulator):
    """Exit 1 when the service refuses some events; they are listed as failed."""
    emulator.configure(handlers={"chat": NamespaceHandlers(on_publish=refuse_marked)})
    status, out = run_publish("/chat/cmd", '{"refuse": true}', "1")
    assert status == 1
    printed = json.loads(out)
    assert [e["index"] for e in printed["failed"]] == [0]
    assert [e["index"] for e in printed["successful"]] == [1]


def test_command_exit_1_when_refused(emulator, settings):
    """Exit 1 when the whole publish is refused; every event is listed as failed."""
    settings.APPSYNC_EVENTS = {
        "default": {**settings.APPSYNC_EVENTS["default"], "AUTH": {"API_KEY": "da2-wrong"}}
    }
    status, out = run_publish("/chat/cmd", "1", "2")
    assert status == 1
    printed = json.loads(out)
    assert [e["index"] for e in printed["failed"]] == [0, 1]
    assert printed["failed"][0]["code"] == "UnauthorizedException"


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("/chat/*", "1"), "wildcard"),
        (("/chat/a", "{nope"), "not valid JSON"),
        (("/chat/a", json.dumps("x" * 240_001)), "at most 240000 bytes"),
        (("/chat/a", "1", "--api", "missing"), "no alias 'missing'"),
    ],
)
def test_command_exit_2_on_bad_input(emulator, args, reason):
    """Exit 2 with a one-line reason for bad input; nothing is sent."""
    with pytest.raises(CommandError) as info:
        call_command("appsync_publish", *args, stdout=io.StringIO())
    assert info.value.returncode == 2
    assert reason in str(info.value)
    assert "\n" not in str(info.value)
    assert emulator.published == []


def test_command_reads_json_lines_from_stdin_and_a_file(emulator, tmp_path, monkeypatch):
    """'-' reads JSON lines from standard input, --file from a file (blank lines skipped),
    after the arguments; indices follow that order."""
    from appsync_events.management.commands import appsync_publish

    monkeypatch.setattr(appsync_publish.Command, "stdin", io.StringIO('{"n": 1}\n\n"two"\n'))
    feed = tmp_path / "events.jsonl"
    feed.write_text('3\n{"n": 4}\n')
    status, out = run_publish("/chat/cmd", '"zero"', "-", "--file", str(feed))
    assert status == 0
    assert [e["index"] for e in json.loads(out)["successful"]] == [0, 1, 2, 3, 4]
    assert emulator.published_to("/chat/cmd") == ["zero", {"n": 1}, "two", 3, {"n": 4}]


@pytest.mark.parametrize(
    ("lines", "reason"),
    [
        ('{"ok": 1}\n{broken\n', "standard input line 2 is not valid JSON"),
        ("\n\n", "no event given"),
    ],
)
def test_command_refuses_bad_stdin_before_sending(emulator, monkeypatch, lines, reason):
    """A bad line (named by its number) or no event at all exits 2; nothing is sent."""
    from appsync_events.management.commands import appsync_publish

    monkeypatch.setattr(appsync_publish.Command, "stdin", io.StringIO(lines))
    with pytest.raises(CommandError) as info:
        call_command("appsync_publish", "/chat/cmd", "-", stdout=io.StringIO())
    assert info.value.returncode == 2
    assert reason in str(info.value)
    assert emulator.published == []


def test_command_names_a_missing_file(emulator, tmp_path):
    """--file that cannot be read exits 2 naming the file."""
    with pytest.raises(CommandError) as info:
        call_command(
            "appsync_publish",
            "/chat/cmd",
            "--file",
            str(tmp_path / "nope.jsonl"),
            stdout=io.StringIO(),
        )
    assert info.value.returncode == 2
    assert "nope.jsonl" in str(info.value)


class _CountingFinder:
    """A meta path finder that finds nothing and records every module looked up."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        self.names.append(name)


async def test_apublish_looks_up_no_module_per_request(emulator):
    """Once warm, an async publish imports nothing (httpcore finds sniffio already loaded)."""
    import sys

    await apublish("/chat/a", {"n": 0})  # warm-up: the pool, lazy imports
    finder = _CountingFinder()
    sys.meta_path.insert(0, finder)
    try:
        for n in range(3):
            result = await apublish("/chat/a", {"n": n})
            assert isinstance(result, PublishResult)
            assert result.ok
    finally:
        sys.meta_path.remove(finder)
    assert finder.names == []
