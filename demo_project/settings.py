"""Settings of the demo project: a live chat on AppSync Events.

The connection comes from the environment (see README): with ``APPSYNC_EVENTS_URL``
unset, the project talks to the embedded emulator on 127.0.0.1.

Environment variables:

* ``APPSYNC_EVENTS_URL``: the Event API's HTTP endpoint (``https://...appsync-api.../event``);
  unset: the embedded emulator on ``APPSYNC_EVENTS_EMULATOR_PORT`` (8765).
* ``APPSYNC_EVENTS_REALTIME_URL``: the websocket endpoint, when it cannot be derived.
* ``APPSYNC_EVENTS_AUTH``: ``API_KEY`` (default), ``AWS_IAM``, ``AMAZON_COGNITO_USER_POOLS``,
  ``OPENID_CONNECT`` or ``AWS_LAMBDA``; with ``APPSYNC_EVENTS_API_KEY`` or
  ``APPSYNC_EVENTS_TOKEN``, and the standard ``AWS_*`` variables for IAM and the region.
* ``REDIS_URL``: use ``channels_redis`` instead of the in-memory channel layer.
* ``APPSYNC_EVENTS_IN_PROCESS``: ``1`` (default) runs the listener inside the ASGI process;
  ``0`` when ``manage.py appsync_listen`` runs on its own (Redis only).
* ``DEMO_DIRECT``: ``1`` for direct mode: pages fetch a token from ``/appsync/token/`` and
  connect to the Event API (the emulator) themselves, authorized by the Lambda authorizer
  module, which the emulator runs; ``APPSYNC_EVENTS_TOKEN_KEYS`` holds the signing keys
  (a demo key is used when it is unset). See docs/direct.md.
* ``DEMO_LOG_LEVEL``: level of the ``appsync_events`` loggers (``WARNING``; ``INFO`` shows
  the listener's own lines).
* ``DEMO_DATABASE``: the SQLite file (default ``demo.sqlite3``); ``PORT``: the web port of
  ``manage.py appsync_demo`` (8000); ``DJANGO_DEBUG``, ``DJANGO_SECRET_KEY``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "appsync_events",
    "demo_project.chat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demo_project.urls"
ASGI_APPLICATION = "demo_project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DEMO_DATABASE", str(BASE_DIR / "demo.sqlite3")),
    }
}

STATIC_URL = "static/"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# -- channel layer: in-memory (one process) unless REDIS_URL is set ----------------
REDIS_URL = os.environ.get("REDIS_URL")
CHANNEL_LAYERS: dict[str, Any] = (
    {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
    if REDIS_URL
    else {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
)

# -- AppSync Events: from the environment, else the embedded emulator ---------------
EMULATOR_PORT = int(os.environ.get("APPSYNC_EVENTS_EMULATOR_PORT", "8765"))
EMULATOR_API_KEY = "da2-demo0000000000000000000000"
APPSYNC_EVENTS_URL = os.environ.get("APPSYNC_EVENTS_URL")
USE_EMULATOR = not APPSYNC_EVENTS_URL
_mode = os.environ.get("APPSYNC_EVENTS_AUTH", "API_KEY")
_auth: dict[str, Any]
if USE_EMULATOR:
    _auth = {"API_KEY": EMULATOR_API_KEY}
elif _mode == "API_KEY":
    _auth = {"API_KEY": os.environ.get("APPSYNC_EVENTS_API_KEY", "")}
elif _mode == "AWS_IAM":
    _auth = {"AWS_IAM": {}}
else:
    _auth = {_mode: {"token_env": "APPSYNC_EVENTS_TOKEN"}}

_default: dict[str, Any] = {
    "HTTP_URL": APPSYNC_EVENTS_URL or f"http://127.0.0.1:{EMULATOR_PORT}/event",
    "AUTH": _auth,
    "NAMESPACES": {"chat": {}},
    "SUBSCRIPTIONS": ["/chat/*"],
    "EMULATOR": {"HOST": "127.0.0.1", "PORT": EMULATOR_PORT},
    # The listener runs inside the ASGI process (one process: `make demo`). With Redis and
    # `manage.py appsync_listen` in its own process, set APPSYNC_EVENTS_IN_PROCESS=0.
    "FORWARDING": {"IN_PROCESS": os.environ.get("APPSYNC_EVENTS_IN_PROCESS", "1") == "1"},
    # What browsers may do (nothing unless granted): the demo has no accounts, so every
    # visitor may follow the rooms; nobody publishes from the browser (the view does).
    "GRANTS": [{"WHO": "everyone", "SUBSCRIBE": ["/chat/rooms/*"]}],
}
# -- direct mode: browsers talk to AppSync with tokens minted here ---------------------
DEMO_DIRECT = os.environ.get("DEMO_DIRECT", "0") == "1"
if DEMO_DIRECT:
    # One variable for both sides, as in AWS: Django signs with these keys, the Lambda
    # authorizer (run by the embedded emulator, in this process) verifies with them.
    os.environ.setdefault(
        "APPSYNC_EVENTS_TOKEN_KEYS", json.dumps({"demo": "demo-only-token-key-not-a-secret-0000"})
    )
    _default["TOKENS"] = {"SIGNING_KEYS": json.loads(os.environ["APPSYNC_EVENTS_TOKEN_KEYS"])}
    # Browsers subscribe with Lambda auth; Django publishes and listens with the API key.
    _both = ["API_KEY", "AWS_LAMBDA"]
    _default["NAMESPACES"] = {"chat": {"PUBLISH_AUTH_MODES": _both, "SUBSCRIBE_AUTH_MODES": _both}}
    _default["EMULATOR"]["LAMBDA_AUTHORIZER"] = "appsync_events.lambda_authorizer.handler"
if os.environ.get("APPSYNC_EVENTS_REALTIME_URL"):
    _default["REALTIME_URL"] = os.environ["APPSYNC_EVENTS_REALTIME_URL"]
if not USE_EMULATOR and os.environ.get("AWS_REGION"):
    _default["REGION"] = os.environ["AWS_REGION"]

APPSYNC_EVENTS = {"default": _default}

# `manage.py appsync_demo` prints one line per listener state change itself; the library's
# own log lines (reconnect reasons, statistics...) show with DEMO_LOG_LEVEL=INFO or DEBUG.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "appsync_events": {
            "handlers": ["console"],
            "level": os.environ.get("DEMO_LOG_LEVEL", "WARNING").upper(),
        }
    },
}
