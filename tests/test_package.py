"""Tests for the package surface: lazy exports, import side effects, results and events."""

from __future__ import annotations

import dataclasses
import importlib
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

import appsync_events
from appsync_events.events import ReceivedEvent
from appsync_events.exceptions import PublishError
from appsync_events.protocol import FailedEvent, PublishSuccess, SuccessfulEvent
from appsync_events.results import PublishResult

ROOT = Path(__file__).resolve().parent.parent

# Run in a fresh interpreter: report which heavy modules ``import appsync_events`` loaded.
_PROBE = """
import json, sys
import appsync_events
watched = ["django.db", "django.db.models", "django.apps", "django.conf",
           "appsync_events.models", "appsync_events.conf", "appsync_events.checks"]
print(json.dumps({name: name in sys.modules for name in watched}))
"""


def test_import_has_no_django_side_effects() -> None:
    """``import appsync_events`` in a fresh process imports no models, settings or registry."""
    result = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    loaded = json.loads(result.stdout)
    assert loaded == dict.fromkeys(loaded, False)


def test_all_and_lazy_table_agree() -> None:
    """Every lazy name is in __all__, and __all__ holds only lazy names and __version__."""
    assert set(appsync_events.__all__) == set(appsync_events._LAZY) | {"__version__"}
    assert sorted(appsync_events.__all__) == appsync_events.__all__
    assert dir(appsync_events) == sorted(appsync_events.__all__)


@pytest.mark.parametrize("name", sorted(appsync_events._LAZY))
def test_lazy_names_resolve(name: str) -> None:
    """Each lazy name resolves to the object defined in its module."""
    module = importlib.import_module(appsync_events._LAZY[name])
    assert getattr(appsync_events, name) is getattr(module, name)
    assert name in vars(appsync_events)  # cached after first access


def test_unknown_attribute_raises_attribute_error() -> None:
    """An unknown name raises AttributeError naming it (so hasattr works)."""
    with pytest.raises(AttributeError, match="'no_such_name'"):
        appsync_events.no_such_name  # noqa: B018
    assert not hasattr(appsync_events, "Client_")


def test_version_and_py_typed() -> None:
    """The package has a version string and ships its py.typed marker."""
    assert isinstance(appsync_events.__version__, str)
    assert appsync_events.__version__
    assert (Path(appsync_events.__file__).parent / "py.typed").is_file()


def test_star_import() -> None:
    """``from appsync_events import *`` binds every public name."""
    namespace: dict[str, object] = {}
    exec("from appsync_events import *", namespace)  # noqa: S102 - fixed text
    assert set(appsync_events.__all__) <= set(namespace)


# -- PublishResult --------------------------------------------------------------------------


def test_from_message_maps_chunk_positions_to_caller_indices() -> None:
    """from_message rewrites each chunk index to the caller's index."""
    message = PublishSuccess(
        "p",
        (SuccessfulEvent("id-a", 0), SuccessfulEvent("id-c", 2)),
        (FailedEvent("id-b", 1, "InvalidEvent", "bad"),),
    )
    result = PublishResult.from_message(message, api="eu", channel="/a/b", indices=range(5, 8))
    assert result == PublishResult(
        "eu",
        "/a/b",
        (SuccessfulEvent("id-a", 5), SuccessfulEvent("id-c", 7)),
        (FailedEvent("id-b", 6, "InvalidEvent", "bad"),),
    )
    assert result.identifiers == {5: "id-a", 7: "id-c"}
    assert not result.ok


def test_from_message_keeps_out_of_range_indices() -> None:
    """An index outside the chunk is kept as sent rather than guessed."""
    message = PublishSuccess("p", (SuccessfulEvent("x", 4), SuccessfulEvent("y", -1)))
    result = PublishResult.from_message(message, api="a", channel="/c", indices=iter([10]))
    assert [e.index for e in result.successful] == [4, -1]


def test_merge_orders_by_caller_index() -> None:
    """merge combines chunk results of one publish, sorted by caller index."""
    first = PublishResult(
        "a", "/c", (SuccessfulEvent("s5", 5), SuccessfulEvent("s0", 0)), (FailedEvent(None, 3),)
    )
    second = PublishResult("a", "/c", (SuccessfulEvent("s2", 2),), (FailedEvent("f1", 1),))
    merged = first.merge(second)
    assert [e.index for e in merged.successful] == [0, 2, 5]
    assert [e.index for e in merged.failed] == [1, 3]
    assert (merged.api, merged.channel) == ("a", "/c")


def test_raise_for_failures() -> None:
    """raise_for_failures returns self when all succeeded, else raises with the details."""
    ok = PublishResult("a", "/c", (SuccessfulEvent("s", 0),))
    assert ok.ok
    assert ok.raise_for_failures() is ok
    bad = PublishResult(
        "a",
        "/c",
        (SuccessfulEvent("s", 0),),
        (FailedEvent("f", 1, "InvalidEvent", "too big"), FailedEvent(None, 2)),
    )
    with pytest.raises(PublishError) as info:
        bad.raise_for_failures()
    error = info.value
    assert (error.api, error.channel) == ("a", "/c")
    assert error.error_types == ("InvalidEvent", "Failed")
    assert "2 of 3 events were refused (indices [1, 2])" in str(error)
    assert "InvalidEvent: too big" in str(error)


def test_publish_result_is_frozen() -> None:
    """A PublishResult cannot be changed after it is made."""
    result = PublishResult("a", "/c")
    assert result.ok
    assert result.identifiers == {}
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.api = "b"  # type: ignore[misc]


# -- ReceivedEvent --------------------------------------------------------------------------


def test_received_event_basics() -> None:
    """ReceivedEvent holds what arrived, stamps a UTC time, and is frozen."""
    before = datetime.now(UTC)
    event = ReceivedEvent("default", "/chat/*", {"a": 1}, '{"a":1}', "sub-1")
    assert before <= event.received_at <= datetime.now(UTC)
    assert event.received_at.tzinfo is UTC
    assert (event.api, event.subscription, event.payload, event.raw, event.subscription_id) == (
        "default",
        "/chat/*",
        {"a": 1},
        '{"a":1}',
        "sub-1",
    )
    assert ReceivedEvent("a", "/b", None, "null").subscription_id == ""
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.payload = {}  # type: ignore[misc]
