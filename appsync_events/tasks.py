"""Handlers on a worker fleet: events handed to Django's Tasks framework.

A handler registered with ``enqueue=True`` (or on an alias whose ``TASKS['ENQUEUE']`` is
``True``) does not run in the listener: the listener enqueues one task per event and
handler, :data:`run_handler`, through Django's Tasks framework (``django.tasks`` on
Django 6, the ``django-tasks`` backport on Django 5.2: ``pip install
"django-appsync-events[tasks]"``). Whatever task backend ``TASKS`` configures runs it on
its workers: django-tasks-db's ``DatabaseBackend`` and its ``db_worker`` command, RQ, or
a backend on Celery.

.. code-block:: python

    # myapp/appsync_handlers.py
    import appsync_events
    from appsync_events.idempotency import idempotent

    @appsync_events.on("/orders/*", enqueue=True)
    @idempotent                      # at-least-once: skip a second delivery of an event
    def charge(event):
        Order.objects.filter(pk=event.payload["order_id"]).update(state="charged")

The task carries the event as JSON (:func:`event_to_data`: alias, subscription, the raw
JSON text, subscription id, reception time) and the handler's name (``module.qualname``).
On the worker, :func:`execute` rebuilds the :class:`~appsync_events.events.ReceivedEvent`,
finds the handler in the default router (filled by autodiscovery when the worker's Django
starts), runs it with the dispatcher's error logging (logger ``appsync_events.dispatch``)
and returns ``{"handler", "event_id", "subscription"}`` as the task's result (the event
id is :func:`appsync_events.idempotency.event_key`). A failing handler makes the task
fail, so the backend records the error. ``event_received`` is sent by the listener (once,
in process), not by workers.

Semantics: the active listener enqueues once per event and handler (with
``--exclusive``, standbys hold no subscription and enqueue nothing); tasks run in no
particular order; execution is at least once when the backend redelivers the task of a
worker that died (for django-tasks-db, :func:`requeue_stale_tasks` does), so handlers use
the idempotency helper. When enqueueing fails, the listener retries with backoff while
its bounded queue fills and ``LISTENER['OVERFLOW']`` applies (every drop counted and
logged). See docs/tasks.md.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final

from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from .conf import api_aliases, get_api_config
from .config import TasksConfig
from .events import ReceivedEvent
from .exceptions import ConfigurationError, ImproperlyInstalled
from .idempotency import event_key

if TYPE_CHECKING:
    from .dispatch import _Entry

__all__ = [
    "ENQUEUE_RETRY_INITIAL",
    "ENQUEUE_RETRY_MAX",
    "HandlerNotFound",
    "enqueue",
    "event_from_data",
    "event_to_data",
    "execute",
    "framework",
    "requeue_stale_tasks",
    "run_handler",
]

logger = logging.getLogger(__name__)

#: Seconds before the listener retries a failed enqueue; doubled after each failure.
ENQUEUE_RETRY_INITIAL: Final = 0.1
#: The longest wait between two enqueue attempts, in seconds.
ENQUEUE_RETRY_MAX: Final = 5.0

_EVENT_KEYS: Final = ("api", "subscription", "raw", "subscription_id", "received_at")


def _load_framework() -> ModuleType:
    for name in ("django.tasks", "django_tasks"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImproperlyInstalled(missing_package="django-tasks", install_extra="tasks")


#: The Tasks framework in use: ``django.tasks`` (Django 6) when present, else the
#: ``django_tasks`` backport.
framework: Final[ModuleType] = _load_framework()
_exceptions: Final = importlib.import_module(f"{framework.__name__}.exceptions")
#: Enqueue errors a retry cannot fix: an invalid task, a missing or broken backend.
_PERMANENT: Final[tuple[type[BaseException], ...]] = (
    ImproperlyConfigured,
    TypeError,
    ValueError,
    *(
        getattr(_exceptions, name)
        for name in ("InvalidTask", "InvalidTaskError")
        if hasattr(_exceptions, name)
    ),
)


class HandlerNotFound(LookupError):
    """Raised on a worker when the handler an enqueued event names is not registered."""


# -- the event on the wire -----------------------------------------------------------


def event_to_data(event: ReceivedEvent) -> dict[str, str]:
    """Return ``event`` as the JSON-safe dict a task carries.

    The payload travels as ``raw``, the JSON text the service delivered, and is decoded
    again on the worker: the handler sees the same value, and the task is half the size.
    """
    return {
        "api": event.api,
        "subscription": event.subscription,
        "raw": event.raw,
        "subscription_id": event.subscription_id,
        "received_at": event.received_at.isoformat(),
    }


def event_from_data(data: Mapping[str, Any]) -> ReceivedEvent:
    """Rebuild the :class:`~appsync_events.events.ReceivedEvent` of :func:`event_to_data`.

    Raises:
        ValueError: ``data`` is not such a dict (a key is missing or has a wrong type).
    """
    if not isinstance(data, Mapping) or not all(
        isinstance(data.get(key), str) for key in _EVENT_KEYS
    ):
        raise ValueError(
            f"an enqueued event must be a dict of the strings {', '.join(_EVENT_KEYS)}; "
            f"got {data!r:.200}"
        )
    return ReceivedEvent(
        api=data["api"],
        subscription=data["subscription"],
        payload=json.loads(data["raw"]),
        raw=data["raw"],
        subscription_id=data["subscription_id"],
        received_at=datetime.fromisoformat(data["received_at"]),
    )


# -- the worker side -----------------------------------------------------------------


def execute(handler: str, event: Mapping[str, Any]) -> dict[str, str]:
    """Run handler ``handler`` for the event ``event`` (:func:`event_to_data`'s dict).

    What :data:`run_handler` does on a worker; usable from any other job runner.

    Args:
        handler: the handler's ``module.qualname``.
        event: the serialised event.

    Returns:
        ``{"handler": ..., "event_id": ..., "subscription": ...}``, the event id being
        :func:`~appsync_events.idempotency.event_key`.

    Raises:
        HandlerNotFound: no handler of that name is registered for the event's alias.
        ValueError: ``event`` is not a serialised event.
        Exception: what the handler raised (already logged by ``appsync_events.dispatch``).
    """
    from .dispatch import Dispatcher, HandlerError, default_router

    received = event_from_data(event)
    entry = default_router.handler_named(handler, received.api)
    if entry is None:
        raise HandlerNotFound(
            f"no handler named {handler!r} for api={received.api!r} is registered in this "
            "worker; register handlers that enqueue when Django starts (in an installed "
            "app's appsync_handlers module), so workers and listeners have the same ones."
        )
    errors: list[HandlerError] = []
    Dispatcher(send_signal=False).run_here(received, entry, errors)
    if errors:
        raise errors[0].error
    return {
        "handler": handler,
        "event_id": event_key(received),
        "subscription": received.subscription,
    }


def _bound_options() -> tuple[str, str]:
    """The backend and queue :data:`run_handler` is defined with: the first alias's."""
    try:
        for alias in api_aliases():
            tasks = get_api_config(alias).tasks
            return tasks.backend, tasks.queue_name
    except ConfigurationError as exc:
        # Reported by the system checks; the framework's defaults apply meanwhile.
        logger.debug("run_handler uses the default task backend and queue: %s", exc)
    defaults = TasksConfig()
    return defaults.backend, defaults.queue_name


_backend, _queue = _bound_options()
_as_task: Callable[[Callable[[str, dict[str, Any]], dict[str, str]]], Any] = framework.task(
    backend=_backend, queue_name=_queue
)


@_as_task
def run_handler(handler: str, event: dict[str, Any]) -> dict[str, str]:
    """The task every enqueued event runs as (see :func:`execute`).

    Defined with the first alias's ``TASKS`` backend and queue; each alias enqueues it
    with its own (``run_handler.using(...)``).
    """
    return execute(handler, event)


# -- the listener side ---------------------------------------------------------------


async def enqueue(
    entry: _Entry, event: ReceivedEvent, config: TasksConfig, *, retry: bool = False
) -> BaseException | None:
    """Enqueue :data:`run_handler` for ``entry`` and ``event``; return the error, if any.

    Args:
        entry: the handler's registration.
        event: the event.
        config: the alias's ``TASKS`` settings (backend and queue).
        retry: retry failures with backoff (:data:`ENQUEUE_RETRY_INITIAL` doubling up to
            :data:`ENQUEUE_RETRY_MAX`) until the enqueue succeeds or the caller is
            cancelled; errors a retry cannot fix (an invalid task or backend) are not
            retried. Every failure is logged.

    Returns:
        ``None`` once enqueued, else the exception that stopped it.
    """
    data = event_to_data(event)
    delay = ENQUEUE_RETRY_INITIAL
    failures = 0
    while True:
        try:
            task = run_handler.using(backend=config.backend, queue_name=config.queue_name)
            await task.aenqueue(handler=entry.name, event=data)
        except asyncio.CancelledError:
            logger.error(
                "Stopped while enqueueing: the event on %s may not have been enqueued for "
                "handler %s (api=%s)",
                event.subscription,
                entry.name,
                event.api,
            )
            raise
        except Exception as exc:
            failures += 1
            if not retry or isinstance(exc, _PERMANENT):
                logger.error(
                    "Could not enqueue the event on %s for handler %s to task backend %r "
                    "(api=%s): %s: %s",
                    event.subscription,
                    entry.name,
                    config.backend,
                    event.api,
                    type(exc).__name__,
                    exc,
                    exc_info=exc,
                )
                return exc
            logger.warning(
                "Could not enqueue the event on %s for handler %s to task backend %r "
                "(api=%s; %d failed attempt(s)): %s: %s; retrying in %.1f s while the "
                "listener's queue takes new events",
                event.subscription,
                entry.name,
                config.backend,
                event.api,
                failures,
                type(exc).__name__,
                exc,
                delay,
            )
            try:
                await asyncio.sleep(delay)
            except asyncio.CancelledError:
                logger.error(
                    "Stopped while retrying: the event on %s was not enqueued for handler %s "
                    "(api=%s)",
                    event.subscription,
                    entry.name,
                    event.api,
                )
                raise
            delay = min(delay * 2, ENQUEUE_RETRY_MAX)
        else:
            if failures:
                logger.info(
                    "Enqueued the event on %s for handler %s after %d failed attempt(s) (api=%s)",
                    event.subscription,
                    entry.name,
                    failures,
                    event.api,
                )
            return None


# -- recovery (django-tasks-db) ------------------------------------------------------


def requeue_stale_tasks(older_than: float, *, backend: str = "default") -> int:
    """Make :data:`run_handler` tasks running for over ``older_than`` seconds ready again.

    django-tasks-db's ``DatabaseBackend`` marks a task RUNNING when a worker claims it
    and never looks at it again: the task of a worker that died (SIGKILL, lost machine)
    stays RUNNING and its event is never handled. Run this periodically (``manage.py
    appsync_requeue_tasks``) to get at-least-once execution: those tasks run again on
    another worker. ``older_than`` must exceed the longest time a handler may run, or a
    slow task still running is run a second time too (the idempotency helper catches
    that). Other tasks of the project are left alone.

    Args:
        older_than: seconds since the task was claimed.
        backend: the ``TASKS`` alias, which must be a django-tasks-db ``DatabaseBackend``.

    Returns:
        The number of tasks made ready again.

    Raises:
        ConfigurationError: the backend is not a django-tasks-db ``DatabaseBackend``
            (:class:`~appsync_events.exceptions.ImproperlyInstalled`: django-tasks-db is
            not installed).
    """
    try:
        from django_tasks_db.backend import DatabaseBackend
        from django_tasks_db.models import DBTaskResult
    except ImportError as exc:
        raise ImproperlyInstalled(
            missing_package="django-tasks-db", install_extra="tasks-db"
        ) from exc
    try:
        task_backend = framework.task_backends[backend]
    except ImproperlyConfigured as exc:
        raise ConfigurationError(f"TASKS has no usable backend {backend!r}: {exc}") from exc
    if not isinstance(task_backend, DatabaseBackend):
        raise ConfigurationError(
            f"TASKS[{backend!r}] is a {type(task_backend).__name__}: requeueing the tasks "
            "of dead workers applies to django-tasks-db's DatabaseBackend only (other "
            "backends redeliver on their own terms; see docs/tasks.md)."
        )
    status = framework.TaskResultStatus
    cutoff = timezone.now() - timedelta(seconds=older_than)
    stale = DBTaskResult.objects.filter(
        backend_name=backend,
        task_path=run_handler.module_path,
        status=status.RUNNING,
        started_at__lt=cutoff,
    )
    count: int = stale.update(status=status.READY)
    if count:
        logger.warning(
            "Requeued %d appsync_events task(s) claimed over %g s ago by workers that did "
            "not finish them (backend %r)",
            count,
            older_than,
            backend,
        )
    return count
