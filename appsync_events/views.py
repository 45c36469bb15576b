"""Views of the app, routed by :mod:`appsync_events.urls`.

Include them with ``path("appsync/", include("appsync_events.urls"))``.

:class:`TokenView` (``GET token/``) is the direct-mode token endpoint of the browser
client. Its answer (JSON, never cached) carries a token for the current user and where
to use it::

    {"token": "eyJ...", "expires_at": 1700000300, "expires_in": 300,
     "http_url": "https://...appsync-api.../event",
     "realtime_url": "wss://...appsync-realtime-api.../event/realtime",
     "subscribe": ["/chat/*"], "publish": []}

What the token grants is what the alias's ``GRANTS`` give the user, exactly as the
consumer applies them: deny by default, anonymous visitors only where a grant says
``WHO`` ``anonymous`` or ``everyone``. A user granted nothing gets 401 (not signed in) or
403 (signed in) with ``{"error": ..., "message": ...}`` and no token.

:class:`ReadinessView` (``GET readyz``) and :class:`MetricsView` (``GET metrics``) report
the readiness of publishing and the outbox, and the Prometheus metrics. They are never
open by default: a request is served when its address is in the alias's
``METRICS['ALLOWED_IPS']`` (``REMOTE_ADDR`` only: a client can forge
``X-Forwarded-For``), or when its signed-in user has ``METRICS['PERMISSION']`` (default
``appsync_events.view_outboxevent``; ``None``: superusers only). Anyone else gets 403.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from typing import Any, ClassVar

from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.utils.cache import patch_cache_control, patch_vary_headers
from django.views import View

from . import conf, metrics, tokens
from .exceptions import ConfigurationError, ImproperlyInstalled
from .grants import GrantOperation

__all__ = ["MetricsView", "ObservabilityView", "ReadinessView", "TokenView"]

logger = logging.getLogger(__name__)


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
        """Mint and return the token, 401/403 when the user is granted nothing, or 503
        (logged at ERROR) when ``TOKENS`` cannot sign one."""
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
        try:
            issued = tokens.issue(
                getattr(request, "user", None),
                subscribe=subscribe,
                publish=publish,
                ttl=self.ttl,
                api=self.api,
            )
        except ConfigurationError as exc:
            # The fix is the project's (the message names the setting); the browser only
            # hears that direct mode is unavailable, never how the server is configured.
            logger.error("TokenView cannot mint a token: %s", exc)
            return _no_store(
                JsonResponse(
                    {
                        "error": "not_configured",
                        "message": "Direct-mode tokens are not available on this server.",
                    },
                    status=503,
                )
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


class ObservabilityView(View):
    """Base of the views: ``GET`` only, for allowed addresses and permitted users.

    Attributes:
        api: the alias whose ``METRICS`` section says who may read (``as_view(api=...)``).
    """

    api: ClassVar[str] = conf.DEFAULT_API
    http_method_names: ClassVar[list[str]] = ["get", "head"]  # type: ignore[misc]

    def allowed(self, request: HttpRequest) -> bool:
        """Whether ``request`` may read this view (see the module docstring)."""
        try:
            settings = conf.get_api_config(self.api).metrics
        except ConfigurationError:
            logger.exception("Refusing %s: APPSYNC_EVENTS[%r] is invalid", request.path, self.api)
            return False
        address = request.META.get("REMOTE_ADDR") or ""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            ip = None
        if ip is not None and any(ip in network for network in settings.allowed_ips):
            return True
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return False
        if settings.permission is None:
            return bool(user.is_superuser)
        return bool(user.has_perm(settings.permission))

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        """Refuse (403) a request that is neither from an allowed address nor permitted."""
        if not self.allowed(request):
            return JsonResponse(
                {
                    "error": "forbidden: sign in with the permission in "
                    "APPSYNC_EVENTS[...]['METRICS']['PERMISSION'], or come from "
                    "METRICS['ALLOWED_IPS']"
                },
                status=403,
            )
        response = super().dispatch(request, *args, **kwargs)
        response["Cache-Control"] = "no-store"
        return response


class MetricsView(ObservabilityView):
    """The process's Prometheus metrics (501 when ``prometheus-client`` is missing)."""

    def get(self, request: HttpRequest) -> HttpResponse:
        """Render the metrics in the text exposition format."""
        metrics.register_outbox_collector()
        try:
            body, content_type = metrics.exposition()
        except ImproperlyInstalled as exc:
            return HttpResponse(f"{exc}\n", status=501, content_type="text/plain")
        return HttpResponse(body, content_type=content_type)


class ReadinessView(ObservabilityView):
    """Whether this process can publish: 200, or 503 with the reasons, as JSON.

    For every alias: its configuration validates and its publishing backend builds (no
    request is made: the service being unreachable must not take web processes out of
    rotation, since durable publishes wait in the outbox). And the outbox table can be
    read; its backlog is reported (rows waiting, age of the oldest), not judged.
    """

    def get(self, request: HttpRequest) -> HttpResponse:
        """Check each alias and the outbox table."""
        from .backends import get_backend

        problems: list[str] = []
        aliases: dict[str, Any] = {}
        try:
            names = conf.api_aliases()
        except ConfigurationError as exc:
            names = ()
            problems.append(str(exc))
        for alias in names:
            try:
                config = conf.get_api_config(alias)
                backend = get_backend(alias)
            except (ConfigurationError, ValueError, TypeError) as exc:
                problems.append(f"{alias}: {exc}")
                aliases[alias] = {"ready": False}
                continue
            aliases[alias] = {
                "ready": True,
                "backend": type(backend).__name__,
                "durable": config.publish.durable,
            }
        outbox: dict[str, Any]
        try:
            backlog = metrics.outbox_backlog()
        except Exception as exc:
            logger.warning("Readiness: the outbox table cannot be read", exc_info=True)
            problems.append(f"outbox: {type(exc).__name__}: {exc}")
            outbox = {"readable": False}
        else:
            outbox = {
                "readable": True,
                "pending": {api: count for api, (count, _) in backlog.items()},
                "oldest_pending_age_seconds": {
                    api: round(age, 3) for api, (_, age) in backlog.items()
                },
            }
        ready = not problems
        return JsonResponse(
            {
                "status": "ready" if ready else "not ready",
                "problems": problems,
                "apis": aliases,
                "outbox": outbox,
            },
            status=200 if ready else 503,
        )
