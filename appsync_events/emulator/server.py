"""``AppSyncEventsEmulator``: the local AppSync Event API, served by uvicorn on one port.

.. code-block:: python

    with AppSyncEventsEmulator() as emulator:          # 127.0.0.1, a free port
        emulator.http_url      # http://127.0.0.1:PORT/event
        emulator.realtime_url  # ws://127.0.0.1:PORT/event/realtime
        emulator.api_key       # a key it accepts

The server runs in a background thread with its own event loop, so the emulator works
the same from sync tests, async tests (``async with``) and a management command.
:meth:`AppSyncEventsEmulator.start` returns once the socket accepts connections and
re-raises whatever made startup fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import socket
import string
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, TypeVar

import uvicorn

from ..config import APIConfig, EmulatorConfig, is_loopback_host
from ..exceptions import ConfigurationError
from ..protocol import dumps
from .asgi import EmulatorApp, deadline_protocol
from .authz import Authorizer, LambdaAuthorizer, load_lambda_handler
from .errors import EmulatorError, merge_errors
from .faults import Faults
from .hooks import NamespaceHandlers
from .operations import EmulatorState
from .registry import (
    ALL_MODES,
    ConnectionInfo,
    NamespaceSpec,
    PublishedRecord,
    ServiceSettings,
    SubscriptionInfo,
)

__all__ = ["SERVICE_OPTIONS", "STOP_GRACE", "AppSyncEventsEmulator"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Behaviour switches accepted as keyword arguments or in ``EMULATOR['OPTIONS']``.
SERVICE_OPTIONS: Final = frozenset(
    {
        "max_subscriptions",
        "publishes_per_second",
        "max_events",
        "max_event_bytes",
        "max_request_bytes",
        "wildcard_matches_parent",
        "connect_auth_at",
        "require_init",
        "ka_after_ack",
        "ws_signing_escape",
        "require_subprotocol",
        "accept_query_auth",
        "inherit_connection_auth",
        "history_size",
        "history_bytes",
        "handshake_timeout",
        "init_timeout",
        "cors_origins",
    }
)
#: Authorizer settings accepted the same way.
AUTH_OPTIONS: Final = frozenset(
    {
        "iam_session_tokens",
        "cognito_issuer",
        "oidc_issuer",
        "jwt_keys",
        "jwt_audience",
        "jwt_leeway",
        "lambda_ttl",
        "sigv4_max_skew",
        "check_host",
        "hosts",
        "api_id",
        "account_id",
    }
)
_CHOICES: Final = {
    "connect_auth_at": ("init", "open"),
    "ws_signing_escape": ("html", "none", "both"),
}
_STARTUP_TIMEOUT: Final = 30.0
#: Seconds :meth:`AppSyncEventsEmulator.stop` gives each stage of stopping: the graceful
#: shutdown, then the shutdown without waiting for open connections, then the event loop.
STOP_GRACE: Final = 5.0


def _generate_api_key() -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "da2-" + "".join(secrets.choice(alphabet) for _ in range(26))


class _Server(uvicorn.Server):
    """uvicorn's server, reporting when it listens."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_started()


def _redact_server_logger() -> None:
    """Keep credentials out of uvicorn's DEBUG records of the emulator's handshakes.

    uvicorn hands its ``uvicorn.error`` logger to the websockets protocol, which logs
    every handshake header at DEBUG, the ``header-`` subprotocol (an API key, a token or
    a signature) included. A :class:`~appsync_events.redaction.RedactingFilter` on that
    logger rewrites those records before any handler sees them. It only ever redacts,
    and it is added once per process.
    """
    from ..redaction import RedactingFilter

    server_logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, RedactingFilter) for f in server_logger.filters):
        server_logger.addFilter(RedactingFilter())


def _api_config(api: str | APIConfig | None) -> APIConfig | None:
    """The config to emulate: as given, or a settings alias read through Django."""
    if api is None or isinstance(api, APIConfig):
        return api
    from ..conf import get_api_config

    return get_api_config(api)


class AppSyncEventsEmulator:
    """A local AppSync Event API for development and tests.

    Configuration comes, lowest precedence first, from built-in defaults, the alias
    ``api`` of ``APPSYNC_EVENTS`` (its ``NAMESPACES`` and ``EMULATOR`` section; only when
    ``api`` is given), then these keyword arguments.

    Args:
        host: the interface to bind; loopback by default (anything else is logged as a
            warning: the emulator accepts test credentials).
        port: the port; ``0`` picks a free one (read it back from :attr:`port`).
        api: what to emulate: an :class:`~appsync_events.config.APIConfig` (no Django
            needed), a settings alias (read through :mod:`appsync_events.conf`), or
            ``None`` for the built-in defaults (one ``default`` namespace allowing
            every mode).
        api_keys: the API keys accepted; one is generated when none is configured.
        iam_credentials: access key id → secret key for verifying SigV4. Empty: IAM
            headers are accepted unverified.
        namespaces: names, or name → ``{"PUBLISH_AUTH_MODES": [...],
            "SUBSCRIBE_AUTH_MODES": [...]}``, or :class:`NamespaceSpec` objects.
        connection_auth_modes: the modes a websocket connect may use (default: every
            mode a namespace allows).
        region: the region of SigV4 credential scopes.
        ka_interval: seconds between ``ka`` frames (60).
        connection_timeout_ms: sent in ``connection_ack`` (300000).
        max_lifetime: seconds before the emulator closes a connection (24 h).
        lambda_authorizer: the ``AWS_LAMBDA`` stand-in (see :mod:`.authz`): a callable
            taking the request, or the dotted path of a real Lambda
            ``handler(event, context)`` such as
            ``"appsync_events.lambda_authorizer.handler"`` (default:
            ``EMULATOR['LAMBDA_AUTHORIZER']``).
        handlers: namespace → :class:`NamespaceHandlers` (``onPublish``/``onSubscribe``).
        errors: overrides of the error table (:mod:`.errors`).
        fault_proxy: put the TCP fault proxy in front (needed for
            :meth:`drop_connections` and :meth:`send_broken_frame`); the URLs then
            point at the proxy.
        **options: behaviour switches (:data:`SERVICE_OPTIONS`) and authorizer settings
            (``iam_session_tokens``, ``cognito_issuer``, ``oidc_issuer``, ``jwt_keys``,
            ``jwt_audience``, ``jwt_leeway``, ``lambda_ttl``, ``sigv4_max_skew``,
            ``check_host``, ``hosts``, ``api_id``, ``account_id``).

    Raises:
        ConfigurationError: for an unknown option or a bad value.
    """

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        api: str | APIConfig | None = None,
        api_keys: Iterable[str] | None = None,
        iam_credentials: Mapping[str, str] | None = None,
        namespaces: Iterable[str] | Mapping[str, Any] | Iterable[NamespaceSpec] | None = None,
        connection_auth_modes: Sequence[str] | None = None,
        region: str | None = None,
        ka_interval: float | None = None,
        connection_timeout_ms: int | None = None,
        max_lifetime: float | None = None,
        lambda_authorizer: LambdaAuthorizer | str | None = None,
        handlers: Mapping[str, NamespaceHandlers] | None = None,
        errors: Mapping[str, Any] | None = None,
        fault_proxy: bool = False,
        **options: Any,
    ) -> None:
        api_config = _api_config(api)
        alias = api_config.alias if api_config is not None else None
        emu: EmulatorConfig = api_config.emulator if api_config else EmulatorConfig()
        merged: dict[str, Any] = {str(k).lower(): v for k, v in emu.options.items()}
        merged.update(options)
        unknown = sorted(set(merged) - SERVICE_OPTIONS - AUTH_OPTIONS)
        if unknown:
            raise ConfigurationError(
                f"Unknown emulator option(s) {', '.join(unknown)}; valid options: "
                f"{', '.join(sorted(SERVICE_OPTIONS | AUTH_OPTIONS))}.",
                api=alias,
                key="EMULATOR",
            )
        for name, choices in _CHOICES.items():
            if name in merged and merged[name] not in choices:
                raise ConfigurationError(
                    f"Emulator option {name} must be one of {', '.join(choices)}, "
                    f"not {merged[name]!r}.",
                    api=alias,
                    key="EMULATOR",
                )
        self.host = host if host is not None else emu.host
        self._requested_port = port if port is not None else (emu.port if api_config else 0)
        self.api = alias
        keys = tuple(api_keys) if api_keys is not None else emu.api_keys
        self.api_keys: tuple[str, ...] = keys or (_generate_api_key(),)
        self.iam_credentials = dict(
            iam_credentials if iam_credentials is not None else emu.iam_credentials
        )
        self.region = region or (api_config.region if api_config else None) or "us-east-1"
        spaces = _namespaces(namespaces, api_config)
        if connection_auth_modes is None:
            if api_config is not None:
                used = {api_config.connection_auth_mode}
                for ns in spaces.values():
                    used.update(ns.publish_auth_modes, ns.subscribe_auth_modes)
                connection_auth_modes = tuple(m for m in ALL_MODES if m in used)
            else:
                connection_auth_modes = ALL_MODES
        bad = [m for m in connection_auth_modes if m not in ALL_MODES]
        if bad:
            raise ConfigurationError(f"Unknown auth mode(s) {', '.join(bad)}.", key="EMULATOR")
        service = {k: v for k, v in merged.items() if k in SERVICE_OPTIONS}
        for name in ("history_size", "history_bytes"):
            value = service.get(name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ConfigurationError(
                    f"Emulator option {name} must be a positive integer, not {value!r}.",
                    api=alias,
                    key="EMULATOR",
                )
        for name in ("handshake_timeout", "init_timeout"):
            value = service.get(name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or not value > 0
            ):
                raise ConfigurationError(
                    f"Emulator option {name} must be a positive number of seconds, not {value!r}.",
                    api=alias,
                    key="EMULATOR",
                )
        if "cors_origins" in service:
            origins = service["cors_origins"]
            if isinstance(origins, str) or not all(isinstance(o, str) for o in origins):
                raise ConfigurationError(
                    "Emulator option cors_origins must be a list of origins such as "
                    f"['https://app.example.com'] (or ['*']), not {origins!r}.",
                    api=alias,
                    key="EMULATOR",
                )
            service["cors_origins"] = tuple(o.rstrip("/") for o in origins)
        try:
            table = merge_errors(errors)
        except ValueError as exc:
            raise ConfigurationError(str(exc), key="EMULATOR") from None
        self._base_settings = ServiceSettings(
            namespaces=spaces,
            connection_auth_modes=tuple(connection_auth_modes),
            ka_interval=ka_interval if ka_interval is not None else emu.ka_interval,
            connection_timeout_ms=(
                connection_timeout_ms
                if connection_timeout_ms is not None
                else emu.connection_timeout_ms
            ),
            max_lifetime=max_lifetime if max_lifetime is not None else emu.max_lifetime,
            errors=table,
            handlers=dict(handlers or {}),
            **service,
        )
        self._auth_options = {k: v for k, v in merged.items() if k in AUTH_OPTIONS}
        self._lambda_authorizer = _lambda_authorizer(
            lambda_authorizer if lambda_authorizer is not None else emu.lambda_authorizer, alias
        )
        self.faults = Faults()
        self.authorizer = self._make_authorizer()
        self.state = EmulatorState(
            dataclasses.replace(self._base_settings), self.authorizer, self.faults
        )
        self.fault_proxy_enabled = fault_proxy
        self._proxy: Any = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: _Server | None = None
        self._forced_stop = False
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._port: int | None = None
        self._public_port: int | None = None

    def _make_authorizer(self) -> Authorizer:
        return Authorizer(
            region=self.region,
            api_keys=self.api_keys,
            iam_credentials=self.iam_credentials,
            lambda_authorizer=self._lambda_authorizer,
            **self._auth_options,
        )

    def __repr__(self) -> str:
        where = self.http_url if self._public_port else "not started"
        return f"<AppSyncEventsEmulator {where}>"

    # -- addresses -------------------------------------------------------------------

    @property
    def requested_port(self) -> int:
        """The port asked for (``0``: any free one); :attr:`port` is the one clients use."""
        return self._requested_port

    @property
    def port(self) -> int:
        """The port clients use (the proxy's when the fault proxy is on)."""
        if self._public_port is None:
            raise RuntimeError("The emulator is not started; call start() first.")
        return self._public_port

    @property
    def http_host(self) -> str:
        """``host:port`` as clients name it in ``Host`` and in auth headers."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def http_url(self) -> str:
        """The HTTP publish endpoint, ``http://HOST:PORT/event``."""
        return f"http://{self.http_host}/event"

    @property
    def realtime_url(self) -> str:
        """The websocket endpoint, ``ws://HOST:PORT/event/realtime``."""
        return f"ws://{self.http_host}/event/realtime"

    @property
    def api_key(self) -> str:
        """An API key the emulator accepts (the first configured)."""
        return self.api_keys[0]

    @property
    def settings(self) -> ServiceSettings:
        """The live behaviour switches (change them with :meth:`configure`)."""
        return self.state.settings

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> AppSyncEventsEmulator:
        """Start serving in a background thread; return once it accepts connections.

        Raises:
            OSError: when the address cannot be bound.
            RuntimeError: when already started, or startup failed or timed out.
        """
        if self._thread is not None:
            raise RuntimeError("The emulator is already started.")
        if not is_loopback_host(self.host):
            logger.warning(
                "The AppSync Events emulator binds %s, which is not a loopback address: "
                "anyone who can reach it can publish with its test credentials.",
                self.host,
            )
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose
        # proto says TCP, and without it every response waits out a delayed ACK (~40 ms).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self._requested_port))
            sock.listen(2048)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._port = sock.getsockname()[1]
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(
            target=self._run, args=(sock,), name=f"appsync-emulator-{self._port}", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(_STARTUP_TIMEOUT):
            self.stop()
            raise RuntimeError(f"The emulator did not start within {_STARTUP_TIMEOUT:g} s.")
        if self._error is not None:
            error = self._error
            self._join()
            raise RuntimeError(f"The emulator failed to start: {error!r}") from error
        logger.info("AppSync Events emulator listening on %s", self.http_url)
        return self

    def _run(self, sock: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._forced_stop = False
        try:
            loop.run_until_complete(self._serve(sock))
        except BaseException as exc:  # reported to start(), which re-raises it
            if self._forced_stop:
                pass  # stop() stopped the loop and said so
            elif not self._ready.is_set():
                self._error = exc
                self._ready.set()
            else:
                logger.exception("The AppSync Events emulator stopped with an error")
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
                sock.close()

    async def _serve(self, sock: socket.socket) -> None:
        app = EmulatorApp(self.state, jwks=self.authorizer.jwks)
        # uvicorn.Config(access_log=False) also detaches the process-wide "uvicorn.access"
        # logger (no handlers, no propagation), which would silence the access log of the
        # user's own uvicorn server in this process. A library configures no logging: the
        # emulator writes no access lines, and that logger is left as it was.
        _redact_server_logger()
        access = logging.getLogger("uvicorn.access")
        saved = (access.handlers[:], access.propagate)
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            http=deadline_protocol(app),
            ws="websockets-sansio",
            ws_ping_interval=None,
            ws_ping_timeout=None,
            ws_per_message_deflate=True,
            timeout_graceful_shutdown=2,
            timeout_keep_alive=30,
        )
        access.handlers[:], access.propagate = saved
        if self.fault_proxy_enabled:
            from .proxy import FaultProxy

            self._proxy = FaultProxy(self.host, sock.getsockname()[1])
            self._public_port = await self._proxy.start()
        else:
            self._public_port = self._port
        server = _Server(config, self._ready.set)
        self._server = server
        try:
            await server.serve(sockets=[sock])
        finally:
            if self._proxy is not None:
                await self._proxy.stop()
        if not server.started:
            raise RuntimeError("uvicorn did not start (see the uvicorn.error log)")

    def stop(self) -> None:
        """Stop serving and close every connection (idempotent).

        uvicorn's graceful shutdown gets ``STOP_GRACE`` (5) seconds; connections or
        requests still open then are abandoned (a WARNING says how many), and a loop
        that still runs after another ``STOP_GRACE`` is stopped where it is.
        """
        server = self._server
        if server is not None:
            server.should_exit = True
        self._join(server)

    def _join(self, server: _Server | None = None) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(timeout=STOP_GRACE)
            if thread.is_alive() and server is not None:
                state = server.server_state
                logger.warning(
                    "The AppSync Events emulator is still stopping after %g s (%d connections "
                    "and %d requests open): no longer waiting for them",
                    STOP_GRACE,
                    len(state.connections),
                    len(state.tasks),
                )
                server.force_exit = True
                thread.join(timeout=STOP_GRACE)
            loop = self._loop
            if thread.is_alive() and loop is not None:
                logger.warning(
                    "The AppSync Events emulator did not stop within %g s: stopping its event loop",
                    2 * STOP_GRACE,
                )
                self._forced_stop = True
                with contextlib.suppress(RuntimeError):  # closed in the meantime
                    loop.call_soon_threadsafe(loop.stop)
                thread.join(timeout=STOP_GRACE)
            if thread.is_alive():
                logger.error("The AppSync Events emulator thread %s did not end", thread.name)
        self._thread = None
        self._server = None
        self._loop = None

    @property
    def running(self) -> bool:
        """Whether the server thread is serving."""
        return self._thread is not None and self._thread.is_alive() and self._ready.is_set()

    def __enter__(self) -> AppSyncEventsEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> AppSyncEventsEmulator:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    # -- running code on the emulator's loop -----------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        loop = self._loop
        if loop is None or not self.running:
            coro.close()
            raise RuntimeError("The emulator is not running; call start() first.")
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    # -- state for tests -----------------------------------------------------------------

    def reset(self, *, close_connections: bool = True) -> None:
        """Return to a clean slate: records cleared, switches and faults back to defaults.

        Args:
            close_connections: also close every open websocket (code 1001), so a client
                left over from a previous test never receives the next test's events.
        """
        self.faults.reset()
        if close_connections and self.running:
            self.close_connections(1001, "emulator reset")
            self.state.wait_for(lambda: not self.state.all_connections(), timeout=5.0)
        self.state.settings = dataclasses.replace(self._base_settings)
        self.authorizer.lambda_authorizer = self._lambda_authorizer
        self.authorizer.api_keys = set(self.api_keys)
        self.authorizer.iam_credentials = dict(self.iam_credentials)
        self.state.clear()
        if self._proxy is not None:
            self._proxy.reset()

    def configure(self, **switches: Any) -> None:
        """Change behaviour switches on the running emulator (undone by :meth:`reset`).

        Accepts the :class:`ServiceSettings` field names (``max_subscriptions``,
        ``ka_interval``, ``handlers``, ...) and ``lambda_authorizer``.

        Raises:
            TypeError: for an unknown switch.
        """
        fields = {f.name for f in dataclasses.fields(ServiceSettings)}
        for name, value in switches.items():
            if name == "lambda_authorizer":
                self.authorizer.lambda_authorizer = _lambda_authorizer(value, self.api)
            elif name in fields:
                if name in _CHOICES and value not in _CHOICES[name]:
                    raise ValueError(f"{name} must be one of {', '.join(_CHOICES[name])}")
                setattr(self.state.settings, name, value)
            else:
                raise TypeError(
                    f"Unknown emulator switch {name!r}; use one of "
                    f"{', '.join(sorted(fields | {'lambda_authorizer'}))}."
                )

    @property
    def published(self) -> list[PublishedRecord]:
        """Every accepted publish since the last reset, oldest first."""
        return self.state.published

    def published_to(self, channel: str) -> list[Any]:
        """The decoded events accepted on ``channel`` (normalised), in order."""
        from ..paths import normalize_channel

        path = normalize_channel(channel)
        return [p for r in self.state.published if r.channel == path for p in r.payloads]

    @property
    def subscriptions(self) -> list[SubscriptionInfo]:
        """The live subscriptions."""
        return self.state.subscriptions()

    @property
    def connections(self) -> list[ConnectionInfo]:
        """The open websocket connections."""
        return self.state.connections()

    def wait_for_subscriptions(
        self, count: int = 1, *, channel: str | None = None, timeout: float = 10.0
    ) -> list[SubscriptionInfo]:
        """Block until at least ``count`` subscriptions (to ``channel``, if given) are live.

        Raises:
            TimeoutError: naming what was there instead.
        """
        if not self.state.wait_for(
            lambda: len(self.state.subscriptions(channel)) >= count, timeout
        ):
            raise TimeoutError(
                f"expected {count} subscription(s)"
                + (f" to {channel}" if channel else "")
                + f" within {timeout:g} s; live: {[s.channel for s in self.subscriptions]}"
            )
        return self.state.subscriptions(channel)

    async def await_for_subscriptions(
        self,
        count: int = 1,
        *,
        channel: str | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109 - same signature as the sync twin
    ) -> list[SubscriptionInfo]:
        """Async twin of :meth:`wait_for_subscriptions`."""
        return await asyncio.to_thread(
            self.wait_for_subscriptions, count, channel=channel, timeout=timeout
        )

    def wait_for_published(
        self, count: int = 1, *, channel: str | None = None, timeout: float = 10.0
    ) -> list[PublishedRecord]:
        """Block until at least ``count`` publishes (to ``channel``, if given) were accepted.

        Raises:
            TimeoutError: naming what was published instead.
            ValueError: ``count`` exceeds the history the emulator keeps (``history_size``).
        """
        from ..paths import normalize_channel

        if count > self.state.settings.history_size:
            raise ValueError(
                f"the emulator keeps the last {self.state.settings.history_size} publishes "
                "(option history_size); wait for fewer, or raise it"
            )
        path = None if channel is None else normalize_channel(channel)

        def matching() -> list[PublishedRecord]:
            return [r for r in self.state.published if path is None or r.channel == path]

        if not self.state.wait_for(lambda: len(matching()) >= count, timeout):
            raise TimeoutError(
                f"expected {count} publish(es)"
                + (f" to {channel}" if channel else "")
                + f" within {timeout:g} s; got: {[r.channel for r in self.published]}"
            )
        return matching()

    async def await_for_published(
        self,
        count: int = 1,
        *,
        channel: str | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109 - same signature as the sync twin
    ) -> list[PublishedRecord]:
        """Async twin of :meth:`wait_for_published`."""
        return await asyncio.to_thread(
            self.wait_for_published, count, channel=channel, timeout=timeout
        )

    def wait_for_connections(
        self, count: int = 1, *, timeout: float = 10.0
    ) -> list[ConnectionInfo]:
        """Block until at least ``count`` acknowledged connections are open.

        Raises:
            TimeoutError: when they are not.
        """
        ok = self.state.wait_for(
            lambda: sum(1 for c in self.state.connections() if c.acked) >= count, timeout
        )
        if not ok:
            raise TimeoutError(
                f"expected {count} acknowledged connection(s) within {timeout:g} s; "
                f"open: {len(self.connections)}"
            )
        return self.connections

    def publish(self, channel: str, *events: Any) -> PublishedRecord:
        """Broadcast ``events`` (JSON-serialisable values) to ``channel`` subscribers.

        Server-side: no auth, no handler, no quota. Useful to feed a client under test.

        Raises:
            ValueError: for an invalid channel or a namespace the API lacks.
        """
        texts = [dumps(e) for e in events]
        try:
            return self._call(self.state.inject(channel, texts))
        except EmulatorError as exc:
            raise ValueError(f"cannot publish to {channel!r}: {exc}") from None

    def issue_token(self, **kwargs: Any) -> str:
        """Return a JWT the emulator accepts; see :meth:`Authorizer.issue_token`."""
        return self.authorizer.issue_token(**kwargs)

    # -- fault actions -----------------------------------------------------------------

    def _each_connection(self, action: Callable[[Any], None]) -> int:
        async def run() -> int:
            conns = self.state.all_connections()
            for conn in conns:
                action(conn)
            return len(conns)

        return self._call(run())

    def close_connections(self, code: int = 1000, reason: str = "") -> int:
        """Close every open websocket with ``code``; return how many were open."""
        return self._each_connection(lambda c: c.close(code, reason))

    def send_raw(self, frame: str | bytes) -> int:
        """Send ``frame`` as is to every open websocket (text for ``str``, binary for
        ``bytes``): garbage, binary or oversize frames. Return how many got it."""
        return self._each_connection(lambda c: c.send(frame))

    def drop_connections(self) -> int:
        """Drop every proxied TCP connection without a close frame (needs ``fault_proxy``)."""
        return self._proxy_call("drop")

    def send_broken_frame(self, kind: str = "truncated") -> int:
        """Send a broken websocket frame through the proxy and cut the connection.

        Args:
            kind: ``"truncated"`` (a frame header announcing more bytes than follow) or
                ``"garbage"`` (bytes that are no websocket frame at all).
        """
        return self._proxy_call(kind)

    def _proxy_call(self, action: str) -> int:
        if self._proxy is None:
            raise RuntimeError(
                "This fault needs the TCP fault proxy: create the emulator with fault_proxy=True."
            )
        proxy = self._proxy

        async def run() -> int:
            count: int = proxy.act(action)
            return count

        return self._call(run())


def _lambda_authorizer(
    value: LambdaAuthorizer | str | None, alias: str | None
) -> LambdaAuthorizer | None:
    """The authorizer stand-in: a callable as is, a dotted path imported as a Lambda handler.

    Raises:
        ConfigurationError: the path cannot be imported or names nothing callable.
    """
    if not isinstance(value, str):
        return value
    try:
        return load_lambda_handler(value)
    except (ImportError, TypeError) as exc:
        raise ConfigurationError(
            f"Cannot use {value!r} as the emulator's Lambda authorizer: {exc}. Name a "
            "handler(event, context) by dotted path, e.g. "
            "'appsync_events.lambda_authorizer.handler'.",
            api=alias,
            key="EMULATOR",
        ) from None


def _namespaces(
    value: Iterable[str] | Mapping[str, Any] | Iterable[NamespaceSpec] | None,
    api_config: APIConfig | None,
) -> dict[str, NamespaceSpec]:
    if value is None:
        if api_config is not None:
            return {
                name: NamespaceSpec(name, ns.publish_auth_modes, ns.subscribe_auth_modes)
                for name, ns in api_config.namespaces.items()
            }
        return {"default": NamespaceSpec("default")}
    out: dict[str, NamespaceSpec] = {}
    if isinstance(value, Mapping):
        for name, spec in value.items():
            spec = spec or {}
            pub = tuple(spec.get("PUBLISH_AUTH_MODES", spec.get("publish_auth_modes", ALL_MODES)))
            sub = tuple(
                spec.get("SUBSCRIBE_AUTH_MODES", spec.get("subscribe_auth_modes", ALL_MODES))
            )
            out[name] = NamespaceSpec(name, pub, sub)
    else:
        for item in value:
            if isinstance(item, NamespaceSpec):
                out[item.name] = item
            else:
                out[str(item)] = NamespaceSpec(str(item))
    for spec in out.values():
        bad = [
            m for m in (*spec.publish_auth_modes, *spec.subscribe_auth_modes) if m not in ALL_MODES
        ]
        if bad:
            raise ConfigurationError(
                f"Namespace {spec.name!r} names unknown auth mode(s) {', '.join(bad)}.",
                key="NAMESPACES",
            )
    return out
