"""Suite-wide fixtures and hooks: an isolated AWS environment and the ``database`` marker.

Prerequisite helpers (PostgreSQL, Redis, Node, Chromium) live in ``tests/prereqs.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

# Variables through which botocore could find real credentials, a profile, a role or a region.
AWS_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_ENDPOINT_URL",
)

# Fixtures through which pytest-django hands a test the database.
DATABASE_FIXTURES = frozenset(
    {
        "db",
        "transactional_db",
        "django_db_reset_sequences",
        "django_db_serialized_rollback",
        "live_server",
    }
)


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``database`` marker that :func:`pytest_collection_modifyitems` applies."""
    config.addinivalue_line(
        "markers",
        "database: applied automatically to tests that use the Django database "
        "(the PostgreSQL leg selects them with -m database)",
    )


@pytest.hookimpl(tryfirst=True)  # before pytest's own -m deselection reads the markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the Django database with ``database``."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if item.get_closest_marker("django_db") or fixtures & DATABASE_FIXTURES:
            item.add_marker(pytest.mark.database)
            continue
        cls = getattr(item, "cls", None)
        if cls is not None and _is_django_database_testcase(cls):
            item.add_marker(pytest.mark.database)


def _is_django_database_testcase(cls: type) -> bool:
    from django.test import TransactionTestCase

    return issubclass(cls, TransactionTestCase)


@pytest.fixture(autouse=True)
def _isolated_aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Give every test an AWS environment without the developer's credentials."""
    isolate_aws_environment(monkeypatch)


def isolate_aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide the developer's AWS credentials and config, and forbid the metadata service.

    tests/settings.py already points the AWS config files at missing paths at import; this
    also removes credential variables set in the shell and stops botocore from asking the
    EC2/ECS metadata endpoints (non-loopback addresses) for credentials.
    """
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(autouse=True)
def _fresh_api_configs() -> Iterator[None]:
    """Drop cached ``APPSYNC_EVENTS`` configs after each test, so none leaks into the next."""
    yield
    from appsync_events import conf

    conf.reset()
