"""The README's code snippets, executed, so the README stays true.

Each snippet lives here, in :data:`SNIPPETS`, and is executed by a test. In README.md a
snippet is a fenced ``python`` block preceded by the marker line
``<!-- snippet: NAME -->``; :func:`test_readme_blocks_match_the_tested_snippets` fails
when such a block differs from the snippet of that name, so an edit to one side without
the other is caught.
"""

from __future__ import annotations

import copy
import re
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import LazySettings
from django.test import override_settings

from appsync_events import conf
from appsync_events.backends import locmem
from appsync_events.dispatch import default_router, simulate_event
from tests.browser.demo_process import REPO

README = REPO / "README.md"
MARKER = re.compile(r"<!-- snippet: ([a-z0-9-]+) -->\s*\n```python\n(.*?)```", re.DOTALL)


def _snippet(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


SNIPPETS: dict[str, str] = {
    "settings": _snippet(
        """
        import os

        INSTALLED_APPS = [
            # ... your apps ...
            "channels",
            "appsync_events",
        ]

        APPSYNC_EVENTS = {
            "default": {
                "HTTP_URL": "https://abcdefghijklmnopqrstuvwxyz.appsync-api.eu-west-1.amazonaws.com/event",
                "AUTH": {"API_KEY": os.environ["APPSYNC_EVENTS_API_KEY"]},
                "NAMESPACES": {"chat": {}},
                "SUBSCRIPTIONS": ["/chat/*"],
            },
        }
        """
    ),
    "publish": _snippet(
        """
        from appsync_events import publish

        result = publish("/chat/rooms/lobby", {"author": "ada", "text": "hello"})
        """
    ),
    "event-class": _snippet(
        """
        from django.db import transaction

        import appsync_events


        class MessagePosted(appsync_events.Event):
            channel = "/chat/rooms/{room}"

            room: str
            author: str
            text: str


        def post_message(room: str, author: str, text: str) -> None:
            with transaction.atomic():
                # ... save the message ...
                MessagePosted(room=room, author=author, text=text).publish()  # after the commit
        """
    ),
    "react": _snippet(
        """
        # myapp/appsync_handlers.py, imported when Django starts (like admin.py)
        import appsync_events


        @appsync_events.on("/chat/*")
        def print_message(event):
            # AppSync names the subscription (/chat/*), never the concrete channel:
            # the room comes from the payload, where the event class put it.
            message = event.payload
            print(f"{message['author']} in {message['room']}: {message['text']}")
        """
    ),
    "asgi": _snippet(
        """
        # asgi.py
        import os

        from django.core.asgi import get_asgi_application

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
        django_asgi_app = get_asgi_application()

        from channels.routing import ProtocolTypeRouter

        from appsync_events.asgi import AppSyncEventsLifespan
        from appsync_events.routing import websocket_application

        application = AppSyncEventsLifespan(
            ProtocolTypeRouter({"http": django_asgi_app, "websocket": websocket_application()})
        )
        """
    ),
    "test-settings": _snippet(
        """
        # settings used by your tests: nothing leaves the process
        APPSYNC_EVENTS["default"]["PUBLISH"] = {"BACKEND": "locmem"}
        """
    ),
    "test-publish": _snippet(
        """
        from appsync_events.backends import locmem


        def test_posting_announces_the_message(django_capture_on_commit_callbacks):
            with django_capture_on_commit_callbacks(execute=True):
                post_message("lobby", "ada", "hi")
            (event,) = locmem.published_events("/chat/rooms/lobby")
            assert event["text"] == "hi"
            assert event["event_type"] == "MessagePosted"
        """
    ),
    "test-react": _snippet(
        """
        import pytest

        from appsync_events.dispatch import simulate_event


        @pytest.mark.django_db  # sync handlers run with Django's database connection handling
        def test_handler_prints_the_message(capsys):
            simulate_event("/chat/rooms/lobby", {"room": "lobby", "author": "ada", "text": "hi"})
            assert capsys.readouterr().out == "ada in lobby: hi\\n"
        """
    ),
    "test-emulator": _snippet(
        """
        from appsync_events import publish


        def test_publish_reaches_the_service(appsync_events_emulator):
            publish("/chat/rooms/lobby", {"text": "hi"})
            assert appsync_events_emulator.published_to("/chat/rooms/lobby") == [{"text": "hi"}]
        """
    ),
}


def _run(name: str, namespace: dict[str, Any] | None = None) -> dict[str, Any]:
    namespace = {} if namespace is None else namespace
    exec(compile(SNIPPETS[name], f"<README snippet {name}>", "exec"), namespace)  # noqa: S102
    return namespace


@pytest.fixture(autouse=True)
def _locmem_publishing(settings: LazySettings) -> Iterator[None]:
    """Run the publishing snippets on the in-memory backend, as the test snippet advises."""
    value = copy.deepcopy(settings.APPSYNC_EVENTS)
    _run("test-settings", {"APPSYNC_EVENTS": value})
    settings.APPSYNC_EVENTS = value
    locmem.clear()
    yield
    locmem.clear()


def test_readme_blocks_match_the_tested_snippets() -> None:
    """Every marked python block of README.md is one of these snippets, verbatim."""
    blocks = MARKER.findall(README.read_text(encoding="utf-8")) if README.exists() else []
    if not blocks:
        pytest.skip("README.md has no <!-- snippet: NAME --> blocks yet")
    for name, code in blocks:
        assert name in SNIPPETS, f"README.md marks an unknown snippet {name!r}"
        assert code == SNIPPETS[name], f"README.md's snippet {name!r} differs from the tested one"


def test_every_python_block_of_the_readme_is_a_tested_snippet() -> None:
    """No python block in README.md escapes the snippet tests (each has a marker)."""
    text = README.read_text(encoding="utf-8")
    python_blocks = text.count("```python\n")
    assert python_blocks == len(MARKER.findall(text))


def test_emulator_snippet_passes(appsync_events_emulator: Any, settings: LazySettings) -> None:
    """The README's emulator test passes: the event really reaches the emulator."""
    value = copy.deepcopy(settings.APPSYNC_EVENTS)
    value["default"].pop("PUBLISH", None)  # this module's autouse fixture chose locmem
    settings.APPSYNC_EVENTS = value
    namespace = _run("test-emulator")
    namespace["test_publish_reaches_the_service"](appsync_events_emulator)
    assert locmem.published_events("/chat/rooms/lobby") == []


def test_settings_snippet_configures_an_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings snippet parses: endpoints derived, region read from the host."""
    monkeypatch.setenv("APPSYNC_EVENTS_API_KEY", "da2-readme0000000000000000000000")
    namespace = _run("settings")
    assert namespace["INSTALLED_APPS"][-2:] == ["channels", "appsync_events"]
    with override_settings(APPSYNC_EVENTS=namespace["APPSYNC_EVENTS"]):
        config = conf.get_api_config()
        assert config.region == "eu-west-1"
        assert config.realtime_url == (
            "wss://abcdefghijklmnopqrstuvwxyz.appsync-realtime-api.eu-west-1.amazonaws.com"
            "/event/realtime"
        )
        assert [c.path for c in config.listener.subscriptions] == ["/chat/*"]
        assert list(config.namespaces) == ["chat"]


def test_publish_snippet_publishes_one_event() -> None:
    """publish() outside a transaction sends at once and returns the service's answer."""
    namespace = _run("publish")
    assert namespace["result"].ok
    assert locmem.published_events("/chat/rooms/lobby") == [{"author": "ada", "text": "hello"}]


@pytest.mark.django_db
def test_event_class_snippet_publishes_after_the_commit(
    django_capture_on_commit_callbacks: Any,
) -> None:
    """The declarative event waits for the commit, then carries its fields and type."""
    namespace = _run("event-class")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        namespace["post_message"]("lobby", "ada", "hi")
    locmem.assert_nothing_published()
    assert len(callbacks) == 1
    callbacks[0]()
    (event,) = locmem.published_events("/chat/rooms/lobby")
    assert {k: event[k] for k in ("event_type", "room", "author", "text")} == {
        "event_type": "MessagePosted",
        "room": "lobby",
        "author": "ada",
        "text": "hi",
    }


@pytest.mark.django_db
def test_testing_snippet_passes(django_capture_on_commit_callbacks: Any) -> None:
    """The README's example test passes against the README's example code."""
    namespace = _run("event-class")
    _run("test-publish", namespace)
    namespace["test_posting_announces_the_message"](django_capture_on_commit_callbacks)


@pytest.mark.django_db
def test_react_snippets_register_a_handler_and_test_it(
    capsys: pytest.CaptureFixture[str], settings: LazySettings
) -> None:
    """With the README's SUBSCRIPTIONS, the handler runs for a room's event; its test passes."""
    value = copy.deepcopy(settings.APPSYNC_EVENTS)
    value["default"]["SUBSCRIPTIONS"] = ["/chat/*"]  # as in the README's settings snippet
    settings.APPSYNC_EVENTS = value
    namespace = _run("react")
    handler = namespace["print_message"]
    try:
        assert default_router.handlers_for("default", "/chat/*")
        _run("test-react", namespace)
        namespace["test_handler_prints_the_message"](capsys)
        # A channel no subscription receives is an error, not a silent no-op.
        with pytest.raises(LookupError, match="/news/today"):
            simulate_event("/news/today", {"room": "x", "author": "y", "text": "z"})
        # A subscription the handler's pattern does not contain does not run it.
        simulate_event("/news/today", {"room": "x"}, subscriptions=["/news/*"])
        assert capsys.readouterr().out == ""
    finally:
        default_router.remove(handler)


def test_asgi_snippet_builds_the_application() -> None:
    """The asgi.py snippet builds an ASGI application with the listener lifespan."""
    from appsync_events.asgi import AppSyncEventsLifespan

    namespace = _run("asgi")
    assert isinstance(namespace["application"], AppSyncEventsLifespan)
