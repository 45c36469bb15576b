"""``manage.py appsync_publish``: publish events from the command line or a script.

``manage.py appsync_publish CHANNEL [EVENT_JSON… | -] [--file PATH] [--api ALIAS]
[--via http|ws]``

Events come from the arguments (one JSON value each), from standard input with ``-``,
or from a file with ``--file`` (both: JSON lines, one JSON value per non-blank line).
Prints the result as JSON (``{"successful": [...], "failed": [...]}``, indices are the
positions of the events in that order). Exit status: 0 all published; 1 some or all
failed; 2 bad input (invalid channel, invalid JSON, too large, no event) or
configuration, with a one-line reason naming the event (argument index or line number).
Everything is read and validated before the first event is sent, so one run takes at
most ``MAX_EVENTS`` events (split larger feeds).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import IO, Any

from django.core.management.base import CommandError, CommandParser

from ...batching import encode_event, load_encoder
from ...conf import get_api_config
from ...exceptions import (
    AppSyncEventsError,
    ConfigurationError,
    PartialPublishError,
    ValidationError,
)
from ...paths import parse_channel
from ...protocol import dumps
from ...publishing import publish_encoded
from ...results import PublishResult
from ..base import AppSyncCommand

_VIA = {"http": "appsync", "ws": "websocket"}

#: Events one run reads at most: all are validated before the first is sent.
MAX_EVENTS = 100_000


def _parse(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"{where} is not valid JSON ({exc.msg} at column {exc.pos + 1}): {text[:60]!r}"
        ) from None


def _json_lines(stream: IO[str], name: str) -> Iterator[Any]:
    """Yield one JSON value per non-blank line of ``stream``."""
    for number, line in enumerate(stream, start=1):
        if line.strip():
            yield _parse(line, f"{name} line {number}")


class Command(AppSyncCommand):
    """Publish events from the command line (scripts, smoke tests)."""

    help = "Publish JSON events to an AppSync Events channel and print the result as JSON."
    #: Where ``-`` reads events from (replaceable in tests).
    stdin: IO[str] = sys.stdin

    def add_arguments(self, parser: CommandParser) -> None:
        """Declare the arguments of the command contract."""
        parser.add_argument("channel", help="A concrete channel, e.g. /default/test.")
        parser.add_argument(
            "events",
            nargs="*",
            metavar="EVENT_JSON",
            help="One JSON value each; '-' reads JSON lines from standard input.",
        )
        parser.add_argument(
            "--file",
            metavar="PATH",
            help="Read events from PATH, one JSON value per line (after any arguments).",
        )
        parser.add_argument("--api", default="default", help="The APPSYNC_EVENTS alias.")
        parser.add_argument(
            "--via",
            choices=sorted(_VIA),
            default=None,
            help="Publish over HTTP or a websocket (default: the alias's backend).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Validate, publish now (never deferred nor durable) and print the result."""
        api = options["api"]
        try:
            config = get_api_config(api)
            channel = parse_channel(options["channel"]).path
            values: list[Any] = []
            for value in self._values(options["events"], options["file"]):
                if len(values) == MAX_EVENTS:
                    raise ValidationError(
                        f"more than {MAX_EVENTS} events in one run; split the input"
                    )
                values.append(value)
            if not values:
                raise ValidationError(
                    "no event given: pass EVENT_JSON arguments, '-' to read JSON lines from "
                    "standard input, or --file PATH"
                )
            encoder = load_encoder(config.publish.encoder)
            encoded = tuple(
                encode_event(value, index=index, encoder=encoder)
                for index, value in enumerate(values)
            )
        except (ValidationError, ConfigurationError) as exc:
            raise CommandError(str(exc).splitlines()[0], returncode=2) from exc

        backend = _VIA[options["via"]] if options["via"] else None
        try:
            outcome = publish_encoded(
                api, channel, encoded, on_commit=False, durable=False, backend=backend
            )
            if not isinstance(outcome, PublishResult):  # on_commit/durable are off: never
                raise CommandError("the publish was deferred unexpectedly", returncode=1)
            result = outcome
        except ConfigurationError as exc:
            raise CommandError(str(exc).splitlines()[0], returncode=2) from exc
        except PartialPublishError as exc:
            partial = exc.result if isinstance(exc.result, PublishResult) else None
            self._print(partial, failed_rest=exc.not_sent, error=exc)
            raise CommandError(str(exc), returncode=1) from exc
        except AppSyncEventsError as exc:
            self._print(None, failed_rest=range(len(encoded)), error=exc)
            raise CommandError(str(exc), returncode=1) from exc
        self._print(result)
        if result.failed:
            raise CommandError(
                f"{len(result.failed)} of {len(encoded)} events were refused.", returncode=1
            )

    def _values(self, arguments: list[str], path: str | None) -> Iterator[Any]:
        """Yield the events' values in order: arguments (``-`` is standard input), file.

        Raises:
            ValidationError: a value that is not JSON, naming where it came from.
        """
        for index, text in enumerate(arguments):
            if text == "-":
                yield from _json_lines(self.stdin, "standard input")
            else:
                yield _parse(text, f"EVENT_JSON {index}")
        if path is not None:
            try:
                with open(path, encoding="utf-8") as stream:
                    yield from _json_lines(stream, path)
            except OSError as exc:
                raise ValidationError(f"cannot read --file {path}: {exc.strerror}") from None

    def _print(
        self,
        result: PublishResult | None,
        *,
        failed_rest: Any = (),
        error: AppSyncEventsError | None = None,
    ) -> None:
        successful = [e.to_json() for e in result.successful] if result else []
        failed = [e.to_json() for e in result.failed] if result else []
        code = (error.error_types[0] if error and error.errors else type(error).__name__) or ""
        for index in failed_rest:
            failed.append({"index": index, "code": code, "message": error.message if error else ""})
        failed.sort(key=lambda e: e["index"])
        self.stdout.write(dumps({"successful": successful, "failed": failed}))
