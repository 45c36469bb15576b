"""Views: :class:`TokenView`, the direct-mode token endpoint of the browser client.

Include :mod:`appsync_events.urls` to serve it::

    path("appsync/", include("appsync_events.urls")),   # GET /appsync/token/

The answer (JSON, never cached) carries a token for the current user and where to use it::

    {"token": "eyJ...", "expires_at": 1700000300, "expires_in": 300,
     "http_url": "https://...appsync-api.../event",
     "realtime_url": "wss://...appsync-realtime-api.../event/realtime",
     "subscribe": ["/chat/*"], "publish": []}

What the token grants is what the alias's ``GRANTS`` give the user, exactly as the
consumer applies them: deny by default, anonymous visitors only where a grant says
``WHO`` ``anonymous`` or ``everyone``. A user granted nothing gets 401 (not signed in) or
403 (signed in) with ``{"error": ..., "message": ...}`` and no token.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.cache import patch_cache_control, patch_vary_headers
from django.views import View

from . import conf, tokens
from .grants import GrantOperation

__all__ = ["TokenView"]


def _no_store(response: HttpResponse) -> HttpResponse:
    """Keep a per-user answer out of every cache."""
    patch_cache_control(response, no_store=True, private=True)
    patch_vary_headers(response, ("Cookie",))
    return response


class TokenView(View):
    """Answer ``GET`` with a direct-mode token of the current user's grants.

    Attributes:
        api: the ``APPSYNC_EVENTS`` alias (its ``GRANTS``, ``TOKENS`` and endpoints).
        ttl: seconds the token lives (``None``: ``TOKENS['TTL']``).

    Set them in a subclass or through ``TokenView.as_view(api="other", ttl=60)``.
    Override :meth:`get_patterns` to grant otherwise than ``GRANTS`` do.
    """

    api: ClassVar[str] = conf.DEFAULT_API
    ttl: ClassVar[int | None] = None
    http_method_names = ["get"]

    def get_patterns(self, request: HttpRequest, operation: GrantOperation) -> list[str]:
        """Return the patterns the token grants for ``operation`` (default: ``GRANTS``)."""
        return tokens.granted(getattr(request, "user", None), operation, self.api)

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """Mint and return the token, or 401/403 when the user is granted nothing."""
        subscribe = self.get_patterns(request, "subscribe")
        publish = self.get_patterns(request, "publish")
        if not subscribe and not publish:
            user = getattr(request, "user", None)
            if getattr(user, "is_authenticated", False):
                status, error = 403, "forbidden"
                message = "GRANTS give this user no channel to subscribe or publish to."
            else:
                status, error = 401, "not_authenticated"
                message = "Sign in first: GRANTS give anonymous visitors no channel."
            return _no_store(JsonResponse({"error": error, "message": message}, status=status))
        issued = tokens.issue(
            getattr(request, "user", None),
            subscribe=subscribe,
            publish=publish,
            ttl=self.ttl,
            api=self.api,
        )
        config = conf.get_api_config(self.api)
        return _no_store(
            JsonResponse(
                {
                    "token": issued.token,
                    "expires_at": issued.expires_at,
                    "expires_in": max(0, issued.expires_at - int(time.time())),
                    "http_url": config.http_url,
                    "realtime_url": config.realtime_url,
                    "subscribe": list(issued.subscribe),
                    "publish": list(issued.publish),
                }
            )
        )
