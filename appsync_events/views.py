"""Views for web processes: readiness of publishing and the outbox, and Prometheus metrics.

Routed by :mod:`appsync_events.urls` (``path("appsync/", include("appsync_events.urls"))``).
Never open by default: a request is served when its address is in the alias's
``METRICS['ALLOWED_IPS']`` (``REMOTE_ADDR`` only: a client can forge
``X-Forwarded-For``), or when its signed-in user has ``METRICS['PERMISSION']`` (default
``appsync_events.view_outboxevent``; ``None``: superusers only). Anyone else gets 403.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any, ClassVar

from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.views import View

from . import conf, metrics
from .exceptions import ConfigurationError, ImproperlyInstalled

__all__ = ["MetricsView", "ObservabilityView", "ReadinessView"]

logger = logging.getLogger(__name__)


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
