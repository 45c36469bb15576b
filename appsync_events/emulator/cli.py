"""Run the emulator from the command line, with or without a Django project.

``python -m appsync_events.emulator [--host 127.0.0.1] [--port 8765] [--api-key KEY]…
[--namespace NAME]… [--iam ACCESS_KEY_ID:SECRET]… [--ka-interval SECONDS]
[--connection-timeout-ms MS] [--quiet] [--lambda-authorizer DOTTED.PATH]``

``manage.py appsync_emulator`` takes the same flags (declared here once, by
:func:`add_arguments`) plus ``--api``, and runs through :func:`run` too. When ready both
print one line on stdout, ``AppSync Events emulator listening on http://HOST:PORT/event``
(the URL to put in ``HTTP_URL``), and serve until SIGINT or SIGTERM, writing one line per
connection, subscribe, unsubscribe, publish and refusal on stderr (the request log,
``appsync_events.emulator.requests``), unless ``--quiet``.

Exit statuses: 0 after a clean stop; 2 for a bad flag or configuration; 1 when the
emulator cannot start (a port in use, an address that cannot be bound) or stops on its
own. Each failure is one line on stderr saying what to change.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import FrameType
from typing import Any, Final, NoReturn

from ..config import APIConfig
from ..exceptions import ConfigurationError
from .operations import requests_log
from .server import AppSyncEventsEmulator

__all__ = [
    "PROG",
    "EmulatorExit",
    "add_arguments",
    "build_emulator",
    "main",
    "ready_line",
    "request_log",
    "run",
    "serve",
]

#: How ``python -m appsync_events.emulator`` names itself in its messages.
PROG: Final = "python -m appsync_events.emulator"

_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)
# How often serve() checks that the server thread is still alive while it waits.
_LIVENESS_INTERVAL: Final = 1.0

Line = Callable[[str], None]


class EmulatorExit(Exception):
    """Raised when the emulator cannot run; carries the one line to print and the status.

    Attributes:
        status: ``2`` for a bad flag or configuration, ``1`` for a runtime failure.
    """

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """An argument parser that reports a bad flag in one line (and exits 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the emulator's flags on ``parser`` (its own, or a Django command's)."""
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
    parser.add_argument(
        "--ka-interval",
        type=float,
        default=None,
        metavar="SECONDS",
        help="Seconds between keep-alive frames (60).",
    )
    parser.add_argument(
        "--connection-timeout-ms",
        type=int,
        default=None,
        metavar="MS",
        help="connectionTimeoutMs sent in connection_ack (300000).",
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="Do not print a line per connection, subscribe, publish and refusal.",
    )
    parser.add_argument(
        "--lambda-authorizer",
        default=None,
        metavar="DOTTED.PATH",
        help="A Lambda handler(event, context) to run as the AWS_LAMBDA authorizer, e.g. "
        "appsync_events.lambda_authorizer.handler (reads the same environment variables "
        "as in AWS).",
    )


def _iam_pair(value: str) -> tuple[str, str]:
    access_key, sep, secret = value.partition(":")
    if not sep or not access_key or not secret:
        raise EmulatorExit(
            "--iam takes ACCESS_KEY_ID:SECRET (test credentials the emulator verifies "
            "signatures with).",
            2,
        )
    return access_key, secret


def build_emulator(
    options: Mapping[str, Any],
    *,
    api: APIConfig | None = None,
    emulator_class: type[AppSyncEventsEmulator] = AppSyncEventsEmulator,
) -> AppSyncEventsEmulator:
    """Return the emulator the parsed ``options`` describe (not started).

    Args:
        options: the values of the flags of :func:`add_arguments`, by ``dest``.
        api: the configuration to emulate (flags override it); ``None`` for the
            built-in defaults.
        emulator_class: the class to build.

    Raises:
        EmulatorExit: status 2, for a bad value or configuration.
    """
    port = options.get("port")
    if port is not None and not 0 <= port <= 65535:
        raise EmulatorExit(f"--port must be between 0 and 65535 (0 = any free), not {port}.", 2)
    for name in ("ka_interval", "connection_timeout_ms"):
        value = options.get(name)
        if value is not None and value <= 0:
            raise EmulatorExit(f"--{name.replace('_', '-')} must be positive, not {value}.", 2)
    iam_values = options.get("iam")
    iam = dict(_iam_pair(v) for v in iam_values) if iam_values else None
    try:
        return emulator_class(
            options.get("host"),
            port,
            api=api,
            api_keys=options.get("api_keys"),
            namespaces=options.get("namespaces"),
            iam_credentials=iam,
            ka_interval=options.get("ka_interval"),
            connection_timeout_ms=options.get("connection_timeout_ms"),
            lambda_authorizer=options.get("lambda_authorizer"),
        )
    except ConfigurationError as exc:
        raise EmulatorExit(str(exc), 2) from exc


def ready_line(emulator: AppSyncEventsEmulator) -> str:
    """Return the line printed once ``emulator`` serves: it ends with the ``HTTP_URL``."""
    return f"AppSync Events emulator listening on {emulator.http_url}"


def _start_failure(emulator: AppSyncEventsEmulator, exc: Exception) -> EmulatorExit:
    """The one line (status 1) for an emulator that could not start."""
    host, port = emulator.host, emulator.requested_port
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return EmulatorExit(
            f"Port {port} on {host} is already in use: stop what listens there, or pass "
            "--port another value (--port 0 for any free port).",
            1,
        )
    if isinstance(exc, OSError) and exc.errno == errno.EACCES:
        return EmulatorExit(
            f"Port {port} on {host} needs privileges: pass --port 1024 or above (--port 0 "
            "for any free port).",
            1,
        )
    if isinstance(exc, OSError):
        return EmulatorExit(
            f"The emulator cannot listen on {host} port {port}: {exc.strerror or exc}; pass "
            "--host an address of this machine (127.0.0.1 by default).",
            1,
        )
    return EmulatorExit(f"The emulator could not start: {exc}", 1)


class _LineHandler(logging.Handler):
    """Hands each request-log record to a line writer, with the time in front."""

    def __init__(self, write: Line) -> None:
        super().__init__(logging.INFO)
        self.write = write
        self.setFormatter(logging.Formatter("[%(asctime)s] %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write(self.format(record))
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def request_log(err: Line, *, quiet: bool) -> Iterator[None]:
    """Print the emulator's request log with ``err`` while the block runs (unless ``quiet``).

    The logger stops propagating meanwhile, so a project's own logging configuration does
    not print each line twice; everything is restored afterwards.
    """
    if quiet:
        yield
        return
    handler = _LineHandler(err)
    saved = (requests_log.level, requests_log.propagate)
    requests_log.addHandler(handler)
    requests_log.setLevel(logging.INFO)
    requests_log.propagate = False
    try:
        yield
    finally:
        requests_log.removeHandler(handler)
        requests_log.level, requests_log.propagate = saved


def serve(
    emulator: AppSyncEventsEmulator,
    *,
    out: Line,
    err: Line,
    generated_key: bool = False,
    quiet: bool = False,
) -> int:
    """Start ``emulator``, print the ready line and serve until SIGINT or SIGTERM.

    Call it from the main thread (it installs the signal handlers, and restores the
    previous ones before returning).

    Args:
        emulator: the emulator to run (not started).
        out: writes one line to stdout (the ready line), flushed.
        err: writes one line to stderr (the generated key, the websocket URL, the stop).
        generated_key: print the API key the emulator generated (nobody could know it).
        quiet: do not print the request log (see :func:`request_log`).

    Returns:
        ``0`` after a clean stop.

    Raises:
        EmulatorExit: status 1 when the emulator cannot start or stops on its own.
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in _SIGNALS}
    try:
        with request_log(err, quiet=quiet):
            try:
                emulator.start()
            except (OSError, RuntimeError) as exc:
                raise _start_failure(emulator, exc) from exc
            try:
                if generated_key:
                    # A fake local credential the user cannot know otherwise.
                    err(f"Generated test API key: {emulator.api_key}")
                err(
                    f"Websocket: {emulator.realtime_url}  namespaces: "
                    f"{', '.join(emulator.settings.namespaces)}"
                )
                out(ready_line(emulator))
                while not stop.wait(_LIVENESS_INTERVAL):
                    if not emulator.running:
                        raise EmulatorExit(
                            "The emulator stopped on its own (see the log above for why).", 1
                        )
                err("Stopping the emulator.")
            finally:
                emulator.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def run(
    options: Mapping[str, Any],
    *,
    out: Line,
    err: Line,
    api: APIConfig | None = None,
    emulator_class: type[AppSyncEventsEmulator] = AppSyncEventsEmulator,
) -> int:
    """Build the emulator from the parsed ``options`` and :func:`serve` it.

    Args:
        options: the values of the flags of :func:`add_arguments`, by ``dest``.
        out: writes one line to stdout, flushed.
        err: writes one line to stderr.
        api: the configuration to emulate (flags override it).
        emulator_class: the class to run.

    Returns:
        ``0`` after a clean stop on SIGINT or SIGTERM.

    Raises:
        EmulatorExit: status 2 for a bad value or configuration, 1 when the emulator
            cannot start or stops on its own.
    """
    emulator = build_emulator(options, api=api, emulator_class=emulator_class)
    generated = not options.get("api_keys") and not (api is not None and api.emulator.api_keys)
    return serve(
        emulator, out=out, err=err, generated_key=generated, quiet=bool(options.get("quiet"))
    )


def _print_out(line: str) -> None:
    print(line, flush=True)


def _print_err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m appsync_events.emulator`` with ``argv``; return the exit status."""
    parser = _Parser(
        prog=PROG,
        description="Run a local AppSync Events API (HTTP publish + websocket) until "
        "SIGINT or SIGTERM. No Django project needed.",
    )
    add_arguments(parser)
    options = vars(parser.parse_args(argv))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(options, out=_print_out, err=_print_err)
    except EmulatorExit as exc:
        _print_err(f"{PROG}: error: {exc}")
        return exc.status
