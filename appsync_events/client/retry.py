"""The client's retry policy: which failures are retried, and after how long.

:func:`process_exception` classifies a failure to connect or a lost connection (retry
or stop); :func:`reconnect_delays` yields the jittered, capped, growing delays between
attempts; :func:`is_auth_error` tells whether the service refused credentials, the case
in which fresh ones may help. :class:`RetryPolicy` bundles them for a supervisor.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from websockets.exceptions import ConnectionClosed, InvalidHandshake

from ..exceptions import (
    AppSyncEventsError,
    AuthError,
    ConfigurationError,
    ConnectionRejected,
    UpgradeRefused,
)

__all__ = ["RetryPolicy", "is_auth_error", "process_exception", "reconnect_delays"]

#: ``errorType`` values that mean "your credentials were refused", for which a fresh
#: token may help.
_AUTH_ERROR_TYPES: Final = frozenset(
    {
        "UnauthorizedException",
        "Unauthorized",
        "NotAuthorizedException",
        "ForbiddenException",
        "AccessDeniedException",
        "ExpiredTokenException",
    }
)
_AUTH_ERROR_FRAGMENTS: Final = ("token expired", "token has expired", "expired token")


def reconnect_delays(
    initial: float = 1.0, maximum: float = 60.0, factor: float = 2.0
) -> Iterator[float]:
    """Yield reconnect delays: jittered, growing geometrically, capped at ``maximum``.

    The first delay is drawn from ``[0, initial]`` so that many clients cut off at once
    do not return at once; each later one from ``[d/2, d]`` where ``d`` grows by
    ``factor`` up to ``maximum``. The supervisor starts a fresh generator once a
    connection has been stable, which resets the backoff.
    """
    yield random.uniform(0, initial)  # noqa: S311 - jitter, not cryptography
    delay = initial
    while True:
        delay = min(delay * factor, maximum)
        yield random.uniform(delay / 2, delay)  # noqa: S311


def is_auth_error(error: BaseException | Sequence[Mapping[str, Any]] | None) -> bool:
    """Tell whether an error (or an AWS ``errors`` array) says credentials were refused.

    True for ``errorType`` values such as ``UnauthorizedException``, for
    ``errorCode`` 401/403, and for messages saying a token expired: the cases in
    which retrying with fresh credentials may succeed.
    """
    if error is None:
        return False
    if isinstance(error, ConnectionRejected | AuthError):
        return True
    entries: Sequence[Mapping[str, Any]]
    if isinstance(error, AppSyncEventsError):
        entries = error.errors
    elif isinstance(error, BaseException):
        return False
    else:
        entries = error
    for entry in entries:
        if str(entry.get("errorType", "")) in _AUTH_ERROR_TYPES:
            return True
        if entry.get("errorCode") in (401, 403):
            return True
        message = str(entry.get("message") or "").lower()
        if any(fragment in message for fragment in _AUTH_ERROR_FRAGMENTS):
            return True
    return False


def process_exception(exc: BaseException) -> BaseException | None:
    """Classify a failure to connect or a lost connection.

    * A :class:`~appsync_events.exceptions.ConfigurationError`, or an
      :class:`~appsync_events.exceptions.UpgradeRefused` (the upgrade got an HTTP 4xx
      other than 401, 403, 408 and 429: a wrong URL, which no retry fixes): stop.
    * Network errors, timeouts, lost connections, 5xx/429 upgrades, rejected
      credentials and other operational errors: retry (a rejected connect waits the
      maximum delay).
    * Anything else (a bug): stop.

    Returns:
        ``None`` when the supervisor should reconnect, or the exception to raise when it
        must stop. Pass your own function as ``process_exception=`` to change the policy.
    """
    if isinstance(exc, ConfigurationError | UpgradeRefused):
        return exc
    if isinstance(exc, AppSyncEventsError | OSError | TimeoutError | ConnectionClosed):
        return None
    if isinstance(exc, InvalidHandshake):
        return None
    return exc


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a supervisor retries: backoff timing and the failure classifier.

    Attributes:
        initial, maximum, factor: see :func:`reconnect_delays`.
        stable_after: seconds a connection must last for the backoff to start afresh.
        classify: see :func:`process_exception`.
    """

    initial: float
    maximum: float
    factor: float
    stable_after: float
    classify: Callable[[BaseException], BaseException | None] = process_exception

    def delays(self) -> Iterator[float]:
        """Return a fresh delay generator (the backoff starts again from ``initial``)."""
        return reconnect_delays(self.initial, self.maximum, self.factor)
