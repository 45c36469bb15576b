"""``manage.py appsync_outbox [--api ALIAS] [--once] [--batch-size N]``: drain the outbox.

Runs until SIGINT or SIGTERM (exit 0 after the current batch), or with ``--once`` until no
row is due. Prints one line per batch to stdout.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db import connections

from ...conf import get_api_config
from ...exceptions import ConfigurationError
from ...outbox.drainer import DrainReport, OutboxDrainer
from ..base import AppSyncCommand


class Command(AppSyncCommand):
    """Send the durable outbox's events, retrying failures with backoff."""

    help = "Send events written with publish(durable=True), until SIGINT/SIGTERM or --once."

    def add_arguments(self, parser: CommandParser) -> None:
        """Declare the options of the command contract."""
        parser.add_argument("--api", default=None, help="Drain only this alias (default: all).")
        parser.add_argument(
            "--once", action="store_true", help="Exit when no event is due instead of waiting."
        )
        parser.add_argument("--batch-size", type=int, default=None, help="Rows claimed at a time.")
        parser.add_argument(
            "--lease",
            type=float,
            default=None,
            help="Seconds a claim lasts before another drainer may take the rows over.",
        )
        parser.add_argument("--database", default="default", help="Database alias of the table.")

    def handle(self, *args: Any, **options: Any) -> None:
        """Build the drainer and run it."""
        if options["batch_size"] is not None and options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.", returncode=2)
        if options["lease"] is not None and options["lease"] <= 0:
            raise CommandError("--lease must be a positive number of seconds.", returncode=2)
        if options["database"] not in connections.settings:
            raise CommandError(
                f"--database {options['database']!r} is not in DATABASES; use one of "
                f"{', '.join(connections.settings)}.",
                returncode=2,
            )
        try:
            if options["api"] is not None:
                get_api_config(options["api"])
            drainer = OutboxDrainer(
                api=options["api"],
                batch_size=options["batch_size"],
                lease=options["lease"],
                using=options["database"],
            )
        except ConfigurationError as exc:
            raise CommandError(str(exc), returncode=2) from exc

        def on_batch(report: DrainReport) -> None:
            self.stdout.write(f"batch: {report}")
            self.stdout.flush()

        if options["once"]:
            total = drainer.drain(on_batch=on_batch)
            self.stdout.write(f"done: {total}")
            return
        stop = threading.Event()

        def request_stop(signum: int, frame: FrameType | None) -> None:
            self.stderr.write(f"Stopping after the current batch ({signal.Signals(signum).name}).")
            stop.set()

        # Installed here, in the running command, never at import time.
        previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        self.stderr.write(f"Draining the outbox as {drainer.worker} (Ctrl-C to stop).")
        try:
            drainer.run(stop, on_batch=on_batch)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.stderr.write("Outbox drainer stopped.")
