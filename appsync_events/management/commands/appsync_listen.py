"""``manage.py appsync_listen``: receive an alias's events and dispatch them.

A thin shell over :class:`appsync_events.listener.Listener` (the contract is in
``docs/listener.md``): state lines go to stderr; ``--print`` writes one JSON line per
event to stdout; SIGINT/SIGTERM shut down cleanly with exit status 0; a configuration
mistake exits with status 2 and a one-line reason; a failure that stops the listener (a
wrong URL, an error no retry can fix) exits with status 1 and a line saying why; a
shutdown that had to abandon running handlers after ``LISTENER['SHUTDOWN_TIMEOUT']``
exits with status 3.
"""

from __future__ import annotations

import asyncio
from typing import Any

from django.core.management.base import CommandError, CommandParser

from ...exceptions import ConfigurationError, InvalidChannelError
from ...listener import EXIT_SHUTDOWN_TIMEOUT, JSONLinesSink, Listener
from ..base import AppSyncCommand, port_number


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError(value)
    return number


class Command(AppSyncCommand):
    """Run the listener until SIGINT/SIGTERM (or ``--max-events`` / ``--max-idle``)."""

    help = (
        "Subscribe to an AppSync Events API and dispatch every event to signals, handlers "
        "and the channel layer. Runs until SIGINT/SIGTERM."
    )
    #: The listener class; substitute a subclass to customise it.
    listener_class = Listener

    def add_arguments(self, parser: CommandParser) -> None:
        """Declare the options of the command contract."""
        parser.add_argument("--api", default="default", help="settings alias (default: default)")
        parser.add_argument(
            "--channel",
            action="append",
            dest="channels",
            metavar="PATH",
            help="subscribe to PATH instead of SUBSCRIPTIONS (repeatable; may end in /*)",
        )
        parser.add_argument(
            "--print",
            action="store_true",
            dest="print_events",
            help='write one JSON line per event to stdout: {"channel": ..., "event": ...}',
        )
        parser.add_argument(
            "--max-events", type=_positive_int, metavar="N", help="stop after N events"
        )
        parser.add_argument(
            "--max-idle",
            type=_positive_float,
            metavar="SECONDS",
            help="stop after SECONDS without an event",
        )
        parser.add_argument(
            "--exclusive",
            action="store_true",
            help="hold the alias's lease so only one listener dispatches; others stand by",
        )
        parser.add_argument(
            "--drain-outbox",
            action="store_true",
            help="also drain this alias's durable outbox (as appsync_outbox does)",
        )
        parser.add_argument(
            "--health-file",
            metavar="PATH",
            help="touch PATH on inbound frames (at most once a second), for liveness probes",
        )
        parser.add_argument(
            "--http-port",
            type=port_number,
            metavar="PORT",
            help="serve /healthz, /readyz and /metrics on PORT (default LISTENER['HTTP_PORT'])",
        )
        parser.add_argument(
            "--http-host",
            metavar="HOST",
            help="the interface of that server (default LISTENER['HTTP_HOST'], 0.0.0.0)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Build the listener, run it, and turn problems into exit statuses."""
        if options["print_events"]:
            sinks_extra = [JSONLinesSink(self.stdout)]
        else:
            sinks_extra = []
        stderr = self.stderr

        def status(line: str) -> None:
            stderr.write(line)
            stderr.flush()

        try:
            listener = self.listener_class(
                options["api"],
                channels=options["channels"],
                exclusive=options["exclusive"],
                max_events=options["max_events"],
                max_idle=options["max_idle"],
                health_file=options["health_file"],
                http_port=options["http_port"],
                http_host=options["http_host"],
                drain_outbox=options["drain_outbox"],
                status=status,
            )
        except (ConfigurationError, InvalidChannelError) as exc:
            raise CommandError(str(exc), returncode=2) from exc
        listener.sinks.extend(sinks_extra)
        if not listener.channels:
            raise CommandError(
                f"nothing to listen to: APPSYNC_EVENTS[{listener.alias!r}]['SUBSCRIPTIONS'] "
                "is empty and no --channel was given.",
                returncode=2,
            )
        try:
            code = asyncio.run(listener.run())
        except ConfigurationError as exc:
            raise CommandError(str(exc), returncode=2) from exc
        if code == EXIT_SHUTDOWN_TIMEOUT:
            raise CommandError(
                "the shutdown took longer than LISTENER['SHUTDOWN_TIMEOUT'] "
                f"({listener.config.listener.shutdown_timeout:g} s); handlers still running "
                "were abandoned (see the ERROR line naming them)",
                returncode=code,
            )
        if code:
            why = listener.fatal_error
            raise CommandError(
                f"the listener stopped: {why}" if why else "the listener stopped after an error",
                returncode=code,
            )
