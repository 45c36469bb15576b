"""``manage.py appsync_emulator``: run the local AppSync Event API until stopped.

``manage.py appsync_emulator [--api ALIAS] [--host 127.0.0.1] [--port 8765]
[--api-key KEY]… [--namespace NAME]… [--iam ACCESS_KEY_ID:SECRET]…
[--ka-interval SECONDS] [--connection-timeout-ms MS] [--lambda-authorizer DOTTED.PATH]``

Serves ``POST http://HOST:PORT/event`` and ``ws://HOST:PORT/event/realtime`` and prints
one line ``AppSync Events emulator listening on http://HOST:PORT/event`` when ready.
Defaults come from the alias's settings (its ``NAMESPACES`` and ``EMULATOR`` section)
when the alias exists, built-in defaults otherwise; flags override. The flags other than
``--api``, the ready line and the run loop are those of ``python -m
appsync_events.emulator`` (:mod:`appsync_events.emulator.cli`). Exit statuses: 0 after
SIGINT or SIGTERM, 2 for a bad flag or a mistake in ``APPSYNC_EVENTS`` (one line), 1 when
the emulator cannot start.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import CommandError, CommandParser

from ...conf import get_api_config
from ...config import APIConfig
from ...emulator import AppSyncEventsEmulator, cli
from ...exceptions import ConfigurationError
from ..base import AppSyncCommand


class Command(AppSyncCommand):
    """Run the AppSync Events emulator in the foreground."""

    help = "Run a local AppSync Events API (HTTP publish + websocket) for development."
    #: The emulator class run; a project may subclass the command and swap it.
    emulator_class = AppSyncEventsEmulator

    def add_arguments(self, parser: CommandParser) -> None:
        """Declare ``--api`` and the emulator's flags (:func:`cli.add_arguments`)."""
        parser.add_argument(
            "--api",
            default="default",
            help="The APPSYNC_EVENTS alias to emulate (its namespaces and EMULATOR section).",
        )
        cli.add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        """Start the emulator, print the ready line, and serve until SIGINT/SIGTERM."""
        try:
            cli.run(
                options,
                out=self._out,
                err=self.stderr.write,
                api=self._api(options["api"]),
                emulator_class=self.emulator_class,
            )
        except cli.EmulatorExit as exc:
            raise CommandError(str(exc), returncode=exc.status) from exc

    def _api(self, alias: str) -> APIConfig | None:
        """The alias's configuration; ``None`` for an undeclared ``default``."""
        configured = getattr(settings, "APPSYNC_EVENTS", {}) or {}
        if alias not in configured:
            if alias == "default":
                return None
            fix = (
                f"pass --api one of {', '.join(map(repr, configured))}"
                if configured
                else "declare it in settings, or leave --api out for the built-in defaults"
            )
            raise cli.EmulatorExit(f"APPSYNC_EVENTS has no alias {alias!r} to emulate: {fix}.", 2)
        try:
            return get_api_config(alias)
        except ConfigurationError as exc:
            raise cli.EmulatorExit(str(exc), 2) from exc

    def _out(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()
