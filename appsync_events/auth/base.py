"""The auth backend contract.

An auth backend turns the credentials an alias holds for one AppSync auth mode into the
*authorization header object* for one operation. The same object serves three places:

* the websocket connect (base64url-encoded into the ``header-…`` subprotocol);
* the ``authorization`` member of a websocket ``subscribe`` or ``publish`` message;
* the headers of an HTTP publish.

Subclasses must set :attr:`AuthBackend.mode` and implement :meth:`AuthBackend.get_headers`.
Backends that do I/O (credential refresh, token callables) override
:meth:`AuthBackend.aget_headers` too, so async callers never block the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from .._loading import reject_unknown_options
from ..config import APIConfig
from ..exceptions import ConfigurationError

__all__ = ["AuthBackend", "AuthRequest", "Transport"]

Transport = Literal["websocket", "http"]


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """What an auth backend needs to know about one operation.

    Attributes:
        operation: ``"connect"``, ``"subscribe"`` or ``"publish"``.
        transport: ``"websocket"`` or ``"http"``.
        body: the bytes a signature covers: ``b"{}"`` for a connect, the compact JSON of
            :func:`appsync_events.protocol.signing_body` for a websocket operation, the
            request body for an HTTP publish.
        channel: the channel (as sent), for subscribe and publish.
    """

    operation: Literal["connect", "subscribe", "publish"]
    transport: Transport
    body: bytes
    channel: str | None = None


class AuthBackend:
    """Base class of auth backends.

    Args:
        api: the alias's configuration (for ``http_host`` and ``region``).
        **options: the mode's ``OPTIONS`` from settings; unknown names are refused.

    Subclasses declare the options they accept in :attr:`option_names`.
    """

    #: The AppSync auth mode this backend produces headers for.
    mode: ClassVar[str]
    #: The option names the backend accepts (lowercase).
    option_names: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, api: APIConfig, **options: Any) -> None:
        self.api = api
        reject_unknown_options(
            options,
            self.option_names,
            owner=type(self),
            setting=self._setting,
            api=api.alias,
            key="AUTH",
            check_id="appsync_events.E008",
        )

    @property
    def _setting(self) -> str:
        """The settings path of this backend's options, for error messages."""
        return f"APPSYNC_EVENTS[{self.api.alias!r}]['AUTH'][{self.mode!r}]"

    def _config_error(self, message: str) -> ConfigurationError:
        """Return the error (E008) for a bad option of this backend; ``message`` says what."""
        return ConfigurationError(
            f"{self._setting}: {message}",
            api=self.api.alias,
            key="AUTH",
            check_id="appsync_events.E008",
        )

    def get_headers(self, request: AuthRequest) -> dict[str, str]:
        """Return the authorization header object for ``request``."""
        raise NotImplementedError

    async def aget_headers(self, request: AuthRequest) -> dict[str, str]:
        """Async twin of :meth:`get_headers`; override when producing headers does I/O."""
        return self.get_headers(request)

    def check(self) -> list[str]:
        """Return problems with the options, for system checks (empty when fine)."""
        return []

    def __repr__(self) -> str:  # never show options: they hold secrets
        return f"<{type(self).__name__} mode={self.mode} api={self.api.alias!r}>"
