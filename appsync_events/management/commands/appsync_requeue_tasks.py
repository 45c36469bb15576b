"""``manage.py appsync_requeue_tasks --older-than SECONDS [--backend B] [--every SECONDS]``.

Makes the enqueued-handler tasks that a dead worker left RUNNING ready again
(:func:`appsync_events.tasks.requeue_stale_tasks`; django-tasks-db's ``DatabaseBackend``
only). Once, or every ``--every`` seconds until SIGINT or SIGTERM. Prints one line per
pass that requeued something (every pass with ``--once`` semantics, the default).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

from django.core.management.base import CommandError, CommandParser

from ...exceptions import ConfigurationError
from ..base import AppSyncCommand


class Command(AppSyncCommand):
    """Requeue the appsync_events tasks of workers that died."""

    help = (
        "Make appsync_events handler tasks claimed over --older-than seconds ago, and not "
        "finished, ready to run again (django-tasks-db's DatabaseBackend)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """Declare the options."""
        parser.add_argument(
            "--older-than",
            type=float,
            required=True,
            help="Seconds since a worker claimed the task; more than the longest handler run.",
        )
        parser.add_argument("--backend", default="default", help="The TASKS alias.")
        parser.add_argument(
            "--every",
            type=float,
            default=None,
            help="Repeat every this many seconds until SIGINT/SIGTERM (default: once).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Requeue once, or in a loop."""
        older_than, every = options["older_than"], options["every"]
        if not older_than > 0:
            raise CommandError("--older-than must be a positive number of seconds.", returncode=2)
        if every is not None and not every > 0:
            raise CommandError("--every must be a positive number of seconds.", returncode=2)
        from ...tasks import requeue_stale_tasks

        def once(report_zero: bool) -> None:
            try:
                count = requeue_stale_tasks(older_than, backend=options["backend"])
            except ConfigurationError as exc:
                raise CommandError(str(exc), returncode=2) from exc
            if count or report_zero:
                self.stdout.write(f"requeued {count} task(s) claimed over {older_than:g} s ago")
                self.stdout.flush()

        if every is None:
            once(report_zero=True)
            return
        stop = threading.Event()

        def request_stop(signum: int, frame: FrameType | None) -> None:
            stop.set()

        previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while not stop.is_set():
                once(report_zero=False)
                stop.wait(every)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
