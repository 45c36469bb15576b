"""Route browsers to :class:`~appsync_events.consumers.AppSyncEventsConsumer` in one line.

.. code-block:: python

    # asgi.py
    import os

    from django.core.asgi import get_asgi_application

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
    django_asgi_app = get_asgi_application()

    from channels.routing import ProtocolTypeRouter
    from appsync_events.routing import websocket_application

    application = ProtocolTypeRouter(
        {"http": django_asgi_app, "websocket": websocket_application()}
    )

:func:`websocket_application` wraps the route in ``AllowedHostsOriginValidator`` (the
browser's ``Origin`` must be in ``ALLOWED_HOSTS``, so other sites cannot open sockets
with your users' cookies) and ``AuthMiddlewareStack`` (``scope["user"]`` from the
session). Pass your own websocket routes as ``routes`` to serve them behind the same
stack, or use :func:`websocket_urlpattern` inside a ``URLRouter`` of your own (the
route then checks the ``Origin`` itself).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from django.urls import URLPattern, URLResolver, re_path

__all__ = ["DEFAULT_PATH", "websocket_application", "websocket_urlpattern"]

#: Where the browser connects by default: ``ws(s)://HOST/ws/appsync/``.
DEFAULT_PATH = "ws/appsync/"


def websocket_urlpattern(
    path: str = DEFAULT_PATH,
    *,
    consumer: type[Any] | None = None,
    check_origin: bool = True,
    **options: Any,
) -> URLPattern:
    """Return a ``URLRouter`` entry serving the consumer at ``path``.

    The route checks the browser's ``Origin`` against ``ALLOWED_HOSTS`` itself
    (``AllowedHostsOriginValidator``), so it is safe inside any router: a page of another
    site cannot open a socket with your users' cookies. A router of your own still needs
    ``AuthMiddlewareStack`` (or another source of ``scope["user"]``) around it.

    Args:
        path: the URL path, without a leading ``/`` (``"ws/appsync/"``).
        consumer: the consumer class (default
            :class:`~appsync_events.consumers.AppSyncEventsConsumer`).
        check_origin: ``False`` skips the route's own ``Origin`` check, for a stack that
            already validates origins (or serves only non-browser clients that send no
            ``Origin``, which the check refuses).
        **options: the consumer's options (``api``, ``max_subscriptions``...), passed to
            ``as_asgi``.

    Raises:
        TypeError: for an option the consumer does not know.
    """
    from .consumers import AppSyncEventsConsumer

    cls = consumer or AppSyncEventsConsumer
    check = getattr(cls, "check_options", None)
    if check is not None:  # fail at import of the routing module, not on first connection
        check(options)
    app: Any = cls.as_asgi(**options)  # Channels routes ASGI apps through Django's re_path
    if check_origin:
        from channels.security.websocket import AllowedHostsOriginValidator

        app = AllowedHostsOriginValidator(app)
    pattern: URLPattern = re_path(rf"^{re.escape(path.lstrip('/'))}\Z", app)
    return pattern


def websocket_application(
    routes: Iterable[URLPattern | URLResolver] = (),
    *,
    path: str = DEFAULT_PATH,
    consumer: type[Any] | None = None,
    **options: Any,
) -> Any:
    """Return the websocket ASGI app: your ``routes`` plus the consumer at ``path``,
    behind ``AllowedHostsOriginValidator`` and ``AuthMiddlewareStack``.

    Args:
        routes: other websocket routes to serve behind the same stack (tried first).
        path: the consumer's URL path.
        consumer: the consumer class (default ``AppSyncEventsConsumer``).
        **options: the consumer's options, passed to ``as_asgi``.
    """
    from channels.auth import AuthMiddlewareStack
    from channels.routing import URLRouter
    from channels.security.websocket import AllowedHostsOriginValidator

    route = websocket_urlpattern(path, consumer=consumer, check_origin=False, **options)
    patterns: list[Any] = [*routes, route]  # the validator below checks every route
    return AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(patterns)))
