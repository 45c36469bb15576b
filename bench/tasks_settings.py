"""Settings of the processes of ``bench/bench_tasks.py`` (listener and workers).

From the environment: ``BENCH_TASKS_DB`` (a PostgreSQL database on ``PGHOST``/``PGPORT``,
user ``postgres``), ``BENCH_TASKS_URL`` and ``BENCH_TASKS_KEY`` (the emulator), and
``BENCH_TASKS_ENQUEUE`` (``"1"``: the handler is enqueued; ``"0"``: it runs in process).
"""

from __future__ import annotations

import os

SECRET_KEY = "bench-not-secret"  # noqa: S105 - a benchmark, nothing to protect
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "appsync_events",
    "django_tasks_db",
    "bench.tasks_app",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("BENCH_TASKS_DB", "test"),
        "USER": os.environ.get("PGUSER", "postgres"),
        "HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("PGPORT", "5432"),
        "CONN_MAX_AGE": 600,
    }
}
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
APPSYNC_EVENTS = {
    "default": {
        "HTTP_URL": os.environ.get("BENCH_TASKS_URL", "http://127.0.0.1:9/event"),
        "AUTH": {"API_KEY": os.environ.get("BENCH_TASKS_KEY", "da2-bench")},
        "NAMESPACES": {"default": {}},
        "SUBSCRIPTIONS": ["/default/*"],
        "TASKS": {"ENQUEUE": os.environ.get("BENCH_TASKS_ENQUEUE") == "1"},
    }
}
