"""Direct-mode tokens: short-lived, signed grants a browser presents to AppSync itself.

In direct mode browsers connect to the AppSync real-time endpoint, not to Django, and
Django stays the authority on who may listen: it mints a token carrying the channel
patterns the user may subscribe and publish to, and the Lambda authorizer
(:mod:`appsync_events.lambda_authorizer`, deployed as the API's ``AWS_LAMBDA`` auth
provider) verifies it on every connect, subscribe and publish.

.. code-block:: python

    from appsync_events.tokens import mint

    token = mint(request.user, subscribe=["/chat/*"], publish=["/chat/rooms/7"], ttl=300)

Tokens are signed with a dedicated key of ``APPSYNC_EVENTS[alias]["TOKENS"]`` (never
``SECRET_KEY``), named by its key id so keys can rotate; the format and the verification
are those of :mod:`appsync_events.lambda_authorizer` (one codec for both sides).
:class:`appsync_events.views.TokenView` serves a token of the current user's ``GRANTS``.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import conf
from .config import TokensConfig
from .exceptions import ConfigurationError
from .grants import GrantOperation, granted_patterns
from .lambda_authorizer import TokenError, decode_token, encode_token
from .paths import normalize_channel

__all__ = ["IssuedToken", "TokenError", "granted", "is_secret_key", "issue", "mint", "verify"]


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A minted token with what it grants.

    Attributes:
        token: the signed token (a secret of its holder: never log it).
        expires_at: its expiry, in seconds since the epoch.
        subscribe: the channel patterns it grants subscribing to.
        publish: the channel patterns it grants publishing to.
    """

    token: str
    expires_at: int
    subscribe: tuple[str, ...]
    publish: tuple[str, ...]

    def __repr__(self) -> str:
        return (
            f"IssuedToken(token=<redacted>, expires_at={self.expires_at!r}, "
            f"subscribe={self.subscribe!r}, publish={self.publish!r})"
        )


def _tokens_config(api: str) -> tuple[TokensConfig, str]:
    """The alias's ``TOKENS`` and the current key id, refusing to go on without a key."""
    tokens = conf.get_api_config(api).tokens
    key_id = tokens.current_key_id
    if not tokens.signing_keys or key_id is None:
        raise ConfigurationError(
            f"APPSYNC_EVENTS[{api!r}] has no TOKENS['SIGNING_KEYS']: add a dedicated signing "
            "key, e.g. 'TOKENS': {'SIGNING_KEYS': {'2025-01': os.environ['TOKEN_KEY']}} "
            "(docs/direct.md), to mint direct-mode tokens.",
            api=api,
            key="TOKENS",
            check_id="appsync_events.E016",
        )
    return tokens, key_id


def is_secret_key(key: str) -> bool:
    """Tell whether ``key`` is Django's ``SECRET_KEY`` or one of ``SECRET_KEY_FALLBACKS``."""
    from django.conf import settings

    secrets = [getattr(settings, "SECRET_KEY", ""), *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return any(
        isinstance(s, str) and s and hmac.compare_digest(s.encode(), key.encode()) for s in secrets
    )


def _refuse_secret_key(api: str, key: str) -> None:
    """Raise when the signing key is Django's SECRET_KEY (or one of its fallbacks)."""
    if is_secret_key(key):
        raise ConfigurationError(
            f"APPSYNC_EVENTS[{api!r}]['TOKENS']['SIGNING_KEYS'] holds SECRET_KEY itself; give "
            "tokens a dedicated key (it is deployed to the Lambda authorizer too).",
            api=api,
            key="TOKENS",
            check_id="appsync_events.E016",
        )


def _patterns(values: Iterable[str], what: str) -> tuple[str, ...]:
    if isinstance(values, str):
        raise TypeError(f"{what} must be a list of channel patterns, not one string")
    out: dict[str, None] = {}
    for value in values:
        out.setdefault(normalize_channel(value, allow_wildcard=True), None)
    return tuple(out)


def _subject(user: Any) -> str:
    """The ``sub`` claim: the user's primary key, ``""`` for an anonymous user."""
    if user is None or not getattr(user, "is_authenticated", False):
        return ""
    return str(getattr(user, "pk", ""))


def issue(
    user: Any,
    *,
    subscribe: Iterable[str] = (),
    publish: Iterable[str] = (),
    ttl: int | None = None,
    api: str = conf.DEFAULT_API,
    now: float | None = None,
) -> IssuedToken:
    """Mint a token for ``user`` and return it with its expiry and grants.

    Args:
        user: the Django user (``None`` or an anonymous user: ``sub`` is empty).
        subscribe: channel patterns the token grants subscribing to (``/chat/*``).
        publish: channel patterns the token grants publishing to.
        ttl: seconds the token lives (default ``TOKENS['TTL']``, at most
            ``TOKENS['MAX_TTL']``).
        api: the ``APPSYNC_EVENTS`` alias whose ``TOKENS`` sign it.
        now: the issue time (default ``time.time()``).

    Raises:
        ConfigurationError: the alias has no signing key, or its key is ``SECRET_KEY``.
        InvalidChannelError: a pattern breaks the channel grammar.
        ValueError: ``ttl`` is not a positive integer up to ``MAX_TTL``.
    """
    tokens, key_id = _tokens_config(api)
    key = tokens.signing_keys[key_id]
    _refuse_secret_key(api, key)
    lifetime = tokens.ttl if ttl is None else ttl
    if isinstance(lifetime, bool) or not isinstance(lifetime, int) or lifetime <= 0:
        raise ValueError(f"ttl must be a positive number of seconds, not {lifetime!r}")
    if lifetime > tokens.max_ttl:
        raise ValueError(
            f"ttl={lifetime} exceeds APPSYNC_EVENTS[{api!r}]['TOKENS']['MAX_TTL'] "
            f"({tokens.max_ttl} s)"
        )
    sub_patterns = _patterns(subscribe, "subscribe")
    pub_patterns = _patterns(publish, "publish")
    issued_at = int(time.time() if now is None else now)
    expires_at = issued_at + lifetime
    claims = {
        "sub": _subject(user),
        "iat": issued_at,
        "exp": expires_at,
        "s": list(sub_patterns),
        "p": list(pub_patterns),
    }
    token = encode_token(claims, key, key_id)
    return IssuedToken(token, expires_at, sub_patterns, pub_patterns)


def mint(
    user: Any,
    subscribe: Iterable[str] = (),
    publish: Iterable[str] = (),
    ttl: int | None = None,
    api: str = conf.DEFAULT_API,
) -> str:
    """Return a signed token granting ``user`` the given patterns for ``ttl`` seconds.

    See :func:`issue` for the arguments and errors.
    """
    return issue(user, subscribe=subscribe, publish=publish, ttl=ttl, api=api).token


def verify(token: str, api: str = conf.DEFAULT_API, *, now: float | None = None) -> dict[str, Any]:
    """Verify ``token`` with every key of the alias's ``TOKENS`` and return its claims.

    The Lambda authorizer runs the same code; this is for Django-side checks and tests.

    Raises:
        TokenError: malformed, unknown key id, bad signature or expired.
        ConfigurationError: the alias has no signing key.
    """
    tokens, _ = _tokens_config(api)
    keys = {key_id: key.encode() for key_id, key in tokens.signing_keys.items()}
    return decode_token(token, keys, now=now)


def granted(user: Any, operation: GrantOperation, api: str = conf.DEFAULT_API) -> list[str]:
    """Return the patterns ``GRANTS`` give ``user`` for ``operation``, as the consumer
    applies them (deny by default; placeholders bound to the user).

    ``perm:``, ``group:`` and ``check:`` grants may query the database: call it from
    sync code.
    """
    return granted_patterns(conf.get_api_config(api).grants, user, operation)
