"""A test app whose ``appsync_handlers`` module holds the enqueued handler of
``tests/test_tasks_workers.py`` (installed by ``tests/tasks_settings.py`` only)."""
