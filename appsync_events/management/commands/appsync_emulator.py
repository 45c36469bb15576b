"""``manage.py appsync_emulator``: run the local AppSync Event API until stopped.

``manage.py appsync_emulator [--api ALIAS] [--host 127.0.0.1] [--port 8765]
[--api-key KEY]… [--namespace NAME]… [--iam ACCESS_KEY_ID:SECRET]…
[--ka-interval SECONDS] [--connection-timeout-ms MS]``

Serves ``POST http://HOST:PORT/event`` and ``ws://HOST:PORT/event/realtime`` and prints
one line ``AppSync Events emulator listening on http://HOST:PORT`` when ready. Defaults
come from the alias's settings (its ``NAMESPACES`` and ``EMULATOR`` section) when the
alias exists, built-in defaults otherwise; flags override. Stops cleanly (exit 0) on
SIGINT or SIGTERM.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...emulator import AppSyncEventsEmulator
from ...exceptions import ConfigurationError


def _iam_pair(value: str) -> tuple[str, str]:
    access_key, sep, secret = value.partition(":")
    if not sep or not access_key or not secret:
        raise CommandError(
            "--iam takes ACCESS_KEY_ID:SECRET (test credentials the emulator verifies "
            "signatures with)."
        )
    return access_key, secret


class Command(BaseCommand):
    """Run the AppSync Events emulator in the foreground."""

    help = "Run a local AppSync Events API (HTTP publish + websocket) for development."
    #: The emulator class run; a project may subclass the command and swap it.
    emulator_class = AppSyncEventsEmulator

    def add_arguments(self, parser: CommandParser) -> None:
        """Declare the arguments of the command contract."""
        parser.add_argument(
            "--api",
            default="default",
            help="The APPSYNC_EVENTS alias to emulate (its namespaces and EMULATOR section).",
        )
        parser.add_argument("--host", default=None, help="Interface to bind (127.0.0.1).")
        parser.add_argument("--port", type=int, default=None, help="Port (8765; 0 = any free).")
        parser.add_argument(
            "--api-key",
            action="append",
            dest="api_keys",
            default=None,
            metavar="KEY",
            help="An accepted API key (repeatable; one is generated when none is set).",
        )
        parser.add_argument(
            "--namespace",
            action="append",
            dest="namespaces",
            default=None,
            metavar="NAME",
            help="A channel namespace allowing every auth mode (repeatable).",
        )
        parser.add_argument(
            "--iam",
            action="append",
            default=None,
            metavar="ACCESS_KEY_ID:SECRET",
            help="IAM test credentials to verify SigV4 signatures with (repeatable).",
        )
        parser.add_argument("--ka-interval", type=float, default=None, metavar="SECONDS")
        parser.add_argument("--connection-timeout-ms", type=int, default=None, metavar="MS")

    def handle(self, *args: Any, **options: Any) -> None:
        """Start the emulator, print the ready line, and serve until SIGINT/SIGTERM."""
        alias = options["api"]
        configured = getattr(settings, "APPSYNC_EVENTS", {}) or {}
        api = alias if alias in configured else None
        if api is None and alias != "default":
            raise CommandError(f"APPSYNC_EVENTS has no alias {alias!r} to emulate.")
        for name in ("ka_interval", "connection_timeout_ms", "port"):
            value = options[name]
            if value is not None and (value < 0 or (value == 0 and name != "port")):
                raise CommandError(f"--{name.replace('_', '-')} must be positive, not {value}.")
        iam = dict(_iam_pair(v) for v in options["iam"]) if options["iam"] else None
        try:
            emulator = self.emulator_class(
                options["host"],
                options["port"],
                api=api,
                api_keys=options["api_keys"],
                namespaces=options["namespaces"],
                iam_credentials=iam,
                ka_interval=options["ka_interval"],
                connection_timeout_ms=options["connection_timeout_ms"],
            )
        except ConfigurationError as exc:
            raise CommandError(str(exc)) from exc
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            try:
                emulator.start()
            except (OSError, RuntimeError) as exc:
                raise CommandError(f"The emulator could not start: {exc}") from exc
            if options["api_keys"] is None and (api is None or not _configured_keys(api)):
                # A fake local credential the user cannot know otherwise.
                self.stderr.write(f"Generated test API key: {emulator.api_key}")
            self.stderr.write(
                f"Websocket: {emulator.realtime_url}  namespaces: "
                f"{', '.join(emulator.settings.namespaces)}"
            )
            self.stdout.write(f"AppSync Events emulator listening on http://{emulator.http_host}")
            self.stdout.flush()
            stop.wait()
            self.stderr.write("Stopping the emulator.")
        finally:
            emulator.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _configured_keys(api: str) -> tuple[str, ...]:
    from ...conf import get_api_config

    return get_api_config(api).emulator.api_keys
