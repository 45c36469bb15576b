"""Metrics, health endpoints and traces: the listener's HTTP server, the web views, spans."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

import appsync_events
from appsync_events import health, instrumentation, metrics, tracing
from appsync_events.dispatch import Router
from appsync_events.emulator import AppSyncEventsEmulator
from appsync_events.events import ReceivedEvent
from appsync_events.exceptions import ConfigurationError
from appsync_events.listener import Listener
from appsync_events.models import OutboxEvent
from appsync_events.outbox.drainer import OutboxDrainer
from appsync_events.publishing import apublish, publish
from appsync_events.testing.helpers import emulator_settings
from appsync_events.testing.pytest_plugin import (  # noqa: F401 - fixtures
    appsync_emulator,
    appsync_events_emulator,
)
from tests.test_client import until
from tests.test_outbox_concurrency import (  # noqa: F401 - the database fixture
    FILL,
    KEY,
    TABLE,
    Database,
    _sqlite,
    database,
    environment,
    free_port,
    run,
    start_drainer,
    stop_drainer,
    wait_until,
)

ROOT = Path(__file__).resolve().parent.parent

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


# -- helpers ------------------------------------------------------------------------------


def parse(text: str) -> Samples:
    """Every sample of a text exposition, by name and label set."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value (0 when absent: a counter not incremented yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def listen_settings(settings: Any, **listener: Any) -> None:
    """The emulated alias subscribing /chat/*, its listener serving HTTP on a free port."""
    value_ = copy.deepcopy(settings.APPSYNC_EVENTS)
    value_["default"]["SUBSCRIPTIONS"] = ["/chat/*"]
    value_["default"]["LISTENER"] = {
        "BACKOFF_INITIAL": 0.05,
        "BACKOFF_MAX": 0.3,
        "HTTP_PORT": 0,
        "HTTP_HOST": "127.0.0.1",
        **listener,
    }
    settings.APPSYNC_EVENTS = value_


class Served:
    """A listener running as a task, with an HTTP client for its server."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.task = asyncio.create_task(listener.run(install_signal_handlers=False))
        self.http = httpx.AsyncClient(trust_env=False, timeout=5)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.listener.http_port}"

    async def get(self, path: str) -> httpx.Response:
        return await self.http.get(self.base + path)

    async def metrics(self) -> Samples:
        response = await self.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        return parse(response.text)

    async def until_status(self, path: str, status: int, timeout: float = 20) -> httpx.Response:  # noqa: ASYNC109
        """GET ``path`` until it answers ``status`` (the state it reports changes)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            response = await self.get(path)
            if response.status_code == status:
                return response
            if loop.time() > deadline:
                raise AssertionError(f"{path} still {response.status_code}: {response.text}")
            await asyncio.sleep(0.02)

    async def stop(self) -> int:
        await self.http.aclose()
        if not self.task.done():
            self.listener.request_stop("test over")
        return await asyncio.wait_for(self.task, 20)


@pytest.fixture
async def serve() -> AsyncIterator[Any]:
    """Start listeners with their HTTP server; every one is stopped at the end."""
    started: list[Served] = []

    async def start(**kwargs: Any) -> Served:
        kwargs.setdefault("sinks", [])
        served = Served(Listener(**kwargs))
        started.append(served)
        await until(lambda: served.listener.http_port not in (None, 0) or served.task.done())
        return served

    yield start
    for served in started:
        await served.stop()
    from appsync_events.backends import get_backend

    await get_backend("default").aclose()  # the pool apublish() opened on this loop


@pytest.fixture
def emulator(appsync_events_emulator: AppSyncEventsEmulator) -> AppSyncEventsEmulator:  # noqa: F811
    """The reset session emulator, the ``default`` alias pointing at it."""
    return appsync_events_emulator


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """An SDK tracer provider with an in-memory exporter, for this test only."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # The API sets a global provider once per process; the test swaps it in and out.
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    yield exporter
    provider.shutdown()


# -- the listener's server --------------------------------------------------------------


async def test_metrics_move_by_the_right_amounts_after_a_round_trip(
    settings: Any, emulator: AppSyncEventsEmulator, serve: Any
) -> None:
    """After 3 events published over HTTP and received, /metrics counts exactly those."""
    listen_settings(settings)
    router = Router()
    seen: list[Any] = []

    @router.on("/chat/*")
    async def record(event: ReceivedEvent) -> None:
        seen.append(event.payload)

    handler = f"{record.__module__}.{record.__qualname__}"
    served = await serve(router=router)
    await served.until_status("/readyz", 200)
    before = await served.metrics()
    await apublish("/chat/rooms/7", {"n": 1}, {"n": 2}, {"n": 3})
    await until(lambda: len(seen) == 3)
    await until(lambda: served.listener.stats.dispatched == 3)
    after = await served.metrics()

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    sub = {"api": "default", "subscription": "/chat/*"}
    assert moved("appsync_events_listener_events_received_total", api="default") == 3
    assert moved("appsync_events_listener_events_dispatched_total", **sub) == 3
    assert moved("appsync_events_listener_dispatch_duration_seconds_count", api="default") == 3
    assert (
        moved(
            "appsync_events_listener_handler_duration_seconds_count",
            api="default",
            handler=handler,
        )
        == 3
    )
    assert (
        moved("appsync_events_listener_handler_errors_total", api="default", handler=handler) == 0
    )
    publish_labels = {"api": "default", "backend": "appsync"}
    assert moved("appsync_events_published_events_total", **publish_labels) == 3
    assert moved("appsync_events_publish_duration_seconds_count", **publish_labels) == 1
    assert value(after, "appsync_events_listener_queue_depth", api="default") == 0
    assert value(after, "appsync_events_listener_queue_capacity", api="default") == 1000
    state = {"api": "default"}
    assert value(after, "appsync_events_listener_connection_state", state="connected", **state) == 1
    assert value(after, "appsync_events_listener_connection_state", state="closed", **state) == 0
    assert value(after, "appsync_events_listener_subscriptions", kind="configured", **state) == 1
    assert value(after, "appsync_events_listener_subscriptions", kind="followed", **state) == 0
    assert 0 <= value(after, "appsync_events_listener_seconds_since_last_frame", **state) < 10
    assert 0 <= value(after, "appsync_events_listener_seconds_since_last_event", **state) < 10


async def test_handler_errors_drops_and_publish_failures_are_counted(
    settings: Any, emulator: AppSyncEventsEmulator, serve: Any
) -> None:
    """A failing handler, refused publishes and a full queue show in their counters."""
    listen_settings(settings, QUEUE_SIZE=1, OVERFLOW="drop_newest")
    router = Router()
    gate = asyncio.Event()
    running: list[Any] = []

    @router.on("/chat/*")
    async def slow_then_fail(event: ReceivedEvent) -> None:
        running.append(event.payload)
        await gate.wait()
        raise ValueError("boom")

    name = f"{slow_then_fail.__module__}.{slow_then_fail.__qualname__}"
    served = await serve(router=router)
    await served.until_status("/readyz", 200)
    before = await served.metrics()
    # One event in the handler, one in the queue (size 1), the third is dropped.
    await asyncio.to_thread(emulator.publish, "/chat/a", 1)
    await until(lambda: running == [1])
    await asyncio.to_thread(emulator.publish, "/chat/a", 2, 3)
    await until(lambda: served.listener.stats.dropped == 1)
    gate.set()
    await until(lambda: served.listener.stats.dispatched == 2)
    # An event that is not JSON (the service relays what a publisher sent) is dropped.
    await asyncio.to_thread(emulator._call, emulator.state.inject("/chat/a", ["{not json"]))
    assert served.listener.client is not None
    await until(lambda: served.listener.client.undecodable_events == 1)
    with pytest.raises(appsync_events.PublishError):
        await apublish("/missing/a", {"n": 1})  # a namespace the emulator does not have
    after = await served.metrics()

    def moved(metric: str, **labels: str) -> float:
        return value(after, metric, **labels) - value(before, metric, **labels)

    assert moved("appsync_events_listener_handler_errors_total", api="default", handler=name) == 2
    assert (
        moved("appsync_events_listener_events_dropped_total", api="default", reason="drop_newest")
        == 1
    )
    assert (
        moved("appsync_events_listener_events_dropped_total", api="default", reason="undecodable")
        == 1
    )
    assert moved("appsync_events_listener_events_received_total", api="default") == 3
    failed = [
        (dict(labels), count - before.get((metric, labels), 0.0))
        for (metric, labels), count in after.items()
        if metric == "appsync_events_publish_failed_events_total"
        and count != before.get((metric, labels), 0.0)
    ]
    assert failed == [
        ({"api": "default", "backend": "appsync", "code": "UnauthorizedException"}, 1)
    ]


async def test_readyz_turns_503_when_the_emulator_stops_and_200_when_it_returns(
    settings: Any, serve: Any
) -> None:
    """/readyz: 200 connected, 503 with a JSON reason while the service is gone, 200 again."""
    first = AppSyncEventsEmulator("127.0.0.1", 0, namespaces=["default", "chat"]).start()
    port, key = first.port, first.api_key
    try:
        settings.APPSYNC_EVENTS = emulator_settings(first)
        listen_settings(settings)
        served = await serve()
        ready = (await served.until_status("/readyz", 200)).json()
        assert ready["status"] == "ready"
        assert ready["subscriptions"] == {"/chat/*": "active"}
        await asyncio.to_thread(first.stop)
        down = (await served.until_status("/readyz", 503)).json()
        assert down["status"] == "not ready"
        assert down["reason"] in {
            "the connection is reconnecting",
            "the connection is connecting",
            "subscription /chat/* is pending",
        }
        assert (await served.get("/healthz")).status_code == 200  # alive all along
    finally:
        first.stop()
    second = AppSyncEventsEmulator(
        "127.0.0.1", port, api_keys=[key], namespaces=["default", "chat"]
    )
    await asyncio.to_thread(second.start)
    try:
        back = (await served.until_status("/readyz", 200)).json()
        assert back["subscriptions"] == {"/chat/*": "active"}
        metrics_ = await served.metrics()
        assert value(metrics_, "appsync_events_listener_reconnects_total", api="default") >= 1
    finally:
        await served.stop()
        await asyncio.to_thread(second.stop)


async def test_readyz_names_a_refused_subscription(
    settings: Any, emulator: AppSyncEventsEmulator, serve: Any
) -> None:
    """A configured subscription the service refused keeps /readyz at 503, saying which."""
    listen_settings(settings, SUBSCRIBE_RETRIES=0)
    served = await serve(channels=["/chat/*", "/missing/a"])
    response = await served.until_status("/readyz", 503)
    await until(lambda: served.listener.health().subscriptions["/missing/a"] == "failed")
    body = (await served.get("/readyz")).json()
    assert body["reason"] == "subscription /missing/a is failed"
    assert body["subscriptions"] == {"/chat/*": "active", "/missing/a": "failed"}
    assert response.headers["content-type"] == "application/json"


class HeldLease:
    """A lease another listener holds: acquire() never returns."""

    name = "appsync-events:default"
    held = False

    async def acquire(self) -> None:
        await asyncio.Event().wait()

    async def release(self) -> None:
        return None

    async def wait_lost(self) -> None:
        await asyncio.Event().wait()


async def test_a_standby_waiting_for_the_lease_is_ready(
    settings: Any, emulator: AppSyncEventsEmulator, serve: Any
) -> None:
    """A standby answers /readyz 200 (rolling updates must not wait for it) and says so."""
    listen_settings(settings)
    served = await serve(exclusive=True, lease=HeldLease())
    await until(lambda: served.listener.health().phase == "standby")
    body = (await served.until_status("/readyz", 200)).json()
    assert body["phase"] == "standby"
    assert body["reason"] == "standby: waiting for the lease"
    assert emulator.subscriptions == []


async def test_the_server_is_bounded(
    settings: Any, emulator: AppSyncEventsEmulator, serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unknown paths, other methods, oversized or slow requests and extra connections fail."""
    monkeypatch.setattr(health, "REQUEST_TIMEOUT", 0.3)
    listen_settings(settings)
    served = await serve()
    assert (await served.get("/healthz")).json() == {"status": "alive", "phase": "running"}
    assert (await served.get("/nope")).status_code == 404
    assert (await served.http.post(served.base + "/healthz")).status_code == 405
    big = await served.http.get(served.base + "/healthz", headers={"x-pad": "a" * 10_000})
    assert big.status_code == 431
    port = served.listener.http_port

    async def raw(data: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(data)
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        await writer.wait_closed()
        return answer

    assert (await raw(b"GET /healthz HTTP/1.1\r\n")).startswith(b"HTTP/1.1 408")  # too slow
    assert (await raw(b"nonsense\r\n\r\n")).startswith(b"HTTP/1.1 400")
    head = await raw(b"HEAD /readyz HTTP/1.1\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert head.endswith(b"\r\n\r\n")
    # The slots stay taken while the bound is probed: idle connections must not time out.
    monkeypatch.setattr(health, "REQUEST_TIMEOUT", 60.0)
    idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(health.MAX_CONNECTIONS)]
    await until(lambda: served.listener.health() is not None)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\n\r\n")
    try:
        answer = await asyncio.wait_for(reader.read(), 5)
    except ConnectionResetError:
        answer = b""
    assert answer == b""  # dropped without an answer
    for _, open_writer in [*idle, (reader, writer)]:
        open_writer.close()
        with contextlib.suppress(ConnectionError):
            await open_writer.wait_closed()


async def test_a_busy_port_is_a_configuration_error(
    settings: Any, emulator: AppSyncEventsEmulator
) -> None:
    """A port that cannot be bound raises ConfigurationError naming HTTP_PORT."""
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = blocker.sockets[0].getsockname()[1]
    try:
        listen_settings(settings, HTTP_PORT=port)
        with pytest.raises(ConfigurationError, match=r"HTTP_PORT"):
            await Listener(sinks=[]).run(install_signal_handlers=False)
    finally:
        blocker.close()


def test_the_command_takes_http_port(settings: Any) -> None:
    """appsync_listen --http-port refuses a port out of range, naming the option."""
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="--http-port"):
        call_command("appsync_listen", "--http-port", "70000", channels=["/chat/*"])


async def test_subscription_labels_are_bounded_by_configuration(
    settings: Any, emulator: AppSyncEventsEmulator, serve: Any
) -> None:
    """Only METRICS['SUBSCRIPTION_LABELS'] paths become label values; others are "other"."""
    listen_settings(settings)
    settings.APPSYNC_EVENTS["default"]["METRICS"] = {"SUBSCRIPTION_LABELS": ["/chat/*"]}
    served = await serve(channels=["/chat/*", "/default/*"])
    await served.until_status("/readyz", 200)
    before = await served.metrics()
    await asyncio.to_thread(emulator.publish, "/default/x", 1, 2)
    await until(lambda: served.listener.stats.dispatched == 2)
    after = await served.metrics()
    name = "appsync_events_listener_events_dispatched_total"
    other = {"api": "default", "subscription": "other"}
    assert value(after, name, **other) - value(before, name, **other) == 2
    assert not any(dict(labels).get("subscription") == "/default/*" for (_, labels) in after)


def test_label_bound_counts_new_values_as_other() -> None:
    """Past the bound, new label values become "other"; known ones stay."""
    bound = metrics.LabelBound("code", 2)
    assert [bound(v) for v in ("a", "b", "c", "a", "d")] == ["a", "b", "other", "a", "other"]


# -- web views ----------------------------------------------------------------------------


@pytest.fixture
def web(settings: Any) -> Client:
    """A test client for the project's URLs with appsync_events.urls under /appsync/."""
    settings.ROOT_URLCONF = "tests.observability_urls"
    return Client()


@pytest.mark.django_db
def test_views_refuse_anonymous_access(web: Client) -> None:
    """Anonymous requests from an address not allowed get 403 from both views."""
    for path in ("/appsync/metrics", "/appsync/readyz"):
        response = web.get(path)
        assert response.status_code == 403
        assert "PERMISSION" in response.json()["error"]


@pytest.mark.django_db
def test_views_serve_allowed_addresses_and_permitted_users(settings: Any, web: Client) -> None:
    """An allowed address, a user with the permission, or a superuser (PERMISSION None)."""
    plain = User.objects.create_user("plain", password="x")
    web.force_login(plain)
    assert web.get("/appsync/metrics").status_code == 403  # signed in, no permission
    plain.user_permissions.add(Permission.objects.get(codename="view_outboxevent"))
    plain = User.objects.get(pk=plain.pk)  # drop the permission cache
    web.force_login(plain)
    assert web.get("/appsync/metrics").status_code == 200
    web.logout()
    alias = settings.APPSYNC_EVENTS["default"]
    settings.APPSYNC_EVENTS = {"default": {**alias, "METRICS": {"ALLOWED_IPS": ["127.0.0.0/8"]}}}
    response = web.get("/appsync/metrics")  # the test client comes from 127.0.0.1
    assert response.status_code == 200
    assert b"appsync_events_published_events" in response.content
    assert web.get("/appsync/metrics", REMOTE_ADDR="10.1.2.3").status_code == 403
    settings.APPSYNC_EVENTS = {"default": {**alias, "METRICS": {"PERMISSION": None}}}
    web.force_login(plain)
    assert web.get("/appsync/metrics").status_code == 403  # superusers only now
    web.force_login(User.objects.create_superuser("root", password="x"))
    assert web.get("/appsync/metrics").status_code == 200


@pytest.mark.django_db
def test_readiness_view_reports_the_outbox_backlog(settings: Any, web: Client) -> None:
    """/readyz of a web process: 200 with the backends, and the outbox's pending rows."""
    alias = settings.APPSYNC_EVENTS["default"]
    settings.APPSYNC_EVENTS = {"default": {**alias, "METRICS": {"ALLOWED_IPS": ["127.0.0.1"]}}}
    publish("/chat/a", {"n": 1}, {"n": 2}, durable=True)
    body = web.get("/appsync/readyz").json()
    assert body["status"] == "ready"
    assert body["apis"]["default"] == {"ready": True, "backend": "AppSyncBackend", "durable": False}
    assert body["outbox"]["pending"] == {"default": 2}
    assert body["outbox"]["oldest_pending_age_seconds"]["default"] >= 0
    text = web.get("/appsync/metrics").content.decode()
    samples = parse(text)
    assert value(samples, "appsync_events_outbox_pending_events", api="default") == 2


@pytest.mark.django_db
def test_readiness_view_is_503_when_publishing_cannot_work(
    settings: Any, web: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backend that cannot be built, or an unreadable outbox table, makes it 503."""
    alias = settings.APPSYNC_EVENTS["default"]
    settings.APPSYNC_EVENTS = {
        "default": {
            **alias,
            "METRICS": {"ALLOWED_IPS": ["127.0.0.1"]},
            "PUBLISH": {"BACKEND": "appsync", "OPTIONS": {"no_such_option": 1}},
        }
    }

    def broken(using: str = "default") -> Any:
        raise RuntimeError("database is away")

    monkeypatch.setattr(metrics, "outbox_backlog", broken)
    response = web.get("/appsync/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["apis"]["default"] == {"ready": False}
    assert body["outbox"] == {"readable": False}
    assert any("database is away" in p for p in body["problems"])


@pytest.mark.django_db
def test_metrics_view_without_prometheus_client_says_what_to_install(
    settings: Any, web: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without prometheus-client the metrics view answers 501 naming the extra."""
    alias = settings.APPSYNC_EVENTS["default"]
    settings.APPSYNC_EVENTS = {"default": {**alias, "METRICS": {"ALLOWED_IPS": ["127.0.0.1"]}}}
    monkeypatch.setattr(metrics, "prometheus_client", None)
    response = web.get("/appsync/metrics")
    assert response.status_code == 501
    assert b"django-appsync-events[metrics]" in response.content


# -- the outbox drainer's server ----------------------------------------------------------


class DrainerProcess:
    """``manage.py appsync_outbox --http-port 0`` as a process, with a client for its server."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.base = ""
        self.http = httpx.AsyncClient(trust_env=False, timeout=5)

    @classmethod
    async def start(cls, env: dict[str, str]) -> DrainerProcess:
        """Start the drainer and read the port it serves on from its ``serving`` line."""
        drainer = cls(await start_drainer(env, "--http-port", "0", "--http-host", "127.0.0.1"))
        assert drainer.proc.stderr is not None
        while not drainer.base:
            line = await asyncio.wait_for(drainer.proc.stderr.readline(), 30)
            assert line, "the drainer exited before serving"
            found = re.search(rb"^serving /healthz, /readyz and /metrics on (http://\S+)$", line)
            if found:
                drainer.base = found.group(1).decode()
        assert re.fullmatch(r"http://127\.0\.0\.1:[1-9][0-9]*", drainer.base), drainer.base
        return drainer

    async def get(self, path: str) -> httpx.Response:
        return await self.http.get(self.base + path)

    async def sent_total(self) -> float:
        response = await self.get("/metrics")
        assert response.status_code == 200
        return value(parse(response.text), "appsync_events_outbox_sent_events_total", api="default")

    async def until(
        self,
        path: str,
        status: int,
        reason: str = "",
        timeout: float = 30,  # noqa: ASYNC109
    ) -> httpx.Response:
        """GET ``path`` until it answers ``status`` with ``reason`` in its body."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            response = await self.get(path)
            if response.status_code == status and reason in response.text:
                return response
            if loop.time() > deadline:
                raise AssertionError(f"{path} still {response.status_code}: {response.text}")
            await asyncio.sleep(0.02)

    async def stop(self) -> str:
        await self.http.aclose()
        return await stop_drainer(self.proc)


@pytest.mark.timeout(120)
async def test_a_drainer_serves_probes_and_counts_the_events_it_sent(
    database: Database,  # noqa: F811
) -> None:
    """appsync_outbox --http-port 0 answers /healthz and /readyz, and /metrics counts sends."""
    total = 37
    port = free_port()
    env = environment(database, port)
    await run(env, "manage.py", "migrate", "appsync_events", "--skip-checks", "-v", "0")
    emulator = AppSyncEventsEmulator("127.0.0.1", port, api_keys=[KEY], namespaces=["default"])
    emulator.start()
    try:
        drainer = await DrainerProcess.start(env)
        try:
            ready = (await drainer.until("/readyz", 200)).json()
            assert ready["status"] == "ready"
            assert ready["phase"] == "running"
            assert ready["reason"] == "polling the outbox table"
            assert ready["worker"]
            assert ready["api"] is None
            assert ready["seconds_since_last_batch"] is None  # nothing claimed yet
            health_ = await drainer.get("/healthz")
            assert (health_.status_code, health_.json()) == (
                200,
                {"status": "alive", "phase": "running"},
            )
            before = await drainer.sent_total()
            fill = {**env, "FILL_EVENTS": str(total), "FILL_CHANNELS": "3"}
            await run(fill, "-c", FILL)
            await wait_until(
                lambda: database.states() == {"sent": total}, 60, "every row marked sent"
            )
            # The counter moves right after the rows are marked sent: wait for it, then
            # check it moved by exactly the events sent.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while (after := await drainer.sent_total()) < before + total:
                assert loop.time() < deadline, f"sent_events_total stuck at {after}"
                await asyncio.sleep(0.05)
            assert after == before + total
            samples = parse((await drainer.get("/metrics")).text)
            assert value(samples, "appsync_events_outbox_pending_events", api="default") == 0
            ready = (await drainer.get("/readyz")).json()
            assert ready["seconds_since_last_batch"] is not None
        finally:
            out = await drainer.stop()
        assert "batch: claimed" in out
        assert sum(len(r.events) for r in emulator.published) == total
    finally:
        emulator.stop()


@pytest.mark.timeout(120)
async def test_a_drainer_is_not_ready_while_its_database_is_unreachable(
    database: Database,  # noqa: F811
) -> None:
    """/readyz turns 503 naming the database error (a table gone, a database dropped)."""
    env = environment(database, free_port())
    await run(env, "manage.py", "migrate", "appsync_events", "--skip-checks", "-v", "0")
    drainer = await DrainerProcess.start(env)
    try:
        await drainer.until("/readyz", 200)
        if database.setting.startswith("sqlite:"):
            database.query(f"ALTER TABLE {TABLE} RENAME TO hidden_outbox")
            body = (await drainer.until("/readyz", 503, "no such table")).json()
            assert body["reason"] == (
                f"the last poll of the outbox failed: OperationalError: no such table: {TABLE}"
            )
            # Still alive: the drainer retries, and is ready again once a poll succeeds.
            assert (await drainer.get("/healthz")).status_code == 200
            database.query(f"ALTER TABLE hidden_outbox RENAME TO {TABLE}")
            await drainer.until("/readyz", 200, "polling the outbox table")
        else:
            assert database.drop is not None
            database.drop()
            body = (await drainer.until("/readyz", 503, "does not exist")).json()
            assert body["reason"].startswith("the last poll of the outbox failed: ")
            assert body["phase"] == "running"
            assert (await drainer.get("/healthz")).status_code == 200
    finally:
        await drainer.stop()


def test_a_drainer_whose_port_is_taken_exits_2(tmp_path: Path) -> None:
    """appsync_outbox --http-port on a bound port exits 2 with one line naming the port."""
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        env = environment(_sqlite(tmp_path / "outbox.sqlite3"), free_port())
        command = ["manage.py", "appsync_outbox", "--skip-checks", "--http-port", str(port)]
        done = subprocess.run(
            [sys.executable, *command, "--http-host", "127.0.0.1"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        f"CommandError: cannot serve /healthz, /readyz and /metrics on http://127.0.0.1:{port}: "
    )
    assert (
        "pass another --http-port (or set APPSYNC_EVENTS['default']['OUTBOX']['HTTP_PORT'])"
        in (lines[0])
    )


def test_the_drainer_command_refuses_http_port_with_once() -> None:
    """appsync_outbox --once --http-port is a usage error (exit 2): a pass serves nothing."""
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="drop one of them") as info:
        call_command("appsync_outbox", "--once", "--http-port", "0")
    assert info.value.returncode == 2


async def test_a_stuck_batch_makes_the_drainer_not_alive() -> None:
    """A batch running for more than twice the lease turns /healthz and /readyz 503."""
    drainer = OutboxDrainer(lease=0.05, worker="stuck-drainer")
    assert drainer.health().phase == "starting"
    entered, release, stop = threading.Event(), threading.Event(), threading.Event()

    def blocked_batch(**kwargs: Any) -> Any:
        entered.set()
        release.wait(30)
        raise RuntimeError("released")

    drainer.drain_batch = blocked_batch  # type: ignore[method-assign]
    server = health.ThreadedHealthServer(drainer, "127.0.0.1", 0)
    port = server.start()
    thread = threading.Thread(target=drainer.run, args=(stop,), kwargs={"purge_every": 1e9})
    thread.start()
    try:
        async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
            assert await asyncio.to_thread(entered.wait, 10)
            await until(lambda: not drainer.health().alive[0])
            live = await http.get(f"http://127.0.0.1:{port}/healthz")
            assert live.status_code == 503
            assert live.json()["status"] == "not alive"
            reason = live.json()["reason"]
            assert reason.endswith("more than twice the lease (0.1 s): the drainer is stuck")
            ready = await http.get(f"http://127.0.0.1:{port}/readyz")
            assert ready.status_code == 503
            assert ready.json()["worker"] == "stuck-drainer"
            assert ready.json()["seconds_in_batch"] > 0.1
            release.set()
            # The batch failed: not ready, with the reason, until a poll succeeds.
            await until(lambda: drainer.health().seconds_in_batch is None)
            ready = await http.get(f"http://127.0.0.1:{port}/readyz")
            assert ready.json()["reason"] == (
                "the last poll of the outbox failed: RuntimeError: released"
            )
            assert (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
            stop.set()
            await asyncio.to_thread(thread.join, 10)
            assert (await http.get(f"http://127.0.0.1:{port}/readyz")).json()["phase"] == "stopped"
    finally:
        release.set()
        stop.set()
        thread.join(10)
        server.stop()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)  # stopped with the drainer


# -- outbox and consumer metrics -----------------------------------------------------------


@pytest.mark.django_db
def test_outbox_metrics_and_drain_span(
    emulator: AppSyncEventsEmulator, spans: InMemorySpanExporter
) -> None:
    """Draining counts sent rows and makes a drain span holding the publish span."""
    from prometheus_client import REGISTRY

    sent_before = (
        REGISTRY.get_sample_value("appsync_events_outbox_sent_events_total", {"api": "default"})
        or 0.0
    )
    publish("/chat/a", {"n": 1}, {"n": 2}, durable=True)
    metrics.register_outbox_collector()
    assert (
        REGISTRY.get_sample_value("appsync_events_outbox_pending_events", {"api": "default"}) == 2
    )
    report = OutboxDrainer(api="default").drain()
    assert report.sent == 2
    assert (
        REGISTRY.get_sample_value("appsync_events_outbox_sent_events_total", {"api": "default"})
        == sent_before + 2
    )
    assert (
        REGISTRY.get_sample_value("appsync_events_outbox_pending_events", {"api": "default"}) == 0
    )
    finished = {s.name: s for s in spans.get_finished_spans()}
    drain = finished["appsync_events.outbox.drain"]
    sent = finished["appsync_events.publish"]
    assert drain.attributes["appsync_events.claimed"] == 2
    assert drain.attributes["appsync_events.sent"] == 2
    assert sent.parent is not None
    assert sent.parent.span_id == drain.context.span_id
    assert sent.kind == trace.SpanKind.PRODUCER
    assert sent.attributes["appsync_events.backend"] == "appsync"
    assert sent.attributes["messaging.destination.name"] == "/chat/a"
    assert sent.attributes["appsync_events.successful"] == 2
    assert len(OutboxEvent.objects.filter(state="sent")) == 2


async def test_consumer_sockets_follows_and_refusals(settings: Any) -> None:
    """Open sockets, followed channels and refusals (by reason) move with the browser."""
    from prometheus_client import REGISTRY

    from tests.test_consumers import api_settings, connect, request

    api_settings(settings)

    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, {"api": "default", **labels}) or 0.0

    sockets, follows = (
        sample("appsync_events_consumer_sockets"),
        sample("appsync_events_consumer_follows"),
    )
    forbidden = sample("appsync_events_consumer_refusals_total", reason="forbidden")
    ws = await connect()
    assert sample("appsync_events_consumer_sockets") == sockets + 1
    assert (await request(ws, action="subscribe", channel="/chat/static"))["type"] == "subscribed"
    assert sample("appsync_events_consumer_follows") == follows + 1
    assert (await request(ws, action="subscribe", channel="/default/x"))["code"] == "forbidden"
    assert sample("appsync_events_consumer_refusals_total", reason="forbidden") == forbidden + 1
    await ws.disconnect()
    await until(lambda: sample("appsync_events_consumer_sockets") == sockets)
    assert sample("appsync_events_consumer_follows") == follows


async def test_gaps_reported_to_browsers_are_counted(settings: Any) -> None:
    """Each gap a page is told of counts once by reason, and its range counts as missed."""
    from prometheus_client import REGISTRY

    from tests import test_consumers

    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, {"api": "default", **labels}) or 0.0

    gaps = sample("appsync_events_consumer_gaps_total", reason="lagging")
    missed = sample("appsync_events_consumer_missed_events_total")
    await test_consumers.test_a_lagging_socket_is_told_which_events_it_missed(settings)
    assert sample("appsync_events_consumer_gaps_total", reason="lagging") == gaps + 1
    assert sample("appsync_events_consumer_missed_events_total") == missed + 6  # 6 to 11


# -- traces ----------------------------------------------------------------------------


class Traced(appsync_events.Event):
    channel = "/chat/rooms/{room}"
    room: int
    text: str

    class Meta:
        trace_context = True


async def test_a_handler_span_links_to_the_publishing_request(
    settings: Any, emulator: AppSyncEventsEmulator, serve: Any, spans: InMemorySpanExporter
) -> None:
    """Publish in a request span; the receive and handler spans link back to it."""
    listen_settings(settings)
    router = Router()
    got: list[Traced] = []

    @router.on("/chat/*")
    def handle(event: ReceivedEvent) -> None:  # sync: runs in the handler thread
        got.append(Traced.from_event(event))
        with trace.get_tracer("tests").start_as_current_span("inside the handler"):
            pass

    served = await serve(router=router)
    await served.until_status("/readyz", 200)
    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("POST /rooms/7/messages") as request_span:
        await Traced(room=7, text="hi").apublish()
    await until(lambda: len(got) == 1)
    assert got[0] == Traced(room=7, text="hi", event_id=got[0].event_id)
    await until(lambda: any(s.name == "appsync_events.receive" for s in spans.get_finished_spans()))
    finished = {s.name: s for s in spans.get_finished_spans()}
    origin = request_span.get_span_context()
    sent = finished["appsync_events.publish"]
    assert sent.parent is not None
    assert sent.parent.span_id == origin.span_id
    assert sent.attributes["appsync_events.api"] == "default"
    assert sent.attributes["messaging.batch.message_count"] == 1
    receive = finished["appsync_events.receive"]
    handler = finished["appsync_events.handler"]
    inner = finished["inside the handler"]
    assert receive.kind == trace.SpanKind.CONSUMER
    assert receive.attributes["messaging.destination.subscription.name"] == "/chat/*"
    assert handler.parent is not None
    assert handler.parent.span_id == receive.context.span_id
    assert inner.parent is not None
    assert inner.parent.span_id == handler.context.span_id
    assert handler.attributes["appsync_events.handler"].endswith("handle")
    for span in (receive, handler):
        assert [(link.context.trace_id, link.context.span_id) for link in span.links] == [
            (origin.trace_id, origin.span_id)
        ]
    assert receive.context.trace_id != origin.trace_id  # its own trace, linked


async def test_a_failing_handler_span_records_the_error(
    settings: Any, emulator: AppSyncEventsEmulator, serve: Any, spans: InMemorySpanExporter
) -> None:
    """A raising handler's span has status ERROR and the exception as an event."""
    listen_settings(settings)
    router = Router()

    @router.on("/chat/*")
    async def fail(event: ReceivedEvent) -> None:
        raise KeyError("missing")

    served = await serve(router=router)
    await served.until_status("/readyz", 200)
    await asyncio.to_thread(emulator.publish, "/chat/a", {"plain": True})
    await until(lambda: any(s.name == "appsync_events.handler" for s in spans.get_finished_spans()))
    handler = next(s for s in spans.get_finished_spans() if s.name == "appsync_events.handler")
    assert handler.status.status_code == trace.StatusCode.ERROR
    assert handler.events[0].name == "exception"
    assert handler.links == ()  # no trace context in the payload: no link


def test_websocket_publish_span(settings: Any, emulator: AppSyncEventsEmulator, spans: Any) -> None:
    """Publishing over the websocket backend makes a publish span labelled websocket."""
    from appsync_events.backends import get_backend

    alias = settings.APPSYNC_EVENTS["default"]
    settings.APPSYNC_EVENTS = {"default": {**alias, "PUBLISH": {"BACKEND": "websocket"}}}
    try:
        result = publish("/chat/a", {"n": 1})
        assert result.ok  # type: ignore[union-attr]
    finally:
        get_backend("default").close()
    sent = next(s for s in spans.get_finished_spans() if s.name == "appsync_events.publish")
    assert sent.attributes["appsync_events.backend"] == "websocket"
    assert sent.attributes["appsync_events.successful"] == 1


def test_trace_context_is_opt_in_and_absent_without_a_span(spans: Any) -> None:
    """Without Meta.trace_context, or outside any span, the payload carries none."""

    class Plain(appsync_events.Event):
        channel = "/chat/a"
        text: str

    with trace.get_tracer("tests").start_as_current_span("request"):
        assert "trace_context" not in Plain(text="x").to_payload()
        carried = Traced(room=1, text="x").to_payload()["trace_context"]
    assert carried["traceparent"].startswith("00-")
    assert "trace_context" not in Traced(room=1, text="x").to_payload()  # no current span
    with pytest.raises(TypeError, match="reserved"):

        class Clash(appsync_events.Event):
            channel = "/chat/a"
            trace_context: str

            class Meta:
                trace_context = True


def test_no_tracer_provider_means_no_spans_and_no_observer(settings: Any) -> None:
    """Without a configured provider get_tracer() is None; without metrics too, no observer."""
    assert tracing.get_tracer() is None
    settings.APPSYNC_EVENTS = {
        "default": {**settings.APPSYNC_EVENTS["default"], "METRICS": {"ENABLED": False}}
    }
    assert instrumentation.listener_observer(Listener(channels=["/chat/*"], sinks=[])) is None


def test_everything_works_without_the_optional_packages(tmp_path: Path) -> None:
    """With prometheus_client and opentelemetry unimportable, publishing and dispatch work."""
    script = tmp_path / "run.py"
    script.write_text(
        "import sys\n"
        "sys.modules['prometheus_client'] = None\n"
        "sys.modules['opentelemetry'] = None\n"
        "import django\n"
        "from django.conf import settings\n"
        "settings.configure(INSTALLED_APPS=['django.contrib.contenttypes', 'appsync_events'],"
        " DATABASES={'default': {'ENGINE': 'django.db.backends.sqlite3', 'NAME': ':memory:'}},"
        " APPSYNC_EVENTS={'default': {'HTTP_URL': 'http://127.0.0.1:9/event',"
        " 'AUTH': {'API_KEY': 'da2-x'}, 'PUBLISH': {'BACKEND': 'locmem'}}})\n"
        "django.setup()\n"
        "from appsync_events import metrics, tracing, instrumentation, publish\n"
        "from appsync_events.listener import Listener\n"
        "from appsync_events.exceptions import ImproperlyInstalled\n"
        "assert not metrics.AVAILABLE and not tracing.AVAILABLE\n"
        "assert publish('/default/a', {'n': 1}).ok\n"
        "assert instrumentation.listener_observer(Listener(channels=['/default/*'], sinks=[]))"
        " is None\n"
        "try:\n"
        "    metrics.exposition()\n"
        "except ImproperlyInstalled as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    assert "django-appsync-events[metrics]" in result.stdout


def test_listener_counts_survive_a_restart_and_add_up_across_listeners() -> None:
    """Counts of a stopped listener are kept; those of listeners running together add up."""
    from types import SimpleNamespace

    from appsync_events.listener import ListenerStats

    class Fake:  # what the store reads of a listener (weak references allowed)
        def __init__(self, received: int, dropped: int) -> None:
            self.config = SimpleNamespace(listener=SimpleNamespace(overflow="drop_oldest"))
            self.stats = ListenerStats(
                received=received, dropped=dropped, reconnects=1, discarded=2
            )
            # The first listener's client skipped 3 events that were not JSON and 2 for
            # subscriptions it did not hold.
            self.client = (
                SimpleNamespace(undecodable_events=3, unrouted_events=2) if received == 10 else None
            )

    def fake(received: int, dropped: int) -> Any:
        return Fake(received, dropped)

    store = metrics.ListenerMetrics("restarts")
    first, second = fake(10, 1), fake(5, 0)
    store.start(first)
    store.start(second)
    assert store.totals() == (
        15,
        2,
        {"drop_oldest": 1, "shutdown": 4, "undecodable": 3, "unrouted": 2},
    )
    assert store.live is not None
    assert store.live() is second  # the gauges show the listener started last
    store.carry(first)
    first.stats.received = 1000  # changes after the stop no longer count
    assert store.totals() == (
        15,
        2,
        {"drop_oldest": 1, "shutdown": 4, "undecodable": 3, "unrouted": 2},
    )
    store.carry(second)
    assert store.live is None
    assert store.totals() == (
        15,
        2,
        {"drop_oldest": 1, "shutdown": 4, "undecodable": 3, "unrouted": 2},
    )


@pytest.mark.parametrize(("step", "exact"), [(0.01, True), (1e-6, False)])
def test_durations_are_sampled_only_when_the_listener_is_busy(
    settings: Any, monkeypatch: pytest.MonkeyPatch, step: float, exact: bool
) -> None:
    """Below EXACT_RATE every event is timed; above, one in SAMPLE_EVERY, weighted; the
    dispatched counter is exact either way."""
    readings = [0]

    def clock() -> float:  # each reading moves ``step`` seconds on
        readings[0] += 1
        return readings[0] * step

    monkeypatch.setattr(instrumentation, "_perf_counter", clock)
    alias = f"sampling{int(exact)}"
    settings.APPSYNC_EVENTS = {**settings.APPSYNC_EVENTS, alias: settings.APPSYNC_EVENTS["default"]}
    listener = Listener(alias, channels=["/chat/*"], sinks=[])
    observer = instrumentation.listener_observer(listener)
    assert observer is not None
    event = ReceivedEvent(alias, "/chat/*", {}, "{}")
    events = 4096
    for _ in range(events):
        token = observer.event_started(event)
        inner = observer.handler_started("h", event)
        observer.handler_finished(inner, "h", None)
        observer.event_finished(token, event, True)
    store = metrics.listener_metrics(alias)
    assert store.dispatched["/chat/*"].value == events
    dispatch_count = sum(store.dispatch_duration.counts)
    handler_count = sum(store.handler_duration["h"].counts)
    if exact:
        assert dispatch_count == handler_count == events
        assert readings[0] >= 4 * events  # four readings per event
    else:
        every = instrumentation.SAMPLE_EVERY
        assert abs(dispatch_count - events) < every  # each timed event counts `every` times
        assert dispatch_count == handler_count
        assert readings[0] < 4 * events / every + 4 * instrumentation.RATE_WINDOW
    observer.close(listener)


def test_followed_paths_share_one_counter_and_leave_no_state(settings: Any) -> None:
    """Events on 1,000 paths browsers followed count under "followed", and the observer
    keeps no entry per path (its state stays bounded by the listener's own paths)."""
    alias = "follows"
    settings.APPSYNC_EVENTS = {**settings.APPSYNC_EVENTS, alias: settings.APPSYNC_EVENTS["default"]}
    listener = Listener(alias, channels=["/chat/*"], sinks=[])
    observer = instrumentation.listener_observer(listener)
    assert observer is not None
    for n in range(1000):
        event = ReceivedEvent(alias, f"/chat/rooms/{n}", {}, "{}")
        observer.event_finished(observer.event_started(event), event, True)
    static = ReceivedEvent(alias, "/chat/*", {}, "{}")
    observer.event_finished(observer.event_started(static), static, True)
    store = metrics.listener_metrics(alias)
    assert store.dispatched[instrumentation.FOLLOWED].value == 1000
    assert store.dispatched["/chat/*"].value == 1
    assert set(observer._dispatched) == {"/chat/*"}
    observer.close(listener)


@pytest.mark.parametrize(
    ("peer", "allowed", "status"),
    [
        (("127.0.0.1", 5000), (), 200),
        (("::1", 5000, 0, 0), (), 200),
        (("::ffff:127.0.0.1", 5000, 0, 0), (), 200),
        (("10.1.2.3", 5000), (), 403),
        (("10.1.2.3", 5000), ("10.1.0.0/16",), 200),
        (("192.0.2.7", 5000), ("10.1.0.0/16",), 403),
        (("fd00::5", 5000, 0, 0), ("fd00::/8",), 200),
        (None, (), 403),
    ],
)
async def test_health_server_metrics_answer_loopback_and_allowed_ips_only(
    peer: Any, allowed: tuple[str, ...], status: int
) -> None:
    """/metrics on the health server answers loopback peers and METRICS['ALLOWED_IPS'];
    others get a 403 naming the setting. The probes answer everyone."""
    import ipaddress

    class Report:
        phase = "running"
        alive = (True, "")
        ready = (True, "")

        def details(self) -> dict[str, Any]:
            return {}

    class Target:
        def health(self) -> Report:
            return Report()

    server = health.HealthServer(
        Target(), "127.0.0.1", 0, allowed_ips=[ipaddress.ip_network(n) for n in allowed]
    )

    async def answer(path: str) -> tuple[int, bytes]:
        reader = asyncio.StreamReader()
        reader.feed_data(f"GET {path} HTTP/1.1\r\n\r\n".encode())
        code, _, body, _ = await server._answer(reader, peer)
        return code, body

    code, body = await answer("/metrics")
    assert code == status
    if code == 403:
        assert b"ALLOWED_IPS" in body
    for probe in ("/healthz", "/readyz"):
        assert (await answer(probe))[0] == 200
