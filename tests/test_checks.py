"""Tests for appsync_events.checks: each system check called directly under override_settings."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import checks as django_checks
from django.test import override_settings

from appsync_events import checks

KEY = "da2-checkssecret00000000000000"
LOCAL = {"HTTP_URL": "http://127.0.0.1:8765/event", "REGION": "us-east-1", "AUTH": {"API_KEY": KEY}}
AWS = {
    "HTTP_URL": "https://abc.appsync-api.us-east-1.amazonaws.com/event",
    "AUTH": {"API_KEY": KEY},
}


def run(check: Any, setting: Any) -> list[django_checks.CheckMessage]:
    """Run one check function with APPSYNC_EVENTS set to ``setting``."""
    with override_settings(APPSYNC_EVENTS=setting):
        return list(check(None))


def ids(messages: list[django_checks.CheckMessage]) -> list[str]:
    """The check ids of ``messages``, in order."""
    return [m.id for m in messages if m.id]


ERRORS = [
    ("not-a-dict", ["default"], "*", "appsync_events.E001", "dict of aliases"),
    ("alias-not-a-dict", {"default": "x"}, "default", "appsync_events.E001", "must be a dict"),
    ("unknown-key", {"eu": {**LOCAL, "HOST": "x"}}, "eu", "appsync_events.E001", "'HOST'"),
    ("wrong-type", {"default": {**LOCAL, "AUTH": []}}, "default", "appsync_events.E001", "AUTH"),
    (
        "malformed-endpoint",
        {"default": {**LOCAL, "HTTP_URL": "https://x.example.com/graphql"}},
        "default",
        "appsync_events.E002",
        "HTTP_URL",
    ),
    (
        "malformed-realtime",
        {"default": {**LOCAL, "REALTIME_URL": "https://x/event/realtime"}},
        "default",
        "appsync_events.E002",
        "REALTIME_URL",
    ),
    (
        "missing-endpoint",
        {"default": {"AUTH": {"API_KEY": KEY}}},
        "default",
        "appsync_events.E002",
        "HTTP_URL",
    ),
    (
        "iam-on-a-custom-host-without-region",
        {"default": {"HTTP_URL": "https://api.example.com/event", "AUTH": {"AWS_IAM": True}}},
        "default",
        "appsync_events.E003",
        "REGION",
    ),
    (
        "unknown-auth-mode",
        {"default": {**LOCAL, "AUTH": {"APIKEY": KEY}}},
        "default",
        "appsync_events.E004",
        "'APIKEY'",
    ),
    (
        "unknown-connection-auth-mode",
        {"default": {**LOCAL, "CONNECTION_AUTH_MODE": "KEY"}},
        "default",
        "appsync_events.E004",
        "CONNECTION_AUTH_MODE",
    ),
    (
        "unknown-namespace-mode",
        {"default": {**LOCAL, "NAMESPACES": {"chat": {"PUBLISH_AUTH_MODES": ["IAM"]}}}},
        "default",
        "appsync_events.E004",
        "PUBLISH_AUTH_MODES",
    ),
    (
        "no-credentials",
        {"default": {**LOCAL, "AUTH": {}}},
        "default",
        "appsync_events.E005",
        "AUTH",
    ),
    (
        "namespace-mode-not-held",
        {"default": {**LOCAL, "NAMESPACES": {"chat": {"SUBSCRIBE_AUTH_MODES": ["AWS_IAM"]}}}},
        "default",
        "appsync_events.E005",
        "'chat'",
    ),
    (
        "connection-mode-not-held",
        {"default": {**LOCAL, "CONNECTION_AUTH_MODE": "AWS_LAMBDA"}},
        "default",
        "appsync_events.E005",
        "CONNECTION_AUTH_MODE",
    ),
    (
        "invalid-subscription",
        {"default": {**LOCAL, "SUBSCRIPTIONS": ["/chat//x"]}},
        "default",
        "appsync_events.E006",
        "SUBSCRIPTIONS",
    ),
    (
        "invalid-namespace-name",
        {"default": {**LOCAL, "NAMESPACES": ["chat_room"]}},
        "default",
        "appsync_events.E007",
        "'chat_room'",
    ),
    (
        "invalid-auth-options",
        {"default": {**LOCAL, "AUTH": {"AWS_IAM": "profile"}}},
        "default",
        "appsync_events.E008",
        "AWS_IAM",
    ),
    (
        "invalid-value",
        {"default": {**LOCAL, "TIMEOUTS": {"CONNECT": 0}}},
        "default",
        "appsync_events.E009",
        "CONNECT",
    ),
]


@pytest.mark.parametrize(
    ("setting", "alias", "check_id", "text"),
    [pytest.param(*row[1:], id=row[0]) for row in ERRORS],
)
def test_check_settings_errors(setting: Any, alias: str, check_id: str, text: str) -> None:
    """check_settings reports each mistake once, with its id, alias and key."""
    messages = run(checks.check_settings, setting)
    assert ids(messages) == [check_id]
    (error,) = messages
    assert isinstance(error, django_checks.Error)
    assert text in error.msg
    assert KEY not in error.msg
    if alias == "*":
        assert error.obj == "APPSYNC_EVENTS"
    else:
        assert error.obj == f"APPSYNC_EVENTS[{alias!r}]"
        assert f"APPSYNC_EVENTS[{alias!r}]" in error.msg
    assert error.hint


def test_check_settings_reports_every_bad_alias() -> None:
    """Each broken alias is reported; valid aliases add nothing."""
    setting = {
        "default": LOCAL,
        "eu": {**LOCAL, "REGION": "nowhere"},
        "us": {**LOCAL, "NAMESPACES": ["a_b"]},
    }
    messages = run(checks.check_settings, setting)
    assert ids(messages) == ["appsync_events.E003", "appsync_events.E007"]
    assert [m.obj for m in messages] == ["APPSYNC_EVENTS['eu']", "APPSYNC_EVENTS['us']"]


def test_check_settings_clean() -> None:
    """A valid setting (and the test settings) give no errors."""
    assert run(checks.check_settings, {"default": LOCAL, "aws": AWS}) == []
    assert checks.check_settings(None) == []


def test_check_settings_equals_the_expected_error() -> None:
    """The reported message compares equal to the documented checks.Error."""
    messages = run(checks.check_settings, {"default": {**LOCAL, "EXTRA": 1}})
    assert messages == [
        django_checks.Error(
            messages[0].msg,
            hint="See the configuration reference in docs/configuration.md.",
            obj="APPSYNC_EVENTS['default']",
            id="appsync_events.E001",
        )
    ]
    assert "'EXTRA'" in messages[0].msg


INSECURE = [
    ("remote-http", {"HTTP_URL": "http://api.example.com/event"}, ["HTTP_URL", "REALTIME_URL"]),
    ("remote-ip", {"HTTP_URL": "http://10.1.2.3:8765/event"}, ["HTTP_URL", "REALTIME_URL"]),
    (
        "remote-ws-only",
        {"HTTP_URL": "https://api.example.com/event", "REALTIME_URL": "ws://api.example.com/r"},
        ["REALTIME_URL"],
    ),
    ("loopback-ip", {"HTTP_URL": "http://127.0.0.1:8765/event"}, []),
    ("loopback-name", {"HTTP_URL": "http://localhost:8765/event"}, []),
    ("loopback-ipv6", {"HTTP_URL": "http://[::1]:8765/event"}, []),
    ("https", {"HTTP_URL": "https://api.example.com/event"}, []),
]


@pytest.mark.parametrize(
    ("overrides", "keys"), [pytest.param(*row[1:], id=row[0]) for row in INSECURE]
)
def test_check_insecure_endpoints(overrides: dict[str, Any], keys: list[str]) -> None:
    """W001 warns for plain http:// or ws:// to any host but this machine."""
    messages = run(checks.check_insecure_endpoints, {"default": {**LOCAL, **overrides}})
    assert ids(messages) == ["appsync_events.W001"] * len(keys)
    for message, key in zip(messages, keys, strict=True):
        assert isinstance(message, django_checks.Warning)
        assert f"APPSYNC_EVENTS['default'][{key!r}]" in message.msg


def test_check_insecure_endpoints_skips_broken_aliases() -> None:
    """An alias that does not parse is left to check_settings."""
    broken = {**LOCAL, "HTTP_URL": "http://api.example.com/event", "REGION": "bad"}
    assert run(checks.check_insecure_endpoints, {"default": broken}) == []


NAMESPACE_WARNINGS = [
    ("undeclared", {"NAMESPACES": ["chat"], "SUBSCRIPTIONS": ["/feed/*", "/chat/*"]}, ["/feed/*"]),
    ("declared", {"NAMESPACES": ["chat"], "SUBSCRIPTIONS": ["chat/a", "/chat/*"]}, []),
    ("default-namespace", {"SUBSCRIPTIONS": ["/default/x", "/other/y"]}, ["/other/y"]),
    ("no-namespaces", {"NAMESPACES": {}, "SUBSCRIPTIONS": ["/any/*"]}, []),
]


@pytest.mark.parametrize(
    ("overrides", "paths"), [pytest.param(*row[1:], id=row[0]) for row in NAMESPACE_WARNINGS]
)
def test_check_subscription_namespaces(overrides: dict[str, Any], paths: list[str]) -> None:
    """W002 warns for each subscription in a namespace the API does not declare."""
    messages = run(checks.check_subscription_namespaces, {"eu": {**LOCAL, **overrides}})
    assert ids(messages) == ["appsync_events.W002"] * len(paths)
    for message, path in zip(messages, paths, strict=True):
        assert repr(path) in message.msg
        assert "APPSYNC_EVENTS['eu']['SUBSCRIPTIONS']" in message.msg
        assert message.obj == "APPSYNC_EVENTS['eu']"


def test_check_subscription_namespaces_skips_broken_aliases() -> None:
    """An alias that does not parse gives no W002."""
    broken = {**LOCAL, "SUBSCRIPTIONS": ["/feed/*"], "AUTH": {}}
    assert run(checks.check_subscription_namespaces, {"default": broken}) == []


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ({"eu": LOCAL}, ["appsync_events.W003"]),
        ({}, ["appsync_events.W003"]),
        ({"default": LOCAL}, []),
        ({"default": LOCAL, "eu": LOCAL}, []),
        ("not-a-dict", []),
    ],
)
def test_check_default_alias(setting: Any, expected: list[str]) -> None:
    """W003 warns when no "default" alias exists (a non-dict setting is E001's job)."""
    messages = run(checks.check_default_alias, setting)
    assert ids(messages) == expected
    for message in messages:
        assert message.obj == "APPSYNC_EVENTS"
        assert '"default"' in message.msg


def test_non_dict_setting_is_reported_once() -> None:
    """A non-dict APPSYNC_EVENTS gives one E001 and nothing from the other checks."""
    every = [
        checks.check_settings,
        checks.check_insecure_endpoints,
        checks.check_subscription_namespaces,
        checks.check_default_alias,
    ]
    found = [m for check in every for m in run(check, 3)]
    assert ids(found) == ["appsync_events.E001"]


def test_checks_are_registered_with_the_tag() -> None:
    """register() (run by AppConfig.ready) registers every check under the app's tag."""
    registered: list[Any] = list(django_checks.registry.registry.get_checks())
    for check in (
        checks.check_settings,
        checks.check_insecure_endpoints,
        checks.check_subscription_namespaces,
        checks.check_default_alias,
    ):
        assert check in registered
        assert checks.TAG in vars(check)["tags"]


def test_run_checks_through_django() -> None:
    """Django's run_checks picks up our messages for the app's tag."""
    with override_settings(APPSYNC_EVENTS={"eu": {**LOCAL, "HTTP_URL": "http://h.example/event"}}):
        found = django_checks.run_checks(tags=[checks.TAG])
    # Other modules may register checks under the same tag; ours must be among them.
    assert ids(found).count("appsync_events.W001") == 2
    assert ids(found).count("appsync_events.W003") == 1


@pytest.mark.parametrize(
    "auth",
    [
        {"API_KEY": KEY},
        {"AMAZON_COGNITO_USER_POOLS": "cognito-token"},
        {"OPENID_CONNECT": "oidc-token"},
        {"AWS_LAMBDA": "lambda-token"},
    ],
)
def test_manage_py_check_needs_no_region_without_iam(auth: dict[str, Any]) -> None:
    """`manage.py check` passes an emulator alias without REGION in a non-IAM mode, and
    reports E003 once the alias also signs with AWS_IAM."""
    from io import StringIO

    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    local = {
        "HTTP_URL": "http://127.0.0.1:8765/event",
        "AUTH": auth,
        "FORWARDING": {"ENABLED": False},
    }
    out = StringIO()
    with override_settings(APPSYNC_EVENTS={"default": local}):
        call_command("check", tag=[checks.TAG], stdout=out, stderr=out)
    assert "System check identified no issues" in out.getvalue()
    with override_settings(APPSYNC_EVENTS={"default": {**local, "AUTH": {**auth, "AWS_IAM": {}}}}):
        with pytest.raises(SystemCheckError, match=r"appsync_events\.E003"):
            call_command("check", tag=[checks.TAG], stdout=out, stderr=out)


def _on_default_router(pattern: str, api: str | None = None) -> Any:
    """Register a handler on the default router; the caller removes it."""
    from appsync_events.dispatch import default_router

    def handler(event: Any) -> None:
        """A handler that only exists to be checked."""

    default_router.add(pattern, handler, api=api)
    return handler


@pytest.mark.parametrize(
    ("pattern", "api", "subscriptions", "hint"),
    [
        # Narrower than the subscription: its events arrive as /chat/*.
        ("/chat/rooms/*", None, ["/chat/*"], "Register it on /chat/*"),
        # In no subscription at all.
        ("/news/*", "default", ["/chat/*"], "Add /news/* (or a wildcard covering it)"),
        # A concrete channel inside a wildcard subscription.
        ("/chat/lobby", None, ["/chat/*"], "Register it on /chat/*"),
    ],
)
def test_check_handlers_warns_for_a_handler_no_subscription_delivers_to(
    pattern: str, api: str | None, subscriptions: list[str], hint: str
) -> None:
    """W011 names the handler, its pattern, the subscriptions and what to change."""
    from appsync_events.dispatch import default_router

    handler = _on_default_router(pattern, api)
    try:
        found = run(checks.check_handlers, {"default": {**LOCAL, "SUBSCRIPTIONS": subscriptions}})
    finally:
        default_router.remove(handler)
    (warning,) = [m for m in found if pattern in m.msg]
    assert warning.id == "appsync_events.W011"
    assert "never runs" in warning.msg
    assert subscriptions[0] in warning.msg
    assert warning.obj.endswith("handler")
    assert warning.hint is not None
    assert hint in warning.hint


@pytest.mark.parametrize(
    ("pattern", "api", "setting"),
    [
        # The pattern contains the subscription: it runs.
        ("/chat/*", None, {"default": {**LOCAL, "SUBSCRIPTIONS": ["/chat/rooms/*"]}}),
        ("/chat/rooms/*", None, {"default": {**LOCAL, "SUBSCRIPTIONS": ["/chat/rooms/*"]}}),
        # No SUBSCRIPTIONS: the listener gets --channel paths, unknown to the check.
        ("/news/*", None, {"default": LOCAL}),
        # A handler of all aliases that another alias delivers to.
        (
            "/news/*",
            None,
            {
                "default": {**LOCAL, "SUBSCRIPTIONS": ["/chat/*"]},
                "other": {**LOCAL, "SUBSCRIPTIONS": ["/news/*"]},
            },
        ),
        # A handler of another alias is not judged by this one's subscriptions.
        (
            "/news/*",
            "other",
            {"default": {**LOCAL, "SUBSCRIPTIONS": ["/chat/*"]}, "other": LOCAL},
        ),
    ],
)
def test_check_handlers_is_quiet_for_reachable_handlers(
    pattern: str, api: str | None, setting: dict[str, Any]
) -> None:
    """No W011 where some subscription can deliver to the handler, or where it is unknown."""
    from appsync_events.dispatch import default_router

    handler = _on_default_router(pattern, api)
    try:
        found = run(checks.check_handlers, setting)
    finally:
        default_router.remove(handler)
    assert [m for m in found if pattern in m.msg] == []


def test_check_handlers_is_registered() -> None:
    """check_handlers runs with manage.py check (the app's tag)."""
    registered: list[Any] = list(django_checks.registry.registry.get_checks())
    assert checks.check_handlers in registered
