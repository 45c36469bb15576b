"""Direct-mode tokens on the Django side: ``TOKENS`` settings, ``mint``/``verify``, E016,
and ``TokenView`` (the grants of the current user, as the consumer applies them)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser, Group, User
from django.core import checks
from django.test import Client

from appsync_events import conf
from appsync_events.checks import check_tokens
from appsync_events.config import APIConfig
from appsync_events.exceptions import ConfigurationError, InvalidChannelError
from appsync_events.grants import is_granted
from appsync_events.lambda_authorizer import TokenError, authorize
from appsync_events.tokens import IssuedToken, issue, mint, verify

KEY_1 = "tests-key-one-0123456789abcdef012345"
KEY_2 = "tests-key-two-0123456789abcdef012345"
BASE = {"HTTP_URL": "http://127.0.0.1:8765/event", "AUTH": {"API_KEY": "da2-tests"}}
TOKEN_URL = "/appsync/token/"


def configure(settings: Any, **extra: Any) -> None:
    """Set the default alias: namespaces, TOKENS with KEY_1, and ``extra`` keys."""
    settings.APPSYNC_EVENTS = {
        "default": {
            **BASE,
            "NAMESPACES": {"chat": {}, "news": {}, "users": {}},
            "TOKENS": {"SIGNING_KEYS": {"k1": KEY_1}},
            **extra,
        }
    }


def key_id(token: str) -> str:
    """The ``kid`` of a token's header."""
    head = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"])


def keys(*pairs: tuple[str, str]) -> dict[str, bytes]:
    return {key_id: key.encode() for key_id, key in pairs}


def parse(tokens: dict[str, Any]) -> APIConfig:
    return APIConfig.from_mapping("default", {**BASE, "TOKENS": tokens})


# -- TOKENS ----------------------------------------------------------------------------------


def test_tokens_defaults_and_the_single_key_is_current() -> None:
    """One key is the current one; TTL 300 s and MAX_TTL 3600 s by default."""
    tokens = parse({"SIGNING_KEYS": {"k1": KEY_1}}).tokens
    assert tokens.current_key_id == "k1"
    assert (tokens.ttl, tokens.max_ttl) == (300, 3600)
    assert APIConfig.from_mapping("default", BASE).tokens.signing_keys == {}


def test_repr_and_errors_never_show_a_key() -> None:
    """The config's repr names key ids only; a bad key's error does not quote it."""
    config = parse({"SIGNING_KEYS": {"k1": KEY_1, "k2": KEY_2}, "CURRENT_KEY_ID": "k2"})
    assert KEY_1 not in repr(config)
    assert KEY_2 not in repr(config)
    assert "key_ids=('k1', 'k2')" in repr(config.tokens)
    short = "short-but-secret"
    with pytest.raises(ConfigurationError) as caught:
        parse({"SIGNING_KEYS": {"k1": short}})
    assert short not in str(caught.value)


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        ({"SIGNING_KEYS": {"k1": "too-short"}}, "at least 32 characters"),
        ({"SIGNING_KEYS": {"bad id": KEY_1}}, "key id 'bad id'"),
        ({"SIGNING_KEYS": {}}, "non-empty object"),
        ({"SIGNING_KEYS": {"k1": KEY_1, "k2": KEY_2}}, "CURRENT_KEY_ID'\\]: is missing"),
        ({"SIGNING_KEYS": {"k1": KEY_1}, "CURRENT_KEY_ID": "k2"}, "does not hold"),
        ({"CURRENT_KEY_ID": "k1"}, "does not hold"),
        ({"SIGNING_KEYS": {"k1": KEY_1}, "TTL": 4000}, "longer than MAX_TTL"),
        ({"SIGNING_KEYS": {"k1": KEY_1}, "TTL": 0}, "greater than 0"),
        ({"SIGNING_KEYS": {"k1": KEY_1}, "MAX_TTL": 1.5}, "an integer"),
    ],
)
def test_bad_tokens_settings_are_e013(tokens: dict[str, Any], message: str) -> None:
    """Every TOKENS mistake is a ConfigurationError under E016 saying what to change."""
    with pytest.raises(ConfigurationError, match=message) as caught:
        parse(tokens)
    assert caught.value.check_id == "appsync_events.E016"


def test_check_refuses_secret_key_as_signing_key(settings: Any) -> None:
    """E016: a signing key that is SECRET_KEY (or a fallback) is reported; mint refuses it."""
    configure(settings)
    assert check_tokens() == []
    settings.SECRET_KEY_FALLBACKS = [KEY_1]
    [error] = check_tokens()
    assert isinstance(error, checks.Error)
    assert error.id == "appsync_events.E016"
    assert KEY_1 not in error.msg
    with pytest.raises(ConfigurationError, match="SECRET_KEY"):
        mint(None, subscribe=["/news/*"])


# -- mint / verify ---------------------------------------------------------------------------


def test_mint_and_verify(settings: Any) -> None:
    """A minted token verifies to its grants, normalised and de-duplicated, with exp."""
    configure(settings, TOKENS={"SIGNING_KEYS": {"k1": KEY_1}, "TTL": 120})
    user = User(pk=5, username="ada")
    issued = issue(
        user,
        subscribe=["chat/*", "/chat/*/", "/users/5/*"],
        publish=["/chat/rooms/7"],
        now=1_700_000_000,
    )
    assert issued.subscribe == ("/chat/*", "/users/5/*")
    assert issued.expires_at == 1_700_000_120
    assert issued.token not in repr(issued)
    claims = verify(issued.token, now=1_700_000_000)
    assert claims == {
        "sub": "5",
        "iat": 1_700_000_000,
        "exp": 1_700_000_120,
        "s": ["/chat/*", "/users/5/*"],
        "p": ["/chat/rooms/7"],
    }
    with pytest.raises(TokenError) as caught:
        verify(issued.token, now=1_700_000_120)
    assert caught.value.reason == "expired"


def test_mint_ttl_and_patterns_are_checked(settings: Any) -> None:
    """ttl beyond MAX_TTL, a non-positive ttl and an invalid pattern are refused."""
    configure(settings, TOKENS={"SIGNING_KEYS": {"k1": KEY_1}, "MAX_TTL": 600})
    assert isinstance(issue(None, subscribe=["/news/*"], ttl=600), IssuedToken)
    with pytest.raises(ValueError, match="MAX_TTL"):
        mint(None, subscribe=["/news/*"], ttl=601)
    with pytest.raises(ValueError, match="positive"):
        mint(None, subscribe=["/news/*"], ttl=0)
    with pytest.raises(InvalidChannelError):
        mint(None, subscribe=["/news/{user.pk}"])
    with pytest.raises(TypeError, match="list"):
        mint(None, subscribe="/news/*")


def test_mint_without_tokens_settings_says_what_to_add(settings: Any) -> None:
    """Without TOKENS there is no key: mint raises E016 naming the setting."""
    settings.APPSYNC_EVENTS = {"default": BASE}
    with pytest.raises(ConfigurationError, match="TOKENS") as caught:
        mint(None, subscribe=["/news/*"])
    assert caught.value.check_id == "appsync_events.E016"


def test_rotation_by_key_id(settings: Any) -> None:
    """After CURRENT_KEY_ID moves to a new key, old tokens verify until their key is removed."""
    configure(settings)
    old = mint(None, subscribe=["/news/*"])
    configure(settings, TOKENS={"SIGNING_KEYS": {"k1": KEY_1, "k2": KEY_2}, "CURRENT_KEY_ID": "k2"})
    new = mint(None, subscribe=["/news/*"])
    assert verify(old)["s"] == verify(new)["s"] == ["/news/*"]
    assert key_id(old) == "k1"
    assert key_id(new) == "k2"
    configure(settings, TOKENS={"SIGNING_KEYS": {"k2": KEY_2}})
    assert verify(new)["s"] == ["/news/*"]
    with pytest.raises(TokenError) as caught:
        verify(old)
    assert caught.value.reason == "unknown_key"


def test_the_authorizer_decides_by_containment_on_minted_tokens(settings: Any) -> None:
    """Wildcard grants in a minted token allow what they contain, and only that."""
    configure(settings)
    token = mint(None, subscribe=["/chat/rooms/*"], publish=["/chat/rooms/7"])
    allowed = conf.get_api_config().tokens.signing_keys
    verify_keys = keys(*allowed.items())

    def ask(operation: str, channel: str) -> bool:
        request = {
            "authorizationToken": token,
            "requestContext": {"operation": operation, "channel": channel},
        }
        return bool(authorize(request, verify_keys)["isAuthorized"])

    assert ask("EVENT_SUBSCRIBE", "/chat/rooms/1")
    assert ask("EVENT_SUBSCRIBE", "/chat/rooms/*")
    assert not ask("EVENT_SUBSCRIBE", "/chat/*")
    assert ask("EVENT_PUBLISH", "/chat/rooms/7")
    assert not ask("EVENT_PUBLISH", "/chat/rooms/1")


# -- TokenView -------------------------------------------------------------------------------

GRANTS = [
    {"SUBSCRIBE": ["/chat/*", "/users/{user.pk}/*"], "PUBLISH": ["/chat/rooms/*"]},
    {"WHO": "group:editors", "PUBLISH": ["/news/*"]},
    {"WHO": "anonymous", "SUBSCRIBE": ["/news/*"]},
]


@pytest.mark.django_db
def test_view_gives_a_signed_in_user_the_grants_the_consumer_applies(settings: Any) -> None:
    """The token's patterns are the user's GRANTS with placeholders bound; the authorizer
    and the consumer's ``is_granted`` agree on every channel."""
    configure(settings, GRANTS=GRANTS)
    user = User.objects.create_user("ada", password="pw")
    Group.objects.create(name="editors").user_set.add(user)
    client = Client()
    client.force_login(user)
    response = client.get(TOKEN_URL)
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    assert "Cookie" in response["Vary"]
    body = response.json()
    assert set(body) == {
        "token",
        "expires_at",
        "expires_in",
        "http_url",
        "realtime_url",
        "subscribe",
        "publish",
    }
    assert body["subscribe"] == ["/chat/*", f"/users/{user.pk}/*"]
    assert body["publish"] == ["/chat/rooms/*", "/news/*"]
    assert body["http_url"] == "http://127.0.0.1:8765/event"
    assert body["realtime_url"] == "ws://127.0.0.1:8765/event/realtime"
    assert 295 <= body["expires_in"] <= 300
    claims = verify(body["token"])
    assert claims["sub"] == str(user.pk)
    assert claims["exp"] == body["expires_at"]
    grants = conf.get_api_config().grants
    verify_keys = keys(("k1", KEY_1))
    for operation, event_operation in (
        ("subscribe", "EVENT_SUBSCRIBE"),
        ("publish", "EVENT_PUBLISH"),
    ):
        for channel in (
            "/chat/rooms/1",
            "/chat/*",
            f"/users/{user.pk}/inbox",
            f"/users/{user.pk + 1}/inbox",
            "/news/today",
            "/admin/x",
        ):
            if operation == "publish" and channel.endswith("*"):
                continue
            request = {
                "authorizationToken": body["token"],
                "requestContext": {"operation": event_operation, "channel": channel},
            }
            expected = is_granted(grants, user, operation, channel)  # type: ignore[arg-type]
            decided = authorize(request, verify_keys)["isAuthorized"]
            assert decided is expected, (operation, channel)


@pytest.mark.django_db
def test_view_denies_by_default(settings: Any) -> None:
    """Granted nothing: 401 for an anonymous visitor, 403 for a signed-in user, no token."""
    configure(settings, GRANTS=[{"SUBSCRIBE": ["/chat/*"]}])
    anonymous = Client().get(TOKEN_URL)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"] == "not_authenticated"
    assert "token" not in anonymous.json()
    configure(settings, GRANTS=[{"WHO": "staff", "SUBSCRIBE": ["/chat/*"]}])
    client = Client()
    client.force_login(User.objects.create_user("bob"))
    forbidden = client.get(TOKEN_URL)
    assert forbidden.status_code == 403
    assert forbidden.json()["error"] == "forbidden"
    assert "no-store" in forbidden["Cache-Control"]


@pytest.mark.django_db
def test_view_serves_anonymous_visitors_only_what_is_declared(settings: Any) -> None:
    """A grant with WHO anonymous gives anonymous visitors a token of exactly that."""
    configure(settings, GRANTS=GRANTS)
    body = Client().get(TOKEN_URL).json()
    assert body["subscribe"] == ["/news/*"]
    assert body["publish"] == []
    assert verify(body["token"])["sub"] == ""
    assert is_granted(conf.get_api_config().grants, AnonymousUser(), "subscribe", "/news/x")


@pytest.mark.django_db
def test_view_without_signing_keys_is_a_logged_503(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """No TOKENS['SIGNING_KEYS']: 503 in JSON for the browser (no configuration detail),
    an ERROR line naming the setting for the project."""
    configure(settings, GRANTS=GRANTS)
    settings.APPSYNC_EVENTS = {
        "default": {k: v for k, v in settings.APPSYNC_EVENTS["default"].items() if k != "TOKENS"}
    }
    response = Client().get(TOKEN_URL)
    assert response.status_code == 503
    assert response.json()["error"] == "not_configured"
    assert "SIGNING_KEYS" not in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    (record,) = [r for r in caplog.records if r.name == "appsync_events.views"]
    assert record.levelname == "ERROR"
    assert "TOKENS['SIGNING_KEYS']" in record.getMessage()


@pytest.mark.django_db
def test_view_answers_get_only(settings: Any) -> None:
    """The token view refuses other methods."""
    configure(settings, GRANTS=GRANTS)
    assert Client().post(TOKEN_URL).status_code == 405
