"""Settings of the processes of ``bench/bench_forwarding.py`` and ``bench/bench_soak.py``.

The listener (``manage.py appsync_listen``) and the ASGI server serving the browser
consumer (``bench/pipeline_asgi.py``) both run with them. From the environment:
``BENCH_HTTP_URL`` and ``BENCH_API_KEY`` (the emulator, or the soak's sender),
``BENCH_CHANNEL_LAYER`` (the ``CHANNEL_LAYERS["default"]`` entry, as JSON) and
``BENCH_SUBSCRIPTIONS`` (comma-separated channel paths the listener holds).
"""

from __future__ import annotations

import json
import os

SECRET_KEY = "bench-not-secret"  # noqa: S105 - a benchmark, nothing to protect
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "appsync_events",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
CHANNEL_LAYERS = {
    "default": json.loads(
        os.environ.get("BENCH_CHANNEL_LAYER", '{"BACKEND": "channels.layers.InMemoryChannelLayer"}')
    )
}
APPSYNC_EVENTS = {
    "default": {
        "HTTP_URL": os.environ.get("BENCH_HTTP_URL", "http://127.0.0.1:9/event"),
        "REGION": "us-east-1",
        "AUTH": {"API_KEY": os.environ.get("BENCH_API_KEY", "da2-bench")},
        "NAMESPACES": {"default": {}},
        "SUBSCRIPTIONS": os.environ.get("BENCH_SUBSCRIPTIONS", "/default/bench").split(","),
        "GRANTS": [{"WHO": "everyone", "SUBSCRIBE": ["/default/*"]}],
        "LISTENER": {"QUEUE_SIZE": 10_000, "STATS_INTERVAL": 3600},
        "PUBLISH": {"ON_COMMIT": False},
    }
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
