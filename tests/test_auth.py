"""Auth helpers: mode selection, the header- subprotocol, API keys, the websocket-publish guard."""

from __future__ import annotations

from typing import Any

import pytest

from appsync_events.auth import (
    AuthBackend,
    AuthRequest,
    connect_headers,
    decode_header_subprotocol,
    encode_header_subprotocol,
    get_auth_backend,
    http_headers,
    operation_headers,
    websocket_publish_safe,
)
from appsync_events.auth.api_key import APIKeyAuth
from appsync_events.conf import get_api_config
from appsync_events.exceptions import ConfigurationError, ProtocolError

HOST = "example1234567890000.appsync-api.us-east-1.amazonaws.com"
API_KEY = "da2-12345678901234567890123456"
DOC_HEADER = (
    "header-eyJob3N0IjoiZXhhbXBsZTEyMzQ1Njc4OTAwMDAuYXBwc3luYy1hcGkudXMtZWFzdC0xLmFtYXpvbmF3cy5j"
    "b20iLCJ4LWFwaS1rZXkiOiJkYTItMTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTYifQ"
)


class EchoBackend(AuthBackend):
    """A custom backend (BACKEND dotted path) with one option."""

    mode = "AWS_LAMBDA"
    option_names = frozenset({"label"})

    def get_headers(self, request: AuthRequest) -> dict[str, str]:
        return {"Authorization": f"custom-{request.operation}", "host": self.api.http_host}


@pytest.fixture
def multi_mode(settings) -> Any:
    """An alias holding API key, OIDC and IAM, with namespaces that restrict modes."""
    settings.APPSYNC_EVENTS = {
        "default": {
            "HTTP_URL": f"https://{HOST}/event",
            "AUTH": {
                "API_KEY": API_KEY,
                "OPENID_CONNECT": "oidc-token-value",
                "AWS_IAM": {"access_key_id": "AKIDEXAMPLE", "secret_access_key": "s" * 40},
            },
            "CONNECTION_AUTH_MODE": "OPENID_CONNECT",
            "NAMESPACES": {
                "default": {},
                "secure": {
                    "PUBLISH_AUTH_MODES": ["AMAZON_COGNITO_USER_POOLS", "AWS_IAM"],
                    "SUBSCRIBE_AUTH_MODES": ["OPENID_CONNECT"],
                },
            },
        }
    }
    return get_api_config()


def test_api_key_header_subprotocol_matches_the_doc_byte_for_byte(settings):
    """The doc's API-key connect example encodes to exactly the documented header- value."""
    settings.APPSYNC_EVENTS = {
        "default": {"HTTP_URL": f"https://{HOST}/event", "AUTH": {"API_KEY": API_KEY}}
    }
    headers = connect_headers(get_api_config())
    assert headers == {"host": HOST, "x-api-key": API_KEY}
    assert encode_header_subprotocol(headers) == DOC_HEADER
    assert decode_header_subprotocol(DOC_HEADER) == headers


def test_header_subprotocol_has_no_padding_and_is_url_safe():
    """Encoding strips '=' and uses the URL-safe alphabet for any header object."""
    for n in range(6):
        value = encode_header_subprotocol({"host": "h" * n, "x": "?>~" * n})
        assert "=" not in value
        assert "+" not in value
        assert "/" not in value
        assert decode_header_subprotocol(value) == {"host": "h" * n, "x": "?>~" * n}


@pytest.mark.parametrize(
    "value",
    [
        "nope",
        "header-!!!",
        "header-WzFd",
        "header-eyJhIjoxfQ",
        # A valid object with characters outside the alphabet, which a lenient decoder
        # skips: standard base64, padding, an inserted dot or space.
        "header-eyJhIjoiYiJ9" + "=",
        "header-eyJhIjoi.YiJ9",
        "header-eyJhIjoi YiJ9",
        "header-eyJhIjoi+YiJ9",
        "header-eyJhIjoiYiJ9a",  # a length no base64 text can have
    ],
)
def test_decode_rejects_bad_values(value):
    """Decoding refuses anything but base64url JSON objects of strings."""
    with pytest.raises(ProtocolError):
        decode_header_subprotocol(value)


def test_api_key_in_every_place(settings):
    """API key auth gives x-api-key plus host for connect, operations and HTTP."""
    settings.APPSYNC_EVENTS = {
        "default": {
            "HTTP_URL": "http://127.0.0.1:8765/event",
            "REGION": "us-east-1",
            "AUTH": {"API_KEY": API_KEY},
        }
    }
    api = get_api_config()
    expected = {"host": "127.0.0.1:8765", "x-api-key": API_KEY}
    assert connect_headers(api) == expected
    assert operation_headers(api, "subscribe", "/default/a") == expected
    assert http_headers(api, "/default/a", b"{}") == expected
    assert isinstance(get_auth_backend(api, "API_KEY"), APIKeyAuth)


def test_connect_uses_the_connection_mode_unless_overridden(multi_mode):
    """The connect uses CONNECTION_AUTH_MODE; ``mode=`` overrides it."""
    assert connect_headers(multi_mode)["Authorization"] == "oidc-token-value"
    assert connect_headers(multi_mode, mode="API_KEY")["x-api-key"] == API_KEY


def test_operations_pick_the_first_allowed_mode_held(multi_mode):
    """Per namespace, the first allowed mode the alias holds credentials for is used."""
    # default namespace: API defaults = the modes held, in order -> API_KEY first.
    assert "x-api-key" in operation_headers(multi_mode, "subscribe", "/default/a")
    # secure publish: Cognito is not held, IAM is.
    pub = operation_headers(multi_mode, "publish", "/secure/a", ["1"])
    assert pub["authorization"].startswith("AWS4-HMAC-SHA256 ")
    # secure subscribe: only OIDC.
    assert operation_headers(multi_mode, "subscribe", "/secure/*")["Authorization"] == (
        "oidc-token-value"
    )
    assert http_headers(multi_mode, "/secure/a", b"{}")["authorization"].startswith("AWS4")


def test_explicit_mode_overrides_namespace_choice(multi_mode):
    """``mode=`` picks a held mode regardless of the namespace order."""
    headers = operation_headers(multi_mode, "subscribe", "/default/a", mode="OPENID_CONNECT")
    assert headers["Authorization"] == "oidc-token-value"


def test_mode_not_held_is_a_configuration_error(multi_mode):
    """Asking for a mode the alias holds no credentials for says what it holds."""
    with pytest.raises(ConfigurationError, match="holds no credentials for AWS_LAMBDA"):
        connect_headers(multi_mode, mode="AWS_LAMBDA")


def test_websocket_publish_safe_only_refuses_iam_with_unsafe_characters(multi_mode):
    """Only an IAM publish with <, > or & must avoid the websocket."""
    assert websocket_publish_safe(multi_mode, "/secure/a", ['{"a":"plain"}'])
    for char in "<>&":
        assert not websocket_publish_safe(multi_mode, "/secure/a", ['{"a":1}', f'"{char}"'])
    # The default namespace publishes with the API key: always safe.
    assert websocket_publish_safe(multi_mode, "/default/a", ['"<b>"'])
    assert not websocket_publish_safe(multi_mode, "/default/a", ['"<b>"'], mode="AWS_IAM")


def test_custom_backend_by_dotted_path(settings):
    """BACKEND + OPTIONS load a custom AuthBackend subclass with validated options."""
    settings.APPSYNC_EVENTS = {
        "default": {
            "HTTP_URL": f"https://{HOST}/event",
            "AUTH": {
                "AWS_LAMBDA": {"BACKEND": "tests.test_auth.EchoBackend", "OPTIONS": {"LABEL": "x"}}
            },
        }
    }
    api = get_api_config()
    assert connect_headers(api)["Authorization"] == "custom-connect"
    assert get_auth_backend(api, "AWS_LAMBDA") is get_auth_backend(api, "AWS_LAMBDA")


@pytest.mark.parametrize(
    ("backend", "message"),
    [("tests.test_auth.Missing", "cannot be imported"), ("tests.test_auth.HOST", "not an")],
)
def test_bad_backend_path_is_a_configuration_error(settings, backend, message):
    """A BACKEND that cannot be imported or is no AuthBackend is refused with E008."""
    settings.APPSYNC_EVENTS = {
        "default": {
            "HTTP_URL": f"https://{HOST}/event",
            "AUTH": {"AWS_LAMBDA": {"BACKEND": backend}},
        }
    }
    with pytest.raises(ConfigurationError, match=message) as info:
        connect_headers(get_api_config())
    assert info.value.check_id == "appsync_events.E008"


def test_empty_api_key_is_a_configuration_error(settings):
    """An empty API key is refused with a hint to read it from the environment."""
    settings.APPSYNC_EVENTS = {
        "default": {"HTTP_URL": f"https://{HOST}/event", "AUTH": {"API_KEY": {"api_key": ""}}}
    }
    with pytest.raises(ConfigurationError, match="needs the API key"):
        connect_headers(get_api_config())


def test_backend_repr_and_config_repr_hide_the_key(settings):
    """Neither the backend nor the parsed auth config shows the key."""
    settings.APPSYNC_EVENTS = {
        "default": {"HTTP_URL": f"https://{HOST}/event", "AUTH": {"API_KEY": API_KEY}}
    }
    api = get_api_config()
    backend = get_auth_backend(api, "API_KEY")
    for text in (repr(backend), str(backend), repr(api.auth["API_KEY"]), repr(api)):
        assert API_KEY not in text
