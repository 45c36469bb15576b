"""``manage.py appsync_outbox [--api ALIAS] [--once] [--batch-size N] [--http-port PORT]``.

Drains the outbox until SIGINT or SIGTERM (exit 0 after the current batch), or with
``--once`` until no row is due. Prints one line per batch to stdout. With ``--http-port``
(or ``OUTBOX['HTTP_PORT']``) it serves ``/healthz``, ``/readyz`` and ``/metrics``
(:mod:`appsync_events.health`) from a background thread while it drains; a port that
cannot be bound exits 2.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db import connections

from ... import metrics
from ...conf import DEFAULT_API, get_api_config
from ...exceptions import ConfigurationError
from ...health import ThreadedHealthServer
from ...outbox.drainer import DrainReport, OutboxDrainer
from ..base import AppSyncCommand, port_number


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
        parser.add_argument(
            "--http-port",
            type=port_number,
            metavar="PORT",
            help="serve /healthz, /readyz and /metrics on PORT (default OUTBOX['HTTP_PORT'])",
        )
        parser.add_argument(
            "--http-host",
            metavar="HOST",
            help="the interface of that server (default OUTBOX['HTTP_HOST'], 0.0.0.0)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Build the drainer and run it."""
        if options["batch_size"] is not None and options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.", returncode=2)
        if options["lease"] is not None and options["lease"] <= 0:
            raise CommandError("--lease must be a positive number of seconds.", returncode=2)
        if options["once"] and options["http_port"] is not None:
            raise CommandError(
                "--http-port serves probes while the drainer runs, and --once exits when no "
                "event is due: drop one of them.",
                returncode=2,
            )
        if options["database"] not in connections.settings:
            raise CommandError(
                f"--database {options['database']!r} is not in DATABASES; use one of "
                f"{', '.join(connections.settings)}.",
                returncode=2,
            )
        alias = options["api"] or DEFAULT_API
        try:
            config = get_api_config(alias).outbox
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
            # OUTBOX['HTTP_PORT'] is for the long-running drainer: a pass serves nothing.
            total = drainer.drain(on_batch=on_batch)
            self.stdout.write(f"done: {total}")
            return
        port = config.http_port if options["http_port"] is None else options["http_port"]
        server = None
        if port is not None:
            server = self._serve(drainer, alias, options["http_host"] or config.http_host, port)
        try:
            self._drain(drainer, on_batch)
        finally:
            if server is not None:
                server.stop()
        self.stderr.write("Outbox drainer stopped.")

    def _serve(
        self, drainer: OutboxDrainer, alias: str, host: str, port: int
    ) -> ThreadedHealthServer:
        """Start the health and metrics server in its thread; exit 2 if it cannot bind."""
        metrics_settings = get_api_config(alias).metrics
        server = ThreadedHealthServer(drainer, host, port, metrics_settings.allowed_ips)
        try:
            server.start()
        except OSError as exc:
            raise CommandError(
                f"cannot serve /healthz, /readyz and /metrics on {server.url}: {exc}; pass "
                f"another --http-port (or set APPSYNC_EVENTS[{alias!r}]['OUTBOX']['HTTP_PORT']), "
                "or free that one.",
                returncode=2,
            ) from None
        metrics.register_outbox_collector(drainer.using)  # the backlog, on /metrics
        self.stderr.write(f"serving /healthz, /readyz and /metrics on {server.url}")
        self.stderr.flush()
        return server

    def _drain(self, drainer: OutboxDrainer, on_batch: Callable[[DrainReport], None]) -> None:
        """Run the drainer until SIGINT or SIGTERM."""
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
