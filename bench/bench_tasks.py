"""Benchmark a 10 ms handler in the listener vs enqueued to 1, 2 and 4 task workers.

Run: ``python -m bench.bench_tasks [--events 1500] [--no-write]
[--json PATH]`` from the repository root (``make bench`` runs it too)
(needs PostgreSQL on ``PGHOST``/``PGPORT``, user ``postgres``, and django-tasks-db; the
child processes' output goes to the file ``BENCH_TASKS_LOG`` when set).

The handler (``bench/tasks_app/appsync_handlers.py``) sleeps 10 ms per event, standing
for one that writes to a database or calls another service. Every process runs with
``bench/tasks_settings.py`` on a fresh PostgreSQL database; the emulator runs in this
process and feeds ``manage.py appsync_listen`` (its own process).

1. **in process**: the listener runs the handler itself (sync, in its thread): the rate
   is the events over the time from the publish to the listener's exit after the last
   one (``--max-events``);
2. **enqueued**: the listener enqueues one ``run_handler`` task per event into
   django-tasks-db's ``DatabaseBackend`` (its enqueue rate is reported), then 1, 2 or 4
   ``manage.py db_worker`` processes run the backlog. The rate counts the tasks that
   finished while every worker was running (from the last worker's first claim to the
   first worker's last finish, read from the task rows), so process start-up and the
   tail do not count.

Results replace the section "## Handlers on task workers" of ``BENCHMARKS.md`` unless
``--no-write``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

try:
    from bench import _common  # python -m bench.bench_x, or imported from the repo root
except ImportError:
    import _common  # type: ignore[import-not-found,no-redef]  # run as bench/bench_x.py

SECTION = "## Handlers on task workers"
KEY = "da2-benchtasks00000000000000000"
TABLE = "django_tasks_database_dbtaskresult"
WORKERS = (1, 2, 4)
#: Where the child processes write (read it when a run fails).
LOG = open(os.environ.get("BENCH_TASKS_LOG", os.devnull), "ab")


def pg_params() -> dict[str, Any]:
    """How to reach the PostgreSQL server."""
    return {
        "host": os.environ.get("PGHOST", "127.0.0.1"),
        "port": int(os.environ.get("PGPORT", "5432")),
        "user": os.environ.get("PGUSER", "postgres"),
    }


@contextmanager
def fresh_database() -> Iterator[tuple[str, Callable[[str], list[tuple[Any, ...]]]]]:
    """Create a database for the run; yield its name and a query function; drop it."""
    import psycopg

    name = f"bench_tasks_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dbname="test", autocommit=True, **pg_params()) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')

    def query(sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(dbname=name, autocommit=True, **pg_params()) as conn:
            cursor = conn.execute(sql)
            return cursor.fetchall() if cursor.description else []

    try:
        yield name, query
    finally:
        with psycopg.connect(dbname="test", autocommit=True, **pg_params()) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def manage(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    """Start ``manage.py`` with ``args``; its output goes to ``LOG``."""
    return subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=_common.ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=LOG,
        stderr=subprocess.STDOUT,
    )


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def publish(emulator: Any, events: int, start: int = 0) -> None:
    """Publish ``events`` small events to ``/default/jobs``."""
    for first in range(start, start + events, 500):
        last = min(first + 500, start + events)
        emulator.publish("/default/jobs", *[{"n": n} for n in range(first, last)])


def in_process(emulator: Any, env: dict[str, str], events: int) -> float:
    """Events per second with the handler in the listener."""
    subscribed = len(emulator.subscriptions)
    listener = manage(
        {**env, "BENCH_TASKS_ENQUEUE": "0"}, "appsync_listen", "--max-events", str(events)
    )
    wait_for(lambda: len(emulator.subscriptions) > subscribed, 60, "the listener's subscription")
    started = time.perf_counter()
    publish(emulator, events)
    listener.wait(600)
    return events / (time.perf_counter() - started)


def enqueued(
    emulator: Any, env: dict[str, str], query: Callable[[str], list[Any]], events: int, workers: int
) -> tuple[float, float]:
    """Return the listener's enqueue rate and the workers' rate, in events per second."""
    query(f"DELETE FROM {TABLE}")  # noqa: S608
    subscribed = len(emulator.subscriptions)
    listener = manage({**env, "BENCH_TASKS_ENQUEUE": "1"}, "appsync_listen")
    wait_for(lambda: len(emulator.subscriptions) > subscribed, 60, "the listener's subscription")
    started = time.perf_counter()
    publish(emulator, events)

    def count() -> int:
        return int(query(f"SELECT COUNT(*) FROM {TABLE}")[0][0])  # noqa: S608

    wait_for(lambda: count() >= events, 300, f"{events} tasks enqueued")
    enqueue_rate = events / (time.perf_counter() - started)
    listener.terminate()
    listener.wait(60)
    # django-tasks-db's claim query sorts the whole backlog while the table's statistics
    # say it is empty; autovacuum analyzes it within a minute in a real deployment.
    query(f"ANALYZE {TABLE}")
    procs = [
        manage(env, "db_worker", "--no-startup-delay", "--interval", "0.05", "-v", "0",
               "--worker-id", f"w{i}")
        for i in range(workers)
    ]  # fmt: skip
    try:
        done = f"SELECT COUNT(*) FROM {TABLE} WHERE status = 'SUCCESSFUL'"  # noqa: S608
        wait_for(lambda: int(query(done)[0][0]) >= events, 900, f"{events} tasks done")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(60)
    per_worker = query(
        f"SELECT worker_ids->>-1, MIN(started_at), MAX(finished_at) FROM {TABLE} "  # noqa: S608
        "GROUP BY 1"
    )
    assert len(per_worker) == workers, per_worker
    window_start = max(first for _, first, _ in per_worker)
    window_end = min(last for _, _, last in per_worker)
    finished = query(
        f"SELECT COUNT(*) FROM {TABLE} WHERE finished_at > '{window_start.isoformat()}' "  # noqa: S608
        f"AND finished_at <= '{window_end.isoformat()}'"
    )[0][0]
    return enqueue_rate, finished / (window_end - window_start).total_seconds()


def render(base: float, rows: list[tuple[int, float, float]], events: int, load: str) -> str:
    """The BENCHMARKS.md section."""
    lines = [
        SECTION,
        "",
        _common.provenance(),
        f"`python -m bench.bench_tasks --events {events}`: a handler sleeping 10 ms per event; "
        "the emulator in the benchmark process, `appsync_listen` and the `db_worker` "
        "processes (django-tasks-db's `DatabaseBackend`) in their own, PostgreSQL on the "
        f"same machine (default durability: every commit waits for the disk). {load}",
        "",
        "| handler runs | events/s | vs in process | vs 1 worker |",
        "|---|---:|---:|---:|",
        f"| in the listener (sync, one at a time) | {base:,.0f} | 1.0x | — |",
    ]
    one = rows[0][2]
    for workers, _, rate in rows:
        lines.append(
            f"| enqueued, {workers} worker{'s' if workers > 1 else ''} | {rate:,.0f} | "
            f"{rate / base:.1f}x | {rate / one:.2f}x |"
        )
    enqueue = min(r for _, r, _ in rows)
    scaling = rows[-1][2] / one
    verdict = "close to linear" if scaling >= 0.8 * rows[-1][0] else "below linear"
    lines += [
        "",
        f"The listener enqueues at least {enqueue:,.0f} events/s (one `INSERT` per event "
        "and handler, lowest of the runs), so it is not what limits the workers here. "
        f"Scaling from 1 to {rows[-1][0]} workers: {scaling:.2f}x ({verdict}; the goal is "
        "close to linear growth with workers).",
        "",
        "In process, the listener runs sync handlers one event at a time, so a 10 ms "
        "handler caps the whole API near 100 events/s and `--exclusive` standbys cannot "
        "help. Enqueued, each event also pays the database backend's own work (claim the "
        "row, mark it done: two commits), so one worker is slower than the listener alone; "
        "the gain is that workers add up, on as many machines as the database serves.",
        "",
    ]
    return "\n".join(lines)


def load_note() -> str:
    """Say how busy the machine was (the 1-minute load average against its CPUs)."""
    load = os.getloadavg()[0]
    cpus = os.cpu_count() or 1
    if load > cpus:
        return (
            f"The machine is shared and was busy (load average {load:.1f} on {cpus} CPUs at "
            "the end of the run): absolute numbers are lower than on an idle machine."
        )
    return f"Load average {load:.1f} on {cpus} CPUs at the end of the run."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--events", type=int, default=1500, help="events per enqueued run")
    _common.add_output_args(parser)
    args = parser.parse_args()
    from appsync_events.emulator import AppSyncEventsEmulator

    emulator = AppSyncEventsEmulator(
        "127.0.0.1", 0, api_keys=[KEY], namespaces=["default"], publishes_per_second=10**6
    )
    emulator.start()
    try:
        with fresh_database() as (name, query):
            env = {
                **os.environ,
                "PYTHONPATH": str(_common.ROOT),
                "DJANGO_SETTINGS_MODULE": "bench.tasks_settings",
                "BENCH_TASKS_DB": name,
                "BENCH_TASKS_URL": f"http://127.0.0.1:{emulator.port}/event",
                "BENCH_TASKS_KEY": KEY,
            }
            subprocess.run(
                [sys.executable, "manage.py", "migrate", "-v", "0"],
                cwd=_common.ROOT,
                env=env,
                check=True,
            )
            base = in_process(emulator, env, max(300, args.events // 3))
            print(f"in process: {base:,.0f} events/s", flush=True)
            rows = []
            for workers in WORKERS:
                enqueue_rate, rate = enqueued(emulator, env, query, args.events, workers)
                print(f"{workers} worker(s): {rate:,.0f} events/s (enqueue {enqueue_rate:,.0f}/s)")
                rows.append((workers, enqueue_rate, rate))
    finally:
        emulator.stop()
    text = render(base, rows, args.events, load_note())
    scaling = rows[-1][2] / rows[0][2]
    goals = [
        _common.goal(
            f"handlers on task workers, 1 → {rows[-1][0]} workers",
            f"close to linear (at least {0.8 * rows[-1][0]:.1f}x)",
            f"{scaling:.2f}x ({rows[0][2]:,.0f} → {rows[-1][2]:,.0f} events/s)",
            scaling >= 0.8 * rows[-1][0],
            limit=(
                "Each task costs CPU and two PostgreSQL commits (each waiting for the disk); "
                "the workers, PostgreSQL and the listener share 2 cores."
            ),
            value=scaling,
        )
    ]
    results = {
        "in_process": base,
        "workers": [{"workers": w, "enqueue_rate": e, "rate": r} for w, e, r in rows],
    }
    _common.emit(args, SECTION, text, results, goals)


if __name__ == "__main__":
    main()
