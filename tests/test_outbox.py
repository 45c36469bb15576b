"""The durable outbox: rows in the caller's transaction, the drainer, the admin, the command."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any
from unittest import mock

import pytest
from asgiref.sync import sync_to_async
from django.contrib.admin.sites import AdminSite
from django.core.management import CommandError, call_command
from django.db import connections, transaction
from django.test import RequestFactory
from django.utils import timezone

from appsync_events import Event, apublish, publish
from appsync_events.admin import OutboxEventAdmin
from appsync_events.backends import locmem
from appsync_events.models import OutboxEvent
from appsync_events.outbox.drainer import DrainReport, OutboxDrainer, backoff_delay
from appsync_events.publishing import DeferredPublish
from appsync_events.signals import publish_failed, published

BASE: dict[str, Any] = {
    "HTTP_URL": "http://127.0.0.1:9/event",
    "REGION": "us-east-1",
    "AUTH": {"API_KEY": "da2-tests00000000000000000000000"},
    "NAMESPACES": {"default": {}, "chat": {}},
}

pytestmark = pytest.mark.django_db(transaction=True)


def reject_bad(channel: str, event: str) -> str | None:
    """Locmem rejecter used by tests: refuse events whose JSON mentions "bad"."""
    return "HandlerRefused" if "bad" in event else None


def configure(settings, **publish: Any) -> None:
    """Point the default alias at locmem with the given PUBLISH and OUTBOX overrides."""
    outbox = publish.pop("OUTBOX", {})
    settings.APPSYNC_EVENTS = {
        "default": {**BASE, "PUBLISH": {"BACKEND": "locmem", **publish}, "OUTBOX": outbox}
    }


def forget_thread_connections() -> None:
    """Close and forget this thread's database connections (run in asgiref's worker).

    Async ORM calls open a connection in asgiref's worker thread that outlives the test:
    on PostgreSQL it keeps the test database from being dropped, and with pytest-django
    any later async test that checks old connections would touch it.
    """
    for conn in connections.all(initialized_only=True):
        conn.close()
        del connections[conn.alias]


@pytest.fixture(autouse=True)
def locmem_api(settings):
    """Publish through locmem; empty records around each test."""
    configure(settings)
    locmem.clear()
    yield
    locmem.clear()


@pytest.fixture
def failures():
    """Collect publish_failed calls."""
    receiver = mock.Mock()
    publish_failed.connect(receiver, weak=False)
    yield receiver
    publish_failed.disconnect(receiver)


def test_durable_publish_writes_rows_and_sends_nothing():
    """durable=True writes one pending row per event and returns a queued handle."""
    handle = publish("/chat/a", {"n": 1}, {"n": 2}, durable=True)
    assert isinstance(handle, DeferredPublish)
    assert handle.state == "queued"
    rows = list(OutboxEvent.objects.order_by("id"))
    assert [r.event for r in rows] == [{"n": 1}, {"n": 2}]
    assert handle.outbox_ids == tuple(r.pk for r in rows)
    assert {r.state for r in rows} == {"pending"}
    assert rows[0].batch == rows[1].batch
    assert [r.position for r in rows] == [0, 1]
    locmem.assert_nothing_published()


def test_durable_rows_roll_back_with_the_transaction():
    """A rollback removes the outbox rows with the data they announce."""

    def work() -> None:
        with transaction.atomic():
            publish("/chat/a", 1, durable=True)
            assert OutboxEvent.objects.count() == 1
            raise RuntimeError("rollback")

    with pytest.raises(RuntimeError):
        work()
    assert OutboxEvent.objects.count() == 0


def test_durable_per_alias_and_per_class(settings):
    """PUBLISH['DURABLE'] and Meta.durable route publishes to the outbox."""
    configure(settings, DURABLE=True)
    publish("/chat/a", 1)
    assert OutboxEvent.objects.count() == 1
    configure(settings)

    class Noted(Event):
        channel = "/chat/{room}"
        room: str

        class Meta:
            durable = True

    Noted(room="r1").publish()
    assert OutboxEvent.objects.filter(channel="/chat/r1").count() == 1
    locmem.assert_nothing_published()


async def test_apublish_durable():
    """apublish(durable=True) writes the rows from async code."""
    handle = await apublish("/chat/a", "x", durable=True)
    assert isinstance(handle, DeferredPublish)
    assert await OutboxEvent.objects.acount() == 1
    # The ORM ran in asgiref's worker thread; close its connection (the test DB is dropped).
    await sync_to_async(forget_thread_connections)()


def test_drainer_sends_marks_and_chunks():
    """The drainer sends due rows grouped by channel, chunked, and marks them sent."""
    publish("/chat/a", *range(7), durable=True)
    publish("/chat/b", "b0", durable=True)
    receiver = mock.Mock()
    published.connect(receiver, weak=False)
    try:
        report = OutboxDrainer(batch_size=100).drain()
    finally:
        published.disconnect(receiver)
    assert (report.claimed, report.sent, report.retried) == (8, 8, 0)
    assert [len(t) for (_, _, t) in locmem.requests] == [5, 2, 1]
    assert locmem.published_events("/chat/a") == list(range(7))
    rows = OutboxEvent.objects.all()
    assert {r.state for r in rows} == {"sent"}
    assert all(r.identifier and r.sent_at and r.attempts == 1 for r in rows)
    assert all(r.locked_by == "" and r.locked_until is None for r in rows)
    assert receiver.call_count == 2
    assert OutboxDrainer().drain().claimed == 0  # nothing left


def test_batches_respect_batch_size():
    """drain() claims batch_size rows at a time until none is due."""
    publish("/chat/a", *range(12), durable=True)
    batches: list[DrainReport] = []
    total = OutboxDrainer(batch_size=5).drain(on_batch=batches.append)
    assert [b.claimed for b in batches] == [5, 5, 2]
    assert total.sent == 12


def test_failure_schedules_retry_and_signals(settings, failures):
    """A failed send counts an attempt, records the error, backs off and signals."""
    configure(settings, BACKEND="appsync", OPTIONS={"RETRIES": 0})
    publish("/chat/a", 1, 2, durable=True)
    before = timezone.now()
    report = OutboxDrainer().drain()
    assert (report.claimed, report.sent, report.retried, report.failed) == (2, 0, 2, 0)
    rows = list(OutboxEvent.objects.all())
    assert all(r.state == "pending" and r.attempts == 1 for r in rows)
    assert all("could not connect" in r.last_error for r in rows)
    assert all(r.next_attempt_at > before for r in rows)
    assert all(r.locked_by == "" for r in rows)
    failures.assert_called_once()
    kwargs = failures.call_args.kwargs
    assert kwargs["deferred"] is True
    assert kwargs["will_retry"] is True
    assert kwargs["outbox_ids"] == tuple(r.pk for r in rows)
    # Not due yet: a second pass claims nothing.
    assert OutboxDrainer().drain().claimed == 0


def test_rows_fail_after_max_attempts(settings, failures, caplog):
    """After MAX_ATTEMPTS the row is marked failed and stays visible."""
    configure(settings, BACKEND="appsync", OPTIONS={"RETRIES": 0}, OUTBOX={"MAX_ATTEMPTS": 2})
    publish("/chat/a", 1, durable=True)
    OutboxDrainer().drain()
    OutboxEvent.objects.update(next_attempt_at=timezone.now())
    report = OutboxDrainer().drain()
    assert report.failed == 1
    row = OutboxEvent.objects.get()
    assert (row.state, row.attempts) == ("failed", 2)
    assert failures.call_args.kwargs["will_retry"] is False
    assert "gave up" in caplog.text


def test_refused_events_are_retried_others_sent(settings):
    """Events the service refuses stay pending with the service's code; the rest are sent."""
    configure(settings, OPTIONS={"REJECT": "tests.test_outbox.reject_bad"})
    publish("/chat/a", "ok", "bad", "ok", durable=True)
    report = OutboxDrainer().drain()
    assert (report.sent, report.retried) == (2, 1)
    bad = OutboxEvent.objects.get(state="pending")
    assert bad.event == "bad"
    assert bad.last_error.startswith("HandlerRefused")


def test_claims_are_exclusive_until_the_lease_expires():
    """Rows claimed by one drainer are not claimed by another until its lease expires."""
    publish("/chat/a", *range(4), durable=True)
    first = OutboxDrainer(worker="one", lease=60).claim()
    assert len(first) == 4
    assert OutboxDrainer(worker="two").claim() == []
    # The first drainer died: its lease runs out and another drainer takes over.
    OutboxEvent.objects.update(locked_until=timezone.now() - dt.timedelta(seconds=1))
    taken = OutboxDrainer(worker="two").claim()
    assert [r.pk for r in taken] == [r.pk for r in first]
    assert all(r.locked_by.startswith("two:") for r in taken)


def test_lease_running_out_releases_rows():
    """A drainer whose lease could run out releases the rest of its batch unsent."""
    publish("/chat/a", 1, durable=True)
    publish("/chat/b", 2, durable=True)
    drainer = OutboxDrainer(lease=1.0)  # shorter than one HTTP timeout: nothing may be sent
    report = drainer.drain_batch()
    assert (report.claimed, report.released, report.sent) == (2, 2, 0)
    assert OutboxEvent.objects.filter(locked_by="", state="pending").count() == 2
    locmem.assert_nothing_published()


def test_only_requests_that_can_time_out_within_the_lease_are_sent(settings):
    """Two requests fit in the lease left (10 s timeouts, 25 s lease): 10 events go, 2 wait."""
    value = {**BASE, "PUBLISH": {"BACKEND": "locmem"}, "TIMEOUTS": {"HTTP": 10}}
    settings.APPSYNC_EVENTS = {"default": value}
    publish("/chat/a", *range(12), durable=True)
    # 25 s: two 10 s timeouts and the 1 s margin fit, a third request would not.
    report = OutboxDrainer(lease=25.0).drain_batch()
    assert (report.claimed, report.sent, report.released) == (12, 10, 2)
    assert locmem.published_events("/chat/a") == list(range(10))
    released = OutboxEvent.objects.filter(state="pending", locked_by="")
    assert sorted(r.event for r in released) == [10, 11]


def test_api_filter():
    """A drainer for one alias leaves other aliases' rows alone."""
    publish("/chat/a", 1, durable=True)
    OutboxEvent.objects.update(api="other")
    assert OutboxDrainer(api="default").drain().claimed == 0


def test_purge_sent_respects_retention(settings):
    """Sent rows older than RETENTION are deleted; recent and unsent rows stay."""
    configure(settings, OUTBOX={"RETENTION": 60})
    publish("/chat/a", 1, 2, 3, durable=True)
    OutboxDrainer().drain()
    old, recent, _ = OutboxEvent.objects.order_by("id")
    OutboxEvent.objects.filter(pk=old.pk).update(sent_at=timezone.now() - dt.timedelta(hours=1))
    OutboxEvent.objects.filter(pk=_.pk).update(state="pending", sent_at=None)
    assert OutboxDrainer().purge_sent() == 1
    assert set(OutboxEvent.objects.values_list("pk", flat=True)) == {recent.pk, _.pk}


def test_backoff_grows_and_is_capped(settings):
    """Delays double per attempt (with jitter) up to BACKOFF_MAX."""
    configure(settings, OUTBOX={"BACKOFF_INITIAL": 1, "BACKOFF_MAX": 10})
    from appsync_events.conf import get_api_config

    config = get_api_config().outbox
    assert 0.8 <= backoff_delay(1, config) <= 1.2
    assert 3.2 <= backoff_delay(3, config) <= 4.8
    assert 8 <= backoff_delay(10, config) <= 12


def test_admin_retry_action(admin_user):
    """The admin's retry action makes failed rows due again with a fresh budget."""
    publish("/chat/a", 1, 2, durable=True)
    OutboxEvent.objects.update(state="failed", attempts=20, last_error="boom")
    sent = OutboxEvent.objects.order_by("id").first()
    assert sent is not None
    OutboxEvent.objects.filter(pk=sent.pk).update(state="sent")
    model_admin = OutboxEventAdmin(OutboxEvent, AdminSite())
    request = RequestFactory().post("/")
    request.user = admin_user
    with mock.patch.object(model_admin, "message_user") as message:
        model_admin.retry(request, OutboxEvent.objects.all())
    assert "1 event queued" in message.call_args.args[1]
    states = dict(OutboxEvent.objects.values_list("state", "attempts").order_by("id"))
    assert states == {"sent": 20, "pending": 0}
    assert not model_admin.has_add_permission(request)
    assert model_admin.short_error(OutboxEvent.objects.get(state="pending")) == "boom"


def test_admin_retry_leaves_rows_a_drainer_holds(admin_user):
    """Retry does not clear the lease of rows a live drainer is sending (no second owner)."""
    publish("/chat/a", 1, 2, durable=True)
    held, failed = OutboxEvent.objects.order_by("id")
    OutboxEvent.objects.filter(pk=failed.pk).update(state="failed", attempts=20)
    OutboxEvent.objects.filter(pk=held.pk).update(
        locked_by="drainer-1:abc", locked_until=timezone.now() + dt.timedelta(seconds=60)
    )
    model_admin = OutboxEventAdmin(OutboxEvent, AdminSite())
    request = RequestFactory().post("/")
    request.user = admin_user
    with mock.patch.object(model_admin, "message_user") as message:
        model_admin.retry(request, OutboxEvent.objects.all())
    assert "1 event queued" in message.call_args.args[1]
    held.refresh_from_db()
    assert held.locked_by == "drainer-1:abc"
    failed.refresh_from_db()
    assert (failed.state, failed.attempts) == ("pending", 0)


def test_admin_retry_action_needs_the_change_permission(django_user_model):
    """Staff who may only view outbox rows do not get the retry action; change permission does."""
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("viewer", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_outboxevent"))
    model_admin = OutboxEventAdmin(OutboxEvent, AdminSite())
    request = RequestFactory().get("/")
    request.user = django_user_model.objects.get(pk=user.pk)
    assert "retry" not in model_admin.get_actions(request)
    user.user_permissions.add(Permission.objects.get(codename="change_outboxevent"))
    request.user = django_user_model.objects.get(pk=user.pk)  # a fresh permission cache
    assert "retry" in model_admin.get_actions(request)


def test_admin_changelist_renders(admin_client):
    """The admin change list shows the rows with their state."""
    publish("/chat/a", 1, durable=True)
    response = admin_client.get("/admin/appsync_events/outboxevent/")
    assert response.status_code == 200
    assert b"/chat/a" in response.content


def test_admin_change_form_is_read_only(admin_client):
    """The change form shows every field of a row and offers none for editing."""
    publish("/chat/a", 1, durable=True)
    row = OutboxEvent.objects.get()
    response = admin_client.get(f"/admin/appsync_events/outboxevent/{row.pk}/change/")
    assert response.status_code == 200
    content = response.content.decode()
    assert "/chat/a" in content
    for name in ("channel", "payload", "state", "attempts", "last_error"):
        assert f'name="{name}"' not in content


def test_outbox_command_once():
    """appsync_outbox --once drains, prints a line per batch and a total."""
    publish("/chat/a", *range(3), durable=True)
    out = io.StringIO()
    call_command("appsync_outbox", "--once", "--batch-size", "2", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines == [
        "batch: claimed 2, sent 2, retried 0, failed 0, released 0",
        "batch: claimed 1, sent 1, retried 0, failed 0, released 0",
        "done: claimed 3, sent 3, retried 0, failed 0, released 0",
    ]


def test_outbox_command_bad_input():
    """Bad options and unknown aliases exit 2 with a reason."""
    with pytest.raises(CommandError) as info:
        call_command("appsync_outbox", "--once", "--batch-size", "0")
    assert info.value.returncode == 2
    with pytest.raises(CommandError) as info:
        call_command("appsync_outbox", "--once", "--api", "nope")
    assert info.value.returncode == 2
    assert "no alias 'nope'" in str(info.value)
    with pytest.raises(CommandError) as info:
        call_command("appsync_outbox", "--once", "--database", "nowhere")
    assert info.value.returncode == 2
    assert "'nowhere'" in str(info.value)
    assert "DATABASES" in str(info.value)


def test_drain_once_ends_while_the_service_is_down(settings):
    """drain() sends what was due when it started; rows it retries wait for a later pass."""
    configure(
        settings,
        BACKEND="appsync",
        OPTIONS={"RETRIES": 0},
        OUTBOX={"BACKOFF_INITIAL": 0.001, "BACKOFF_MAX": 0.001},
    )
    publish("/chat/a", *range(30), durable=True)
    report = OutboxDrainer(batch_size=10).drain()
    assert (report.claimed, report.retried, report.sent) == (30, 30, 0)
    assert set(OutboxEvent.objects.values_list("attempts", flat=True)) == {1}


async def test_arun_drains_until_stopped():
    """arun() drains from async code and returns once the stop event is set."""
    import asyncio

    await sync_to_async(publish)("/chat/a", *range(6), durable=True)
    stop = asyncio.Event()
    reports: list[DrainReport] = []

    def on_batch(report: DrainReport) -> None:
        reports.append(report)
        stop.set()

    drainer = OutboxDrainer()
    await asyncio.wait_for(drainer.arun(stop, on_batch=on_batch), 30)
    assert sum(r.sent for r in reports) == 6
    assert locmem.published_events("/chat/a") == list(range(6))
    await sync_to_async(forget_thread_connections)()


def test_locked_database_is_retried():
    """SQLite's "database is locked" is retried; other database errors are raised."""
    from django.db import OperationalError

    drainer = OutboxDrainer()
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise OperationalError("database is locked")
        return "done"

    assert drainer._retry_locked(flaky) == "done"
    assert len(calls) == 3

    def broken() -> None:
        raise OperationalError("no such table")

    with pytest.raises(OperationalError, match="no such table"):
        drainer._retry_locked(broken)


def test_run_loop_drains_and_survives_errors(caplog):
    """run() keeps draining after an error (logged) and stops when the event is set."""
    import threading

    publish("/chat/a", *range(3), durable=True)
    stop = threading.Event()
    drainer = OutboxDrainer()
    real = drainer.drain_batch
    failures = iter([RuntimeError("database went away")])

    def drain_batch(**kwargs: Any) -> DrainReport:
        error = next(failures, None)
        if error is not None:
            raise error
        report = real(**kwargs)
        if report.claimed:
            stop.set()
        return report

    drainer.drain_batch = drain_batch  # type: ignore[method-assign]
    drainer.poll_interval = 0.01
    drainer.run(stop)
    assert OutboxEvent.objects.filter(state="sent").count() == 3
    assert "database went away" in caplog.text


def test_drainer_validates_batch_size():
    """A batch size below one is refused."""
    with pytest.raises(ValueError, match="batch_size"):
        OutboxDrainer(batch_size=-1)


def test_outbox_command_runs_until_sigterm():
    """appsync_outbox without --once drains until SIGTERM, then exits cleanly."""
    import os
    import signal
    import threading
    import time

    publish("/chat/a", *range(4), durable=True)
    done = threading.Event()

    def terminate_when_sent() -> None:
        deadline = time.monotonic() + 20
        try:
            while time.monotonic() < deadline:
                if not OutboxEvent.objects.exclude(state="sent").exists():
                    break
                time.sleep(0.05)
        finally:
            connections.close_all()  # this thread's connection (PostgreSQL leg)
            os.kill(os.getpid(), signal.SIGTERM)
            done.set()

    watcher = threading.Thread(target=terminate_when_sent)
    out, err = io.StringIO(), io.StringIO()
    watcher.start()
    try:
        call_command("appsync_outbox", stdout=out, stderr=err)
    finally:
        watcher.join(30)
    assert done.is_set()
    assert "batch: claimed 4, sent 4" in out.getvalue()
    assert "Stopping after the current batch (SIGTERM)" in err.getvalue()
    assert OutboxEvent.objects.filter(state="sent").count() == 4
