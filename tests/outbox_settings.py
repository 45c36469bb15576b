"""Settings for outbox drainer subprocesses in tests (``tests/test_outbox_concurrency.py``).

The suite's settings, with the database and the endpoint taken from the environment:

``APPSYNC_OUTBOX_DB``
    ``sqlite:<path>`` for a SQLite file, or ``postgres:<database name>`` on the PostgreSQL
    server of ``tests/prereqs.py`` (``PGHOST``/``PGPORT``, user ``postgres``).
``APPSYNC_OUTBOX_URL`` / ``APPSYNC_OUTBOX_KEY``
    the emulator's HTTP endpoint and API key.
``APPSYNC_OUTBOX_LEASE`` / ``APPSYNC_OUTBOX_HTTP_TIMEOUT``
    the drainer's lease and the HTTP timeout, in seconds.
"""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403

_db = os.environ.get("APPSYNC_OUTBOX_DB", "sqlite::memory:")
_kind, _, _name = _db.partition(":")
if _kind == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": _name,
            "USER": os.environ.get("PGUSER", "postgres"),
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
        }
    }
else:
    # A generous busy timeout: drainers in several processes share the file.
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": _name,
            "OPTIONS": {"timeout": 30},
        }
    }

APPSYNC_EVENTS = {
    "default": {
        "HTTP_URL": os.environ.get("APPSYNC_OUTBOX_URL", "http://127.0.0.1:9/event"),
        "REGION": "us-east-1",
        "AUTH": {"API_KEY": os.environ.get("APPSYNC_OUTBOX_KEY", "da2-outbox-tests")},
        "NAMESPACES": {"default": {}, "chat": {}},
        "TIMEOUTS": {"HTTP": float(os.environ.get("APPSYNC_OUTBOX_HTTP_TIMEOUT", "10"))},
        "PUBLISH": {"OPTIONS": {"RETRIES": 0}},
        "OUTBOX": {
            "BACKOFF_INITIAL": 0.05,
            "BACKOFF_MAX": 0.5,
            "POLL_INTERVAL": 0.05,
            "MAX_ATTEMPTS": 1000,
            "LEASE": float(os.environ.get("APPSYNC_OUTBOX_LEASE", "60")),
        },
    }
}
