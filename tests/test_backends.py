"""Every publishing backend: selection, locmem helpers, console, dummy, websocket."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

from appsync_events import apublish, publish
from appsync_events.backends import BaseBackend, close_backends, get_backend, locmem
from appsync_events.backends.appsync import AppSyncBackend
from appsync_events.backends.console import ConsoleBackend
from appsync_events.backends.dummy import DummyBackend
from appsync_events.backends.locmem import LocMemBackend
from appsync_events.backends.websocket import RateLimiter, WebSocketBackend
from appsync_events.conf import get_api_config
from appsync_events.emulator import AppSyncEventsEmulator
from appsync_events.exceptions import ConfigurationError
from appsync_events.results import PublishResult
from appsync_events.testing.helpers import emulator_settings, start_emulator

BASE: dict[str, Any] = {
    "HTTP_URL": "http://127.0.0.1:9/event",
    "REGION": "us-east-1",
    "AUTH": {"API_KEY": "da2-tests00000000000000000000000"},
    "NAMESPACES": {"default": {}, "chat": {}},
}


def use(settings, backend: str, **options: Any) -> None:
    """Select ``backend`` for the default alias."""
    settings.APPSYNC_EVENTS = {
        "default": {**BASE, "PUBLISH": {"BACKEND": backend, "OPTIONS": options}}
    }


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("appsync", AppSyncBackend),
        ("websocket", WebSocketBackend),
        ("locmem", LocMemBackend),
        ("console", ConsoleBackend),
        ("dummy", DummyBackend),
    ],
)
def test_short_names(settings, name, cls):
    """Each short name selects its built-in backend, shared per alias."""
    use(settings, name)
    backend = get_backend("default")
    assert type(backend) is cls
    assert get_backend("default") is backend
    assert repr(backend) == f"<{cls.__name__} api='default'>"
    close_backends()


def test_dotted_path_and_errors(settings):
    """A dotted path works; unimportable paths and non-backends are configuration errors."""
    use(settings, "appsync_events.backends.dummy.DummyBackend")
    assert isinstance(get_backend(), DummyBackend)
    use(settings, "appsync_events.backends.nope.Nope")
    with pytest.raises(ConfigurationError, match="cannot be imported"):
        get_backend()
    use(settings, "appsync_events.results.PublishResult")
    with pytest.raises(ConfigurationError, match=r"not an appsync_events\.backends\.BaseBackend"):
        get_backend()


def test_settings_change_replaces_backends(settings):
    """Changing APPSYNC_EVENTS closes and replaces the shared backend."""
    use(settings, "dummy")
    first = get_backend()
    use(settings, "dummy")
    assert get_backend() is not first


def test_base_backend_is_abstract(settings):
    """The base class requires send_chunk."""
    use(settings, "dummy")
    with pytest.raises(NotImplementedError):
        BaseBackend(get_api_config()).send("/chat/a", ["1"])


def test_dummy_accepts_everything(settings):
    """dummy reports every event accepted and sends nothing."""
    use(settings, "dummy")
    result = publish("/chat/a", *range(6))
    assert isinstance(result, PublishResult)
    assert sorted(result.identifiers) == list(range(6))


def test_console_writes_one_line_per_request(settings):
    """console prints one JSON line per request and accepts the events."""
    stream = io.StringIO()
    use(settings, "console", STREAM=stream)
    result = publish("/chat/a", *range(7))
    assert isinstance(result, PublishResult)
    assert result.ok
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines == [
        {"api": "default", "channel": "/chat/a", "events": [0, 1, 2, 3, 4]},
        {"api": "default", "channel": "/chat/a", "events": [5, 6]},
    ]


def test_console_defaults_to_stdout(settings, capsys):
    """Without a stream, console writes to the current stdout."""
    use(settings, "console")
    publish("/chat/a", {"x": 1})
    assert json.loads(capsys.readouterr().out)["events"] == [{"x": 1}]


def test_locmem_helpers(settings):
    """assert_published, published_events and clear behave like mail.outbox helpers."""
    use(settings, "locmem")
    locmem.clear()
    publish("chat/a", {"x": 1}, {"x": 2})
    publish("/chat/b", "b")
    locmem.assert_published("/chat/a", {"x": 1})
    locmem.assert_published("chat/a", count=2)
    locmem.assert_published("/chat/b", "b", api="default")
    assert locmem.published_events() == [{"x": 1}, {"x": 2}, "b"]
    with pytest.raises(AssertionError, match="Expected event"):
        locmem.assert_published("/chat/a", {"x": 3})
    with pytest.raises(AssertionError, match="exactly 1 time"):
        locmem.assert_published("/chat/a", count=1)
    with pytest.raises(AssertionError, match="Expected nothing published"):
        locmem.assert_nothing_published()
    locmem.clear()
    locmem.assert_nothing_published()


def test_locmem_reject_option_must_be_callable(settings):
    """A non-callable REJECT option is a configuration error."""
    use(settings, "locmem", REJECT=42)
    with pytest.raises(ConfigurationError, match="REJECT"):
        get_backend()


# -- the rate limiter --------------------------------------------------------------------


class FakeClock:
    """A clock advanced by the patched asyncio.sleep, so tests never really wait."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_rate_limiter_allows_25_per_second(monkeypatch):
    """The 26th request within a second waits until the first leaves the window."""
    clock = FakeClock()
    monkeypatch.setattr(asyncio, "sleep", clock.sleep)
    limiter = RateLimiter(25, 1.0, clock=clock)
    for _ in range(25):
        await limiter.acquire()
    assert clock.slept == []
    clock.now += 0.4
    await limiter.acquire()
    assert clock.slept == [pytest.approx(0.6)]
    # At 101.0 the first 25 have left the window: 24 more fit, the 25th waits a second.
    for _ in range(24):
        await limiter.acquire()
    assert len(clock.slept) == 1
    assert limiter.delay() == pytest.approx(1.0)


def test_rate_limiter_validates():
    """A zero rate is refused."""
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(0)


def test_websocket_rate_option_validated(settings):
    """The websocket backend refuses a non-positive rate."""
    use(settings, "websocket", RATE=0)
    with pytest.raises(ValueError, match="rate"):
        get_backend()


# -- the websocket backend against the emulator -------------------------------------------


@pytest.fixture(scope="module")
def emulator() -> Iterator[AppSyncEventsEmulator]:
    """An emulator for the websocket backend tests."""
    emu = start_emulator("default")
    yield emu
    emu.stop()


@pytest.fixture
def ws_api(emulator, settings):
    """Point the default alias at the emulator with the websocket backend."""
    emulator.reset()
    value = emulator_settings(emulator, base={"default": BASE})
    value["default"]["PUBLISH"] = {"BACKEND": "websocket"}
    settings.APPSYNC_EVENTS = value
    yield emulator
    close_backends()


def test_websocket_backend_publishes_over_one_connection(ws_api):
    """Sync publishes go over one websocket connection, chunked 5 + 5 + 2."""
    result = publish("/chat/ws", *range(12))
    assert isinstance(result, PublishResult)
    assert result.ok
    assert [len(r.events) for r in ws_api.published] == [5, 5, 2]
    assert {r.transport for r in ws_api.published} == {"websocket"}
    assert len({r.connection_id for r in ws_api.published}) == 1
    publish("/chat/ws", "again")
    assert len({r.connection_id for r in ws_api.published}) == 1
    assert ws_api.published_to("/chat/ws") == [*range(12), "again"]


async def test_websocket_backend_async(ws_api):
    """apublish() through the websocket backend works from another event loop."""
    result = await apublish("/chat/ws", {"a": 1}, {"a": 2})
    assert isinstance(result, PublishResult)
    assert result.ok
    assert ws_api.published_to("/chat/ws") == [{"a": 1}, {"a": 2}]
    await get_backend().aclose()


def test_websocket_backend_failure(ws_api, settings):
    """A refused websocket publish raises PublishError with the service's error type."""
    from appsync_events.exceptions import PublishError

    value = dict(settings.APPSYNC_EVENTS)
    value["default"] = {**value["default"], "NAMESPACES": ["default", "chat", "nosuch"]}
    settings.APPSYNC_EVENTS = value
    with pytest.raises(PublishError) as info:
        publish("/nosuch/a", 1)
    assert "UnauthorizedException" in info.value.error_types


def test_publish_command_via_ws(ws_api):
    """manage.py appsync_publish --via ws publishes over the websocket."""
    from django.core.management import call_command

    out = io.StringIO()
    call_command("appsync_publish", "/chat/cmd", '{"via": "ws"}', "--via", "ws", stdout=out)
    assert [e["index"] for e in json.loads(out.getvalue())["successful"]] == [0]
    assert [r.transport for r in ws_api.published] == ["websocket"]
    close_backends()


def test_system_check_reports_bad_publishing_settings(settings):
    """check_publishing reports an unloadable backend, bad options and a bad encoder (E009)."""
    from appsync_events.checks import check_publishing

    use(settings, "dummy")
    assert check_publishing() == []
    use(settings, "appsync_events.backends.nope.Nope")
    (error,) = check_publishing()
    assert error.id == "appsync_events.E009"
    assert "cannot be imported" in error.msg
    use(settings, "websocket", RATE=0)
    (error,) = check_publishing()
    assert "rate" in error.msg
    settings.APPSYNC_EVENTS = {"default": {**BASE, "PUBLISH": {"ENCODER": "json.JSONDecoder"}}}
    (error,) = check_publishing()
    assert "not a json.JSONEncoder subclass" in error.msg


# -- IAM and HTML characters: the websocket backend falls back to HTTP ------------------

IAM_AKID = "AKIDWSFALLBACK000000"
IAM_SECRET = "wsfallback/secret/key/for/tests/only000000"


@pytest.fixture
def iam_ws_api(settings, monkeypatch) -> Iterator[AppSyncEventsEmulator]:
    """An emulator verifying SigV4 as the service does, and an IAM alias publishing over ws."""
    emulator = AppSyncEventsEmulator(
        namespaces={"iam": {"PUBLISH_AUTH_MODES": ["AWS_IAM"]}, "default": {}},
        iam_credentials={IAM_AKID: IAM_SECRET},
    ).start()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", IAM_AKID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", IAM_SECRET)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    settings.APPSYNC_EVENTS = {
        "default": {
            "HTTP_URL": emulator.http_url,
            "REGION": emulator.region,
            "AUTH": {"API_KEY": emulator.api_key, "AWS_IAM": {}},
            "CONNECTION_AUTH_MODE": "API_KEY",
            "NAMESPACES": {"iam": {"PUBLISH_AUTH_MODES": ["AWS_IAM"]}, "default": {}},
            "PUBLISH": {"BACKEND": "websocket"},
        }
    }
    try:
        yield emulator
    finally:
        close_backends()
        emulator.stop()


def test_websocket_backend_sends_html_characters_over_http_with_iam(iam_ws_api):
    """IAM chunks with <, > or & go over HTTP (the service refuses them over ws); others over ws."""
    assert publish("/iam/room", {"html": "<b>bold</b> & more"}).ok
    assert publish("/iam/room", {"text": "plain"}).ok
    assert [r.transport for r in iam_ws_api.published] == ["http", "websocket"]
    assert iam_ws_api.published_to("/iam/room") == [
        {"html": "<b>bold</b> & more"},
        {"text": "plain"},
    ]


async def test_websocket_backend_html_fallback_async(iam_ws_api):
    """apublish() takes the same HTTP fallback for IAM events with HTML characters."""
    result = await apublish("/iam/room", "<script>")
    assert result.ok
    assert [r.transport for r in iam_ws_api.published] == ["http"]
    await get_backend().aclose()
