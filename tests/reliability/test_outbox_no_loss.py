"""The durable outbox on PostgreSQL loses nothing: drainers killed, the service restarted.

Builds on ``tests/test_outbox_concurrency.py`` (its database, drainer processes and
settings): thousands of durable events are written, two ``manage.py appsync_outbox``
processes drain them, and in every cycle one drainer is SIGKILLed (a replacement is
started) and the service is stopped and started again on the same port while the drainers
keep trying. Every event must reach the service at least once (duplicates are allowed:
the outbox is at-least-once, and a killed drainer's claimed rows are sent again after
their lease), every row must end ``sent``, and every event the restarted service
delivered to the subscriber must arrive.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from typing import Any

import pytest

from appsync_events.client import AppSyncEventsClient
from appsync_events.emulator import AppSyncEventsEmulator
from appsync_events.events import ReceivedEvent
from tests.test_outbox_concurrency import (  # noqa: F401 - the database fixture
    KEY,
    TABLE,
    Database,
    database,
    environment,
    free_port,
    prepare,
    start_drainer,
    stop_drainer,
    wait_until,
)

from .conftest import MemoryWatch, Scenario, scale
from .harness import eventually

TOTAL = scale(2000, 10_000)
CYCLES = scale(1, 4)
MiB = 2**20


def start_service(port: int) -> AppSyncEventsEmulator:
    """An emulator on ``port`` keeping every publish record (the test counts them)."""
    emulator = AppSyncEventsEmulator(
        "127.0.0.1",
        port,
        api_keys=[KEY],
        namespaces=["default"],
        history_size=TOTAL * 2,
        history_bytes=64 * MiB,
        ka_interval=1.0,
    )
    return emulator.start()


@pytest.fixture
async def subscriber(settings: Any) -> AsyncIterator[Any]:
    """A factory: a client on ``/default/*`` of the service at a port, reconnecting fast;
    returns the payload numbers it receives."""
    clients: list[AppSyncEventsClient] = []

    async def subscribe(port: int) -> tuple[AppSyncEventsClient, list[int]]:
        settings.APPSYNC_EVENTS = {
            "default": {
                "HTTP_URL": f"http://127.0.0.1:{port}/event",
                "REGION": "us-east-1",
                "AUTH": {"API_KEY": KEY},
                "NAMESPACES": {"default": {}},
                "LISTENER": {"BACKOFF_INITIAL": 0.05, "BACKOFF_MAX": 0.5},
            }
        }
        received: list[int] = []

        async def on_event(event: ReceivedEvent) -> None:
            received.append(event.payload["n"])

        client = AppSyncEventsClient("default", on_event=on_event)
        clients.append(client)
        await client.connect()
        await client.subscribe("/default/*")
        return client, received

    yield subscribe
    for client in clients:
        await client.aclose()


def sent(db: Database) -> int:
    return db.states().get("sent", 0)


@pytest.mark.postgres
@pytest.mark.timeout(scale(180, 1200))
@pytest.mark.parametrize("database", ["postgres"], indirect=True)
async def test_killed_drainers_and_service_restarts_lose_nothing(
    database: Database,  # noqa: F811
    subscriber: Any,
    figures: Scenario,
) -> None:
    """SIGKILLed drainers and service restarts: every durable event reaches the service at
    least once, every row ends sent, and the restarted service's deliveries all arrive."""
    figures.title = "Outbox on PostgreSQL: killed drainer, restarted service"
    figures.family = "durability"
    port = free_port()
    env = environment(database, port, APPSYNC_OUTBOX_LEASE="4", APPSYNC_OUTBOX_HTTP_TIMEOUT="1")
    await prepare(database, env, TOTAL, channels=10)
    services = [start_service(port)]
    _, received = await subscriber(port)
    drainers = [await start_drainer(env, "--batch-size", "50") for _ in range(2)]
    steady = drainers[1]  # never killed: its memory is watched
    memory = MemoryWatch(figures, "drainer process", 24 * MiB, pid=steady.pid)
    try:
        for cycle in range(CYCLES):
            goal = TOTAL * (cycle + 1) // (CYCLES + 2)
            await wait_until(lambda goal=goal: sent(database) >= goal, 120, f"{goal} rows sent")
            memory.sample()
            # A drainer dies mid-work (its claimed rows wait for their lease to expire).
            figures.faults_tried += 1
            victim = next(proc for proc in drainers if proc is not steady)
            drainers.remove(victim)
            victim.kill()
            await victim.wait()
            drainers.append(await start_drainer(env, "--batch-size", "50"))
            # The service goes away while the drainers keep trying, then comes back.
            figures.faults_tried += 1
            before = sent(database)
            await asyncio.to_thread(services[-1].stop)
            await wait_until(
                lambda: (
                    database.query(
                        f"SELECT COUNT(*) FROM {TABLE} WHERE state = 'pending' AND attempts > 1"  # noqa: S608
                    )[0][0]
                    > 0
                ),
                60,
                "a drainer failing against the stopped service",
            )
            services.append(await asyncio.to_thread(start_service, port))
            await wait_until(
                lambda before=before: sent(database) > before, 60, "drainers sending again"
            )
            figures.faults_survived += 2
        await wait_until(lambda: database.states() == {"sent": TOTAL}, 300, "every row sent")
        memory.sample()
        last = services[-1]
        delivered = [payload["n"] for r in last.published if r.deliveries for payload in r.payloads]
        await eventually(
            lambda: not collections.Counter(delivered) - collections.Counter(received),
            "every event the restarted service delivered reaching the subscriber",
            timeout=60,
        )
    finally:
        for proc in drainers:
            await stop_drainer(proc)
        for service in services:
            await asyncio.to_thread(service.stop)
    counts = collections.Counter(
        payload["n"] for service in services for r in service.published for payload in r.payloads
    )
    figures.events_published = TOTAL
    figures.events_received = sum(counts.values())
    figures.events_lost = sum(1 for n in range(TOTAL) if counts[n] == 0)
    figures.duplicates = sum(c - 1 for c in counts.values() if c > 1)
    figures.details["durable events"] = TOTAL
    figures.details["service restarts"] = CYCLES
    figures.details["drainers killed"] = CYCLES
    figures.details["delivered to the subscriber after the last restart"] = len(delivered)
    assert sorted(counts) == list(range(TOTAL))
    assert figures.events_lost == 0
    memory.check()
