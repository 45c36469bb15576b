"""Leases for ``appsync_listen --exclusive``: one dispatching listener per alias.

Several listeners for one alias would each receive every event. With ``--exclusive``
each listener first takes a lease; only the holder connects and dispatches, the others
wait as standbys and take over when the holder dies.

Two backends:

:class:`PostgresLease`
    A PostgreSQL session-level advisory lock (``pg_try_advisory_lock``) held on a
    dedicated psycopg connection (not Django's, which may be closed between requests).
    The server releases it the moment that connection ends, including when the holder
    is killed (``SIGKILL``) and the kernel closes its socket. Standbys poll every
    ``poll_interval`` seconds. The holder checks its connection every
    ``poll_interval`` seconds and reports the lease lost if it broke.
:class:`RedisLease`
    ``SET key token NX PX ttl``, renewed every ``ttl / 3`` by a compare-and-extend
    script; a killed holder's lease expires after ``ttl``. Lost when a renewal fails.

:func:`get_lease` picks one from ``LISTENER['LEASE']`` (``"auto"``: PostgreSQL when
the default database is PostgreSQL, else Redis when ``LISTENER['LEASE_REDIS_URL']``
is set).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import uuid
from typing import Any, Final

from .conf import APIConfig, get_api_config
from .exceptions import ConfigurationError, ImproperlyInstalled

__all__ = ["Lease", "PostgresLease", "RedisLease", "get_lease", "lease_key"]

logger = logging.getLogger(__name__)

_RENEW_SCRIPT: Final = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE_SCRIPT: Final = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


def lease_key(alias: str) -> str:
    """The name of the lease for alias ``alias``."""
    return f"appsync_events:listen:{alias}"


class Lease:
    """Base class: acquire, watch, release.

    Subclasses implement :meth:`try_acquire`, :meth:`check` and :meth:`release`.

    Args:
        name: the lease name (see :func:`lease_key`).
        poll_interval: seconds between acquisition attempts and between health checks.
    """

    def __init__(self, name: str, *, poll_interval: float = 1.0) -> None:
        self.name = name
        self.poll_interval = poll_interval
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.held = False

    async def try_acquire(self) -> bool:
        """Try once; return whether the lease is now held."""
        raise NotImplementedError

    async def check(self) -> bool:
        """Return whether the lease is still held (renewing it when needed)."""
        raise NotImplementedError

    async def release(self) -> None:
        """Give the lease up (no error when not held)."""
        raise NotImplementedError

    async def acquire(self) -> None:
        """Wait until the lease is held, trying every ``poll_interval`` seconds.

        A standby outlives an outage of the lease's store (the database or Redis
        restarting): a failed attempt is logged (a WARNING when the failures start,
        then at most one a minute, with the count) and tried again. Only a missing
        optional package (:class:`ImproperlyInstalled`) is raised.
        """
        announced = False
        failures = 0
        last_warning = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                if await self.try_acquire():
                    break
            except ImproperlyInstalled:
                raise
            except Exception as exc:
                failures += 1
                now = loop.time()
                if failures == 1 or now - last_warning >= 60.0:
                    last_warning = now
                    logger.warning(
                        "Lease %s: could not reach its store (%d failed attempt(s)): %s: %s; "
                        "trying again every %.1f s",
                        self.name,
                        failures,
                        type(exc).__name__,
                        exc,
                        self.poll_interval,
                    )
                await self.reset()
            else:
                if failures:
                    logger.info(
                        "Lease %s: its store answers again after %d failed attempt(s)",
                        self.name,
                        failures,
                    )
                    failures = 0
                if not announced:
                    logger.info("Lease %s is held by another listener; standing by", self.name)
                    announced = True
            await asyncio.sleep(self.poll_interval)
        self.held = True
        logger.info("Lease %s acquired by %s", self.name, self.holder)

    async def reset(self) -> None:
        """Drop whatever connection a failed attempt may have left broken."""

    async def wait_lost(self) -> None:
        """Return when the lease is lost (checked every ``poll_interval`` seconds)."""
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                ok = await self.check()
            except Exception:
                logger.exception("Checking lease %s failed", self.name)
                ok = False
            if not ok:
                self.held = False
                logger.error("Lease %s was lost", self.name)
                return


class PostgresLease(Lease):
    """A PostgreSQL advisory lock on a dedicated connection (see the module docs).

    Args:
        name: the lease name; hashed to the 64-bit advisory lock key.
        conninfo: keyword arguments for :func:`psycopg.AsyncConnection.connect`.
    """

    def __init__(self, name: str, conninfo: dict[str, Any], *, poll_interval: float = 1.0) -> None:
        super().__init__(name, poll_interval=poll_interval)
        self.conninfo = conninfo
        digest = hashlib.sha256(name.encode()).digest()
        self.key = int.from_bytes(digest[:8], "big", signed=True)
        self._conn: Any = None

    @classmethod
    def from_django(cls, name: str, *, poll_interval: float = 1.0) -> PostgresLease:
        """Build one with the connection parameters of Django's ``default`` database."""
        from django.db import connections

        wrapper = connections["default"]
        if wrapper.vendor != "postgresql":
            raise ConfigurationError(
                "LISTENER['LEASE'] is 'postgres' but the default database is "
                f"{wrapper.vendor}; use a PostgreSQL default database or LEASE 'redis'.",
                key="LISTENER['LEASE']",
                check_id="appsync_events.E009",
            )
        params = dict(wrapper.get_connection_params())
        # Django adds psycopg objects for its own cursors; a bare connection needs none.
        for name_ in ("context", "cursor_factory", "server_side_binding", "pool"):
            params.pop(name_, None)
        params["autocommit"] = True
        return cls(name, params, poll_interval=poll_interval)

    async def _connect(self) -> Any:
        try:
            import psycopg
        except ImportError:
            raise ImproperlyInstalled(missing_package="psycopg", install_extra="postgres") from None
        conninfo = dict(self.conninfo)
        conninfo.setdefault("application_name", "appsync_listen lease")
        return await psycopg.AsyncConnection.connect(**conninfo)

    async def try_acquire(self) -> bool:
        """Try ``pg_try_advisory_lock`` once on the dedicated connection."""
        if self._conn is None or self._conn.closed:
            self._conn = await self._connect()
        cursor = await self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,))
        row = await cursor.fetchone()
        return bool(row and row[0])

    async def check(self) -> bool:
        """The lock lives as long as the connection: check that it still answers."""
        if self._conn is None or self._conn.closed:
            return False
        try:
            await self._conn.execute("SELECT 1")
        except Exception:
            logger.warning("The lease connection broke (lease %s)", self.name, exc_info=True)
            return False
        return True

    async def reset(self) -> None:
        """Close the dedicated connection; the next attempt opens a new one."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            try:
                await conn.close()
            except Exception:
                logger.debug("Closing a broken lease connection failed", exc_info=True)

    async def release(self) -> None:
        """Unlock and close the dedicated connection."""
        conn, self._conn = self._conn, None
        self.held = False
        if conn is None or conn.closed:
            return
        try:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
        except Exception:
            logger.warning("Could not unlock lease %s cleanly", self.name, exc_info=True)
        finally:
            await conn.close()


class RedisLease(Lease):
    """A Redis key with a TTL, renewed while held (see the module docs).

    Args:
        name: the Redis key.
        url: the Redis URL (``redis://127.0.0.1:6379/0``).
        ttl: seconds a dead holder keeps the lease.
    """

    def __init__(
        self, name: str, url: str, *, ttl: float = 15.0, poll_interval: float = 1.0
    ) -> None:
        super().__init__(name, poll_interval=min(poll_interval, ttl / 3))
        self.url = url
        self.ttl_ms = int(ttl * 1000)
        self._redis: Any = None

    def _client(self) -> Any:
        if self._redis is None:
            try:
                import redis.asyncio as aioredis
            except ImportError:
                raise ImproperlyInstalled(missing_package="redis", install_extra="redis") from None
            self._redis = aioredis.from_url(self.url)
        return self._redis

    async def try_acquire(self) -> bool:
        """``SET NX PX`` once."""
        return bool(await self._client().set(self.name, self.holder, nx=True, px=self.ttl_ms))

    async def check(self) -> bool:
        """Extend the TTL if the key still holds our token."""
        result = await self._client().eval(_RENEW_SCRIPT, 1, self.name, self.holder, self.ttl_ms)
        return bool(result)

    async def release(self) -> None:
        """Delete the key if it still holds our token; close the client."""
        self.held = False
        client, self._redis = self._redis, None
        if client is None:
            return
        try:
            await client.eval(_RELEASE_SCRIPT, 1, self.name, self.holder)
        except Exception:
            logger.warning("Could not release lease %s cleanly", self.name, exc_info=True)
        finally:
            await client.aclose()


def get_lease(api: str | APIConfig = "default") -> Lease:
    """Return the lease backend configured for alias ``api``.

    Raises:
        ConfigurationError: no usable backend (``"auto"`` with neither a PostgreSQL
            default database nor ``LEASE_REDIS_URL``).
    """
    config = api if isinstance(api, APIConfig) else get_api_config(api)
    listener = config.listener
    name = lease_key(config.alias)
    backend = listener.lease
    if backend == "auto":
        from django.db import connections

        if connections["default"].vendor == "postgresql":
            backend = "postgres"
        elif listener.lease_redis_url:
            backend = "redis"
        else:
            raise ConfigurationError(
                f"appsync_listen --exclusive needs a lease: the default database is not "
                f"PostgreSQL, so set APPSYNC_EVENTS[{config.alias!r}]['LISTENER']"
                "['LEASE_REDIS_URL'] = 'redis://127.0.0.1:6379/0' (or LEASE 'postgres' "
                "with a PostgreSQL default database).",
                api=config.alias,
                key="LISTENER['LEASE']",
                check_id="appsync_events.E009",
            )
    if backend == "postgres":
        return PostgresLease.from_django(name, poll_interval=listener.lease_poll_interval)
    if not listener.lease_redis_url:
        raise ConfigurationError(
            f"APPSYNC_EVENTS[{config.alias!r}]['LISTENER']['LEASE'] is 'redis' but "
            "LEASE_REDIS_URL is not set; set it, e.g. 'redis://127.0.0.1:6379/0'.",
            api=config.alias,
            key="LISTENER['LEASE_REDIS_URL']",
            check_id="appsync_events.E009",
        )
    return RedisLease(
        name,
        listener.lease_redis_url,
        ttl=listener.lease_ttl,
        poll_interval=listener.lease_poll_interval,
    )
