"""Enqueued handlers end to end: the listener, two ``db_worker`` processes, PostgreSQL.

10,000 events are published through the emulator; ``manage.py appsync_listen`` enqueues
one task per event into django-tasks-db's ``DatabaseBackend``; two ``manage.py
db_worker`` processes run them. Mid-way one worker is SIGKILLed right after its handler
committed (its task stays RUNNING); ``manage.py appsync_requeue_tasks`` makes that task
ready again and the other worker runs it a second time. Every event is handled at least
once; the only second deliveries come after the kill, and the idempotency helper
recognises every one of them.

Every process runs with ``tests/tasks_settings.py`` on a fresh PostgreSQL database; the
handler is ``tests/tasks_app/appsync_handlers.py``, which logs each delivery to a file.
It runs on the PostgreSQL leg: ``APPSYNC_EVENTS_TEST_DB=postgres pytest -m slow
tests/test_tasks_workers.py`` (about 90 s on two busy cores).
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appsync_events.emulator import AppSyncEventsEmulator
from tests.prereqs import require_postgres_database
from tests.test_outbox_concurrency import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
KEY = "da2-taskworkers0000000000000000"
TOTAL = 10_000
BLOCK_KEY = "ev-05000"  # the event whose worker is killed, mid-way through the run
REQUEUE_AFTER = 5  # seconds a claimed task must be RUNNING before it is requeued
TASKS_TABLE = "django_tasks_database_dbtaskresult"
HANDLED_TABLE = "appsync_events_handledevent"


@pytest.fixture
def database() -> Iterator[tuple[str, Any]]:
    """A fresh PostgreSQL database: its name and a query function.

    The test belongs to the PostgreSQL leg (``make test-postgres``), like the other
    tests that need the server for more than a probe.
    """
    require_postgres_database()
    import psycopg

    params: dict[str, Any] = {
        "host": os.environ.get("PGHOST", "127.0.0.1"),
        "port": int(os.environ.get("PGPORT", "5432")),
        "user": os.environ.get("PGUSER", "postgres"),
    }
    name = f"appsync_tasks_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dbname="test", autocommit=True, **params) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')

    def query(sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(dbname=name, autocommit=True, **params) as conn:
            cursor = conn.execute(sql)
            return cursor.fetchall() if cursor.description else []

    try:
        yield name, query
    finally:
        with psycopg.connect(dbname="test", autocommit=True, **params) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Proc:
    """A ``manage.py`` process whose output goes to a file (read on failure)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.log = logs / f"{name}.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.args = args
        self.env = env

    async def start(self) -> Proc:
        with self.log.open("wb") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "manage.py",
                *self.args,
                cwd=ROOT,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        return self

    def tail(self) -> str:
        return f"--- {self.name} ---\n" + self.log.read_text(errors="replace")[-3000:]

    async def stop(self) -> int:
        """SIGTERM it (if still running) and return its exit status."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), 60)


async def run(env: dict[str, str], *args: str) -> None:
    """Run a ``manage.py`` command to completion, failing on a non-zero exit."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "manage.py",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, f"{args}: {err.decode()[-2000:]}"


def deliveries(log: Path) -> list[tuple[str, str, int, float]]:
    """The handler's log: (kind, key, pid, time) per line."""
    rows = []
    for line in log.read_text().splitlines():
        kind, key, pid, at = line.split()
        rows.append((kind, key, int(pid), float(at)))
    return rows


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(900)
async def test_ten_thousand_events_two_workers_one_killed(database, tmp_path: Path) -> None:
    """Every event is handled; only a killed worker's task runs twice, and it is detected."""
    name, query = database
    port = free_port()
    log, ready = tmp_path / "deliveries.log", tmp_path / "ready"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.tasks_settings",
        "APPSYNC_TASKS_DB": name,
        "APPSYNC_TASKS_URL": f"http://127.0.0.1:{port}/event",
        "APPSYNC_TASKS_KEY": KEY,
        "APPSYNC_TASKS_LOG": str(log),
        "APPSYNC_TASKS_READY": str(ready),
        "APPSYNC_TASKS_BLOCK_KEY": BLOCK_KEY,
    }
    await run(env, "migrate", "--skip-checks", "-v", "0")
    emulator = AppSyncEventsEmulator(
        "127.0.0.1", port, api_keys=[KEY], namespaces=["default"], publishes_per_second=10**6
    )
    emulator.start()
    worker = ["db_worker", "--skip-checks", "-v", "0", "--interval", "0.05"]
    procs = {
        "listener": Proc("listener", ["appsync_listen"], env, tmp_path),
        "w1": Proc("w1", [*worker, "--no-startup-delay", "--worker-id", "w1"], env, tmp_path),
        "w2": Proc("w2", [*worker, "--no-startup-delay", "--worker-id", "w2"], env, tmp_path),
    }
    try:
        await procs["listener"].start()
        await emulator.await_for_subscriptions(1, channel="/default/*", timeout=60)
        for start in range(0, TOTAL, 500):
            batch = [{"event_id": f"ev-{n:05d}", "n": n} for n in range(start, start + 500)]
            await asyncio.to_thread(emulator.publish, "/default/jobs", *batch)

        def enqueued() -> int:
            return int(query(f"SELECT COUNT(*) FROM {TASKS_TABLE}")[0][0])  # noqa: S608

        await wait_until(lambda: enqueued() >= TOTAL, 300, f"{TOTAL} tasks enqueued")
        # django-tasks-db's claim query sorts the whole backlog while the table's
        # statistics say it is empty; autovacuum would analyze it within a minute.
        query(f"ANALYZE {TASKS_TABLE}")
        for proc in ("w1", "w2"):
            await procs[proc].start()

        # The blocking delivery committed; kill its worker (the task stays RUNNING).
        await wait_until(ready.exists, 300, "the marker event's first delivery")
        doomed_pid = int(ready.read_text())
        doomed = next(p for p in procs.values() if p.proc and p.proc.pid == doomed_pid)
        killed_at = time.time()
        assert doomed.proc is not None
        doomed.proc.kill()
        await doomed.proc.wait()
        requeue = ["appsync_requeue_tasks", "--older-than", str(REQUEUE_AFTER), "--every", "0.5"]
        procs["requeue"] = await Proc("requeue", requeue, env, tmp_path).start()

        def done() -> bool:
            states = dict(query(f"SELECT status, COUNT(*) FROM {TASKS_TABLE} GROUP BY status"))  # noqa: S608
            return states == {"SUCCESSFUL": TOTAL}

        await wait_until(done, 600, f"{TOTAL} successful tasks")
    except BaseException:
        print("\n".join(p.tail() for p in procs.values() if p.proc))
        raise
    finally:
        statuses = {n: await p.stop() for n, p in procs.items() if p.proc}
        emulator.stop()
    assert statuses["listener"] == 0, procs["listener"].tail()
    assert enqueued() == TOTAL  # once per event
    assert "requeued 1 task(s)" in procs["requeue"].log.read_text(), procs["requeue"].tail()

    keys = {f"ev-{n:05d}" for n in range(TOTAL)}
    handled = query(f"SELECT key FROM {HANDLED_TABLE} WHERE handler = 'tests.tasks_app.work'")  # noqa: S608
    assert {k for (k,) in handled} == keys  # each event handled (committed) once
    rows = deliveries(log)
    attempts = collections.Counter(key for kind, key, _, _ in rows if kind == "attempt")
    detected = collections.Counter(key for kind, key, _, _ in rows if kind == "duplicate")
    assert set(attempts) == keys  # at least once
    # Every delivery after the first was recognised by the idempotency helper.
    assert {k: attempts[k] - 1 for k in attempts if attempts[k] > 1} == dict(detected)
    # Second deliveries happened only after the kill, the marker's among them.
    first_seen: dict[str, float] = {}
    for kind, key, _, at in rows:
        if kind == "attempt" and key in first_seen:
            assert at > killed_at, (key, at, killed_at)
        first_seen.setdefault(key, at)
    assert detected[BLOCK_KEY] == 1
    assert next(pid for kind, key, pid, _ in rows if key == BLOCK_KEY) == doomed_pid
    # Both workers took part.
    assert len({pid for _, _, pid, _ in rows}) == 2
