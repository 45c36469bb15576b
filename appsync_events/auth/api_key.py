"""API key auth: ``x-api-key`` plus ``host``."""

from __future__ import annotations

from typing import Any

from ..config import APIConfig
from ..exceptions import ConfigurationError
from ..redaction import register_secret
from .base import AuthBackend, AuthRequest

__all__ = ["APIKeyAuth"]


class APIKeyAuth(AuthBackend):
    """Authorize with the API's key.

    Options:
        api_key: the key (``da2-…``). Settings shorthand: ``"AUTH": {"API_KEY": "da2-…"}``.
    """

    mode = "API_KEY"
    option_names = frozenset({"api_key"})

    def __init__(self, api: APIConfig, **options: Any) -> None:
        super().__init__(api, **options)
        key = options.get("api_key")
        if not isinstance(key, str) or not key:
            raise ConfigurationError(
                f"APPSYNC_EVENTS[{api.alias!r}]['AUTH']['API_KEY'] needs the API key, e.g. "
                "'AUTH': {'API_KEY': 'da2-...'} (read it from the environment, never commit it).",
                api=api.alias,
                key="AUTH",
                check_id="appsync_events.E008",
            )
        self._api_key = key
        register_secret(key)

    def get_headers(self, request: AuthRequest) -> dict[str, str]:
        """Return ``{"host": http_host, "x-api-key": key}`` (the same for every operation)."""
        return {"host": self.api.http_host, "x-api-key": self._api_key}
