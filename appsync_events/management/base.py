"""What every ``appsync_*`` management command shares: how a setting mistake is reported.

Django runs the system checks before a command and reports any error as a multi-line
``SystemCheckError`` with exit status 1. For our commands a mistake in ``APPSYNC_EVENTS``
is a usage error: :class:`AppSyncCommand` runs the same checks itself first and reports
the first of ours as one line with exit status 2 (``CommandError: APPSYNC_EVENTS[...]...``),
then lets Django report any other project error as usual. Runtime failures exit 1.
"""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.core.management.base import BaseCommand, CommandError, CommandParser

__all__ = ["AppSyncCommand", "port_number"]

#: Exit status for a configuration or usage error (argparse uses it for bad flags too).
USAGE_ERROR = 2


def port_number(value: str) -> int:
    """Parse a TCP port (0 to 65535) for an ``--http-port`` option.

    Raises:
        ValueError: ``value`` is not such a number (argparse names the option).
    """
    number = int(value)
    if not 0 <= number <= 65535:
        raise ValueError(value)
    return number


class AppSyncCommand(BaseCommand):
    """A management command whose settings mistakes exit 2 with one line."""

    # The checks run in execute() below, so our own mistakes get one line and exit 2.
    requires_system_checks: Any = []

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        """Django's parser, with ``--skip-checks`` (Django adds it only when it runs the
        checks itself)."""
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.add_argument("--skip-checks", action="store_true", help="Skip system checks.")
        return parser

    def execute(self, *args: Any, **options: Any) -> Any:
        """Run the system checks (our errors: one line, exit 2), then the command."""
        if not options.get("skip_checks"):
            self.check_settings()
        return super().execute(*args, **options)

    def check_settings(self) -> None:
        """Raise ``CommandError(returncode=2)`` for the first ``appsync_events`` error.

        Other serious check messages are reported by Django's own ``check()`` (exit 1,
        as for any command).
        """
        errors = [
            message
            for message in checks.run_checks()
            if message.is_serious() and not message.is_silenced()
        ]
        ours = [e for e in errors if (e.id or "").startswith("appsync_events.")]
        if ours:
            first = ours[0]
            text = str(first.msg).splitlines()[0]
            more = f" ({len(ours) - 1} more: run manage.py check)" if len(ours) > 1 else ""
            raise CommandError(f"{text} [{first.id}]{more}", returncode=USAGE_ERROR)
        if errors:
            self.check()  # raises Django's SystemCheckError with the full report
