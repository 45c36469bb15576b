"""The AppSync Events Lambda authorizer for direct-mode tokens: one file, standard library only.

Deploy this file as it is (handler ``lambda_authorizer.handler``, any Python 3.11+
runtime) and make it the API's ``AWS_LAMBDA`` auth provider for connect, subscribe and
publish (see ``docs/direct.md``). It verifies the tokens Django mints
(:func:`appsync_events.tokens.mint`) with the signing keys in the environment variable
``APPSYNC_EVENTS_TOKEN_KEYS`` (a JSON object, key id → key) and decides:

``EVENT_CONNECT``
    allowed for any valid (well signed, unexpired) token;
``EVENT_SUBSCRIBE``
    allowed when a subscribe pattern of the token contains the channel (a channel or a
    wildcard pattern such as ``/chat/*``);
``EVENT_PUBLISH``
    allowed when a publish pattern of the token contains the channel.

Every answer carries ``ttlOverride: 0``. AppSync caches an authorizer's answer per token
(``authorizerResultTtlInSeconds``, up to 3600 s), and a cached answer would stand for the
next request with the same token whatever its operation or channel: an "allowed" for the
connect, or for a subscribe to ``/chat/rooms/7``, would let the same token subscribe to
``/admin/*``. With caching off, every decision is the token's own.

This file is also the one home of the token format (:func:`encode_token`,
:func:`decode_token`) and of pattern containment (:func:`segments_contain`): Django
mints with the same code (:mod:`appsync_events.tokens`) and
:func:`appsync_events.paths.pattern_contains` delegates here, so the two sides can never
disagree.

The token is a JWS in compact form (a JWT) signed with HMAC-SHA256::

    header  {"alg": "HS256", "kid": "<key id>", "typ": "JWT"}
    claims  {"sub": "<user pk, '' when anonymous>", "iat": 1700000000,
             "exp": 1700000300, "s": ["/chat/*"], "p": ["/chat/rooms/7"]}

``s`` holds the subscribe patterns and ``p`` the publish patterns. Nothing here logs a
token or a key.

Request and response shapes:
https://docs.aws.amazon.com/appsync/latest/eventapi/configure-event-api-auth.html
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

__all__ = [
    "ALGORITHM",
    "KEYS_ENV",
    "KEY_ID_RE",
    "MIN_KEY_LENGTH",
    "TokenError",
    "authorize",
    "check_keys",
    "decode_token",
    "encode_token",
    "handler",
    "load_keys",
    "parse_keys",
    "pattern_contains",
    "segments_contain",
    "split_path",
]

logger = logging.getLogger(__name__)

#: The environment variable holding the signing keys, a JSON object: key id → key.
KEYS_ENV: Final = "APPSYNC_EVENTS_TOKEN_KEYS"
#: The one signature algorithm tokens use (any other is refused).
ALGORITHM: Final = "HS256"
#: A key id: 1 to 64 letters, digits, ``.``, ``_`` or ``-``.
KEY_ID_RE: Final = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")
#: The shortest signing key accepted, in characters.
MIN_KEY_LENGTH: Final = 32
#: Longer tokens are refused unread.
MAX_TOKEN_LENGTH: Final = 16_384

_BASE64URL: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_OPERATIONS: Final = ("EVENT_CONNECT", "EVENT_SUBSCRIBE", "EVENT_PUBLISH")


class TokenError(ValueError):
    """Raised when a token cannot be verified; ``reason`` says why, never quoting it.

    Attributes:
        reason: ``"malformed"``, ``"unsupported_algorithm"``, ``"unknown_key"``,
            ``"bad_signature"`` or ``"expired"``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# -- keys --------------------------------------------------------------------------------


def _shown_id(key_id: Any) -> str:
    """A key id as errors may quote it: a long one is cut, in case keys and ids were
    swapped and the "id" is a key."""
    text = key_id if isinstance(key_id, str) else type(key_id).__name__
    return repr(text if len(text) <= 16 else text[:4] + "...")


def check_keys(keys: Any) -> dict[str, bytes]:
    """Validate signing keys (key id → key text) and return them as bytes.

    Raises:
        ValueError: naming the key id at fault and the rule, never a key.
    """
    if not isinstance(keys, Mapping) or not keys:
        raise ValueError(
            "signing keys must be a non-empty object of key id → key, e.g. "
            '{"2025-01": "<at least 32 random characters>"}'
        )
    out: dict[str, bytes] = {}
    for key_id, key in keys.items():
        if not isinstance(key_id, str) or not KEY_ID_RE.match(key_id):
            raise ValueError(
                f"key id {_shown_id(key_id)} must be 1 to 64 letters, digits, '.', '_' or '-'"
            )
        if not isinstance(key, str) or len(key) < MIN_KEY_LENGTH:
            raise ValueError(
                f"the key of key id {_shown_id(key_id)} must be a string of at least "
                f'{MIN_KEY_LENGTH} characters (e.g. python -c "import secrets; '
                'print(secrets.token_urlsafe(48))")'
            )
        out[key_id] = key.encode()
    return out


def parse_keys(text: str) -> dict[str, bytes]:
    """Parse the JSON text of :data:`KEYS_ENV` into validated keys.

    Raises:
        ValueError: the text is not a JSON object of valid key ids and keys.
    """
    try:
        value = json.loads(text)
    except ValueError:
        raise ValueError(f"{KEYS_ENV} is not valid JSON; write a JSON object") from None
    try:
        return check_keys(value)
    except ValueError as exc:
        raise ValueError(f"{KEYS_ENV}: {exc}") from None


@functools.lru_cache(maxsize=4)
def _cached_keys(text: str) -> dict[str, bytes]:
    return parse_keys(text)


def load_keys(environ: Mapping[str, str] | None = None) -> dict[str, bytes]:
    """Return the signing keys of :data:`KEYS_ENV` in ``environ`` (default ``os.environ``).

    Raises:
        ValueError: the variable is unset or invalid.
    """
    text = (os.environ if environ is None else environ).get(KEYS_ENV)
    if not text:
        raise ValueError(
            f"{KEYS_ENV} is not set; set it to the JSON object of signing keys "
            "(key id → key) that Django's TOKENS['SIGNING_KEYS'] holds"
        )
    return _cached_keys(text)


# -- the token codec ---------------------------------------------------------------------


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _b64decode(text: str) -> bytes:
    if not _BASE64URL.issuperset(text) or len(text) % 4 == 1:
        # urlsafe_b64decode would skip characters outside the alphabet silently.
        raise TokenError("malformed", "the token is not three base64url parts")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error:
        raise TokenError("malformed", "the token is not three base64url parts") from None


def _json_part(text: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64decode(text))
    except (ValueError, RecursionError):
        raise TokenError("malformed", "a token part is not a JSON object") from None
    if not isinstance(value, dict):
        raise TokenError("malformed", "a token part is not a JSON object")
    return value


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _signature(key: bytes, signing_input: str) -> bytes:
    return hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()


def encode_token(claims: Mapping[str, Any], key: bytes | str, key_id: str) -> str:
    """Return ``claims`` signed with ``key`` (HS256) as a compact JWS naming ``key_id``.

    Args:
        claims: JSON-serialisable claims (``exp`` included by the caller).
        key: the signing key.
        key_id: its id, written to the header (``kid``) so verifiers pick the key.

    Raises:
        ValueError: ``key_id`` breaks :data:`KEY_ID_RE`.
    """
    if not KEY_ID_RE.match(key_id):
        raise ValueError(f"key id {key_id!r} must be 1 to 64 letters, digits, '.', '_' or '-'")
    header = {"alg": ALGORITHM, "kid": key_id, "typ": "JWT"}
    signing_input = _b64encode(_compact(header)) + "." + _b64encode(_compact(dict(claims)))
    raw_key = key.encode() if isinstance(key, str) else key
    return signing_input + "." + _b64encode(_signature(raw_key, signing_input))


def _patterns(claims: Mapping[str, Any], name: str) -> list[str]:
    value = claims.get(name, [])
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise TokenError("malformed", f"the token's {name!r} claim is not a list of patterns")
    return value


def decode_token(
    token: Any, keys: Mapping[str, bytes], *, now: float | None = None
) -> dict[str, Any]:
    """Verify ``token`` against ``keys`` and return its claims.

    The key is picked by the header's ``kid``; the signature is compared in constant
    time before the claims are read; ``exp`` must be in the future.

    Args:
        token: the token (a leading ``Bearer`` is ignored).
        keys: key id → key bytes (see :func:`check_keys`).
        now: the current time (default ``time.time()``).

    Raises:
        TokenError: with the reason; the message never quotes the token.
    """
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        raise TokenError("malformed", "the token is missing or too long")
    text = token.strip()
    if text[:7].lower() == "bearer ":
        text = text[7:].strip()
    parts = text.split(".")
    if len(parts) != 3:
        raise TokenError("malformed", "the token is not three base64url parts")
    header = _json_part(parts[0])
    if header.get("alg") != ALGORITHM:
        raise TokenError("unsupported_algorithm", f"only {ALGORITHM} tokens are accepted")
    key_id = header.get("kid")
    key = keys.get(key_id) if isinstance(key_id, str) else None
    if key is None:
        raise TokenError("unknown_key", "the token names a key id this verifier does not hold")
    signature = _b64decode(parts[2])
    if not hmac.compare_digest(signature, _signature(key, parts[0] + "." + parts[1])):
        raise TokenError("bad_signature", "the token's signature does not match")
    claims = _json_part(parts[1])
    expires = claims.get("exp")
    if isinstance(expires, bool) or not isinstance(expires, int):
        raise TokenError("malformed", "the token has no integer 'exp' claim")
    if (time.time() if now is None else now) >= expires:
        raise TokenError("expired", "the token has expired")
    _patterns(claims, "s")
    _patterns(claims, "p")
    return claims


# -- channels ----------------------------------------------------------------------------


def split_path(path: str) -> tuple[list[str], bool]:
    """Split a channel path into its segments and whether it ends in the ``*`` wildcard.

    One leading and one trailing ``/`` are dropped; nothing else is checked (segments
    may be empty or malformed: callers validate).
    """
    text = path[1:] if path.startswith("/") else path
    if text.endswith("/"):
        text = text[:-1]
    if not text:
        return [], False
    parts = text.split("/")
    if parts[-1] == "*":
        return parts[:-1], True
    return parts, False


def segments_contain(
    outer: Sequence[str], outer_wildcard: bool, inner: Sequence[str], inner_wildcard: bool
) -> bool:
    """Tell whether every channel pattern ``inner`` matches is matched by ``outer`` too.

    A pattern is its segments plus whether it ends in ``/*``. ``/a/*`` matches every
    channel below ``/a`` at any depth (not ``/a`` itself), as AppSync wildcards do, so it
    contains ``/a/b``, ``/a/b/*`` and itself; an exact pattern contains only itself.
    """
    if not outer_wildcard:
        return not inner_wildcard and tuple(outer) == tuple(inner)
    depth = len(outer)
    if tuple(inner[:depth]) != tuple(outer):
        return False
    return len(inner) > depth or (inner_wildcard and len(inner) == depth)


def _structure(path: Any) -> tuple[list[str], bool] | None:
    """The segments and wildcard flag of ``path``, or ``None`` when it is no pattern.

    Only the structure is checked (no empty segment, ``*`` only as the whole last one):
    the service validates the channel grammar before it asks the authorizer, and Django
    validated the token's patterns before signing them.
    """
    if not isinstance(path, str):
        return None
    segments, wildcard = split_path(path)
    if not segments or any(not s or "*" in s for s in segments):
        return None
    return segments, wildcard


def pattern_contains(outer: str, inner: str) -> bool:
    """Tell whether pattern ``outer`` contains channel or pattern ``inner`` (see
    :func:`segments_contain`); a malformed side contains nothing."""
    out = _structure(outer)
    inn = _structure(inner)
    if out is None or inn is None:
        return False
    return segments_contain(out[0], out[1], inn[0], inn[1])


# -- the decision ------------------------------------------------------------------------


def _deny() -> dict[str, Any]:
    return {"isAuthorized": False, "ttlOverride": 0}


def authorize(
    event: Mapping[str, Any], keys: Mapping[str, bytes], *, now: float | None = None
) -> dict[str, Any]:
    """Decide one AppSync Events Lambda authorization request.

    Args:
        event: the request (``authorizationToken``, ``requestContext`` with
            ``operation`` and, but for connects, ``channel``).
        keys: the verification keys, by key id.
        now: the current time (default ``time.time()``).

    Returns:
        ``{"isAuthorized": bool, "ttlOverride": 0}``, with ``handlerContext``
        ``{"sub": "<user pk or ''>"}`` when allowed.
    """
    context = event.get("requestContext")
    context = context if isinstance(context, Mapping) else {}
    operation = context.get("operation")
    if operation not in _OPERATIONS:
        logger.warning("Refused an unknown operation %r", operation)
        return _deny()
    try:
        claims = decode_token(event.get("authorizationToken"), keys, now=now)
    except TokenError as exc:
        logger.info("Refused %s: %s", operation, exc)
        return _deny()
    subject = claims.get("sub")
    subject = subject if isinstance(subject, str) else ""
    channel = context.get("channel")
    channel = channel if isinstance(channel, str) else ""
    if operation == "EVENT_SUBSCRIBE":
        allowed = any(pattern_contains(p, channel) for p in claims.get("s", []))
    elif operation == "EVENT_PUBLISH":
        structure = _structure(channel)
        allowed = (
            structure is not None
            and not structure[1]  # nobody publishes to a wildcard
            and any(pattern_contains(p, channel) for p in claims.get("p", []))
        )
    else:
        allowed = True
    if not allowed:
        logger.info(
            "Refused %s on %r for sub %r: no granted pattern contains it",
            operation,
            channel,
            subject,
        )
        return _deny()
    return {"isAuthorized": True, "ttlOverride": 0, "handlerContext": {"sub": subject}}


def handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """The Lambda entry point: :func:`authorize` with the keys of :data:`KEYS_ENV`.

    A missing or invalid key variable refuses every request (and logs why, once per
    request, without any key).
    """
    try:
        keys = load_keys()
    except ValueError as exc:
        logger.error("Refusing every request: %s", exc)
        return _deny()
    return authorize(event, keys)
