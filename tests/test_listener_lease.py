"""Tests for the --exclusive leases: PostgreSQL advisory lock and Redis key."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest

from appsync_events.exceptions import ConfigurationError
from appsync_events.lease import PostgresLease, RedisLease, get_lease, lease_key
from tests.prereqs import require_postgres, require_redis

PG = {"dbname": "test", "user": "postgres", "host": "127.0.0.1", "port": 5432, "autocommit": True}


@pytest.mark.postgres
async def test_postgres_lease_is_exclusive_and_freed_with_the_session() -> None:
    """Only one holder at a time; closing the holder's connection frees the lock."""
    require_postgres()
    name = f"tests:{uuid.uuid4()}"
    one, two = PostgresLease(name, PG, poll_interval=0.05), PostgresLease(name, PG)
    try:
        assert await one.try_acquire()
        assert not await two.try_acquire()
        assert await one.check()
        await one.release()
        assert await two.try_acquire()
    finally:
        await one.release()
        await two.release()


@pytest.mark.redis
async def test_redis_lease_is_exclusive_renewed_and_released() -> None:
    """SET NX holds it; the holder renews; release lets the next one in."""
    require_redis()
    name = f"tests:{uuid.uuid4()}"
    url = "redis://127.0.0.1:6379/0"
    one, two = RedisLease(name, url, ttl=5), RedisLease(name, url, ttl=5)
    try:
        assert await one.try_acquire()
        assert not await two.try_acquire()
        assert await one.check()
        assert not await two.check()  # renewing someone else's lease fails
        await one.release()
        assert await two.try_acquire()
    finally:
        await one.release()
        await two.release()


def test_get_lease_needs_a_backend(settings: Any) -> None:
    """On SQLite without LEASE_REDIS_URL, --exclusive is a configuration error."""
    with pytest.raises(ConfigurationError, match="LEASE_REDIS_URL"):
        get_lease("default")


def test_get_lease_picks_redis_when_configured(settings: Any) -> None:
    """With LEASE_REDIS_URL on a non-PostgreSQL database, the Redis lease is used."""
    value = copy.deepcopy(settings.APPSYNC_EVENTS)
    value["default"]["LISTENER"] = {"LEASE_REDIS_URL": "redis://127.0.0.1:6379/0", "LEASE_TTL": 6}
    settings.APPSYNC_EVENTS = value
    lease = get_lease("default")
    assert isinstance(lease, RedisLease)
    assert lease.name == lease_key("default")
    assert lease.ttl_ms == 6000


def test_invalid_lease_settings_are_refused(settings: Any) -> None:
    """LEASE and LEASE_REDIS_URL are validated with a clear message."""
    from appsync_events.conf import get_api_config

    value = copy.deepcopy(settings.APPSYNC_EVENTS)
    value["default"]["LISTENER"] = {"LEASE": "zookeeper"}
    settings.APPSYNC_EVENTS = value
    with pytest.raises(ConfigurationError, match="'auto', 'postgres' or 'redis'"):
        get_api_config("default")
