"""Tests for appsync_events.conf: parsing and validating the APPSYNC_EVENTS setting."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.test import override_settings

from appsync_events import conf
from appsync_events.conf import (
    AUTH_MODES,
    PUBLISH_BACKENDS,
    APIConfig,
    AuthModeConfig,
    EmulatorConfig,
    ForwardingConfig,
    ListenerConfig,
    OutboxConfig,
    PublishConfig,
    Timeouts,
    api_aliases,
    get_api_config,
    is_loopback_host,
)
from appsync_events.exceptions import AppSyncEventsError, ConfigurationError
from appsync_events.paths import parse_channel

KEY = "da2-conftestsecret000000000000"
LOCAL = {"HTTP_URL": "http://127.0.0.1:8765/event", "REGION": "us-east-1", "AUTH": {"API_KEY": KEY}}
STANDARD_HOST = "abc123def.appsync-api.us-east-1.amazonaws.com"


@contextmanager
def alias_settings(value: Any, alias: str = "default") -> Iterator[None]:
    """Run the block with APPSYNC_EVENTS holding ``value`` under ``alias``."""
    with override_settings(APPSYNC_EVENTS={alias: value}):
        yield


def parse(**overrides: Any) -> APIConfig:
    """Parse LOCAL with ``overrides`` applied (a value of None removes the key)."""
    raw = {**LOCAL, **overrides}
    raw = {k: v for k, v in raw.items() if v is not None}
    with alias_settings(raw):
        return get_api_config()


def failure(**overrides: Any) -> ConfigurationError:
    """Return the ConfigurationError that parsing LOCAL with ``overrides`` raises."""
    with pytest.raises(ConfigurationError) as info:
        parse(**overrides)
    return info.value


# -- endpoints ---------------------------------------------------------------------------

ENDPOINTS = [
    pytest.param(
        {"HTTP_URL": f"https://{STANDARD_HOST}/event", "REGION": None},
        f"https://{STANDARD_HOST}/event",
        "wss://abc123def.appsync-realtime-api.us-east-1.amazonaws.com/event/realtime",
        "us-east-1",
        id="standard",
    ),
    pytest.param(
        {"HTTP_URL": "abc.appsync-api.eu-west-1.amazonaws.com", "REGION": None},
        "https://abc.appsync-api.eu-west-1.amazonaws.com/event",
        "wss://abc.appsync-realtime-api.eu-west-1.amazonaws.com/event/realtime",
        "eu-west-1",
        id="bare-standard-domain",
    ),
    pytest.param(
        {"HTTP_URL": "https://abc.appsync-api.us-east-1.amazonaws.com/", "REGION": None},
        "https://abc.appsync-api.us-east-1.amazonaws.com/event",
        "wss://abc.appsync-realtime-api.us-east-1.amazonaws.com/event/realtime",
        "us-east-1",
        id="standard-no-path",
    ),
    pytest.param(
        {"HTTP_URL": "https://abc.appsync-api.cn-north-1.amazonaws.com.cn/event", "REGION": None},
        "https://abc.appsync-api.cn-north-1.amazonaws.com.cn/event",
        "wss://abc.appsync-realtime-api.cn-north-1.amazonaws.com.cn/event/realtime",
        "cn-north-1",
        id="china",
    ),
    pytest.param(
        {"HTTP_URL": "https://ABC.AppSync-Api.us-east-1.amazonaws.com/event", "REGION": None},
        "https://abc.appsync-api.us-east-1.amazonaws.com/event",
        "wss://abc.appsync-realtime-api.us-east-1.amazonaws.com/event/realtime",
        "us-east-1",
        id="standard-uppercase",
    ),
    pytest.param(
        {"HTTP_URL": f"https://{STANDARD_HOST}/event", "REGION": "us-east-1"},
        f"https://{STANDARD_HOST}/event",
        "wss://abc123def.appsync-realtime-api.us-east-1.amazonaws.com/event/realtime",
        "us-east-1",
        id="standard-with-matching-region",
    ),
    pytest.param(
        {"HTTP_URL": "https://api.example.com/event", "REGION": "eu-central-1"},
        "https://api.example.com/event",
        "wss://api.example.com/event/realtime",
        "eu-central-1",
        id="custom-domain",
    ),
    pytest.param(
        {"HTTP_URL": "api.example.com", "REGION": "us-gov-west-1"},
        "https://api.example.com/event",
        "wss://api.example.com/event/realtime",
        "us-gov-west-1",
        id="bare-custom-domain",
    ),
    pytest.param(
        {"HTTP_URL": "  https://api.example.com/prefix/event/  "},
        "https://api.example.com/prefix/event",
        "wss://api.example.com/prefix/event/realtime",
        "us-east-1",
        id="custom-path-prefix",
    ),
    pytest.param(
        {"HTTP_URL": "http://127.0.0.1:8765/event"},
        "http://127.0.0.1:8765/event",
        "ws://127.0.0.1:8765/event/realtime",
        "us-east-1",
        id="local",
    ),
    pytest.param(
        {"HTTP_URL": "http://[::1]:8765"},
        "http://[::1]:8765/event",
        "ws://[::1]:8765/event/realtime",
        "us-east-1",
        id="local-ipv6",
    ),
    pytest.param(
        {
            "HTTP_URL": f"https://{STANDARD_HOST}/event",
            "REALTIME_URL": " wss://RT.example.com:8443/event/realtime/ ",
            "REGION": None,
        },
        f"https://{STANDARD_HOST}/event",
        "wss://rt.example.com:8443/event/realtime",
        "us-east-1",
        id="explicit-realtime",
    ),
]


@pytest.mark.parametrize(("overrides", "http_url", "realtime_url", "region"), ENDPOINTS)
def test_endpoint_derivation(
    overrides: dict[str, Any], http_url: str, realtime_url: str, region: str
) -> None:
    """HTTP_URL (and REALTIME_URL) give the normalised endpoints and the region."""
    config = parse(**overrides)
    assert config.http_url == http_url
    assert config.realtime_url == realtime_url
    assert config.region == region
    assert config.http_host == http_url.split("/")[2]


def test_is_standard_host() -> None:
    """is_standard_host tells AWS-generated hosts from custom and local ones."""
    assert parse(HTTP_URL=STANDARD_HOST, REGION=None).is_standard_host
    assert not parse().is_standard_host
    assert not parse(HTTP_URL="https://api.example.com/event").is_standard_host


def test_http_host_keeps_a_non_default_port() -> None:
    """The host that auth headers name keeps the port."""
    assert parse().http_host == "127.0.0.1:8765"


BAD_ENDPOINTS = [
    ({"HTTP_URL": None}, "HTTP_URL", "is missing"),
    ({"HTTP_URL": ""}, "HTTP_URL", "URL or domain string"),
    ({"HTTP_URL": "   "}, "HTTP_URL", "URL or domain string"),
    ({"HTTP_URL": 5}, "HTTP_URL", "URL or domain string"),
    ({"HTTP_URL": "ftp://api.example.com/event"}, "HTTP_URL", "not an http(s) URL"),
    ({"HTTP_URL": "wss://api.example.com/event"}, "HTTP_URL", "not an http(s) URL"),
    ({"HTTP_URL": "https:///event"}, "HTTP_URL", "not an http(s) URL"),
    ({"HTTP_URL": "https://api.example.com/graphql"}, "HTTP_URL", "must end in '/event'"),
    ({"HTTP_URL": "https://api.example.com/event/realtime"}, "HTTP_URL", "must end in '/event'"),
    ({"HTTP_URL": "https://api.example.com/events"}, "HTTP_URL", "must end in '/event'"),
    ({"HTTP_URL": "https://api.example.com/event?x=1"}, "HTTP_URL", "query"),
    ({"HTTP_URL": "https://api.example.com/event#top"}, "HTTP_URL", "fragment"),
    ({"HTTP_URL": "https://user:pw@api.example.com/event"}, "HTTP_URL", "user info"),
    ({"HTTP_URL": "https://api.example.com:99999/event"}, "HTTP_URL", "invalid port"),
    ({"HTTP_URL": "https://api.example.com:port/event"}, "HTTP_URL", "invalid port"),
    (
        {"HTTP_URL": "https://abc.appsync-realtime-api.us-east-1.amazonaws.com/event"},
        "HTTP_URL",
        "real-time (websocket) host",
    ),
    ({"REALTIME_URL": 5}, "REALTIME_URL", "must be a URL string"),
    ({"REALTIME_URL": "https://api.example.com/event/realtime"}, "REALTIME_URL", "ws:// or wss://"),
    ({"REALTIME_URL": "wss:///event/realtime"}, "REALTIME_URL", "ws:// or wss://"),
    ({"REALTIME_URL": ""}, "REALTIME_URL", "ws:// or wss://"),
    ({"REALTIME_URL": "wss://rt.example.com/event/realtime?a=1"}, "REALTIME_URL", "query"),
    ({"REALTIME_URL": "wss://u@rt.example.com/event/realtime"}, "REALTIME_URL", "user info"),
    ({"REALTIME_URL": "wss://rt.example.com:70000/event/realtime"}, "REALTIME_URL", "port"),
]


@pytest.mark.parametrize(("overrides", "key", "text"), BAD_ENDPOINTS)
def test_bad_endpoints(overrides: dict[str, Any], key: str, text: str) -> None:
    """A malformed endpoint is E002, naming the alias, the key and the problem."""
    error = failure(**overrides)
    assert error.check_id == "appsync_events.E002"
    assert error.key == key
    assert error.api == "default"
    assert f"APPSYNC_EVENTS['default'][{key!r}]" in str(error)
    assert text in str(error)


IAM = {"AWS_IAM": True}

BAD_REGIONS = [
    ({"HTTP_URL": "https://api.example.com/event", "REGION": None, "AUTH": IAM}, "is missing"),
    ({"HTTP_URL": "http://127.0.0.1:8765/event", "REGION": None, "AUTH": IAM}, "'127.0.0.1'"),
    (
        {"REGION": None, "AUTH": {"API_KEY": KEY, "AWS_IAM": {"PROFILE": "p"}}},
        "the AWS_IAM option 'region'",
    ),
    ({"REGION": "US-EAST-1"}, "not an AWS region name"),
    ({"REGION": "useast1"}, "not an AWS region name"),
    ({"REGION": "us-east-1\n"}, "not an AWS region name"),
    ({"REGION": ""}, "not an AWS region name"),
    ({"REGION": 1}, "not an AWS region name"),
    ({"HTTP_URL": STANDARD_HOST, "REGION": "eu-west-1"}, "is in 'us-east-1'"),
]


@pytest.mark.parametrize(("overrides", "text"), BAD_REGIONS)
def test_bad_or_missing_region(overrides: dict[str, Any], text: str) -> None:
    """IAM on a custom host needs a REGION, which must be valid and agree with a standard
    host's (E003)."""
    error = failure(**overrides)
    assert error.check_id == "appsync_events.E003"
    assert error.key == "REGION"
    assert text in str(error)


# -- auth ----------------------------------------------------------------------------------

SHORTHANDS = [
    ("API_KEY", KEY, None, {"api_key": KEY}),
    ("API_KEY", {"API_KEY": KEY}, None, {"api_key": KEY}),
    ("API_KEY", {"api_key": KEY}, None, {"api_key": KEY}),
    ("AMAZON_COGNITO_USER_POOLS", "jwt", None, {"token": "jwt"}),
    ("OPENID_CONNECT", "jwt", None, {"token": "jwt"}),
    ("AWS_LAMBDA", "tok", None, {"token": "tok"}),
    ("AWS_LAMBDA", {"TOKEN_ENV": "X"}, None, {"token_env": "X"}),
    ("AWS_IAM", True, None, {}),
    ("AWS_IAM", {}, None, {}),
    ("AWS_IAM", {"PROFILE": "p"}, None, {"profile": "p"}),
    (
        "AWS_IAM",
        {"BACKEND": "my.Auth", "OPTIONS": {"Role_Arn": "r"}},
        "my.Auth",
        {"role_arn": "r"},
    ),
    ("AWS_IAM", {"BACKEND": "my.Auth"}, "my.Auth", {}),
    ("API_KEY", {"OPTIONS": {"API_KEY": KEY}}, None, {"api_key": KEY}),
]


@pytest.mark.parametrize(("mode", "value", "backend", "options"), SHORTHANDS)
def test_auth_forms(mode: str, value: Any, backend: str | None, options: dict[str, Any]) -> None:
    """Every AUTH spelling gives one AuthModeConfig with lowercase option names."""
    config = parse(AUTH={mode: value})
    auth = config.auth[mode]
    assert auth == AuthModeConfig(mode, backend, auth.options)
    assert dict(auth.options) == options
    assert config.connection_auth_mode == mode


BAD_AUTH = [
    ({"AUTH": "da2-x"}, "AUTH", "appsync_events.E001", "must be a dict"),
    ({"AUTH": {}}, "AUTH", "appsync_events.E005", "holds no credentials"),
    ({"AUTH": {"APIKEY": KEY}}, "AUTH", "appsync_events.E004", "unknown auth mode 'APIKEY'"),
    ({"AUTH": {"AWS_IAM": "x"}}, "AUTH['AWS_IAM']", "appsync_events.E008", "dict of options"),
    ({"AUTH": {"AWS_IAM": False}}, "AUTH['AWS_IAM']", "appsync_events.E001", "must be a dict"),
    ({"AUTH": {"API_KEY": None}}, "AUTH['API_KEY']", "appsync_events.E001", "must be a dict"),
    (
        {"AUTH": {"AWS_IAM": {"BACKEND": 3}}},
        "AUTH['AWS_IAM']",
        "appsync_events.E008",
        "dotted path",
    ),
    (
        {"AUTH": {"AWS_IAM": {"BACKEND": "x.Y", "PROFILE": "p"}}},
        "AUTH['AWS_IAM']",
        "appsync_events.E001",
        "unknown key 'PROFILE'",
    ),
    (
        {"AUTH": {"AWS_IAM": {"OPTIONS": []}}},
        "AUTH['AWS_IAM']['OPTIONS']",
        "appsync_events.E001",
        "must be a dict",
    ),
    (
        {"AUTH": {"API_KEY": {1: KEY}}},
        "AUTH['API_KEY']",
        "appsync_events.E008",
        "option names must be strings",
    ),
    (
        {"CONNECTION_AUTH_MODE": "IAM"},
        "CONNECTION_AUTH_MODE",
        "appsync_events.E004",
        "unknown auth mode 'IAM'",
    ),
    (
        {"CONNECTION_AUTH_MODE": ["API_KEY"]},
        "CONNECTION_AUTH_MODE",
        "appsync_events.E004",
        "unknown auth mode",
    ),
    (
        {"CONNECTION_AUTH_MODE": "AWS_IAM"},
        "CONNECTION_AUTH_MODE",
        "appsync_events.E005",
        "no credentials for it",
    ),
]


@pytest.mark.parametrize(("overrides", "key", "check_id", "text"), BAD_AUTH)
def test_bad_auth(overrides: dict[str, Any], key: str, check_id: str, text: str) -> None:
    """Auth mistakes name the alias and key, with their check id."""
    error = failure(**overrides)
    assert (error.key, error.check_id) == (key, check_id)
    assert "APPSYNC_EVENTS['default']" in str(error)
    assert text in str(error)
    assert KEY not in str(error)


def test_connection_auth_mode_defaults_to_first_held() -> None:
    """Without CONNECTION_AUTH_MODE the first mode in AUTH opens the connection."""
    config = parse(AUTH={"AWS_IAM": True, "API_KEY": KEY})
    assert config.connection_auth_mode == "AWS_IAM"
    assert tuple(config.auth) == ("AWS_IAM", "API_KEY")
    assert (
        parse(
            AUTH={"AWS_IAM": True, "API_KEY": KEY}, CONNECTION_AUTH_MODE="API_KEY"
        ).connection_auth_mode
        == "API_KEY"
    )


def test_auth_mode_for_picks_the_first_allowed_mode_held() -> None:
    """auth_mode_for returns the namespace's first allowed mode that AUTH holds."""
    config = parse(
        AUTH={"API_KEY": KEY, "AWS_IAM": True},
        NAMESPACES={
            "chat": {"PUBLISH_AUTH_MODES": ["AWS_LAMBDA", "AWS_IAM", "API_KEY"]},
            "feed": {"SUBSCRIBE_AUTH_MODES": ["API_KEY"]},
        },
    )
    assert config.auth_mode_for("connect") == "API_KEY"
    assert config.auth_mode_for("publish", "chat") == "AWS_IAM"
    assert config.auth_mode_for("subscribe", "chat") == "API_KEY"
    assert config.auth_mode_for("subscribe", "feed") == "API_KEY"
    assert config.allowed_modes("publish", "chat") == ("AWS_LAMBDA", "AWS_IAM", "API_KEY")
    assert config.allowed_modes("connect", "chat") == ("API_KEY",)
    # An undeclared namespace falls back to the API's defaults (every held mode).
    assert config.allowed_modes("publish", "other") == ("API_KEY", "AWS_IAM")
    assert config.allowed_modes("subscribe", "other") == ("API_KEY", "AWS_IAM")


def test_auth_mode_for_needs_a_namespace() -> None:
    """Subscribe and publish need a namespace to choose a mode."""
    with pytest.raises(ValueError, match="namespace"):
        parse().auth_mode_for("publish")


def test_auth_mode_for_fails_when_none_is_held() -> None:
    """auth_mode_for raises ConfigurationError naming the modes when none is held."""
    # A declared namespace inheriting those defaults is refused up front (E005)...
    with pytest.raises(ConfigurationError) as info:
        parse(DEFAULT_PUBLISH_AUTH_MODES=["AWS_IAM", "AWS_LAMBDA"], NAMESPACES=["default"])
    assert info.value.check_id == "appsync_events.E005"
    # ...an undeclared one only when an operation needs a mode.
    config = parse(DEFAULT_PUBLISH_AUTH_MODES=["AWS_IAM", "AWS_LAMBDA"], NAMESPACES={})
    with pytest.raises(ConfigurationError, match="AWS_IAM, AWS_LAMBDA") as info:
        config.auth_mode_for("publish", "room")
    assert info.value.api == "default"
    assert info.value.key == "AUTH"
    assert "'room'" in str(info.value)
    assert config.auth_mode_for("subscribe", "room") == "API_KEY"


# -- namespaces --------------------------------------------------------------------------


def test_namespace_forms() -> None:
    """NAMESPACES defaults to 'default', takes a list shorthand or a dict with modes."""
    assert tuple(parse(NAMESPACES=None).namespaces) == ("default",)
    assert tuple(parse(NAMESPACES=["chat", "feed"]).namespaces) == ("chat", "feed")
    assert tuple(parse(NAMESPACES=("chat",)).namespaces) == ("chat",)
    config = parse(
        AUTH={"API_KEY": KEY, "AWS_IAM": True},
        NAMESPACES={"chat": None, "feed": {"PUBLISH_AUTH_MODES": ("AWS_IAM",)}},
        DEFAULT_SUBSCRIBE_AUTH_MODES=["API_KEY"],
    )
    chat, feed = config.namespaces["chat"], config.namespaces["feed"]
    assert chat.publish_auth_modes == ("API_KEY", "AWS_IAM")
    assert chat.subscribe_auth_modes == ("API_KEY",)
    assert feed.publish_auth_modes == ("AWS_IAM",)
    assert config.default_subscribe_auth_modes == ("API_KEY",)


BAD_NAMESPACES = [
    ({"NAMESPACES": {"bad_name": {}}}, "NAMESPACES", "appsync_events.E007", "'bad_name'"),
    ({"NAMESPACES": ["-chat"]}, "NAMESPACES", "appsync_events.E007", "not a valid namespace"),
    ({"NAMESPACES": ["chat-"]}, "NAMESPACES", "appsync_events.E007", "not a valid namespace"),
    ({"NAMESPACES": ["a" * 51]}, "NAMESPACES", "appsync_events.E007", "not a valid namespace"),
    ({"NAMESPACES": ["chat\n"]}, "NAMESPACES", "appsync_events.E007", "not a valid namespace"),
    ({"NAMESPACES": {5: {}}}, "NAMESPACES", "appsync_events.E007", "not a valid namespace"),
    ({"NAMESPACES": "chat"}, "NAMESPACES", "appsync_events.E001", "must be a dict"),
    ({"NAMESPACES": {"chat": 3}}, "NAMESPACES['chat']", "appsync_events.E001", "must be a dict"),
    (
        {"NAMESPACES": {"chat": {"MODES": []}}},
        "NAMESPACES['chat']",
        "appsync_events.E001",
        "unknown key 'MODES'",
    ),
    (
        {"NAMESPACES": {"chat": {"PUBLISH_AUTH_MODES": "API_KEY"}}},
        "NAMESPACES['chat']['PUBLISH_AUTH_MODES']",
        "appsync_events.E004",
        "non-empty list",
    ),
    (
        {"NAMESPACES": {"chat": {"SUBSCRIBE_AUTH_MODES": []}}},
        "NAMESPACES['chat']['SUBSCRIBE_AUTH_MODES']",
        "appsync_events.E004",
        "non-empty list",
    ),
    (
        {"NAMESPACES": {"chat": {"SUBSCRIBE_AUTH_MODES": ["API_KEY", "IAM"]}}},
        "NAMESPACES['chat']['SUBSCRIBE_AUTH_MODES']",
        "appsync_events.E004",
        "unknown auth mode 'IAM'",
    ),
    (
        {"NAMESPACES": {"chat": {"PUBLISH_AUTH_MODES": ["AWS_IAM"]}}},
        "NAMESPACES['chat']",
        "appsync_events.E005",
        "allows publish with AWS_IAM",
    ),
    (
        {"NAMESPACES": {"chat": {"SUBSCRIBE_AUTH_MODES": ["AWS_LAMBDA", "OPENID_CONNECT"]}}},
        "NAMESPACES['chat']",
        "appsync_events.E005",
        "it holds API_KEY",
    ),
    (
        {"DEFAULT_PUBLISH_AUTH_MODES": "API_KEY"},
        "DEFAULT_PUBLISH_AUTH_MODES",
        "appsync_events.E004",
        "non-empty list",
    ),
    (
        {"DEFAULT_SUBSCRIBE_AUTH_MODES": ["NOPE"]},
        "DEFAULT_SUBSCRIBE_AUTH_MODES",
        "appsync_events.E004",
        "unknown auth mode 'NOPE'",
    ),
]


@pytest.mark.parametrize(("overrides", "key", "check_id", "text"), BAD_NAMESPACES)
def test_bad_namespaces(overrides: dict[str, Any], key: str, check_id: str, text: str) -> None:
    """Namespace mistakes are reported with the literal setting path and check id."""
    error = failure(**overrides)
    assert (error.key, error.check_id) == (key, check_id)
    assert text in str(error)


# -- top level, aliases and the cache -----------------------------------------------------


def test_unknown_top_level_key_names_alias_and_key() -> None:
    """An unknown key in an alias is E001 naming both the alias and the key."""
    with override_settings(APPSYNC_EVENTS={"eu": {**LOCAL, "HTTP_DOMAIN": "x"}}):
        with pytest.raises(ConfigurationError) as info:
            get_api_config("eu")
    error = info.value
    assert (error.api, error.key, error.check_id) == ("eu", "HTTP_DOMAIN", "appsync_events.E001")
    assert str(error).startswith("APPSYNC_EVENTS['eu']: unknown key 'HTTP_DOMAIN'")
    assert "HTTP_URL" in str(error)


@pytest.mark.parametrize("value", [["default"], "default", None, 3])
def test_setting_not_a_dict(value: Any) -> None:
    """APPSYNC_EVENTS must be a dict of aliases (E001)."""
    with override_settings(APPSYNC_EVENTS=value):
        with pytest.raises(ConfigurationError, match="must be a dict of aliases") as info:
            get_api_config()
        with pytest.raises(ConfigurationError):
            api_aliases()
    assert info.value.key == "APPSYNC_EVENTS"
    assert info.value.check_id == "appsync_events.E001"


def test_alias_not_a_dict() -> None:
    """An alias whose value is not a dict is E001 naming the alias."""
    with alias_settings("https://x/event", alias="eu"):
        with pytest.raises(ConfigurationError, match=r"APPSYNC_EVENTS\['eu'\] must be a dict"):
            get_api_config("eu")


def test_unknown_alias() -> None:
    """A missing alias is E010, listing the configured aliases and showing what to add."""
    with override_settings(APPSYNC_EVENTS={"eu": LOCAL, "us": LOCAL}):
        with pytest.raises(ConfigurationError) as info:
            get_api_config("ap")
        assert api_aliases() == ("eu", "us")
    assert info.value.check_id == "appsync_events.E010"
    assert info.value.api == "ap"
    assert "'eu', 'us'" in str(info.value)
    assert "APPSYNC_EVENTS = {'ap':" in str(info.value)


def test_setting_absent() -> None:
    """Without APPSYNC_EVENTS there are no aliases and the default one is missing (E010)."""
    with override_settings():
        from django.conf import settings

        delattr(settings, "APPSYNC_EVENTS")
        assert api_aliases() == ()
        with pytest.raises(ConfigurationError, match=r"configured: none") as info:
            get_api_config()
    assert info.value.check_id == "appsync_events.E010"


def test_cache_and_reset_on_setting_changed() -> None:
    """Parsed aliases are cached and dropped whenever override_settings changes the setting."""
    first = get_api_config()
    assert get_api_config() is first
    with alias_settings({**LOCAL, "HTTP_URL": "http://localhost:9999/event"}):
        inside = get_api_config()
        assert inside.http_url == "http://localhost:9999/event"
        assert get_api_config() is inside
    after = get_api_config()
    assert after.http_url == first.http_url
    assert after is not inside
    conf.reset()
    assert get_api_config() is not after
    assert get_api_config() == after


def test_other_settings_do_not_reset_the_cache() -> None:
    """Changing an unrelated setting keeps the parsed aliases."""
    first = get_api_config()
    with override_settings(USE_TZ=False):
        assert get_api_config() is first


# -- frozen, redacted objects --------------------------------------------------------------


def test_config_objects_are_frozen_all_the_way_down() -> None:
    """APIConfig, its sections and every mapping inside refuse mutation."""
    config = parse(PUBLISH={"OPTIONS": {"a": 1}}, EMULATOR={"IAM_CREDENTIALS": {"AKID": "secret"}})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.http_url = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.timeouts.connect = 1  # type: ignore[misc]
    mappings = [
        config.auth,
        config.auth["API_KEY"].options,
        config.namespaces,
        config.publish.options,
        config.emulator.options,
        config.emulator.iam_credentials,
        PublishConfig().options,
        EmulatorConfig().options,
        EmulatorConfig().iam_credentials,
        parse(AUTH={"AWS_IAM": True}).auth["AWS_IAM"].options,
        parse(AUTH={"AWS_LAMBDA": "t"}).auth["AWS_LAMBDA"].options,
    ]
    for mapping in mappings:
        with pytest.raises(TypeError):
            mapping["new"] = 1  # type: ignore[index]


def test_reprs_never_show_secrets() -> None:
    """No repr of a parsed config shows an API key, token or IAM secret."""
    config = parse(
        AUTH={"API_KEY": KEY, "AWS_LAMBDA": "lambda-token-secret"},
        EMULATOR={"IAM_CREDENTIALS": {"AKIDEXAMPLE": "iam-secret-value"}},
        LISTENER={"LEASE_REDIS_URL": "redis://:redis-password-value@127.0.0.1:6379/0"},
    )
    assert config.listener.lease_redis_url is not None
    text = repr(config)
    for secret in (
        KEY,
        "lambda-token-secret",
        "iam-secret-value",
        "AKIDEXAMPLE",
        "redis-password-value",
    ):
        assert secret not in text
    assert "redacted" in repr(config.auth["API_KEY"])
    assert "redacted" in repr(config.emulator)


@pytest.mark.parametrize(
    "overrides",
    [
        {"HTTP_URL": "https://user:url-password-value@api.example.com/event"},
        {"HTTP_URL": "ftp://user:url-password-value@api.example.com/event"},
        {"HTTP_URL": "user:url-password-value@api.example.com/graphql"},
        {"REALTIME_URL": "wss://user:url-password-value@rt.example.com/event/realtime"},
        {"REALTIME_URL": "https://user:url-password-value@rt.example.com/event/realtime"},
        {"LISTENER": {"LEASE_REDIS_URL": "http://:url-password-value@127.0.0.1:6379/0"}},
    ],
)
def test_url_errors_never_quote_a_password(overrides: dict[str, Any]) -> None:
    """An error about a URL setting quotes the URL with its user info hidden."""
    error = failure(**overrides)
    assert "url-password-value" not in str(error)
    assert "<redacted>@" in str(error)


def test_configuration_error_is_not_operational() -> None:
    """Config mistakes cannot be caught by a retry loop catching AppSyncEventsError."""
    error = failure(HTTP_URL=None)
    assert not isinstance(error, AppSyncEventsError)


# -- sections --------------------------------------------------------------------------------


def test_section_defaults() -> None:
    """Without sections every one takes its documented defaults."""
    config = parse()
    assert config.timeouts == Timeouts()
    assert config.publish == PublishConfig()
    assert config.publish.backend == PUBLISH_BACKENDS["appsync"]
    assert config.listener == ListenerConfig()
    assert config.forwarding == ForwardingConfig()
    assert config.outbox == OutboxConfig()
    assert config.emulator.api_keys == (KEY,)
    assert config.emulator.port == 8765


def test_section_values_are_read() -> None:
    """Every section key maps onto its config field."""
    config = parse(
        TIMEOUTS={"CONNECT": 1, "HANDSHAKE": 2.5, "OPERATION": 3, "HTTP": 4},
        PUBLISH={
            "BACKEND": "locmem",
            "OPTIONS": {"x": 1},
            "ON_COMMIT": False,
            "DURABLE": True,
            "ENCODER": "my.Encoder",
        },
        SUBSCRIPTIONS=["chat/*", "/default/x/"],
        LISTENER={
            "QUEUE_SIZE": 5,
            "OVERFLOW": "drop_oldest",
            "BACKOFF_INITIAL": 0.5,
            "BACKOFF_MAX": 30,
            "BACKOFF_FACTOR": 1,
            "STABLE_AFTER": 10,
            "ROTATE_AFTER": 3600,
            "STATS_INTERVAL": 5,
            "SHUTDOWN_TIMEOUT": 2,
        },
        FORWARDING={
            "ENABLED": False,
            "CHANNEL_LAYER": "other",
            "SUBSCRIPTIONS": ["/default/*"],
            "GROUP_PREFIX": "my.app_1-x",
            "MESSAGE_TYPE": "chat.event",
            "CONTROL_CHANNEL": "ctl",
            "UNFOLLOW_GRACE": 0,
        },
        OUTBOX={
            "BATCH_SIZE": 10,
            "MAX_ATTEMPTS": 3,
            "BACKOFF_INITIAL": 2,
            "BACKOFF_MAX": 20,
            "RETENTION": 60,
            "POLL_INTERVAL": 0.1,
        },
        EMULATOR={
            "HOST": "::1",
            "PORT": 0,
            "API_KEYS": ["k1", "k2"],
            "KA_INTERVAL": 1,
            "CONNECTION_TIMEOUT_MS": 5000,
            "MAX_LIFETIME": 60,
            "OPTIONS": {"include_parent": True},
        },
    )
    assert config.timeouts == Timeouts(1, 2.5, 3, 4)
    assert config.publish.backend == "appsync_events.backends.locmem.LocMemBackend"
    assert (config.publish.on_commit, config.publish.durable) == (False, True)
    assert config.publish.encoder == "my.Encoder"
    assert dict(config.publish.options) == {"x": 1}
    assert config.listener.subscriptions == (
        parse_channel("/chat/*", allow_wildcard=True),
        parse_channel("/default/x"),
    )
    assert config.listener.queue_size == 5
    assert config.listener.overflow == "drop_oldest"
    assert config.listener.backoff_factor == 1
    assert config.listener.shutdown_timeout == 2
    assert config.forwarding.enabled is False
    assert config.forwarding.subscriptions == (parse_channel("/default/*", allow_wildcard=True),)
    assert config.forwarding.group_prefix == "my.app_1-x"
    assert config.forwarding.unfollow_grace == 0
    assert config.outbox == OutboxConfig(10, 3, 2, 20, 60, 0.1)
    assert config.emulator.api_keys == ("k1", "k2")
    assert config.emulator.port == 0
    assert config.emulator.connection_timeout_ms == 5000
    assert dict(config.emulator.options) == {"include_parent": True}


def test_custom_publish_backend_path_is_kept() -> None:
    """A dotted BACKEND path that is not a short name is used as is."""
    assert parse(PUBLISH={"BACKEND": "my.pkg.Backend"}).publish.backend == "my.pkg.Backend"


@pytest.mark.parametrize(
    ("auth", "keys"),
    [
        ({"API_KEY": KEY}, (KEY,)),
        ({"API_KEY": {"API_KEY": KEY}}, (KEY,)),
        ({"API_KEY": {"BACKEND": "x.Y", "OPTIONS": {"api_key": KEY}}}, (KEY,)),
        ({"API_KEY": {"BACKEND": "x.Y", "OPTIONS": {"api_key_env": "K"}}}, ()),
        ({"AWS_IAM": True}, ()),
    ],
)
def test_emulator_api_keys_default_to_the_alias_key(auth: dict[str, Any], keys: tuple[str]) -> None:
    """Without EMULATOR API_KEYS the emulator accepts the alias's API key, however spelled."""
    assert parse(AUTH=auth).emulator.api_keys == keys


BAD_SECTIONS = [
    # not a dict / unknown keys
    ("TIMEOUTS", 5, "TIMEOUTS", "appsync_events.E001", "must be a dict"),
    ("TIMEOUTS", {"READ": 1}, "TIMEOUTS", "appsync_events.E001", "unknown key 'READ'"),
    ("PUBLISH", [], "PUBLISH", "appsync_events.E001", "must be a dict"),
    ("PUBLISH", {"RETRIES": 1}, "PUBLISH", "appsync_events.E001", "unknown key 'RETRIES'"),
    ("LISTENER", "x", "LISTENER", "appsync_events.E001", "must be a dict"),
    ("LISTENER", {"SUBSCRIPTIONS": []}, "LISTENER", "appsync_events.E001", "unknown key"),
    ("FORWARDING", None, "FORWARDING", "appsync_events.E001", "must be a dict"),
    ("FORWARDING", {"GROUP": "x"}, "FORWARDING", "appsync_events.E001", "unknown key 'GROUP'"),
    ("OUTBOX", 1.0, "OUTBOX", "appsync_events.E001", "must be a dict"),
    ("OUTBOX", {"SIZE": 1}, "OUTBOX", "appsync_events.E001", "unknown key 'SIZE'"),
    ("EMULATOR", True, "EMULATOR", "appsync_events.E001", "must be a dict"),
    ("EMULATOR", {"ADDRESS": "x"}, "EMULATOR", "appsync_events.E001", "unknown key"),
    # bad types and values
    ("TIMEOUTS", {"CONNECT": 0}, "TIMEOUTS['CONNECT']", "appsync_events.E009", "greater than 0"),
    ("TIMEOUTS", {"HTTP": -1}, "TIMEOUTS['HTTP']", "appsync_events.E009", "not -1"),
    ("TIMEOUTS", {"OPERATION": "5"}, "TIMEOUTS['OPERATION']", "appsync_events.E009", "'5'"),
    ("TIMEOUTS", {"HANDSHAKE": True}, "TIMEOUTS['HANDSHAKE']", "appsync_events.E009", "True"),
    ("TIMEOUTS", {"CONNECT": float("nan")}, "TIMEOUTS['CONNECT']", "appsync_events.E009", "nan"),
    ("TIMEOUTS", {"CONNECT": float("inf")}, "TIMEOUTS['CONNECT']", "appsync_events.E009", "inf"),
    ("PUBLISH", {"BACKEND": ""}, "PUBLISH['BACKEND']", "appsync_events.E009", "non-empty"),
    ("PUBLISH", {"BACKEND": 1}, "PUBLISH['BACKEND']", "appsync_events.E009", "non-empty"),
    ("PUBLISH", {"OPTIONS": []}, "PUBLISH['OPTIONS']", "appsync_events.E001", "must be a dict"),
    ("PUBLISH", {"ON_COMMIT": 1}, "PUBLISH['ON_COMMIT']", "appsync_events.E009", "True or False"),
    ("PUBLISH", {"DURABLE": "yes"}, "PUBLISH['DURABLE']", "appsync_events.E009", "True or False"),
    ("PUBLISH", {"ENCODER": None}, "PUBLISH['ENCODER']", "appsync_events.E009", "non-empty"),
    ("LISTENER", {"QUEUE_SIZE": 1.5}, "LISTENER['QUEUE_SIZE']", "appsync_events.E009", "integer"),
    ("LISTENER", {"QUEUE_SIZE": 0}, "LISTENER['QUEUE_SIZE']", "appsync_events.E009", "integer"),
    ("LISTENER", {"OVERFLOW": "drop"}, "LISTENER['OVERFLOW']", "appsync_events.E009", "'block'"),
    (
        "LISTENER",
        {"BACKOFF_FACTOR": 0.5},
        "LISTENER['BACKOFF_FACTOR']",
        "appsync_events.E009",
        "at least 1",
    ),
    ("LISTENER", {"BACKOFF_MAX": "1"}, "LISTENER['BACKOFF_MAX']", "appsync_events.E009", "'1'"),
    ("FORWARDING", {"ENABLED": "no"}, "FORWARDING['ENABLED']", "appsync_events.E009", "True or"),
    (
        "FORWARDING",
        {"CHANNEL_LAYER": ""},
        "FORWARDING['CHANNEL_LAYER']",
        "appsync_events.E009",
        "non-empty",
    ),
    (
        "FORWARDING",
        {"MESSAGE_TYPE": 1},
        "FORWARDING['MESSAGE_TYPE']",
        "appsync_events.E009",
        "non-empty",
    ),
    (
        "FORWARDING",
        {"GROUP_PREFIX": "a b"},
        "FORWARDING['GROUP_PREFIX']",
        "appsync_events.E009",
        "1-40",
    ),
    (
        "FORWARDING",
        {"GROUP_PREFIX": 12},
        "FORWARDING['GROUP_PREFIX']",
        "appsync_events.E009",
        "1-40",
    ),
    (
        "FORWARDING",
        {"GROUP_PREFIX": "ok\n"},
        "FORWARDING['GROUP_PREFIX']",
        "appsync_events.E009",
        "1-40",
    ),
    (
        "FORWARDING",
        {"SUBSCRIPTIONS": ["/a//b"]},
        "FORWARDING['SUBSCRIPTIONS']",
        "appsync_events.E006",
        "segment 2 is empty",
    ),
    (
        "FORWARDING",
        {"UNFOLLOW_GRACE": -0.1},
        "FORWARDING['UNFOLLOW_GRACE']",
        "appsync_events.E009",
        "at least 0",
    ),
    ("OUTBOX", {"BATCH_SIZE": 2.0}, "OUTBOX['BATCH_SIZE']", "appsync_events.E009", "integer"),
    ("OUTBOX", {"MAX_ATTEMPTS": 0}, "OUTBOX['MAX_ATTEMPTS']", "appsync_events.E009", "integer"),
    ("OUTBOX", {"RETENTION": None}, "OUTBOX['RETENTION']", "appsync_events.E009", "None"),
    ("OUTBOX", {"LEASE": 11}, "OUTBOX['LEASE']", "appsync_events.E009", "too short"),
    ("EMULATOR", {"HOST": ""}, "EMULATOR['HOST']", "appsync_events.E009", "non-empty"),
    ("EMULATOR", {"PORT": 70000}, "EMULATOR['PORT']", "appsync_events.E009", "0 to 65535"),
    ("EMULATOR", {"PORT": "80"}, "EMULATOR['PORT']", "appsync_events.E009", "0 to 65535"),
    ("EMULATOR", {"PORT": False}, "EMULATOR['PORT']", "appsync_events.E009", "0 to 65535"),
    ("EMULATOR", {"API_KEYS": "k"}, "EMULATOR['API_KEYS']", "appsync_events.E009", "list"),
    ("EMULATOR", {"API_KEYS": ["k", ""]}, "EMULATOR['API_KEYS']", "appsync_events.E009", "list"),
    ("EMULATOR", {"API_KEYS": 3}, "EMULATOR['API_KEYS']", "appsync_events.E009", "list"),
    (
        "EMULATOR",
        {"IAM_CREDENTIALS": []},
        "EMULATOR['IAM_CREDENTIALS']",
        "appsync_events.E001",
        "must be a dict",
    ),
    (
        "EMULATOR",
        {"IAM_CREDENTIALS": {"AKID": 5}},
        "EMULATOR['IAM_CREDENTIALS']",
        "appsync_events.E009",
        "access key ids",
    ),
    (
        "EMULATOR",
        {"KA_INTERVAL": 0},
        "EMULATOR['KA_INTERVAL']",
        "appsync_events.E009",
        "greater than 0",
    ),
    (
        "EMULATOR",
        {"MAX_LIFETIME": -5},
        "EMULATOR['MAX_LIFETIME']",
        "appsync_events.E009",
        "greater than 0",
    ),
    (
        "EMULATOR",
        {"CONNECTION_TIMEOUT_MS": 1.5},
        "EMULATOR['CONNECTION_TIMEOUT_MS']",
        "appsync_events.E009",
        "integer",
    ),
    ("EMULATOR", {"OPTIONS": 1}, "EMULATOR['OPTIONS']", "appsync_events.E001", "must be a dict"),
    ("SUBSCRIPTIONS", "/chat/*", "SUBSCRIPTIONS", "appsync_events.E006", "list of channel"),
    ("SUBSCRIPTIONS", 5, "SUBSCRIPTIONS", "appsync_events.E006", "list of channel"),
    ("SUBSCRIPTIONS", ["/chat/a*"], "SUBSCRIPTIONS", "appsync_events.E006", "whole last"),
    ("SUBSCRIPTIONS", [None], "SUBSCRIPTIONS", "appsync_events.E006", "must be a str"),
]


@pytest.mark.parametrize(("section", "value", "key", "check_id", "text"), BAD_SECTIONS)
def test_bad_section_values(section: str, value: Any, key: str, check_id: str, text: str) -> None:
    """Every section refuses unknown keys and bad values, naming the literal setting path."""
    with alias_settings({**LOCAL, section: value}):
        with pytest.raises(ConfigurationError) as info:
            get_api_config()
    error = info.value
    assert (error.key, error.check_id) == (key, check_id)
    path = "".join(f"[{part!r}]" for part in key.replace("['", "|").rstrip("']").split("|"))
    assert str(error).startswith(f"APPSYNC_EVENTS['default']{path}: ")
    assert text in str(error)


# -- helpers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("localhost", True),
        ("api.localhost", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),  # noqa: S104 - a string, not a bind
        ("10.0.0.1", False),
        ("example.com", False),
        ("localhost.example.com", False),
        ("", False),
    ],
)
def test_is_loopback_host(host: str, expected: bool) -> None:
    """Only names and addresses of this machine count as loopback."""
    assert is_loopback_host(host) is expected


def test_auth_modes_constant() -> None:
    """The five AppSync auth modes are known by their AppSync names."""
    assert set(AUTH_MODES) == {
        "API_KEY",
        "AWS_IAM",
        "AMAZON_COGNITO_USER_POOLS",
        "OPENID_CONNECT",
        "AWS_LAMBDA",
    }


def test_a_parse_racing_a_settings_change_is_not_cached(settings: Any, monkeypatch: Any) -> None:
    """A settings change while an alias is being parsed (another thread) must not leave
    the old value cached for good."""
    old = {**settings.APPSYNC_EVENTS["default"], "HTTP_URL": "http://127.0.0.1:8001/event"}
    new = {**old, "HTTP_URL": "http://127.0.0.1:8002/event"}
    settings.APPSYNC_EVENTS = {"default": old}
    real_from_mapping = APIConfig.from_mapping

    def parse_during_a_change(alias: str, mapping: Any) -> Any:
        config = real_from_mapping(alias, mapping)
        monkeypatch.setattr(APIConfig, "from_mapping", real_from_mapping)
        settings.APPSYNC_EVENTS = {"default": new}  # setting_changed: reset()
        return config

    monkeypatch.setattr(APIConfig, "from_mapping", parse_during_a_change)
    assert conf.get_api_config().http_url == "http://127.0.0.1:8001/event"  # read before
    assert conf.get_api_config().http_url == "http://127.0.0.1:8002/event"
