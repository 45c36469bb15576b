"""``manage.py appsync_namespaces [--api ALIAS] [--check | --plan | --apply | --create-api NAME]``.

Keeps the Event API on AWS and an alias of ``APPSYNC_EVENTS`` in step: its channel
namespaces (their auth modes, and their handlers where ``HANDLERS`` is declared) and the
API's auth configuration. See :mod:`appsync_events.control` for what is compared.

Modes:
    ``--plan`` (the default): print what ``--apply`` would do.
    ``--check``: exit 0 when AWS matches the settings, 1 with the differences printed
    when it does not (for CI).
    ``--apply``: create missing namespaces, update changed ones (and the API's auth
    configuration); delete undeclared namespaces only with ``--prune``, after a
    confirmation unless ``--no-input``.
    ``--create-api NAME``: create an Event API with the alias's auth modes (and an API
    key when it uses ``API_KEY``), then print the settings to paste; the key is shown
    once and never logged.

Exit status: 0 done (or in step); 1 differences found by ``--check``, or a failure that
may pass (throttling after retries, the network, a refused change, a declined prune);
2 a configuration, usage or permission error (one line).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.core.management.base import CommandError, CommandParser

from ...conf import get_api_config
from ...control import MAX_API_KEY_DAYS, Change, ControlPlane, CreatedApi, Plan
from ...exceptions import AuthError, ConfigurationError, ControlPlaneError, ValidationError
from ..base import USAGE_ERROR, AppSyncCommand

#: Exit status of ``--check`` when AWS differs, and of failures that may pass.
DIFFERENCES = 1


class Command(AppSyncCommand):
    """Compare, plan and apply the alias's namespaces on its Event API."""

    help = (
        "Keep the AppSync Event API and its channel namespaces in step with APPSYNC_EVENTS: "
        "--check (CI), --plan, --apply [--prune], or --create-api NAME."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """Declare the modes and their options."""
        parser.add_argument("--api", default="default", help="The APPSYNC_EVENTS alias.")
        modes = parser.add_mutually_exclusive_group()
        modes.add_argument(
            "--check",
            action="store_true",
            help="Exit 1 and print the differences when AWS differs from the settings.",
        )
        modes.add_argument(
            "--plan", action="store_true", help="Print what --apply would do (the default)."
        )
        modes.add_argument("--apply", action="store_true", help="Make AWS match the settings.")
        modes.add_argument(
            "--create-api",
            metavar="NAME",
            help="Create an Event API with the alias's auth modes and print the settings.",
        )
        parser.add_argument(
            "--prune",
            action="store_true",
            help="Also delete (with --apply) or report as differences (with --check/--plan) "
            "the namespaces the settings do not declare.",
        )
        parser.add_argument(
            "--no-input",
            "--noinput",
            action="store_false",
            dest="interactive",
            help="Do not ask before --prune deletes namespaces.",
        )
        parser.add_argument(
            "--api-key-days",
            type=int,
            default=MAX_API_KEY_DAYS,
            help=f"With --create-api: the API key's lifetime in days (1-{MAX_API_KEY_DAYS}, "
            f"default {MAX_API_KEY_DAYS}).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Run the chosen mode; map every failure to its exit status."""
        try:
            control = ControlPlane(get_api_config(options["api"]))
            if options["create_api"] is not None:
                self._create_api(control, options["create_api"], options["api_key_days"])
                return
            plan = control.plan(prune=options["prune"])
            if options["check"]:
                self._check(plan)
            elif options["apply"]:
                self._apply(control, plan, interactive=options["interactive"])
            else:
                self._print(plan)
        except (ConfigurationError, ValidationError, AuthError) as exc:
            raise CommandError(_one_line(exc), returncode=USAGE_ERROR) from exc
        except ControlPlaneError as exc:
            status = USAGE_ERROR if exc.configuration else DIFFERENCES
            raise CommandError(_one_line(exc), returncode=status) from exc

    def _print(self, plan: Plan) -> None:
        for line in plan.lines():
            self.stdout.write(line)

    def _check(self, plan: Plan) -> None:
        self._print(plan)
        if not plan.in_sync:
            prune = " --prune" if any(c.kind == "delete" for c in plan.changes) else ""
            raise CommandError(
                f"AWS differs from APPSYNC_EVENTS[{plan.alias!r}]: {len(plan.changes)} "
                f"change(s) to apply (manage.py appsync_namespaces --apply{prune}).",
                returncode=DIFFERENCES,
            )

    def _apply(self, control: ControlPlane, plan: Plan, *, interactive: bool) -> None:
        self._print(plan)
        if plan.in_sync:
            return
        doomed = [change.namespace for change in plan.changes if change.kind == "delete"]
        if doomed and interactive:
            answer = self._ask(
                f"Delete {len(doomed)} namespace(s) from Event API {plan.api_id}, with their "
                f"handlers: {', '.join(str(name) for name in doomed)}? Type 'yes' to continue: "
            )
            if answer != "yes":
                raise CommandError(
                    "Nothing changed: the deletion was not confirmed (run without --prune to "
                    "leave those namespaces alone, or add --no-input).",
                    returncode=DIFFERENCES,
                )

        def done(change: Change) -> None:
            self.stdout.write(self.style.SUCCESS(f"done: {change.title.lstrip('~+- ')}"))

        control.apply(plan, on_change=done)
        self.stdout.write(f"{len(plan.changes)} change(s) applied.")

    def _ask(self, question: str) -> str:
        """Ask on the terminal; no answer (end of input) is no."""
        try:
            return input(question).strip().lower()
        except EOFError:
            return ""

    def _create_api(self, control: ControlPlane, name: str, api_key_days: int) -> None:
        created = control.create_api(name, api_key_days=api_key_days)
        self.stdout.write(self._snippet(control.config.alias, created))

    @staticmethod
    def _snippet(alias: str, created: CreatedApi) -> str:
        lines = [
            f"Created Event API {created.name!r} ({created.api_id}, {created.region}).",
            "",
            f"Paste into APPSYNC_EVENTS[{alias!r}] (in place of HTTP_URL and API_ID):",
            "",
            f'    "HTTP_URL": "{created.http_url}",',
            f'    "API_ID": "{created.api_id}",',
        ]
        if created.api_key is not None:
            expires = (
                datetime.fromtimestamp(created.api_key_expires, UTC).strftime("%Y-%m-%d %H:%M UTC")
                if created.api_key_expires
                else "unknown"
            )
            lines += [
                "",
                f"API key (shown once; it expires {expires}). Keep it out of the repository, e.g. "
                'in the environment, and read it with "AUTH": {"API_KEY": '
                'os.environ["APPSYNC_EVENTS_API_KEY"], ...}:',
                "",
                f"    {created.api_key}",
            ]
        lines += [
            "",
            "Then create the namespaces: manage.py appsync_namespaces "
            f"{'' if alias == 'default' else f'--api {alias} '}--apply",
        ]
        return "\n".join(lines)


def _one_line(exc: Exception) -> str:
    """The first line of an error's message."""
    return (str(exc).splitlines() or [type(exc).__name__])[0]
