"""Settings of the processes of ``tests/test_tasks_workers.py`` (listener and workers).

The suite's settings plus the test app holding the enqueued handler, django-tasks-db's
``DatabaseBackend``, and from the environment:

``APPSYNC_TASKS_DB``
    the PostgreSQL database name (server of ``tests/prereqs.py``: ``PGHOST``/``PGPORT``,
    user ``postgres``).
``APPSYNC_TASKS_URL`` / ``APPSYNC_TASKS_KEY``
    the emulator's HTTP endpoint and API key.
"""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.tasks_app"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("APPSYNC_TASKS_DB", "test"),
        "USER": os.environ.get("PGUSER", "postgres"),
        "HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("PGPORT", "5432"),
        # Speed, not semantics: a connection per process instead of one per task, and
        # commits that do not wait for the disk (a crash of the server is not tested;
        # a killed worker's commits are as visible as ever).
        "CONN_MAX_AGE": 600,
        "OPTIONS": {"options": "-c synchronous_commit=off"},
    }
}
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
APPSYNC_EVENTS = {
    "default": {
        "HTTP_URL": os.environ.get("APPSYNC_TASKS_URL", "http://127.0.0.1:9/event"),
        "REGION": "us-east-1",
        "AUTH": {"API_KEY": os.environ.get("APPSYNC_TASKS_KEY", "da2-tasks-tests")},
        "NAMESPACES": {"default": {}},
        "SUBSCRIPTIONS": ["/default/*"],
        "FORWARDING": {"ENABLED": False},
    }
}
