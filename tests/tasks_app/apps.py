"""The test app's configuration."""

from __future__ import annotations

from django.apps import AppConfig


class TasksAppConfig(AppConfig):
    """Installed by tests/tasks_settings.py for the worker end-to-end test."""

    name = "tests.tasks_app"
    label = "appsync_tests_tasks_app"
