"""Settings for the test suite: the demo project's apps, an isolated AWS environment."""

from __future__ import annotations

import os
from typing import Any

# Never reach real AWS from tests: no config files, fake keys.
os.environ["AWS_CONFIG_FILE"] = "/nonexistent/aws-config"
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent/aws-credentials"
os.environ.pop("AWS_PROFILE", None)

SECRET_KEY = "tests-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ROOT_URLCONF = "demo_project.urls"

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
    # The database backend of Django's Tasks framework (tests/test_tasks*.py).
    "django_tasks_db",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
STATIC_URL = "static/"

# APPSYNC_EVENTS_TEST_DB=postgres runs the suite on the PostgreSQL server.
if os.environ.get("APPSYNC_EVENTS_TEST_DB") == "postgres":
    DATABASES: dict[str, Any] = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "test",
            "USER": os.environ.get("PGUSER", "postgres"),
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
        }
    }
else:
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

APPSYNC_EVENTS: dict[str, Any] = {
    "default": {
        "HTTP_URL": "http://127.0.0.1:8765/event",
        "REGION": "us-east-1",
        "AUTH": {"API_KEY": "da2-tests00000000000000000000000"},
        "NAMESPACES": {"default": {}, "chat": {}},
    }
}
