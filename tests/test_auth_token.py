"""Token auth (Cognito, OIDC, Lambda): sources, per-call callables, caching and errors."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest

from appsync_events.auth import (
    aconnect_headers,
    ahttp_headers,
    aoperation_headers,
    connect_headers,
    get_auth_backend,
    http_headers,
    operation_headers,
)
from appsync_events.auth.token import CognitoAuth, LambdaAuth, OIDCAuth, Token
from appsync_events.conf import get_api_config
from appsync_events.exceptions import ConfigurationError, TokenSourceError

HOST = "example1234567890000.appsync-api.us-east-1.amazonaws.com"
TOKEN_MODES = ["AMAZON_COGNITO_USER_POOLS", "OPENID_CONNECT", "AWS_LAMBDA"]


def use_token(settings: Any, mode: str, value: Any) -> None:
    """Configure the default alias with one token mode."""
    settings.APPSYNC_EVENTS = {
        "default": {"HTTP_URL": f"https://{HOST}/event", "AUTH": {mode: value}}
    }


class Recorder:
    """A sync token callable that records each call and returns a numbered token."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.threads: list[int] = []

    def __call__(self, **context: Any) -> str:
        self.calls.append(context)
        self.threads.append(threading.get_ident())
        return f"token-number-{len(self.calls)}"


class AsyncRecorder:
    """An async token callable that records each call."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def __call__(self, **context: Any) -> str:
        await asyncio.sleep(0)
        self.calls.append(context)
        return f"async-token-{len(self.calls)}"


def no_arguments() -> str:
    """A token callable that takes no parameters (dotted-path target)."""
    return "plain-token-value"


def exploding(**context: Any) -> str:
    """A token callable that fails."""
    raise RuntimeError("identity provider unreachable")


def returns_none() -> None:
    """A token callable that gives nothing."""
    return None


@pytest.mark.parametrize(
    ("mode", "cls"),
    [
        ("AMAZON_COGNITO_USER_POOLS", CognitoAuth),
        ("OPENID_CONNECT", OIDCAuth),
        ("AWS_LAMBDA", LambdaAuth),
    ],
)
def test_static_token_gives_authorization_and_host(settings, mode, cls):
    """The settings shorthand token appears as Authorization plus the HTTP host, everywhere."""
    use_token(settings, mode, "static-token-value")
    api = get_api_config()
    assert isinstance(get_auth_backend(api, mode), cls)
    expected = {"Authorization": "static-token-value", "host": HOST}
    assert connect_headers(api) == expected
    assert operation_headers(api, "subscribe", "/default/a") == expected
    assert operation_headers(api, "publish", "/default/a", ["1"]) == expected
    assert http_headers(api, "/default/a", b"{}") == expected


def test_token_env_is_read_on_every_operation(settings, monkeypatch):
    """``token_env`` is read again for each operation, so a rotated value is used."""
    use_token(settings, "OPENID_CONNECT", {"token_env": "APPSYNC_TEST_TOKEN"})
    api = get_api_config()
    monkeypatch.setenv("APPSYNC_TEST_TOKEN", "first-token-value")
    assert connect_headers(api)["Authorization"] == "first-token-value"
    monkeypatch.setenv("APPSYNC_TEST_TOKEN", "second-token-value")
    assert (
        operation_headers(api, "subscribe", "/default/a")["Authorization"] == "second-token-value"
    )


def test_unset_token_env_names_alias_operation_and_variable(settings):
    """An unset ``token_env`` variable raises a TokenSourceError saying which one."""
    use_token(settings, "OPENID_CONNECT", {"token_env": "APPSYNC_TEST_UNSET"})
    with pytest.raises(TokenSourceError) as info:
        operation_headers(get_api_config(), "subscribe", "/default/a")
    text = str(info.value)
    assert "APPSYNC_TEST_UNSET" in text
    assert "api='default'" in text
    assert "operation=subscribe" in text
    assert "mode=OPENID_CONNECT" in text


def test_sync_callable_is_called_for_every_connect_and_operation(settings):
    """A sync token callable runs once per connect, subscribe, publish and HTTP publish."""
    recorder = Recorder()
    use_token(settings, "AWS_LAMBDA", {"token_callable": recorder})
    api = get_api_config()
    tokens = [
        connect_headers(api)["Authorization"],
        operation_headers(api, "subscribe", "/default/a")["Authorization"],
        operation_headers(api, "publish", "/default/a", ["1"])["Authorization"],
        http_headers(api, "/default/a", b"{}")["Authorization"],
    ]
    assert tokens == [f"token-number-{n}" for n in (1, 2, 3, 4)]
    assert recorder.calls == [
        {"api": "default", "mode": "AWS_LAMBDA", "operation": "connect", "channel": None},
        {"api": "default", "mode": "AWS_LAMBDA", "operation": "subscribe", "channel": "/default/a"},
        {"api": "default", "mode": "AWS_LAMBDA", "operation": "publish", "channel": "/default/a"},
        {"api": "default", "mode": "AWS_LAMBDA", "operation": "publish", "channel": "/default/a"},
    ]


async def test_sync_callable_runs_in_a_thread_from_async_code(settings):
    """From async code a sync callable runs in a worker thread, once per operation."""
    recorder = Recorder()
    use_token(settings, "AWS_LAMBDA", {"token_callable": recorder})
    api = get_api_config()
    first = await aconnect_headers(api)
    second = await aoperation_headers(api, "subscribe", "/default/a")
    assert (first["Authorization"], second["Authorization"]) == ("token-number-1", "token-number-2")
    assert threading.get_ident() not in recorder.threads


async def test_async_callable_is_awaited_for_every_operation(settings):
    """An async token callable is awaited once per connect and operation."""
    recorder = AsyncRecorder()
    use_token(settings, "AMAZON_COGNITO_USER_POOLS", {"token_callable": recorder})
    api = get_api_config()
    tokens = [
        (await aconnect_headers(api))["Authorization"],
        (await aoperation_headers(api, "publish", "/default/a", ["1"]))["Authorization"],
        (await ahttp_headers(api, "/default/a", b"{}"))["Authorization"],
    ]
    assert tokens == ["async-token-1", "async-token-2", "async-token-3"]
    assert [c["operation"] for c in recorder.calls] == ["connect", "publish", "publish"]


def test_async_callable_from_sync_code(settings):
    """Sync helpers run an async token callable to completion."""
    recorder = AsyncRecorder()
    use_token(settings, "OPENID_CONNECT", {"token_callable": recorder})
    api = get_api_config()
    assert connect_headers(api)["Authorization"] == "async-token-1"
    assert operation_headers(api, "subscribe", "/default/a")["Authorization"] == "async-token-2"


def test_dotted_path_callable_without_parameters(settings):
    """A dotted-path callable with no parameters is called without arguments."""
    use_token(settings, "OPENID_CONNECT", {"token_callable": "tests.test_auth_token.no_arguments"})
    assert connect_headers(get_api_config())["Authorization"] == "plain-token-value"


def test_failing_callable_raises_clear_error(settings):
    """A callable that raises gives a TokenSourceError naming alias, mode and operation."""
    use_token(settings, "AWS_LAMBDA", {"token_callable": "tests.test_auth_token.exploding"})
    with pytest.raises(TokenSourceError) as info:
        operation_headers(get_api_config(), "publish", "/default/a", ["1"])
    text = str(info.value)
    assert "tests.test_auth_token.exploding raised RuntimeError" in text
    assert "identity provider unreachable" in text
    assert "api='default'" in text
    assert "operation=publish" in text
    assert "mode=AWS_LAMBDA" in text
    assert isinstance(info.value.__cause__, RuntimeError)


async def test_failing_async_path_raises_clear_error(settings):
    """The async path reports a failing callable the same way."""
    use_token(settings, "AWS_LAMBDA", {"token_callable": exploding})
    with pytest.raises(TokenSourceError) as info:
        await aconnect_headers(get_api_config())
    assert "operation=connect" in str(info.value)


def test_callable_returning_nothing_is_an_error(settings):
    """A callable returning None is reported, not sent as an empty header."""
    use_token(settings, "OPENID_CONNECT", {"token_callable": returns_none})
    with pytest.raises(TokenSourceError, match="not a non-empty string"):
        connect_headers(get_api_config())


def make_jwt(exp: float) -> str:
    """Return an (unverified) JWT expiring at ``exp``."""
    return jwt.encode({"sub": "user", "exp": int(exp)}, "k" * 32, algorithm="HS256")


class Clock:
    """A settable Unix clock."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_cache_reuses_a_jwt_until_shortly_before_exp(settings):
    """With ``cache=True`` a JWT is reused until ``refresh_margin`` before its exp claim."""
    clock = Clock(1_000_000.0)
    calls: list[int] = []

    def source() -> str:
        calls.append(1)
        return make_jwt(clock.now + 3600)

    use_token(
        settings,
        "AMAZON_COGNITO_USER_POOLS",
        {"token_callable": source, "cache": True, "refresh_margin": 60, "clock": clock},
    )
    api = get_api_config()
    first = connect_headers(api)["Authorization"]
    clock.now += 3000
    assert operation_headers(api, "subscribe", "/default/a")["Authorization"] == first
    assert len(calls) == 1
    clock.now += 600  # now within 60 s of exp
    assert operation_headers(api, "subscribe", "/default/a")["Authorization"] != first
    assert len(calls) == 2


def test_cache_uses_expiry_returned_by_the_callable(settings):
    """A ``(token, expires_at)`` result caches an opaque token until that time."""
    clock = Clock(2_000_000.0)
    calls: list[int] = []

    def source() -> tuple[str, datetime]:
        calls.append(1)
        expires = datetime.fromtimestamp(clock.now + 120, tz=UTC)
        return (f"opaque-token-{len(calls)}", expires)

    use_token(
        settings,
        "AWS_LAMBDA",
        {"token_callable": source, "cache": True, "refresh_margin": 10, "clock": clock},
    )
    api = get_api_config()
    assert connect_headers(api)["Authorization"] == "opaque-token-1"
    clock.now += 100
    assert connect_headers(api)["Authorization"] == "opaque-token-1"
    clock.now += 15
    assert connect_headers(api)["Authorization"] == "opaque-token-2"


def test_cache_seconds_caps_reuse_and_unknown_expiry_is_not_cached(settings):
    """A numeric ``cache`` caps reuse; with ``cache=True`` an opaque token is fetched each time."""
    clock = Clock(3_000_000.0)
    recorder = Recorder()
    use_token(settings, "AWS_LAMBDA", {"token_callable": recorder, "cache": 30, "clock": clock})
    api = get_api_config()
    assert connect_headers(api)["Authorization"] == "token-number-1"
    clock.now += 29
    assert connect_headers(api)["Authorization"] == "token-number-1"
    clock.now += 2
    assert connect_headers(api)["Authorization"] == "token-number-2"

    opaque = Recorder()
    use_token(settings, "AWS_LAMBDA", {"token_callable": opaque, "cache": True})
    api = get_api_config()
    connect_headers(api)
    connect_headers(api)
    assert len(opaque.calls) == 2


def test_token_result_object_carries_expiry(settings):
    """A :class:`Token` result is accepted and its repr hides the value."""
    token = Token("object-token-value", expires_at=None)
    use_token(settings, "OPENID_CONNECT", {"token_callable": lambda: token})
    assert connect_headers(get_api_config())["Authorization"] == "object-token-value"
    assert "object-token-value" not in repr(token)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({}, "exactly one token source"),
        ({"token": "a", "token_env": "B"}, "exactly one token source"),
        ({"token": ""}, "non-empty string"),
        ({"token_env": ""}, "must name an environment variable"),
        ({"token_callable": "tests.nowhere.func"}, "cannot be imported"),
        ({"token_callable": "tests.test_auth_token.HOST"}, "not callable"),
        ({"token": "abc", "cache": "yes"}, "'cache' must be"),
        ({"token": "abc", "refresh_margin": -1}, "'refresh_margin' must be"),
        ({"token": "abc", "flavour": 1}, "unknown option(s) flavour"),
    ],
)
@pytest.mark.parametrize("mode", TOKEN_MODES)
def test_invalid_token_options_are_configuration_errors(settings, mode, value, message):
    """Incomplete or wrong token options are refused with an E008 ConfigurationError."""
    use_token(settings, mode, value)
    with pytest.raises(ConfigurationError) as info:
        get_auth_backend(get_api_config(), mode)
    assert message in str(info.value)
    assert info.value.check_id == "appsync_events.E008"
