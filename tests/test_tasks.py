"""Handlers handed to Django's Tasks framework: the immediate and dummy backends, the
listener's enqueue path (retries, backpressure, ``--exclusive``), checks and requeueing."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import sys
from collections.abc import Iterator
from datetime import timedelta
from importlib import import_module
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

import appsync_events.dispatch as dispatch
from appsync_events import checks, tasks
from appsync_events.config import TasksConfig
from appsync_events.dispatch import Router, asimulate_event, simulate_event
from appsync_events.emulator import AppSyncEventsEmulator
from appsync_events.events import ReceivedEvent
from appsync_events.exceptions import ConfigurationError
from appsync_events.lease import Lease
from appsync_events.listener import Listener
from appsync_events.testing.pytest_plugin import (  # noqa: F401 - fixtures
    appsync_emulator,
    appsync_events_emulator,
)
from tests.test_client import until

#: The backends of the Tasks framework in use (``django.tasks`` or the backport).
BACKENDS = f"{tasks.framework.__name__}.backends"
DUMMY = {"default": {"BACKEND": f"{BACKENDS}.dummy.DummyBackend"}}
IMMEDIATE = {"default": {"BACKEND": f"{BACKENDS}.immediate.ImmediateBackend"}}

#: What the module-level handlers below saw.
SEEN: list[ReceivedEvent] = []


def remember(event: ReceivedEvent) -> None:
    """A sync handler: record the event."""
    SEEN.append(event)


async def aremember(event: ReceivedEvent) -> None:
    """An async handler: record the event."""
    SEEN.append(event)


def explode(event: ReceivedEvent) -> None:
    """A handler that always fails."""
    raise RuntimeError(f"boom on {event.subscription}")


class FlakyBackend(import_module(f"{BACKENDS}.dummy").DummyBackend):  # type: ignore[misc]
    """A dummy backend whose ``enqueue`` fails while ``FlakyBackend.down`` is true."""

    down = False
    attempts = 0

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        type(self).attempts += 1
        if type(self).down:
            raise ConnectionError("the task store is down")
        return super().enqueue(task, args, kwargs)


FLAKY = {"default": {"BACKEND": f"{__name__}.FlakyBackend"}}


@pytest.fixture(autouse=True)
def handlers() -> Iterator[Router]:
    """The default router, restored after the test; ``SEEN`` and ``FlakyBackend`` reset."""
    before = list(dispatch.default_router._entries)
    SEEN.clear()
    FlakyBackend.down = False
    FlakyBackend.attempts = 0
    yield dispatch.default_router
    dispatch.default_router._entries = before
    dispatch.default_router._invalidate()


def backend() -> Any:
    """The ``default`` task backend."""
    return tasks.framework.task_backends["default"]


def use_tasks(settings: Any, value: dict[str, Any]) -> Any:
    """Set Django's ``TASKS`` and return its ``default`` backend.

    Backends live in context-local storage: made here, in the test's context, the
    listener's tasks (copies of it) share the instance the test inspects.
    """
    settings.TASKS = value
    return backend()


def event(payload: Any = None, subscription: str = "/chat/*") -> ReceivedEvent:
    """A received event as the listener makes it."""
    raw = json.dumps(payload)
    return ReceivedEvent("default", subscription, json.loads(raw), raw, "sub-1")


def set_tasks(settings: Any, **section: Any) -> None:
    """Set the ``TASKS`` section of the ``default`` alias."""
    value = copy.deepcopy(settings.APPSYNC_EVENTS)
    value["default"]["TASKS"] = section
    settings.APPSYNC_EVENTS = value


# -- the event on the wire -------------------------------------------------------------


def test_event_data_is_json_and_rebuilds_the_same_event() -> None:
    """The task's event is JSON-safe and rebuilds an equal ReceivedEvent."""
    original = event({"id": 7, "text": "é", "nested": [1.5, None, True]})
    data = tasks.event_to_data(original)
    assert json.loads(json.dumps(data)) == data
    assert "payload" not in data  # the raw text carries it once
    assert tasks.event_from_data(data) == original


@pytest.mark.parametrize(
    "data", [None, {}, {"api": "default"}, {**tasks.event_to_data(event()), "raw": 1}]
)
def test_malformed_event_data_is_refused(data: Any) -> None:
    """Anything but a serialised event is a ValueError naming the expected keys."""
    with pytest.raises(ValueError, match="subscription, raw"):
        tasks.event_from_data(data)


# -- registration -------------------------------------------------------------------------


def test_enqueue_needs_a_handler_workers_can_find(handlers: Router) -> None:
    """enqueue=True refuses a lambda or a nested function; bad flag values are refused."""
    with pytest.raises(TypeError, match="lambda or is defined inside another"):
        handlers.add("/chat/*", lambda e: None, enqueue=True)

    def nested(e: ReceivedEvent) -> None: ...

    with pytest.raises(TypeError, match="module level"):
        handlers.on("/chat/*", enqueue=True)(nested)
    with pytest.raises(TypeError, match="enqueue must be True, False or None"):
        handlers.add("/chat/*", remember, enqueue="yes")  # type: ignore[arg-type]
    handlers.add("/chat/*", nested)  # in process: any callable is fine


def test_handler_named_finds_the_registration_for_the_alias(handlers: Router) -> None:
    """Workers look handlers up by module.qualname, restricted to the event's alias."""
    handlers.add("/chat/*", remember, api="other")
    name = f"{__name__}.remember"
    assert handlers.handler_named(name, "default") is None
    entry = handlers.handler_named(name, "other")
    assert entry is not None
    assert entry.func is remember
    assert entry in handlers.entries()


# -- the immediate backend: the whole round trip in process ---------------------------------


@pytest.mark.django_db
def test_enqueued_handler_runs_through_the_task_with_the_same_event(
    settings: Any, handlers: Router
) -> None:
    """With the immediate backend the task runs the handler on the rebuilt event."""
    use_tasks(settings, IMMEDIATE)
    results: list[Any] = []
    import_module(f"{tasks.framework.__name__}.signals").task_finished.connect(
        lambda sender, task_result, **kw: results.append(task_result), weak=False
    )
    handlers.add("/chat/*", remember, enqueue=True)
    handlers.add("/chat/*", aremember, enqueue=True)
    report = simulate_event("/chat/rooms/1", {"text": "hi", "event_id": "ev-1"})
    assert report.errors == []
    assert [e.payload for e in SEEN] == [{"text": "hi", "event_id": "ev-1"}] * 2
    assert SEEN[0].subscription == "/chat/rooms/1"
    assert SEEN[0].subscription_id == "simulated"
    ours = [r for r in results if r.task.module_path == "appsync_events.tasks.run_handler"]
    assert [r.status for r in ours] == ["SUCCESSFUL", "SUCCESSFUL"]
    assert ours[0].return_value == {
        "handler": f"{__name__}.remember",
        "event_id": "ev-1",
        "subscription": "/chat/rooms/1",
    }


@pytest.mark.django_db
def test_a_failing_enqueued_handler_is_logged_as_in_process_and_fails_the_task(
    settings: Any, handlers: Router, caplog: pytest.LogCaptureFixture
) -> None:
    """The worker logs the handler's error on appsync_events.dispatch, and the task fails."""
    use_tasks(settings, IMMEDIATE)
    handlers.add("/chat/*", explode, enqueue=True)
    with pytest.raises(RuntimeError, match="boom"):
        tasks.execute(f"{__name__}.explode", tasks.event_to_data(event({"n": 1})))
    [record] = [r for r in caplog.records if r.name == "appsync_events.dispatch"]
    assert record.getMessage() == (
        f"Handler {__name__}.explode failed for an event on /chat/* (api=default)"
    )
    caplog.clear()
    # Through the framework: the immediate backend records the failure; dispatch goes on.
    assert simulate_event("/chat/a", {"n": 2}, raise_errors=False).errors == []
    assert any(r.name == "appsync_events.dispatch" for r in caplog.records)


def test_execute_names_a_missing_handler(settings: Any) -> None:
    """A worker without the handler fails the task with a message saying what to do."""
    with pytest.raises(tasks.HandlerNotFound, match="appsync_handlers module"):
        tasks.execute("myapp.appsync_handlers.gone", tasks.event_to_data(event()))


# -- the dummy backend: what is enqueued ----------------------------------------------------


async def test_enqueue_hands_the_task_to_the_backend_without_running_it(
    settings: Any, handlers: Router
) -> None:
    """With the dummy backend one task per handler is stored, and nothing runs in process."""
    use_tasks(settings, DUMMY)
    handlers.add("/chat/*", remember, enqueue=True)
    handlers.add("/chat/rooms/*", aremember)  # in process
    await asimulate_event("/chat/rooms/1", {"n": 1})
    assert [e.payload for e in SEEN] == [{"n": 1}]  # only the in-process one
    [result] = backend().results
    assert result.task.module_path == "appsync_events.tasks.run_handler"
    assert result.kwargs["handler"] == f"{__name__}.remember"
    assert json.loads(result.kwargs["event"]["raw"]) == {"n": 1}
    # What a worker would do with it:
    SEEN.clear()
    await asyncio.to_thread(tasks.execute, **result.kwargs)
    assert [e.payload for e in SEEN] == [{"n": 1}]


async def test_the_alias_default_enqueues_handlers_that_do_not_say(
    settings: Any, handlers: Router
) -> None:
    """TASKS['ENQUEUE'] enqueues enqueue=None handlers; enqueue=False stays in process."""
    settings.TASKS = {"q": {"BACKEND": f"{BACKENDS}.dummy.DummyBackend", "QUEUES": ["fast"]}}
    set_tasks(settings, ENQUEUE=True, BACKEND="q", QUEUE_NAME="fast")
    handlers.add("/chat/*", remember)
    handlers.add("/chat/*", aremember, enqueue=False)
    await asimulate_event("/chat/a", 1)
    assert [e.payload for e in SEEN] == [1]
    [result] = tasks.framework.task_backends["q"].results
    assert result.kwargs["handler"] == f"{__name__}.remember"
    assert (result.task.backend, result.task.queue_name) == ("q", "fast")


# -- enqueue failures ----------------------------------------------------------------------------


async def test_a_failed_enqueue_without_retry_is_logged_and_reported(
    settings: Any, handlers: Router, caplog: pytest.LogCaptureFixture
) -> None:
    """simulate_event (no retry) reports an enqueue failure as the handler's error."""
    use_tasks(settings, FLAKY)
    FlakyBackend.down = True
    handlers.add("/chat/*", remember, enqueue=True)
    report = await asimulate_event("/chat/a", 1, raise_errors=False)
    [error] = report.errors
    assert error.handler == f"{__name__}.remember"
    assert isinstance(error.error, ConnectionError)
    assert "Could not enqueue the event on /chat/a for handler" in caplog.text
    assert FlakyBackend.attempts == 1


async def test_retry_waits_for_the_backend_to_come_back(
    settings: Any, handlers: Router, caplog: pytest.LogCaptureFixture, monkeypatch: Any
) -> None:
    """With retry, failures are logged and retried with backoff until the enqueue succeeds."""
    monkeypatch.setattr(tasks, "ENQUEUE_RETRY_INITIAL", 0.01)
    use_tasks(settings, FLAKY)
    FlakyBackend.down = True
    handlers.add("/chat/*", remember, enqueue=True)
    [entry] = handlers.entries()
    caplog.set_level(logging.INFO, "appsync_events.tasks")
    job = asyncio.create_task(tasks.enqueue(entry, event(1), TasksConfig(), retry=True))
    await until(lambda: FlakyBackend.attempts >= 3)
    assert not job.done()
    FlakyBackend.down = False
    assert await job is None
    assert len(backend().results) == 1
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == FlakyBackend.attempts - 1
    assert "retrying in" in warnings[0].getMessage()
    assert "after" in caplog.records[-1].getMessage()


async def test_retry_gives_up_on_errors_a_retry_cannot_fix(
    settings: Any, handlers: Router, caplog: pytest.LogCaptureFixture
) -> None:
    """A queue the backend refuses is an error at once, not an endless retry."""
    settings.TASKS = {"default": {**DUMMY["default"], "QUEUES": ["default"]}}
    handlers.add("/chat/*", remember, enqueue=True)
    [entry] = handlers.entries()
    error = await tasks.enqueue(entry, event(1), TasksConfig(queue_name="nope"), retry=True)
    assert error is not None
    assert "nope" in str(error)
    assert "Could not enqueue" in caplog.text


async def test_cancelled_while_retrying_says_the_event_was_not_enqueued(
    settings: Any, handlers: Router, caplog: pytest.LogCaptureFixture
) -> None:
    """A listener stopping during the retries logs the event it never enqueued."""
    use_tasks(settings, FLAKY)
    FlakyBackend.down = True
    handlers.add("/chat/*", remember, enqueue=True)
    [entry] = handlers.entries()
    job = asyncio.create_task(tasks.enqueue(entry, event(1), TasksConfig(), retry=True))
    await until(lambda: FlakyBackend.attempts >= 1)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    # Cancelled in the backoff sleep ("was not enqueued") or during an attempt ("may not
    # have been enqueued"): either way the event is named.
    assert "enqueued for handler tests.test_tasks.remember" in caplog.text
    assert "Stopped while" in caplog.text


# -- the listener -----------------------------------------------------------------------------


def listen_to_chat(settings: Any, **listener: Any) -> None:
    """Subscribe the emulated ``default`` alias to ``/chat/*`` with fast backoff."""
    value = copy.deepcopy(settings.APPSYNC_EVENTS)
    value["default"]["SUBSCRIPTIONS"] = ["/chat/*"]
    value["default"]["LISTENER"] = {"BACKOFF_INITIAL": 0.05, "BACKOFF_MAX": 0.3, **listener}
    settings.APPSYNC_EVENTS = value


async def stop(listener: Listener, task: asyncio.Task[int]) -> int:
    """Stop a running listener and return its exit status."""
    listener.request_stop("test over")
    return await asyncio.wait_for(task, 20)


async def test_backend_down_fills_the_queue_and_the_drop_policy_counts_and_logs(
    settings: Any,
    appsync_events_emulator: AppSyncEventsEmulator,  # noqa: F811
    handlers: Router,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: Any,
) -> None:
    """While enqueueing fails the listener retries, its queue fills and drops are counted."""
    emulator = appsync_events_emulator
    monkeypatch.setattr(tasks, "ENQUEUE_RETRY_INITIAL", 0.01)
    monkeypatch.setattr(tasks, "ENQUEUE_RETRY_MAX", 0.05)
    use_tasks(settings, FLAKY)
    listen_to_chat(settings, QUEUE_SIZE=2, OVERFLOW="drop_newest")
    FlakyBackend.down = True
    handlers.add("/chat/*", remember, enqueue=True)
    listener = Listener(sinks=[])
    running = asyncio.create_task(listener.run(install_signal_handlers=False))
    try:
        await emulator.await_for_subscriptions(1)
        await asyncio.to_thread(emulator.publish, "/chat/a", 0)
        await until(lambda: FlakyBackend.attempts >= 1)  # taken from the queue, retrying
        await asyncio.to_thread(emulator.publish, "/chat/a", *range(1, 6))
        await until(lambda: listener.stats.received == 6)
        # One event retrying, two queued, three dropped.
        assert listener.stats.dropped == 3
        assert FlakyBackend.attempts >= 1
        assert backend().results == []
        assert "dropped 1 event(s) with OVERFLOW='drop_newest'" in caplog.text
        FlakyBackend.down = False
        await until(lambda: listener.stats.dispatched == 3)
        assert [json.loads(r.kwargs["event"]["raw"]) for r in backend().results] == [0, 1, 2]
        assert listener.stats.handler_errors == 0
        assert SEEN == []
    finally:
        assert await stop(listener, running) == 0


class SharedLease(Lease):
    """An in-memory lease: one holder among the leases sharing ``state``."""

    def __init__(self, state: dict[str, Any]) -> None:
        super().__init__("tests:shared", poll_interval=0.01)
        self.state = state

    async def try_acquire(self) -> bool:
        if self.state.get("holder") in (None, self):
            self.state["holder"] = self
            return True
        return False

    async def check(self) -> bool:
        return self.state.get("holder") is self

    async def release(self) -> None:
        if self.state.get("holder") is self:
            self.state["holder"] = None
        self.held = False


async def test_only_the_active_exclusive_listener_enqueues(
    settings: Any,
    appsync_events_emulator: AppSyncEventsEmulator,  # noqa: F811
    handlers: Router,
) -> None:
    """Of two --exclusive listeners, only the lease holder enqueues: once per event."""
    emulator = appsync_events_emulator
    use_tasks(settings, DUMMY)
    listen_to_chat(settings)
    handlers.add("/chat/*", remember, enqueue=True)
    state: dict[str, Any] = {}
    active = Listener(sinks=[], exclusive=True, lease=SharedLease(state))
    standby = Listener(sinks=[], exclusive=True, lease=SharedLease(state))
    first = asyncio.create_task(active.run(install_signal_handlers=False))
    await emulator.await_for_subscriptions(1)
    second = asyncio.create_task(standby.run(install_signal_handlers=False))
    try:
        await until(lambda: standby.lease is not None and "holder" in state)
        await asyncio.to_thread(emulator.publish, "/chat/a", *range(20))
        await until(lambda: active.stats.dispatched == 20)
        assert len(backend().results) == 20
        assert standby.stats.received == 0
        assert len(emulator.subscriptions) == 1
    finally:
        assert await stop(active, first) == 0
        assert await stop(standby, second) == 0
    assert sorted(json.loads(r.kwargs["event"]["raw"]) for r in backend().results) == list(
        range(20)
    )


# -- checks --------------------------------------------------------------------------------------


def ids(messages: list[Any]) -> list[str]:
    """The check ids of ``messages``."""
    return [m.id for m in messages]


def test_checks_are_quiet_without_enqueueing_handlers(settings: Any, handlers: Router) -> None:
    """No alias enqueues and no handler does: nothing to check."""
    handlers.add("/chat/*", remember, ordered=True)
    assert checks.check_tasks() == []


def test_check_accepts_a_working_setup(settings: Any, handlers: Router) -> None:
    """A handler that enqueues to an existing backend and queue passes."""
    use_tasks(settings, DUMMY)
    handlers.add("/chat/*", remember, enqueue=True)
    assert checks.check_tasks() == []


def test_check_reports_a_missing_backend_or_queue(settings: Any, handlers: Router) -> None:
    """E015: TASKS['BACKEND'] must name a backend of TASKS, QUEUE_NAME one of its queues."""
    settings.TASKS = {"default": {**DUMMY["default"], "QUEUES": ["default"]}}
    set_tasks(settings, ENQUEUE=True, BACKEND="elsewhere")
    [error] = checks.check_tasks()
    assert error.id == "appsync_events.E015"
    assert "'elsewhere'" in error.msg
    set_tasks(settings, ENQUEUE=True, QUEUE_NAME="slow")
    [error] = checks.check_tasks()
    assert error.id == "appsync_events.E015"
    assert "'slow'" in error.msg


def test_check_warns_about_ordered_handlers_that_enqueue(settings: Any, handlers: Router) -> None:
    """W010 for ordered=True with enqueue=True or the alias default; enqueue=False is fine."""
    use_tasks(settings, DUMMY)
    handlers.add("/chat/*", remember, enqueue=True, ordered=True)
    [warning] = checks.check_tasks()
    assert warning.id == "appsync_events.W010"
    assert "enqueue=True" in warning.msg
    handlers.clear()
    set_tasks(settings, ENQUEUE=True)
    handlers.add("/chat/*", aremember, ordered=True)
    handlers.add("/chat/*", remember, ordered=True, enqueue=False)
    [warning] = checks.check_tasks()
    assert warning.id == "appsync_events.W010"
    assert "aremember" in warning.msg
    assert "TASKS['ENQUEUE'] of alias 'default'" in warning.msg


def test_check_reports_handlers_workers_cannot_find(settings: Any, handlers: Router) -> None:
    """E015 for a lambda that the alias default would enqueue."""
    use_tasks(settings, DUMMY)
    set_tasks(settings, ENQUEUE=True)
    handlers.add("/chat/*", lambda e: None)
    [error] = checks.check_tasks()
    assert error.id == "appsync_events.E015"
    assert "<lambda>" in error.msg


def test_check_reports_a_missing_tasks_framework(
    settings: Any, handlers: Router, monkeypatch: Any
) -> None:
    """E011 when neither django.tasks nor the django_tasks backport can be imported."""
    set_tasks(settings, ENQUEUE=True)
    monkeypatch.delitem(sys.modules, "appsync_events.tasks")
    monkeypatch.delattr("appsync_events.tasks")
    for name in ("django.tasks", "django_tasks"):
        monkeypatch.setitem(sys.modules, name, None)
    [error] = checks.check_tasks()
    assert error.id == "appsync_events.E011"
    assert "django-appsync-events[tasks]" in error.msg
    # And the listener's dispatch logs and counts it instead of crashing.
    handlers.add("/chat/*", remember)
    report = simulate_event("/chat/a", 1, raise_errors=False)
    assert len(report.errors) == 1
    assert SEEN == []


def test_tasks_settings_are_validated(settings: Any) -> None:
    """TASKS keys are checked like every other section."""
    from appsync_events.conf import get_api_config

    set_tasks(settings, ENQUEUE="yes")
    with pytest.raises(
        ConfigurationError, match=r"\['TASKS'\]\['ENQUEUE'\]: must be True or False"
    ):
        get_api_config("default")
    set_tasks(settings, QUEUE="x")
    with pytest.raises(ConfigurationError, match="valid keys are BACKEND, ENQUEUE, QUEUE_NAME"):
        get_api_config("default")
    set_tasks(settings, ENQUEUE=True, BACKEND="b", QUEUE_NAME="q")
    assert get_api_config("default").tasks == TasksConfig(True, "b", "q")


# -- requeueing the tasks of dead workers (django-tasks-db) -------------------------------------


@pytest.mark.django_db
def test_requeue_makes_stale_running_tasks_ready_again(settings: Any) -> None:
    """Only run_handler tasks claimed longer ago than the limit are made ready again."""
    from django_tasks_db.models import DBTaskResult

    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    data = tasks.event_to_data(event(1))
    stale, fresh, ready = (tasks.run_handler.enqueue(handler="h", event=data).id for _ in range(3))
    other = other_work.enqueue().id
    old = timezone.now() - timedelta(seconds=120)
    DBTaskResult.objects.filter(id__in=[stale, other]).update(status="RUNNING", started_at=old)
    DBTaskResult.objects.filter(id=fresh).update(status="RUNNING", started_at=timezone.now())
    assert tasks.requeue_stale_tasks(60) == 1
    status = dict(DBTaskResult.objects.values_list("id", "status"))
    assert {str(k): v for k, v in status.items()} == {
        stale: "READY",
        fresh: "RUNNING",
        ready: "READY",
        other: "RUNNING",
    }


@tasks.framework.task()
def other_work() -> None:
    """Another task of the project, which requeueing must leave alone."""


@pytest.mark.django_db
def test_requeue_command_runs_once_and_refuses_other_backends(settings: Any) -> None:
    """The command prints what it did; a non-database backend is a usage error (exit 2)."""
    from io import StringIO

    from django.core.management.base import CommandError

    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    out = StringIO()
    call_command("appsync_requeue_tasks", "--older-than", "30", stdout=out)
    assert out.getvalue().strip() == "requeued 0 task(s) claimed over 30 s ago"
    use_tasks(settings, DUMMY)
    with pytest.raises(CommandError, match="DatabaseBackend only") as info:
        call_command("appsync_requeue_tasks", "--older-than", "30")
    assert info.value.returncode == 2
    with pytest.raises(CommandError, match="--older-than must be"):
        call_command("appsync_requeue_tasks", "--older-than", "0")
