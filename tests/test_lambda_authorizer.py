"""The Lambda authorizer (``appsync_events/lambda_authorizer.py``): tokens, containment,
decisions, and the module alone in a Python where Django and the package are unimportable.

Tokens here are made with the module's own :func:`encode_token` (Django's ``mint`` uses
it too; ``tests/test_tokens.py`` covers the Django side).
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import appsync_events.lambda_authorizer as authorizer
from appsync_events import paths
from appsync_events.lambda_authorizer import (
    KEYS_ENV,
    TokenError,
    authorize,
    check_keys,
    decode_token,
    encode_token,
    handler,
    load_keys,
    parse_keys,
    pattern_contains,
    segments_contain,
)

KEY_1 = "k1-0123456789abcdef0123456789abcdef"
KEY_2 = "k2-fedcba9876543210fedcba9876543210"
KEYS = {"k1": KEY_1.encode(), "k2": KEY_2.encode()}
NOW = 1_700_000_000


def token(
    *,
    subscribe: tuple[str, ...] = ("/chat/rooms/*",),
    publish: tuple[str, ...] = ("/chat/rooms/7",),
    exp: int = NOW + 300,
    key: str = KEY_1,
    kid: str = "k1",
    **extra: Any,
) -> str:
    claims = {"sub": "42", "iat": NOW, "exp": exp, "s": list(subscribe), "p": list(publish)}
    claims.update(extra)
    return encode_token(claims, key, kid)


def event(operation: str, tok: str, channel: str | None = None) -> dict[str, Any]:
    context: dict[str, Any] = {
        "apiId": "api",
        "accountId": "123456789012",
        "requestId": "r1",
        "operation": operation,
    }
    if channel is not None:
        context["channelNamespaceName"] = channel.strip("/").split("/")[0]
        context["channel"] = channel
    return {"authorizationToken": tok, "requestContext": context, "requestHeaders": {}}


def _b64(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).decode().rstrip("=")


# -- the token codec -------------------------------------------------------------------------


def test_round_trip_returns_the_claims() -> None:
    """A token decodes to the claims it was made from."""
    claims = decode_token(token(), KEYS, now=NOW)
    assert claims == {
        "sub": "42",
        "iat": NOW,
        "exp": NOW + 300,
        "s": ["/chat/rooms/*"],
        "p": ["/chat/rooms/7"],
    }


def test_the_header_names_the_algorithm_and_the_key_id() -> None:
    """The token is a compact HS256 JWS whose header names its key id."""
    import base64

    head = token(kid="k2", key=KEY_2).split(".")[0]
    header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    assert header == {"alg": "HS256", "kid": "k2", "typ": "JWT"}


def test_expired_token_is_refused_at_its_expiry() -> None:
    """A token is valid until one second before ``exp`` and refused from ``exp`` on."""
    tok = token(exp=NOW + 10)
    assert decode_token(tok, KEYS, now=NOW + 9.999)["exp"] == NOW + 10
    with pytest.raises(TokenError) as caught:
        decode_token(tok, KEYS, now=NOW + 10)
    assert caught.value.reason == "expired"


def _tampered(part: str) -> str:
    header, claims, signature = token().split(".")
    if part == "header":  # point at the other key: the signature no longer fits
        header = _b64(b'{"alg":"HS256","kid":"k2","typ":"JWT"}')
    elif part == "claims":  # grant more, keep the signature
        wider = {"sub": "42", "iat": NOW, "exp": NOW + 300, "s": ["/admin/*"], "p": []}
        claims = _b64(json.dumps(wider, separators=(",", ":")).encode())
    else:
        signature = ("B" if signature[0] == "A" else "A") + signature[1:]
    return f"{header}.{claims}.{signature}"


@pytest.mark.parametrize("part", ["header", "claims", "signature"])
def test_any_tampered_part_is_refused(part: str) -> None:
    """Changing the header, the claims or the signature fails verification."""
    with pytest.raises(TokenError) as caught:
        decode_token(_tampered(part), KEYS, now=NOW)
    assert caught.value.reason == "bad_signature"


def test_signature_with_another_key_of_the_same_id_is_refused() -> None:
    """A token signed with a key the verifier does not hold under that id is refused."""
    forged = token(key="x" * 40)
    with pytest.raises(TokenError) as caught:
        decode_token(forged, KEYS, now=NOW)
    assert caught.value.reason == "bad_signature"


def test_unknown_key_id_is_refused() -> None:
    """A token naming a key id the verifier lacks is refused as ``unknown_key``."""
    with pytest.raises(TokenError) as caught:
        decode_token(token(kid="k9"), KEYS, now=NOW)
    assert caught.value.reason == "unknown_key"


def test_rotation_old_and_new_keys_verify_until_the_old_is_removed() -> None:
    """During a rotation tokens of both key ids verify; removing a key refuses its tokens."""
    old, new = token(kid="k1", key=KEY_1), token(kid="k2", key=KEY_2)
    assert decode_token(old, KEYS, now=NOW)["sub"] == "42"
    assert decode_token(new, KEYS, now=NOW)["sub"] == "42"
    after = {"k2": KEY_2.encode()}
    assert decode_token(new, after, now=NOW)["sub"] == "42"
    with pytest.raises(TokenError) as caught:
        decode_token(old, after, now=NOW)
    assert caught.value.reason == "unknown_key"


def test_other_algorithms_are_refused_even_with_a_valid_key_id() -> None:
    """``alg: none`` (and anything but HS256) is refused whatever the signature."""
    header = _b64(b'{"alg":"none","kid":"k1","typ":"JWT"}')
    claims = _b64(json.dumps({"exp": NOW + 300, "s": ["/admin/*"], "p": []}).encode())
    with pytest.raises(TokenError) as caught:
        decode_token(f"{header}.{claims}.", KEYS, now=NOW)
    assert caught.value.reason == "unsupported_algorithm"


@pytest.mark.parametrize(
    "tok",
    [
        None,
        "",
        "a.b",
        "a.b.c.d",
        "!!!.abc.def",
        _b64(b"[1]") + ".e30.e30",
        "x" * 20_000,
    ],
)
def test_malformed_tokens_are_refused(tok: Any) -> None:
    """Anything that is not three base64url JSON parts is refused as ``malformed``."""
    with pytest.raises(TokenError) as caught:
        decode_token(tok, KEYS, now=NOW)
    assert caught.value.reason == "malformed"


@pytest.mark.parametrize(
    "claims",
    [
        {"s": [], "p": []},
        {"exp": True, "s": [], "p": []},
        {"exp": "1700000300", "s": [], "p": []},
        {"exp": NOW + 300, "s": "/chat/*", "p": []},
        {"exp": NOW + 300, "s": [], "p": [7]},
    ],
)
def test_well_signed_tokens_with_bad_claims_are_refused(claims: dict[str, Any]) -> None:
    """A signed token without an integer ``exp`` or with non-list patterns is malformed."""
    with pytest.raises(TokenError) as caught:
        decode_token(encode_token(claims, KEY_1, "k1"), KEYS, now=NOW)
    assert caught.value.reason == "malformed"


def test_bearer_prefix_is_accepted() -> None:
    """``Bearer <token>`` verifies like the bare token."""
    assert decode_token("Bearer " + token(), KEYS, now=NOW)["sub"] == "42"


def test_errors_never_quote_the_token() -> None:
    """No TokenError message contains the token or its signature."""
    tok = token()
    for bad in (tok[:-3] + "AAA", token(kid="k9"), token(exp=NOW - 1)):
        with pytest.raises(TokenError) as caught:
            decode_token(bad, KEYS, now=NOW)
        assert bad not in str(caught.value)
        assert bad.split(".")[2] not in str(caught.value)


def test_encode_refuses_a_bad_key_id() -> None:
    """A key id outside the grammar cannot be written into a token."""
    with pytest.raises(ValueError, match="key id"):
        encode_token({"exp": NOW}, KEY_1, "bad id")


# -- keys ------------------------------------------------------------------------------------


def test_parse_keys_reads_the_json_object() -> None:
    """The environment variable's JSON object becomes key id → key bytes."""
    assert parse_keys(json.dumps({"k1": KEY_1})) == {"k1": KEY_1.encode()}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not valid JSON"),
        ("[]", "non-empty object"),
        ("{}", "non-empty object"),
        ('{"bad id": "' + "x" * 40 + '"}', "key id 'bad id'"),
        ('{"k1": "short"}', "at least 32 characters"),
        ('{"k1": 12345}', "at least 32 characters"),
    ],
)
def test_parse_keys_explains_what_is_wrong(text: str, message: str) -> None:
    """A bad key variable is refused with the rule it breaks."""
    with pytest.raises(ValueError, match=message):
        parse_keys(text)


def test_swapped_keys_and_ids_never_show_the_key() -> None:
    """Keys written as ids (and ids as keys) are refused without quoting the key whole."""
    secret = "S3cr3t-0123456789abcdefghijklmnopqrstuvwxyz"
    with pytest.raises(ValueError, match="at least 32 characters") as caught:
        check_keys({secret: "k1"})
    assert secret not in str(caught.value)


def test_load_keys_needs_the_variable() -> None:
    """Without the variable, load_keys says which variable to set."""
    with pytest.raises(ValueError, match=KEYS_ENV):
        load_keys({})
    assert load_keys({KEYS_ENV: json.dumps({"k1": KEY_1})}) == {"k1": KEY_1.encode()}


# -- containment -----------------------------------------------------------------------------

CONTAINMENT = [
    ("/chat/*", "/chat/rooms/7", True),
    ("/chat/*", "/chat/rooms/*", True),
    ("/chat/*", "/chat/*", True),
    ("/chat/*", "/chat", False),
    ("/chat/*", "/chatter/x", False),
    ("/chat/rooms/*", "/chat/*", False),
    ("/chat/rooms/7", "/chat/rooms/7", True),
    ("/chat/rooms/7", "chat/rooms/7/", True),
    ("/chat/rooms/7", "/chat/rooms/7/*", False),
    ("/chat/rooms/7", "/chat/rooms/8", False),
    ("/chat/rooms/*", "/chat/rooms/7/a/b", True),
    ("/a/b", "/a", False),
]


@pytest.mark.parametrize(("outer", "inner", "expected"), CONTAINMENT)
def test_containment_follows_appsync_wildcards(outer: str, inner: str, expected: bool) -> None:
    """A trailing ``/*`` covers every channel below at any depth, never the parent."""
    assert pattern_contains(outer, inner) is expected


@pytest.mark.parametrize(("outer", "inner", "expected"), CONTAINMENT)
def test_paths_pattern_contains_is_the_same_rule(outer: str, inner: str, expected: bool) -> None:
    """Django's ``paths.pattern_contains`` decides every case as the authorizer does."""
    assert paths.pattern_contains(outer, inner) is expected


def test_paths_delegates_to_the_authorizers_implementation(monkeypatch: pytest.MonkeyPatch):
    """``paths.pattern_contains`` calls the authorizer's ``segments_contain`` (one rule)."""
    calls: list[tuple[Any, ...]] = []

    def spy(*args: Any) -> bool:
        calls.append(args)
        return segments_contain(*args)

    monkeypatch.setattr(paths, "segments_contain", spy)
    assert paths.pattern_contains("/chat/*", "/chat/x") is True
    assert calls == [(("chat",), True, ("chat", "x"), False)]


@pytest.mark.parametrize("bad", ["", "/", "/*", "/chat//x", "/chat/a*", "/chat/*/x", None])
def test_malformed_channels_contain_and_are_contained_by_nothing(bad: Any) -> None:
    """A request channel that is no path or pattern is never granted."""
    assert pattern_contains("/chat/*", bad) is False
    assert pattern_contains(bad, "/chat/x") is False


# -- decisions -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "channel", "allowed"),
    [
        ("EVENT_CONNECT", None, True),
        ("EVENT_SUBSCRIBE", "/chat/rooms/7", True),
        ("EVENT_SUBSCRIBE", "/chat/rooms/*", True),
        ("EVENT_SUBSCRIBE", "/chat/rooms/7/thread/*", True),
        ("EVENT_SUBSCRIBE", "/chat/*", False),
        ("EVENT_SUBSCRIBE", "/chat/lobby", False),
        ("EVENT_SUBSCRIBE", "/admin/rooms/7", False),
        ("EVENT_SUBSCRIBE", None, False),
        ("EVENT_PUBLISH", "/chat/rooms/7", True),
        ("EVENT_PUBLISH", "/chat/rooms/8", False),
        ("EVENT_PUBLISH", "/chat/rooms/*", False),
        ("EVENT_PUBLISH", None, False),
        ("EVENT_UNKNOWN", "/chat/rooms/7", False),
    ],
)
def test_decision_per_operation(operation: str, channel: str | None, allowed: bool) -> None:
    """Connect: any valid token; subscribe and publish: only channels a pattern contains;
    every answer is uncached (``ttlOverride`` 0)."""
    answer = authorize(event(operation, token(), channel), KEYS, now=NOW)
    assert answer["isAuthorized"] is allowed
    assert answer["ttlOverride"] == 0
    if allowed:
        assert answer["handlerContext"] == {"sub": "42"}
    else:
        assert "handlerContext" not in answer


def test_publish_grant_by_wildcard_pattern() -> None:
    """A publish pattern ``/chat/rooms/*`` lets the token publish to any room."""
    tok = token(publish=("/chat/rooms/*",))
    for channel, allowed in (("/chat/rooms/1", True), ("/chat/rooms/1/a", True), ("/chat", False)):
        answer = authorize(event("EVENT_PUBLISH", tok, channel), KEYS, now=NOW)
        assert answer["isAuthorized"] is allowed, channel


def test_subscribe_grants_do_not_grant_publishing() -> None:
    """A channel granted for subscribing only cannot be published to, and vice versa."""
    tok = token(subscribe=("/chat/rooms/*",), publish=())
    assert not authorize(event("EVENT_PUBLISH", tok, "/chat/rooms/7"), KEYS, now=NOW)[
        "isAuthorized"
    ]
    tok = token(subscribe=(), publish=("/chat/rooms/7",))
    assert not authorize(event("EVENT_SUBSCRIBE", tok, "/chat/rooms/7"), KEYS, now=NOW)[
        "isAuthorized"
    ]


@pytest.mark.parametrize("operation", ["EVENT_CONNECT", "EVENT_SUBSCRIBE", "EVENT_PUBLISH"])
def test_invalid_tokens_are_refused_for_every_operation(operation: str) -> None:
    """Expired, unknown-key, tampered or missing tokens are refused, uncached."""
    for bad in (token(exp=NOW), token(kid="k9"), _tampered("claims"), "", None):
        answer = authorize(event(operation, bad, "/chat/rooms/7"), KEYS, now=NOW)  # type: ignore[arg-type]
        assert answer == {"isAuthorized": False, "ttlOverride": 0}


def test_anonymous_token_has_an_empty_subject() -> None:
    """A token minted for an anonymous visitor carries ``sub`` ``""`` to the handlers."""
    tok = encode_token({"sub": "", "exp": NOW + 60, "s": ["/news/*"], "p": []}, KEY_1, "k1")
    answer = authorize(event("EVENT_SUBSCRIBE", tok, "/news/today"), KEYS, now=NOW)
    assert answer == {"isAuthorized": True, "ttlOverride": 0, "handlerContext": {"sub": ""}}


def test_refusals_are_logged_without_the_token(caplog: pytest.LogCaptureFixture) -> None:
    """A refusal says why in the log; the token never appears there."""
    tok = token()
    with caplog.at_level(logging.INFO, logger=authorizer.__name__):
        authorize(event("EVENT_SUBSCRIBE", tok, "/admin/x"), KEYS, now=NOW)
        authorize(event("EVENT_CONNECT", token(exp=NOW), None), KEYS, now=NOW)
    text = caplog.text
    assert "/admin/x" in text
    assert "expired" in text
    assert tok not in text
    assert tok.split(".")[2] not in text


def test_handler_reads_the_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """``handler`` verifies with the keys of APPSYNC_EVENTS_TOKEN_KEYS, read per request."""
    monkeypatch.setenv(KEYS_ENV, json.dumps({"k1": KEY_1}))
    live = encode_token({"sub": "1", "exp": 4_000_000_000, "s": ["/chat/*"], "p": []}, KEY_1, "k1")
    assert handler(event("EVENT_SUBSCRIBE", live, "/chat/x"), None)["isAuthorized"] is True
    monkeypatch.setenv(KEYS_ENV, json.dumps({"k2": KEY_2}))  # k1 rotated out
    assert handler(event("EVENT_SUBSCRIBE", live, "/chat/x"), None)["isAuthorized"] is False


@pytest.mark.parametrize("value", [None, "{broken", json.dumps({"k1": "short"})])
def test_handler_without_valid_keys_refuses_and_says_why(
    value: str | None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A missing or invalid key variable refuses every request and logs an error."""
    if value is None:
        monkeypatch.delenv(KEYS_ENV, raising=False)
    else:
        monkeypatch.setenv(KEYS_ENV, value)
    live = encode_token({"sub": "1", "exp": 4_000_000_000, "s": [], "p": []}, KEY_1, "k1")
    with caplog.at_level(logging.ERROR, logger=authorizer.__name__):
        assert handler(event("EVENT_CONNECT", live), None) == {
            "isAuthorized": False,
            "ttlOverride": 0,
        }
    assert KEYS_ENV in caplog.text


# -- the module alone ------------------------------------------------------------------------


def test_the_module_runs_alone_with_only_the_standard_library(tmp_path: Path) -> None:
    """Copied alone into an empty folder, the file imports and decides in a Python where
    neither Django nor the package can be imported, and loads only standard modules."""
    shutil.copy(Path(authorizer.__file__), tmp_path / "lambda_authorizer.py")
    code = textwrap.dedent(
        f"""
        import json, os, sys, time
        sys.modules["django"] = None
        sys.modules["appsync_events"] = None
        sys.path.insert(0, {str(tmp_path)!r})
        import lambda_authorizer as la
        os.environ[la.KEYS_ENV] = json.dumps({{"k1": {KEY_1!r}}})
        tok = la.encode_token(
            {{"sub": "7", "exp": int(time.time()) + 60, "s": ["/chat/*"], "p": ["/chat/a"]}},
            {KEY_1!r}, "k1")
        def ask(op, channel=None):
            ctx = {{"operation": op, "apiId": "a", "accountId": "1", "requestId": "r"}}
            if channel:
                ctx["channel"] = channel
                ctx["channelNamespaceName"] = channel.split("/")[1]
            return la.handler({{"authorizationToken": tok, "requestContext": ctx,
                                "requestHeaders": {{}}}}, None)["isAuthorized"]
        results = [ask("EVENT_CONNECT"), ask("EVENT_SUBSCRIBE", "/chat/x"),
                   ask("EVENT_SUBSCRIBE", "/admin/x"), ask("EVENT_PUBLISH", "/chat/a"),
                   ask("EVENT_PUBLISH", "/chat/b")]
        foreign = sorted(
            name for name in sys.modules
            if sys.modules[name] is not None
            and name.split(".")[0] not in sys.stdlib_module_names
            and name not in ("__main__", "lambda_authorizer")
        )
        print(json.dumps({{"results": results, "foreign": foreign, "file": la.__file__}}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["results"] == [True, True, False, True, False]
    assert out["foreign"] == []
    assert out["file"] == str(tmp_path / "lambda_authorizer.py")
