"""Tests for appsync_events.config: the settings table, REGION only for IAM, PROXY,
LISTENER['MAX_MESSAGE_BYTES'], OUTBOX['HTTP_PORT'], API_ID and namespace HANDLERS, through
APIConfig.from_mapping (no Django settings)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from appsync_events import config as config_module
from appsync_events.config import (
    APIConfig,
    EmulatorConfig,
    ForwardingConfig,
    HandlerIntegrationConfig,
    ListenerConfig,
    NamespaceHandlersConfig,
    OutboxConfig,
    PublishConfig,
    Timeouts,
)
from appsync_events.emulator import AppSyncEventsEmulator
from appsync_events.exceptions import ConfigurationError
from appsync_events.limits import MAX_EVENT_BYTES

KEY = "da2-configtestsecret0000000000"
LOCAL = {"HTTP_URL": "http://127.0.0.1:8765/event", "AUTH": {"API_KEY": KEY}}
SECTIONS = (Timeouts, PublishConfig, ListenerConfig, ForwardingConfig, OutboxConfig, EmulatorConfig)


def parse(**overrides: Any) -> APIConfig:
    """Parse LOCAL (no REGION) with ``overrides`` applied."""
    return APIConfig.from_mapping("default", {**LOCAL, **overrides})


def failure(**overrides: Any) -> ConfigurationError:
    """Return the ConfigurationError that parsing LOCAL with ``overrides`` raises."""
    with pytest.raises(ConfigurationError) as info:
        parse(**overrides)
    return info.value


# -- the table ---------------------------------------------------------------------------


def test_every_row_fills_a_field_of_its_dataclass() -> None:
    """Each row of the settings table names a real field of the dataclass it fills."""
    for row in config_module._SETTINGS:
        names = {f.name for f in dataclasses.fields(row.target)}
        assert row.field in names, row.path
        assert row.path == tuple(part.upper() for part in row.path)


def test_every_section_field_is_reachable_from_a_setting() -> None:
    """Every field of every section dataclass is filled by exactly one setting."""
    for cls in SECTIONS:
        filled = [row.field for row in config_module._SETTINGS if row.target is cls]
        assert sorted(filled) == sorted(f.name for f in dataclasses.fields(cls)), cls
    assert [row.field for row in config_module._SETTINGS if row.target is APIConfig] == [
        "proxy",
        "grants",
        "api_id",
    ]


@pytest.mark.parametrize(
    ("section", "keys"),
    [
        ("TIMEOUTS", "CONNECT, HANDSHAKE, HTTP, OPERATION"),
        ("OUTBOX", "BATCH_SIZE, HTTP_HOST, HTTP_PORT, LEASE, MAX_ATTEMPTS"),
        ("LISTENER", "LEASE_TTL, MAX_MESSAGE_BYTES, OVERFLOW"),
    ],
)
def test_unknown_key_lists_the_valid_keys_from_the_table(section: str, keys: str) -> None:
    """An unknown key in a section lists the section's keys, as the table holds them."""
    error = failure(**{section: {"NOPE": 1}})
    assert (error.key, error.check_id) == (section, "appsync_events.E001")
    assert "unknown key 'NOPE'; valid keys are " in str(error)
    assert keys in str(error)


def test_unknown_top_level_key_lists_table_keys_too() -> None:
    """The alias's valid keys include the table's own (PROXY, SUBSCRIPTIONS) and sections."""
    error = failure(PROXI=True)
    assert error.key == "PROXI"
    for key in ("PROXY", "SUBSCRIPTIONS", "LISTENER", "HTTP_URL", "REGION"):
        assert key in str(error)


def test_a_row_validates_and_converts() -> None:
    """A row's validator checks the value and its conversion maps it (PUBLISH BACKEND)."""
    assert parse(PUBLISH={"BACKEND": "dummy"}).publish.backend == (
        "appsync_events.backends.dummy.DummyBackend"
    )
    error = failure(PUBLISH={"BACKEND": ["dummy"]})
    assert (error.key, error.check_id) == ("PUBLISH['BACKEND']", "appsync_events.E009")
    assert str(error).startswith("APPSYNC_EVENTS['default']['PUBLISH']['BACKEND']: must be ")


# -- REGION only when something signs -------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "auth"),
    [
        ("http://127.0.0.1:8765/event", {"API_KEY": KEY}),
        ("http://localhost:8765/event", {"AMAZON_COGNITO_USER_POOLS": "jwt"}),
        ("https://events.example.com/event", {"OPENID_CONNECT": "jwt"}),
        ("events.example.com", {"AWS_LAMBDA": {"TOKEN_ENV": "X"}}),
    ],
)
def test_api_key_and_token_modes_need_no_region(url: str, auth: dict[str, Any]) -> None:
    """API-key and token modes parse on any host without REGION; the region stays None."""
    config = parse(HTTP_URL=url, AUTH=auth)
    assert config.region is None


def test_region_is_still_validated_and_derived_without_iam() -> None:
    """Without IAM a given REGION is still checked, and a standard host still gives one."""
    error = failure(REGION="Europe")
    assert (error.key, error.check_id) == ("REGION", "appsync_events.E003")
    assert parse(REGION="eu-west-1").region == "eu-west-1"
    standard = parse(HTTP_URL="https://abc.appsync-api.ap-south-1.amazonaws.com/event")
    assert standard.region == "ap-south-1"


@pytest.mark.parametrize(
    "auth",
    [
        {"AWS_IAM": True},
        {"AWS_IAM": {}},
        {"API_KEY": KEY, "AWS_IAM": {"PROFILE": "p"}},
        {"AWS_IAM": {"BACKEND": "my.Signer", "OPTIONS": {"profile": "p"}}},
    ],
)
def test_iam_on_a_custom_domain_without_region_is_e003(auth: dict[str, Any]) -> None:
    """IAM on a host the region cannot be read from, without REGION or the IAM option
    'region', is E003 saying what to add."""
    error = failure(HTTP_URL="https://events.example.com/event", AUTH=auth)
    assert (error.key, error.check_id) == ("REGION", "appsync_events.E003")
    text = str(error)
    assert text.startswith("APPSYNC_EVENTS['default']['REGION']: is missing; AUTH holds AWS_IAM")
    assert "'events.example.com' is not a standard AppSync host" in text
    assert "Add 'REGION': 'us-east-1' (your API's region), or the AWS_IAM option 'region'." in text


@pytest.mark.parametrize(
    "auth",
    [
        {"AWS_IAM": {"REGION": "eu-west-3"}},
        {"AWS_IAM": {"BACKEND": "my.Signer", "OPTIONS": {"region": "eu-west-3"}}},
    ],
)
def test_iam_region_option_is_enough(auth: dict[str, Any]) -> None:
    """The AWS_IAM option 'region' stands in for REGION (the alias's region stays None)."""
    assert parse(HTTP_URL="https://events.example.com/event", AUTH=auth).region is None


def test_emulator_falls_back_to_us_east_1_without_a_region() -> None:
    """The emulator of an alias without a region verifies SigV4 scopes for us-east-1."""
    assert AppSyncEventsEmulator(api=parse()).region == "us-east-1"
    assert AppSyncEventsEmulator(api=parse(REGION="eu-west-1")).region == "eu-west-1"


# -- PROXY -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        (None, False),
        ("http://proxy.internal:3128", "http://proxy.internal:3128"),
        (" https://proxy.internal/ ", "https://proxy.internal/"),
        ("socks5://127.0.0.1:1080", "socks5://127.0.0.1:1080"),
        ("socks5h://user:pw@proxy.internal:1080", "socks5h://user:pw@proxy.internal:1080"),
        ("socks4://[::1]:1080", "socks4://[::1]:1080"),
    ],
)
def test_proxy_values(value: Any, expected: str | bool) -> None:
    """PROXY is True (environment), False (None too: no proxy) or a proxy URL."""
    assert parse(PROXY=value).proxy == expected


def test_proxy_defaults_to_the_environment() -> None:
    """Without PROXY the client follows the proxy environment variables."""
    assert parse().proxy is True
    assert APIConfig.from_mapping("x", LOCAL).proxy is True


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1, "must be True (use the HTTPS_PROXY/HTTP_PROXY/ALL_PROXY/NO_PROXY"),
        ("", "must be True"),
        (["http://p:1"], "must be True"),
        ("proxy.internal:3128", "is not a proxy URL; start it with one of http://"),
        ("ftp://proxy.internal", "is not a proxy URL"),
        ("socks5://", "is not a proxy URL"),
        ("http://proxy.internal/path", "must not carry a path, query or fragment"),
        ("http://proxy.internal?x=1", "must not carry a path, query or fragment"),
        ("http://proxy.internal:99999", "invalid port"),
    ],
)
def test_bad_proxy_is_e009(value: Any, text: str) -> None:
    """A PROXY that is no boolean and no proxy URL is E009, naming the key."""
    error = failure(PROXY=value)
    assert (error.key, error.check_id) == ("PROXY", "appsync_events.E009")
    assert str(error).startswith("APPSYNC_EVENTS['default']['PROXY']: ")
    assert text in str(error)


@pytest.mark.parametrize(
    "value",
    [
        "ftp://user:proxy-password-value@proxy.internal:21",
        "http://user:proxy-password-value@proxy.internal/path",
        "http://user:proxy-password-value@proxy.internal:99999",
        "http://user:proxy@password-value@proxy.internal/x",
    ],
)
def test_proxy_errors_hide_the_password(value: str) -> None:
    """An error about PROXY quotes it with its user info hidden."""
    error = failure(PROXY=value)
    assert "password-value" not in str(error)
    assert "<redacted>@proxy.internal" in str(error)


def test_repr_never_shows_the_proxy_password() -> None:
    """repr() of the config leaves the proxy (and so its password) out."""
    config = parse(PROXY="http://user:proxy-password-value@proxy.internal:3128")
    assert "proxy-password-value" not in repr(config)
    assert "proxy.internal" not in repr(config)


# -- LISTENER['MAX_MESSAGE_BYTES'] ----------------------------------------------------------


def test_max_message_bytes_default_holds_the_largest_escaped_event() -> None:
    """The 2 MiB default holds the largest event escaped twice (7 bytes per character)."""
    default = parse().listener.max_message_bytes
    assert default == 2_097_152 == ListenerConfig().max_message_bytes
    assert default > 7 * MAX_EVENT_BYTES + 64 * 1024


@pytest.mark.parametrize("value", [65_536, 2**20, 10 * 2**20])
def test_max_message_bytes_is_read(value: int) -> None:
    """LISTENER['MAX_MESSAGE_BYTES'] sets ListenerConfig.max_message_bytes."""
    assert parse(LISTENER={"MAX_MESSAGE_BYTES": value}).listener.max_message_bytes == value


@pytest.mark.parametrize("value", [65_535, 0, -1, 1.5e6, True, "2MiB", None])
def test_bad_max_message_bytes_is_e009(value: Any) -> None:
    """MAX_MESSAGE_BYTES must be an integer of at least 65,536 (E009)."""
    error = failure(LISTENER={"MAX_MESSAGE_BYTES": value})
    assert (error.key, error.check_id) == (
        "LISTENER['MAX_MESSAGE_BYTES']",
        "appsync_events.E009",
    )
    assert f"must be an integer at least 65536, not {value!r}." in str(error)


# -- OUTBOX['HTTP_PORT'] -------------------------------------------------------------------


def test_outbox_http_port_and_host_are_read() -> None:
    """OUTBOX['HTTP_PORT'] and ['HTTP_HOST'] set the drainer's server; none by default."""
    assert (parse().outbox.http_port, parse().outbox.http_host) == (None, "0.0.0.0")  # noqa: S104
    outbox = parse(OUTBOX={"HTTP_PORT": 9101, "HTTP_HOST": "127.0.0.1"}).outbox
    assert (outbox.http_port, outbox.http_host) == (9101, "127.0.0.1")
    assert parse(OUTBOX={"HTTP_PORT": 0}).outbox.http_port == 0


@pytest.mark.parametrize("value", [-1, 65_536, "9101", 9101.0, True])
def test_bad_outbox_http_port_is_e009(value: Any) -> None:
    """OUTBOX['HTTP_PORT'] must be an integer from 0 to 65535 (E009)."""
    error = failure(OUTBOX={"HTTP_PORT": value})
    assert (error.key, error.check_id) == ("OUTBOX['HTTP_PORT']", "appsync_events.E009")
    assert f"must be an integer from 0 to 65535, not {value!r}." in str(error)


# -- API_ID ------------------------------------------------------------------------------


def test_api_id_is_read_and_optional() -> None:
    """API_ID fills APIConfig.api_id; without it the field is None."""
    assert parse(API_ID="abcdefghijklmnopqrstuvwxyz").api_id == "abcdefghijklmnopqrstuvwxyz"
    assert parse().api_id is None
    assert parse(API_ID=None).api_id is None


@pytest.mark.parametrize("value", ["", "abc-def", "abc.appsync-api", 42])
def test_bad_api_id_is_e009(value: Any) -> None:
    """API_ID must be letters and digits (E009)."""
    error = failure(API_ID=value)
    assert (error.key, error.check_id) == ("API_ID", "appsync_events.E009")
    assert "must be the Event API's id" in str(error)


# -- NAMESPACES[...]['HANDLERS'] ---------------------------------------------------------------


def test_handlers_are_read_into_the_namespace(tmp_path: Any) -> None:
    """HANDLERS holds an absolute code file (str or Path) and the two integrations."""
    code = tmp_path / "chat.js"
    handlers = {
        "CODE_FILE": code,
        "ON_PUBLISH": {"BEHAVIOR": "DIRECT", "DATA_SOURCE": "chat_fn", "INVOKE_TYPE": "EVENT"},
        "ON_SUBSCRIBE": {"BEHAVIOR": "CODE", "DATA_SOURCE": "table"},
    }
    config = parse(NAMESPACES={"chat": {"HANDLERS": handlers}, "ops": {}})
    assert config.namespaces["chat"].handlers == NamespaceHandlersConfig(
        str(code),
        HandlerIntegrationConfig("DIRECT", "chat_fn", "EVENT"),
        HandlerIntegrationConfig("CODE", "table"),
    )
    assert config.namespaces["ops"].handlers is None


@pytest.mark.parametrize(
    ("handlers", "key", "text"),
    [
        ({}, "['HANDLERS']", "declares nothing"),
        ({"CODE_FILE": "chat.js"}, "['CODE_FILE']", "must be the absolute path"),
        ({"CODE_FILE": 7}, "['CODE_FILE']", "must be the absolute path"),
        (
            {"ON_PUBLISH": {"BEHAVIOR": "CODE", "DATA_SOURCE": "t"}},
            "['ON_PUBLISH']",
            "add CODE_FILE",
        ),
        ({"ON_PUBLISH": {"BEHAVIOR": "LAMBDA", "DATA_SOURCE": "t"}}, "['BEHAVIOR']", "'CODE' or"),
        ({"ON_PUBLISH": {"BEHAVIOR": "DIRECT"}}, "['DATA_SOURCE']", "must name a data source"),
        (
            {"ON_PUBLISH": {"BEHAVIOR": "DIRECT", "DATA_SOURCE": "9fn"}},
            "['DATA_SOURCE']",
            "data source",
        ),
        (
            {"ON_SUBSCRIBE": {"BEHAVIOR": "DIRECT", "DATA_SOURCE": "f", "INVOKE_TYPE": "ASYNC"}},
            "['INVOKE_TYPE']",
            "'REQUEST_RESPONSE' or 'EVENT'",
        ),
        (
            {
                "CODE_FILE": "/srv/chat.js",
                "ON_SUBSCRIBE": {"BEHAVIOR": "CODE", "DATA_SOURCE": "f", "INVOKE_TYPE": "EVENT"},
            },
            "['INVOKE_TYPE']",
            "only applies to BEHAVIOR 'DIRECT'",
        ),
    ],
)
def test_bad_handlers_are_e013(handlers: dict[str, Any], key: str, text: str) -> None:
    """A malformed HANDLERS declaration names the key and what to change (E013)."""
    error = failure(NAMESPACES={"chat": {"HANDLERS": handlers}})
    assert error.check_id == "appsync_events.E013"
    assert "['NAMESPACES']['chat']['HANDLERS']" in str(error)
    assert key in str(error)
    assert text in str(error)


def test_unknown_handler_keys_are_e001() -> None:
    """An unknown key in HANDLERS or in an integration lists the valid ones (E001)."""
    error = failure(NAMESPACES={"chat": {"HANDLERS": {"ON_CONNECT": {}}}})
    assert error.check_id == "appsync_events.E001"
    assert "valid keys are CODE_FILE, ON_PUBLISH, ON_SUBSCRIBE" in str(error)
    error = failure(
        NAMESPACES={"chat": {"HANDLERS": {"ON_PUBLISH": {"BEHAVIOR": "DIRECT", "ARN": "x"}}}}
    )
    assert "valid keys are BEHAVIOR, DATA_SOURCE, INVOKE_TYPE" in str(error)


def test_emulator_ignores_declared_handlers() -> None:
    """The emulator reads the namespaces' auth modes and leaves HANDLERS (APPSYNC_JS) alone."""
    config = parse(
        NAMESPACES={
            "chat": {
                "PUBLISH_AUTH_MODES": ["API_KEY"],
                "HANDLERS": {"ON_PUBLISH": {"BEHAVIOR": "DIRECT", "DATA_SOURCE": "fn"}},
            }
        }
    )
    emulator = AppSyncEventsEmulator(api=config)
    [spec] = emulator.settings.namespaces.values()
    assert (spec.name, spec.publish_auth_modes) == ("chat", ("API_KEY",))
    assert emulator.settings.handlers == {}


@pytest.mark.parametrize(
    ("http_url", "emulator", "port"),
    [
        # The emulator listens where the project will look for it.
        ("http://127.0.0.1:9123/event", {}, 9123),
        ("http://localhost:9124/event", {}, 9124),
        # An explicit PORT wins.
        ("http://127.0.0.1:9123/event", {"PORT": 0}, 0),
        # No port in the URL, or not this machine: the documented default.
        ("http://127.0.0.1/event", {}, 8765),
        ("https://abc.appsync-api.us-east-1.amazonaws.com/event", {}, 8765),
    ],
)
def test_emulator_port_defaults_to_a_loopback_http_urls_port(
    http_url: str, emulator: dict[str, Any], port: int
) -> None:
    """EMULATOR['PORT'] defaults to a loopback HTTP_URL's port, else 8765."""
    config = APIConfig.from_mapping(
        "default", {**LOCAL, "HTTP_URL": http_url, "EMULATOR": emulator}
    )
    assert config.emulator.port == port
