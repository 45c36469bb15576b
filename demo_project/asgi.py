"""ASGI entry point of the demo: Django over HTTP, the chat consumer over websockets, the listener.

``make demo`` serves it with uvicorn (``manage.py appsync_demo``); any ASGI server works:
``uvicorn demo_project.asgi:application``.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_project.settings")
# Set up Django before importing anything that touches models or settings.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from appsync_events.asgi import AppSyncEventsLifespan  # noqa: E402
from appsync_events.routing import websocket_application  # noqa: E402
from demo_project.chat.consumers import ChatConsumer  # noqa: E402

# The lifespan wrapper starts the listener inside this process at server startup and
# stops it at shutdown (FORWARDING['IN_PROCESS'] in the settings), so the in-memory
# channel layer reaches the consumers.
application = AppSyncEventsLifespan(
    ProtocolTypeRouter(
        {
            # The demo serves its own CSS and JavaScript; a production site puts a CDN or
            # WhiteNoise in front instead.
            "http": ASGIStaticFilesHandler(django_asgi_app),
            # /ws/appsync/ -> ChatConsumer, behind the origin check and the session middleware.
            "websocket": websocket_application(consumer=ChatConsumer),
        }
    )
)
