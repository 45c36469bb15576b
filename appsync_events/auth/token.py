"""Token auth (Cognito user pools, OpenID Connect, Lambda): ``Authorization`` plus ``host``.

The three modes differ only in what the service does with the token (verify a Cognito
JWT, verify an OIDC JWT, hand an opaque token to a Lambda authorizer), so they share
:class:`TokenAuth` and its options.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

import jwt

from .._loading import import_string
from ..config import APIConfig
from ..exceptions import TokenSourceError
from ..redaction import redact, register_secret
from .base import AuthBackend, AuthRequest

__all__ = ["CognitoAuth", "LambdaAuth", "OIDCAuth", "Token", "TokenAuth"]

logger = logging.getLogger(__name__)

#: Refresh a cached token this many seconds before it expires, by default.
DEFAULT_REFRESH_MARGIN = 60.0


@dataclass(frozen=True, slots=True)
class Token:
    """A token and, when known, when it expires.

    A token callable may return this (or a ``(token, expires_at)`` tuple, or a plain
    string) so caching knows how long the token stays valid.

    Attributes:
        value: the token, sent verbatim as the ``Authorization`` header (include a
            ``Bearer`` prefix yourself if your authorizer wants one).
        expires_at: expiry as Unix time, or ``None`` when unknown.
    """

    value: str
    expires_at: float | None = None

    def __repr__(self) -> str:  # the value is a credential
        return f"Token(value=<redacted>, expires_at={self.expires_at!r})"


def _jwt_expiry(value: str) -> float | None:
    """Read the ``exp`` claim of a JWT without verifying it (None for opaque tokens)."""
    raw = value.removeprefix("Bearer ").strip()
    if raw.count(".") != 2:
        return None
    try:
        claims = jwt.decode(raw, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    exp = claims.get("exp")
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


def _run_coroutine(coroutine: Any) -> Any:
    """Run ``coroutine`` to completion from sync code, in a fresh event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    coroutine.close()
    raise RuntimeError(
        "an async token_callable cannot be called from a running event loop's thread "
        "through the sync API; use aget_headers() (the async twin) there"
    )


class TokenAuth(AuthBackend):
    """Authorize with a bearer-style token read from a setting, the environment or a callable.

    Exactly one token source is given: ``token``, ``token_env`` or ``token_callable``.

    Options:
        token: the token itself. Settings shorthand: ``"AUTH": {"OPENID_CONNECT": "eyJ…"}``.
        token_env: the name of an environment variable holding the token; read again on
            every connect and operation, so a rotated value is picked up.
        token_callable: a callable (or its dotted path) returning the token; sync or
            ``async def``. It is called for every connect and operation (unless cached). A
            callable that takes no parameters is called without arguments; otherwise it is
            called with the keyword arguments ``api`` (the alias), ``mode``, ``operation``
            (``"connect"``, ``"subscribe"`` or ``"publish"``) and ``channel`` (``None`` for
            a connect). It returns a string, a :class:`Token`, or a ``(token, expires_at)``
            tuple (``expires_at``: an aware ``datetime`` or Unix time).

    Caching options:
        cache: ``False`` (default): fetch a fresh token every time. ``True``: reuse a
            token until ``refresh_margin`` seconds before it expires (expiry from the
            callable's result, else from a JWT's ``exp`` claim; a token whose expiry is
            unknown is not cached). A number: reuse a token for at most that many seconds
            (and never past a known expiry).
        refresh_margin: seconds before expiry at which a cached token is replaced
            (default 60).
        clock: a callable returning the current Unix time (for tests; default
            :func:`time.time`).

    Headers: ``{"Authorization": <token>, "host": <HTTP host>}`` in all three places.

    Sync and async: :meth:`aget_headers` awaits an async callable directly and runs a sync
    one in a worker thread (it may do network I/O). :meth:`get_headers` runs an async
    callable in a fresh event loop (:func:`asyncio.run`), so call it from sync code only
    (from async code, use :meth:`aget_headers`).
    """

    option_names: ClassVar[frozenset[str]] = frozenset(
        {"token", "token_env", "token_callable", "cache", "refresh_margin", "clock"}
    )

    def __init__(self, api: APIConfig, **options: Any) -> None:
        super().__init__(api, **options)
        sources = [name for name in ("token", "token_env", "token_callable") if name in options]
        if len(sources) != 1:
            found = f"got {', '.join(sources)}" if sources else "got none"
            raise self._config_error(
                "needs exactly one token source: 'token', 'token_env' or 'token_callable' "
                f"({found}), e.g. {{'token_env': 'MY_TOKEN'}} or "
                "{'token_callable': 'myproject.auth.get_token'}."
            )
        self._static: str | None = None
        self._env: str | None = None
        self._func: Callable[..., Any] | None = None
        self._func_name = ""
        self._is_async = False
        self._pass_context = False
        source = sources[0]
        value = options[source]
        if source == "token":
            if not isinstance(value, str) or not value.strip():
                raise self._config_error(
                    "'token' must be a non-empty string (read it from the environment, "
                    "never commit it)."
                )
            self._static = value
            register_secret(value)
        elif source == "token_env":
            if not isinstance(value, str) or not value:
                raise self._config_error(
                    f"'token_env' must name an environment variable, not {value!r}."
                )
            self._env = value
        else:
            self._set_callable(value)
        cache = options.get("cache", False)
        if isinstance(cache, bool):
            self._cache_enabled, self._cache_max = cache, None
        elif isinstance(cache, int | float) and cache > 0:
            self._cache_enabled, self._cache_max = True, float(cache)
        else:
            raise self._config_error(
                f"'cache' must be True, False or a number of seconds > 0, not {cache!r}."
            )
        margin = options.get("refresh_margin", DEFAULT_REFRESH_MARGIN)
        if isinstance(margin, bool) or not isinstance(margin, int | float) or margin < 0:
            raise self._config_error(
                f"'refresh_margin' must be a number of seconds >= 0, not {margin!r}."
            )
        self._margin = float(margin)
        clock = options.get("clock", time.time)
        if not callable(clock):
            raise self._config_error("'clock' must be a callable returning Unix time.")
        self._clock: Callable[[], float] = clock
        self._lock = threading.Lock()
        self._cached: Token | None = None
        self._cached_until = 0.0

    # -- configuration ---------------------------------------------------------------

    def _set_callable(self, value: Any) -> None:
        if isinstance(value, str):
            try:
                func = import_string(value)
            except ImportError as exc:
                raise self._config_error(
                    f"'token_callable' = {value!r} cannot be imported: {exc}"
                ) from exc
            name = value
        else:
            func, name = value, getattr(value, "__qualname__", type(value).__name__)
        if not callable(func):
            raise self._config_error(f"'token_callable' = {name!r} is not callable.")
        self._func, self._func_name = func, name
        self._is_async = inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
            getattr(func, "__call__", None)  # noqa: B004 - async __call__ on an instance
        )
        try:
            params = inspect.signature(func).parameters
        except (TypeError, ValueError):  # some builtins have no signature
            params = {}  # type: ignore[assignment]
        self._pass_context = bool(params)

    def check(self) -> list[str]:
        """Warn when the token environment variable is unset right now."""
        if self._env is not None and not os.environ.get(self._env):
            return [
                f"APPSYNC_EVENTS[{self.api.alias!r}]['AUTH'][{self.mode!r}]: the environment "
                f"variable {self._env} (token_env) is not set; every {self.mode} operation "
                "will fail until it is."
            ]
        return []

    # -- producing the token ---------------------------------------------------------

    def _error(self, request: AuthRequest, message: str) -> TokenSourceError:
        return TokenSourceError(
            f"cannot get the {self.mode} token for the {request.operation}: {message}",
            api=self.api.alias,
            channel=request.channel,
            operation=request.operation,
            mode=self.mode,
        )

    def _from_cache(self) -> str | None:
        if not self._cache_enabled:
            return None
        with self._lock:
            if self._cached is not None and self._clock() < self._cached_until:
                return self._cached.value
        return None

    def _context(self, request: AuthRequest) -> dict[str, Any]:
        if not self._pass_context:
            return {}
        return {
            "api": self.api.alias,
            "mode": self.mode,
            "operation": request.operation,
            "channel": request.channel,
        }

    def _accept(self, request: AuthRequest, result: Any) -> str:
        """Validate a token source's result, remember it as a secret, cache it."""
        expires_at: float | None = None
        if isinstance(result, Token):
            value, expires_at = result.value, result.expires_at
        elif isinstance(result, tuple) and len(result) == 2:
            value, expiry = result
            if isinstance(expiry, datetime):
                if expiry.tzinfo is None:
                    raise self._error(
                        request, "the callable returned a naive expires_at datetime; make it aware."
                    )
                expires_at = expiry.timestamp()
            elif isinstance(expiry, int | float) and not isinstance(expiry, bool):
                expires_at = float(expiry)
            elif expiry is not None:
                raise self._error(
                    request,
                    f"expires_at must be a datetime, a Unix time or None, not "
                    f"{type(expiry).__name__}.",
                )
        else:
            value = result
        if not isinstance(value, str) or not value.strip():
            raise self._error(
                request,
                f"the token source gave {type(value).__name__ if value is not None else 'None'}"
                ", not a non-empty string.",
            )
        register_secret(value)
        if self._cache_enabled:
            if expires_at is None:
                expires_at = _jwt_expiry(value)
            now = self._clock()
            until = expires_at - self._margin if expires_at is not None else None
            if self._cache_max is not None:
                until = (
                    min(until, now + self._cache_max)
                    if until is not None
                    else now + self._cache_max
                )
            if until is not None and until > now:
                with self._lock:
                    self._cached, self._cached_until = Token(value, expires_at), until
            else:
                logger.debug(
                    "%s token for alias %r not cached: its expiry is unknown or too close",
                    self.mode,
                    self.api.alias,
                )
        return value

    def _call_failed(self, request: AuthRequest, exc: Exception) -> TokenSourceError:
        # The callable's own message may quote what it was handling; redact it.
        err = self._error(
            request,
            f"the token callable {self._func_name} raised {type(exc).__name__}: {redact(str(exc))}",
        )
        err.__cause__ = exc
        return err

    def _read_env(self, request: AuthRequest) -> str:
        assert self._env is not None  # noqa: S101 - narrowed by the caller
        value = os.environ.get(self._env)
        if not value:
            raise self._error(request, f"the environment variable {self._env} is not set.")
        return value

    def get_token(self, request: AuthRequest) -> str:
        """Return the token for ``request`` (from the cache or the source).

        Raises:
            TokenSourceError: the source failed or gave no token; names the alias,
                the mode and the operation.
        """
        cached = self._from_cache()
        if cached is not None:
            return cached
        if self._static is not None:
            return self._static
        if self._env is not None:
            return self._accept(request, self._read_env(request))
        assert self._func is not None  # noqa: S101 - one source is always set
        func: Callable[..., Any] = self._func
        try:
            if self._is_async:
                result = _run_coroutine(func(**self._context(request)))
            else:
                result = func(**self._context(request))
        except Exception as exc:
            raise self._call_failed(request, exc) from exc
        return self._accept(request, result)

    async def aget_token(self, request: AuthRequest) -> str:
        """Async twin of :meth:`get_token`; a sync callable runs in a worker thread."""
        cached = self._from_cache()
        if cached is not None:
            return cached
        if self._static is not None:
            return self._static
        if self._env is not None:
            return self._accept(request, self._read_env(request))
        assert self._func is not None  # noqa: S101 - one source is always set
        try:
            if self._is_async:
                awaitable: Awaitable[Any] = self._func(**self._context(request))
                result = await awaitable
            else:
                result = await asyncio.to_thread(self._func, **self._context(request))
        except Exception as exc:
            raise self._call_failed(request, exc) from exc
        return self._accept(request, result)

    def get_headers(self, request: AuthRequest) -> dict[str, str]:
        """Return ``{"Authorization": token, "host": http_host}``."""
        return {"Authorization": self.get_token(request), "host": self.api.http_host}

    async def aget_headers(self, request: AuthRequest) -> dict[str, str]:
        """Async twin of :meth:`get_headers`."""
        return {"Authorization": await self.aget_token(request), "host": self.api.http_host}


class CognitoAuth(TokenAuth):
    """Authorize with an Amazon Cognito user pool JWT (``AMAZON_COGNITO_USER_POOLS``).

    AWS documents the ID token; AWS's JS client sends the access token. Pass whichever
    your API accepts. Options: see :class:`TokenAuth`.
    """

    mode = "AMAZON_COGNITO_USER_POOLS"


class OIDCAuth(TokenAuth):
    """Authorize with an OpenID Connect JWT (``OPENID_CONNECT``).

    Options: see :class:`TokenAuth`.
    """

    mode = "OPENID_CONNECT"


class LambdaAuth(TokenAuth):
    """Authorize with an opaque token checked by a Lambda authorizer (``AWS_LAMBDA``).

    Options: see :class:`TokenAuth`.
    """

    mode = "AWS_LAMBDA"
