"""The README's code snippets, executed, so the README stays true.

Each snippet lives here, in :data:`SNIPPETS`, and is executed by a test. In README.md a
snippet is a fenced ``python`` block preceded by the marker line
``<!-- snippet: NAME -->``; :func:`test_readme_blocks_match_the_tested_snippets` fails
when such a block differs from the snippet of that name, so an edit to one side without
the other is caught.

The getting-started path is also marked as steps (:mod:`tests.readme_steps`): the tests
here check that it is complete and that its page renders; the slow browser test
``tests/browser/test_readme_quickstart.py`` runs it on a fresh ``startproject``.
"""

from __future__ import annotations

import copy
import re
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import LazySettings
from django.core import checks as django_checks
from django.core.management import call_command
from django.test import Client, override_settings

from appsync_events import checks, conf
from appsync_events.backends import locmem
from appsync_events.config import APIConfig
from appsync_events.dispatch import default_router, simulate_event
from appsync_events.emulator import AppSyncEventsEmulator
from tests.readme_steps import README, read_steps

MARKER = re.compile(r"<!-- snippet: ([a-z0-9-]+) -->\s*\n```python\n(.*?)```", re.DOTALL)


def _snippet(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


SNIPPETS: dict[str, str] = {
    "settings": _snippet(
        """
        # django-appsync-events: the emulator's Event API, its events relayed to browsers
        INSTALLED_APPS += ["channels", "appsync_events"]
        TEMPLATES[0]["DIRS"] = [BASE_DIR / "templates"]  # for templates/room.html (step 5)

        # One process, no Redis: the in-memory layer reaches the pages of this process.
        CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

        APPSYNC_EVENTS = {
            "default": {
                "HTTP_URL": "http://127.0.0.1:8765/event",  # the local emulator (step 6)
                "AUTH": {"API_KEY": "da2-local"},  # any key: the emulator accepts the one set here
                "NAMESPACES": {"chat": {}},
                "SUBSCRIPTIONS": ["/chat/*"],  # what the listener subscribes to
                "FORWARDING": {"IN_PROCESS": True},  # the listener runs inside the ASGI server
                # Browsers may do only what is granted. "everyone": visitors who are not signed
                # in too (a grant without "WHO" covers signed-in users only).
                "GRANTS": [{"WHO": "everyone", "SUBSCRIBE": ["/chat/rooms/*"]}],
            },
        }
        """
    ),
    "settings-aws": _snippet(
        """
        # mysite/settings.py, on AWS: your Event API's endpoint, its key from the environment
        import os

        APPSYNC_EVENTS["default"]["HTTP_URL"] = (
            "https://abcdefghijklmnopqrstuvwxyz.appsync-api.eu-west-1.amazonaws.com/event"
        )
        APPSYNC_EVENTS["default"]["AUTH"] = {
            "API_KEY": os.environ.get("APPSYNC_EVENTS_API_KEY", ""),  # unset: `check` says so
        }
        """
    ),
    "urls": _snippet(
        """
        # mysite/urls.py
        from django.contrib import admin
        from django.urls import path
        from django.views.generic import TemplateView

        urlpatterns = [
            path("admin/", admin.site.urls),
            path("rooms/<channel_segment:room>/", TemplateView.as_view(template_name="room.html")),
        ]
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
        # mysite/asgi.py
        import os

        from django.core.asgi import get_asgi_application

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
        django_asgi_app = get_asgi_application()

        from channels.routing import ProtocolTypeRouter
        from django.conf import settings
        from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

        from appsync_events.asgi import AppSyncEventsLifespan
        from appsync_events.routing import websocket_application

        if settings.DEBUG:  # serve static files, as runserver does (in production: collectstatic)
            django_asgi_app = ASGIStaticFilesHandler(django_asgi_app)

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


def _new_project_settings(tmp_path: Path) -> dict[str, Any]:
    """Run ``startproject``'s settings.py with the README's addition; return its names."""
    call_command("startproject", "mysite", str(tmp_path))
    path = tmp_path / "mysite" / "settings.py"
    namespace: dict[str, Any] = {"__file__": str(path), "__name__": "mysite.settings"}
    exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), namespace)  # noqa: S102
    return _run("settings", namespace)


def test_settings_snippet_completes_a_new_project(tmp_path: Path) -> None:
    """Appended to startproject's settings, the snippet gives a valid alias on the emulator."""
    namespace = _new_project_settings(tmp_path)
    assert namespace["INSTALLED_APPS"][-2:] == ["channels", "appsync_events"]
    assert namespace["TEMPLATES"][0]["DIRS"] == [tmp_path / "templates"]
    with override_settings(
        APPSYNC_EVENTS=namespace["APPSYNC_EVENTS"], CHANNEL_LAYERS=namespace["CHANNEL_LAYERS"]
    ):
        config = conf.get_api_config()
        assert config.forwarding.in_process
        assert [c.path for c in config.listener.subscriptions] == ["/chat/*"]
        # `manage.py appsync_emulator` without --port serves where HTTP_URL points.
        assert urlsplit(config.http_url).port == config.emulator.port
        assert config.realtime_url == f"ws://127.0.0.1:{config.emulator.port}/event/realtime"
        errors = [
            m
            for m in django_checks.run_checks(tags=[checks.TAG])
            if m.level >= django_checks.WARNING
        ]
        assert errors == []


@pytest.mark.parametrize("key", ["da2-local", "anything-at-all"])
def test_the_emulator_accepts_whatever_key_the_settings_hold(tmp_path: Path, key: str) -> None:
    """The emulator built from the alias (as appsync_emulator does) accepts its API key."""
    namespace = _new_project_settings(tmp_path)
    namespace["APPSYNC_EVENTS"]["default"]["AUTH"] = {"API_KEY": key}
    config = APIConfig.from_mapping("default", namespace["APPSYNC_EVENTS"]["default"])
    assert AppSyncEventsEmulator(api=config).api_keys == (key,)


def test_aws_snippet_derives_the_endpoints_and_reports_a_missing_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On AWS the region comes from the host; an unset key is check E008, not a KeyError."""
    monkeypatch.delenv("APPSYNC_EVENTS_API_KEY", raising=False)
    project = _new_project_settings(tmp_path)
    namespace = _run("settings-aws", copy.deepcopy(project))
    with override_settings(APPSYNC_EVENTS=namespace["APPSYNC_EVENTS"]):
        config = conf.get_api_config()
        assert config.region == "eu-west-1"
        assert config.realtime_url == (
            "wss://abcdefghijklmnopqrstuvwxyz.appsync-realtime-api.eu-west-1.amazonaws.com"
            "/event/realtime"
        )
        ids = [m.id for m in django_checks.run_checks(tags=[checks.TAG])]
        assert "appsync_events.E008" in ids
    monkeypatch.setenv("APPSYNC_EVENTS_API_KEY", "da2-readme0000000000000000000000")
    namespace = _run("settings-aws", copy.deepcopy(project))
    key = namespace["APPSYNC_EVENTS"]["default"]["AUTH"]["API_KEY"]
    assert key == "da2-readme0000000000000000000000"


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


@pytest.mark.parametrize("debug", [True, False])
def test_asgi_snippet_builds_the_application(debug: bool) -> None:
    """The asgi.py snippet wraps the listener lifespan; it serves static files under DEBUG only."""
    from channels.routing import ProtocolTypeRouter
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    from appsync_events.asgi import AppSyncEventsLifespan

    with override_settings(DEBUG=debug):
        application = _run("asgi")["application"]
    assert isinstance(application, AppSyncEventsLifespan)
    assert isinstance(application.app, ProtocolTypeRouter)
    http = application.app.application_mapping["http"]
    assert isinstance(http, ASGIStaticFilesHandler) is debug


def test_quickstart_steps_are_complete() -> None:
    """The README's steps start a project, configure, migrate, serve, open, publish and see it."""
    steps = read_steps()
    kinds = [s.kind for s in steps]
    assert kinds == [
        "shell",
        "append",
        "shell",
        "write",
        "write",
        "write",
        "serve",
        "serve",
        "open",
        "expect",
        "shell",
        "expect",
    ]
    commands = [c for s in steps if s.kind in {"shell", "serve"} for c in s.commands()]
    assert any(c.startswith("django-admin startproject mysite") for c in commands)
    assert "python manage.py migrate" in commands
    assert any("appsync_emulator" in c for c in commands)
    assert any(c.startswith("uvicorn mysite.asgi:application") for c in commands)
    assert not any("runserver" in c for c in commands)
    assert any("appsync_publish /chat/rooms/lobby" in c for c in commands)
    files = {s.argument: s.body for s in steps if s.kind in {"append", "write"}}
    assert files["mysite/settings.py"] == SNIPPETS["settings"]
    assert files["mysite/asgi.py"] == SNIPPETS["asgi"]
    assert files["mysite/urls.py"] == SNIPPETS["urls"]


def test_quickstart_page_renders_the_client_for_its_room(
    client: Client, settings: LazySettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's urls.py and template serve a room page loading the client; bad rooms 404."""
    (template,) = [s for s in read_steps() if s.argument == "templates/room.html"]
    (tmp_path / "room.html").write_text(template.body, encoding="utf-8")
    urls = types.ModuleType("readme_urls")
    urls.urlpatterns = _run("urls")["urlpatterns"]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "readme_urls", urls)
    settings.ROOT_URLCONF = "readme_urls"
    settings.TEMPLATES = [
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "DIRS": [tmp_path],
            "APP_DIRS": True,
        }
    ]
    page = client.get("/rooms/lobby/").content.decode()
    assert '<script src="/static/appsync_events/appsync-events.js"></script>' in page
    assert 'const channel = "/chat/rooms/lobby";' in page
    assert client.get("/rooms/my_room/").status_code == 404
