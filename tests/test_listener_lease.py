"""Tests for the --exclusive leases: PostgreSQL advisory lock and Redis key."""

from __future__ import annotations

import asyncio
import copy
import logging
import socket
import uuid
from typing import Any

import pytest

from appsync_events.exceptions import ConfigurationError, ImproperlyInstalled
from appsync_events.lease import Lease, PostgresLease, RedisLease, get_lease, lease_key
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


class FlakyLease(Lease):
    """A lease whose store fails ``failures`` times, is taken once, then is free."""

    def __init__(self, outcomes: list[bool | Exception]) -> None:
        super().__init__("tests:flaky", poll_interval=0.001)
        self.outcomes = outcomes
        self.resets = 0

    async def try_acquire(self) -> bool:
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def reset(self) -> None:
        self.resets += 1


async def test_a_standby_outlives_an_outage_of_the_lease_store(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Store errors while standing by are logged and retried, never fatal."""
    caplog.set_level(logging.INFO, logger="appsync_events.lease")
    lease = FlakyLease([False, OSError("connection refused"), OSError("still down"), False, True])
    await asyncio.wait_for(lease.acquire(), 10)
    assert lease.held
    assert lease.resets == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "Lease tests:flaky: could not reach its store (1 failed attempt(s)): "
        "OSError: connection refused; trying again every 0.0 s"
    ]
    assert "its store answers again after 2 failed attempt(s)" in caplog.text


async def test_a_missing_package_is_not_retried() -> None:
    lease = FlakyLease([ImproperlyInstalled(missing_package="redis", install_extra="redis")])
    with pytest.raises(ImproperlyInstalled):
        await asyncio.wait_for(lease.acquire(), 10)


@pytest.mark.postgres
async def test_postgres_standby_retries_an_unreachable_server(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A real connection failure (nothing listens on the port) is retried, not raised."""
    require_postgres()
    with socket.socket() as probe:  # a free port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    lease = PostgresLease(f"tests:{uuid.uuid4()}", {**PG, "port": port}, poll_interval=0.01)
    task = asyncio.create_task(lease.acquire())
    try:
        async with asyncio.timeout(10):
            while "could not reach its store" not in caplog.text:
                assert not task.done(), task
                await asyncio.sleep(0.01)
        assert not task.done()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await lease.release()


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
