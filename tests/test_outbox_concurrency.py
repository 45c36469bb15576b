"""The outbox under load and failure: drainer processes on SQLite (a file) and PostgreSQL.

* 10,000 durable events are written while the service is down (a drain pass records the
  failures), then two ``manage.py appsync_outbox`` processes drain them once the
  emulator is up: a subscriber receives every event exactly once and every row is sent.
* A drainer killed (SIGKILL) in the middle of a batch loses nothing: another drainer
  takes its rows over when the lease expires (events the dead drainer had already sent
  are delivered twice: at-least-once).

The drainers run as real processes with ``tests/outbox_settings.py``; the test reads the
table with the database's own driver.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import socket
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from appsync_events.client import AppSyncEventsClient
from appsync_events.emulator import AppSyncEventsEmulator, NamespaceHandlers
from appsync_events.events import ReceivedEvent
from tests.prereqs import require_postgres

ROOT = Path(__file__).resolve().parent.parent
KEY = "da2-outboxconcurrency00000000000"
TABLE = "appsync_events_outboxevent"

FILL = """
import os, django
django.setup()
from django.db import transaction
from appsync_events import publish
n, channels = int(os.environ["FILL_EVENTS"]), int(os.environ["FILL_CHANNELS"])
with transaction.atomic():
    for c in range(channels):
        publish(f"/default/c{c}", *[{"n": i} for i in range(c, n, channels)], durable=True)
"""


@dataclass
class Database:
    """A database the drainer processes use, and a way for the test to read it."""

    setting: str
    query: Callable[[str], list[tuple[Any, ...]]]
    #: Drop the database while drainers use it (PostgreSQL only).
    drop: Callable[[], None] | None = None

    def states(self) -> dict[str, int]:
        return dict(self.query(f"SELECT state, COUNT(*) FROM {TABLE} GROUP BY state"))  # noqa: S608


def _sqlite(path: Path) -> Database:
    def query(sql: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(path, timeout=30) as conn:
            return conn.execute(sql).fetchall()

    return Database(f"sqlite:{path}", query)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request, tmp_path) -> Iterator[Database]:
    """A fresh outbox database: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield _sqlite(tmp_path / "outbox.sqlite3")
        return
    require_postgres()
    import psycopg

    params: dict[str, Any] = {
        "host": os.environ.get("PGHOST", "127.0.0.1"),
        "port": int(os.environ.get("PGPORT", "5432")),
        "user": os.environ.get("PGUSER", "postgres"),
    }
    name = f"appsync_outbox_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dbname="test", autocommit=True, **params) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')

    def query(sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(dbname=name, autocommit=True, **params) as conn:
            return conn.execute(sql).fetchall()

    def drop() -> None:
        with psycopg.connect(dbname="test", autocommit=True, **params) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    try:
        yield Database(f"postgres:{name}", query, drop)
    finally:
        drop()


def free_port() -> int:
    """Reserve a loopback port number for an emulator started later."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(db: Database, port: int, **extra: str) -> dict[str, str]:
    """The environment of a drainer process."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.outbox_settings",
        "APPSYNC_OUTBOX_DB": db.setting,
        "APPSYNC_OUTBOX_URL": f"http://127.0.0.1:{port}/event",
        "APPSYNC_OUTBOX_KEY": KEY,
        **extra,
    }


async def run(env: dict[str, str], *args: str, timeout: float = 120) -> str:  # noqa: ASYNC109
    """Run a Python command to completion; return its stdout, failing on a non-zero exit."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode == 0, f"{args} exited {proc.returncode}: {err.decode()[-2000:]}"
    return out.decode()


async def start_drainer(env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    """Start ``manage.py appsync_outbox`` (until SIGTERM)."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "manage.py",
        "appsync_outbox",
        "--skip-checks",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def stop_drainer(proc: asyncio.subprocess.Process) -> str:
    """SIGTERM a drainer, check it exits 0, return its stdout."""
    proc.send_signal(signal.SIGTERM)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()[-2000:]
    return out.decode()


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:  # noqa: ASYNC109
    """Poll ``condition`` until it holds, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.2)


async def prepare(db: Database, env: dict[str, str], events: int, channels: int) -> None:
    """Create the table and write ``events`` durable events in one transaction."""
    await run(env, "manage.py", "migrate", "appsync_events", "--skip-checks", "-v", "0")
    await run({**env, "FILL_EVENTS": str(events), "FILL_CHANNELS": str(channels)}, "-c", FILL)
    assert db.states() == {"pending": events}


@pytest.fixture
async def subscriber(settings) -> AsyncIterator[Callable[[int], Any]]:
    """A factory: subscribe to ``/default/*`` on the emulator at a port; collect payloads."""
    clients: list[AppSyncEventsClient] = []

    async def subscribe(port: int) -> list[Any]:
        settings.APPSYNC_EVENTS = {
            "default": {
                "HTTP_URL": f"http://127.0.0.1:{port}/event",
                "REGION": "us-east-1",
                "AUTH": {"API_KEY": KEY},
                "NAMESPACES": {"default": {}, "chat": {}},
            }
        }
        received: list[Any] = []

        async def on_event(event: ReceivedEvent) -> None:
            received.append(event.payload["n"])

        client = AppSyncEventsClient("default", on_event=on_event)
        clients.append(client)
        await client.connect()
        await client.subscribe("/default/*")
        return received

    yield subscribe
    for client in clients:
        await client.aclose()


@pytest.mark.timeout(180)
async def test_ten_thousand_events_two_drainers_exactly_once(database, subscriber):
    """10,000 events written while the service is down arrive exactly once via two drainers."""
    total = 10_000
    port = free_port()
    env = environment(database, port)
    await prepare(database, env, total, channels=10)

    # The service is down: a drain pass fails every event and schedules a retry.
    out = await run(env, "manage.py", "appsync_outbox", "--skip-checks", "--once")
    assert f"done: claimed {total}, sent 0, retried {total}" in out
    assert database.states() == {"pending": total}
    assert database.query(f"SELECT MIN(attempts), MAX(attempts) FROM {TABLE}") == [(1, 1)]  # noqa: S608

    emulator = AppSyncEventsEmulator("127.0.0.1", port, api_keys=[KEY], namespaces=["default"])
    emulator.start()
    try:
        received = await subscriber(port)
        await emulator.await_for_subscriptions(1, channel="/default/*")
        drainers = [await start_drainer(env, "--batch-size", "200") for _ in range(2)]
        try:
            await wait_until(lambda: len(received) >= total, 180, f"{total} events")
            await wait_until(
                lambda: database.states() == {"sent": total}, 30, "every row marked sent"
            )
        finally:
            outputs = [await stop_drainer(proc) for proc in drainers]
        # Each drainer took part (they started together; 10,000 rows take many batches).
        assert all("batch: claimed" in out for out in outputs), outputs
        counts = collections.Counter(received)
        assert sorted(counts) == list(range(total))
        assert max(counts.values()) == 1, [n for n, c in counts.items() if c > 1][:20]
        assert sum(len(r.events) for r in emulator.published) == total
    finally:
        emulator.stop()


@pytest.mark.timeout(120)
async def test_drainer_killed_mid_batch_loses_nothing(database, subscriber):
    """A drainer SIGKILLed mid-batch loses nothing: its rows are re-sent after its lease."""
    total = 500
    port = free_port()
    # The lease fits a whole slice (five 2 s requests and the 1 s margin), so the drainer
    # is mid-slice when it dies; the survivor re-claims the rows once that lease expires.
    env = environment(database, port, APPSYNC_OUTBOX_LEASE="12", APPSYNC_OUTBOX_HTTP_TIMEOUT="2")
    await prepare(database, env, total, channels=1)
    entered, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def block_third_request(ctx: Any) -> None:
        calls.append(len(ctx.events))
        if len(calls) == 3:
            entered.set()
            release.wait(30)

    emulator = AppSyncEventsEmulator(
        "127.0.0.1",
        port,
        api_keys=[KEY],
        namespaces=["default"],
        handlers={"default": NamespaceHandlers(on_publish=block_third_request)},
    )
    emulator.start()
    try:
        received = await subscriber(port)
        await emulator.await_for_subscriptions(1, channel="/default/*")
        doomed = await start_drainer(env, "--batch-size", str(total))
        assert await asyncio.to_thread(entered.wait, 30), "the drainer never sent a third request"
        # Mid-batch: two requests accepted, the third in flight, nothing marked sent.
        assert database.query(f"SELECT COUNT(*) FROM {TABLE} WHERE locked_by <> ''") == [(total,)]  # noqa: S608
        doomed.kill()
        await doomed.wait()
        release.set()
        assert database.states() == {"pending": total}

        survivor = await start_drainer(env)
        try:
            await wait_until(
                lambda: database.states() == {"sent": total}, 60, "every row marked sent"
            )
        finally:
            await stop_drainer(survivor)
        await wait_until(lambda: set(received) == set(range(total)), 30, "every event")
        counts = collections.Counter(received)
        twice = sorted(n for n, c in counts.items() if c > 1)
        # Only what the killed drainer had sent (its first three requests) came twice.
        assert set(twice) <= set(range(15)), twice
        assert max(counts.values()) <= 2
    finally:
        release.set()
        emulator.stop()
