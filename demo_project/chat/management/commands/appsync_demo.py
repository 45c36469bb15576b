"""``manage.py appsync_demo``: the whole demo chat in one process on 127.0.0.1.

What runs, all in this process:

* the AppSync Events emulator (a background thread), unless ``APPSYNC_EVENTS_URL``
  points the project at a real Event API;
* uvicorn serving ``demo_project.asgi:application``: the Django pages, the browser
  websocket (``ChatConsumer``), and the listener, which runs inside the ASGI process
  (``FORWARDING['IN_PROCESS']``) and forwards events through the channel layer
  (in-memory by default, Redis with ``REDIS_URL``).

With ``DEMO_DIRECT=1`` the pages connect to the emulator themselves with tokens from
``/appsync/token/``, and the emulator runs ``appsync_events.lambda_authorizer`` as its
Lambda authorizer (see docs/direct.md).

It prints the URL to open and one line per listener state change, and stops cleanly on
Ctrl+C or SIGTERM: the web server closes its sockets, the listener unsubscribes and
closes, the emulator stops, and the command returns (exit status 0). A second Ctrl+C
forces the web server to stop without waiting for open connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import errno
import os
import signal
import socket
from collections.abc import Generator
from typing import Any

import uvicorn
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.signals import setting_changed

from appsync_events import conf, signals

__all__ = ["Command"]

HOST = "127.0.0.1"
DEFAULT_PORT = 8000
# Seconds uvicorn waits for open connections (browser websockets) to close on shutdown.
GRACEFUL_SHUTDOWN = 5


class _DemoServer(uvicorn.Server):
    """uvicorn's server: says when it is ready, and returns normally after a signal.

    uvicorn re-raises the SIGINT/SIGTERM it caught once it has shut down, which would
    kill the process before the emulator is stopped. Here the signals only ask for a
    graceful shutdown (a second SIGINT forces it), and the command returns 0.
    """

    def __init__(self, config: uvicorn.Config, on_ready: Any) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start serving, then announce the URL."""
        await super().startup(sockets)
        if self.started:
            self._on_ready()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """Turn SIGINT/SIGTERM into a graceful shutdown while serving (no re-raise)."""
        loop = asyncio.get_running_loop()
        handled = (signal.SIGINT, signal.SIGTERM)
        for sig in handled:
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)


class Command(BaseCommand):
    """Run the demo chat: emulator, web server and listener in one process."""

    help = (
        "Run the demo chat on 127.0.0.1 in one process: the AppSync Events emulator (unless "
        "APPSYNC_EVENTS_URL is set), the ASGI web server and the listener. Ctrl+C stops it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """Add ``--port``, ``--emulator-port`` and ``--no-migrate``."""
        parser.add_argument(
            "--port",
            type=int,
            default=None,
            help=f"web port (default: $PORT, else {DEFAULT_PORT}; 0 picks a free one)",
        )
        parser.add_argument(
            "--emulator-port",
            type=int,
            default=None,
            help="emulator port (default: $APPSYNC_EVENTS_EMULATOR_PORT, else 8765; "
            "0 picks a free one)",
        )
        parser.add_argument(
            "--no-migrate",
            action="store_true",
            help="do not apply the demo's migrations first",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Start everything, serve until SIGINT/SIGTERM, then stop everything."""
        port = self._port(options["port"], "PORT", DEFAULT_PORT, "--port")
        if not options["no_migrate"]:
            call_command("migrate", interactive=False, verbosity=0)
        web_socket = self._bind(port, "--port (or PORT=...)")
        emulator = None
        try:
            if getattr(settings, "USE_EMULATOR", False):
                emulator = self._start_emulator(options["emulator_port"])
            else:
                config = conf.get_api_config()
                self.stdout.write(f"Using the Event API at {config.http_url}")
            self._describe_layer()
            self._describe_mode()
            self._connect_state_lines()
            server = _DemoServer(
                uvicorn.Config(
                    "demo_project.asgi:application",
                    lifespan="on",
                    log_config=None,
                    log_level="warning",
                    access_log=False,
                    timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
                ),
                on_ready=lambda: self._announce(web_socket),
            )
            asyncio.run(server.serve(sockets=[web_socket]))
        finally:
            self._disconnect_state_lines()
            if emulator is not None:
                emulator.stop()
            web_socket.close()
        self.stdout.write("Demo stopped.")

    # -- setup ------------------------------------------------------------------------------

    def _port(self, value: int | None, variable: str, default: int, flag: str) -> int:
        if value is None:
            raw = os.environ.get(variable, "")
            try:
                value = int(raw) if raw else default
            except ValueError:
                raise CommandError(f"{variable}={raw!r} is not a port number.") from None
        if not 0 <= value <= 65535:
            raise CommandError(f"{flag} must be a port from 0 to 65535, not {value}.")
        return value

    def _bind(self, port: int, how_to_change: str) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise CommandError(
                    f"Port {port} on {HOST} is in use (is the demo already running?). "
                    f"Stop that process or choose another port with {how_to_change}."
                ) from None
            raise CommandError(f"Cannot listen on {HOST}:{port}: {exc}") from None
        sock.set_inheritable(True)
        return sock

    def _start_emulator(self, port: int | None) -> Any:
        from appsync_events.emulator import AppSyncEventsEmulator
        from appsync_events.emulator.cli import ready_line

        config = conf.get_api_config()
        wanted = config.emulator.port if port is None else port
        emulator = AppSyncEventsEmulator(HOST, wanted, api=conf.DEFAULT_API)
        try:
            emulator.start()
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise CommandError(
                    f"Port {wanted} on {HOST} is in use, so the emulator cannot start. Stop "
                    "that process or choose another port with --emulator-port (or "
                    "APPSYNC_EVENTS_EMULATOR_PORT=...)."
                ) from None
            raise
        if emulator.http_url != config.http_url:
            # A free port was picked (--emulator-port 0): point the settings at it before
            # anything connects. setting_changed drops every cached configuration.
            value = copy.deepcopy(settings.APPSYNC_EVENTS)
            value[conf.DEFAULT_API]["HTTP_URL"] = emulator.http_url
            value[conf.DEFAULT_API].pop("REALTIME_URL", None)
            settings.APPSYNC_EVENTS = value
            setting_changed.send(
                sender=type(self), setting="APPSYNC_EVENTS", value=value, enter=True
            )
        self.stdout.write(ready_line(emulator))
        return emulator

    def _describe_layer(self) -> None:
        backend = settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND", "?")
        self.stdout.write(f"Channel layer: {backend.rsplit('.', 1)[-1]}")

    def _describe_mode(self) -> None:
        if getattr(settings, "DEMO_DIRECT", False):
            self.stdout.write(
                "Mode: direct (pages connect to the Event API with tokens from /appsync/token/, "
                "checked by appsync_events.lambda_authorizer)"
            )
        else:
            self.stdout.write("Mode: relay (pages connect to Django's websocket)")

    def _announce(self, web_socket: socket.socket) -> None:
        host, port = web_socket.getsockname()[:2]
        self.stdout.write(
            self.style.SUCCESS(f"Demo chat running at http://{host}:{port}/")
            + " - open it in two browser tabs. Press Ctrl+C to stop."
        )
        self.stdout.flush()

    # -- state lines ------------------------------------------------------------------------

    def _connect_state_lines(self) -> None:
        signals.connection_state_changed.connect(self._on_state, dispatch_uid=self._uid("state"))
        signals.subscription_established.connect(
            self._on_subscribed, dispatch_uid=self._uid("subscribed")
        )
        signals.subscription_failed.connect(
            self._on_subscription_failed, dispatch_uid=self._uid("failed")
        )

    def _disconnect_state_lines(self) -> None:
        signals.connection_state_changed.disconnect(dispatch_uid=self._uid("state"))
        signals.subscription_established.disconnect(dispatch_uid=self._uid("subscribed"))
        signals.subscription_failed.disconnect(dispatch_uid=self._uid("failed"))

    def _uid(self, name: str) -> str:
        return f"appsync-demo-{id(self)}-{name}"

    async def _on_state(
        self,
        sender: Any,
        *,
        state: str,
        reason: str | None = None,
        retry_in: float | None = None,
        **kwargs: Any,
    ) -> None:
        line = f"[listener] {state}"
        if reason:
            line += f": {reason}"
        if retry_in:
            line += f" (retry in {retry_in:.1f} s)"
        self.stdout.write(line)
        self.stdout.flush()

    async def _on_subscribed(self, sender: Any, *, channel: str, **kwargs: Any) -> None:
        self.stdout.write(f"[listener] subscribed to {channel}")
        self.stdout.flush()

    async def _on_subscription_failed(
        self, sender: Any, *, channel: str, error: Any = None, **kwargs: Any
    ) -> None:
        self.stdout.write(f"[listener] subscription to {channel} failed: {error}")
        self.stdout.flush()
