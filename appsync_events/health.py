"""The health and metrics server: ``/healthz``, ``/readyz``, ``/metrics``.

It serves any :class:`HealthTarget`: an object whose ``health()`` returns a
:class:`HealthReport` snapshot. Two are built in:

* the listener (:meth:`appsync_events.listener.Listener.health`):
  ``appsync_listen --http-port PORT`` (or ``LISTENER['HTTP_PORT']``) starts the server on
  the listener's own event loop. Serving from that loop is deliberate: a loop blocked by
  a handler answers nothing, so the liveness probe sees it.
* the outbox drainer (:meth:`appsync_events.outbox.drainer.OutboxDrainer.health`):
  ``appsync_outbox --http-port PORT`` (or ``OUTBOX['HTTP_PORT']``) runs the server with
  :class:`ThreadedHealthServer`, on an event loop of its own in a background thread,
  while the drainer works in the main thread.

No web framework: a small HTTP/1.1 server on :func:`asyncio.start_server` that answers
``GET`` (and ``HEAD``) and closes each connection after its answer.

``/healthz``
    Liveness: 200 ``{"status": "alive", "phase": ...}`` while the target is alive;
    503 ``{"status": "not alive", "reason": ..., "phase": ...}`` when it reports itself
    stuck (a drainer whose batch has run for twice its lease).
``/readyz``
    Readiness: 200 ``{"status": "ready", ...}`` when the target says it is ready,
    otherwise 503 with ``{"status": "not ready", "reason": ...}``; both with the
    target's phase and details (the listener's connection and subscriptions, the
    drainer's worker and the age of its last poll and batch).
``/metrics``
    The process's Prometheus metrics (501 without ``prometheus-client``), produced in a
    worker thread since the outbox gauges query the database. Only for loopback peers
    and those in ``allowed_ips`` (the commands pass ``METRICS['ALLOWED_IPS']``); others
    get 403: metric labels name channels, handlers and error codes.
    ``/healthz`` and ``/readyz`` answer every peer (orchestrators probe from outside).

Bounded: at most :data:`MAX_CONNECTIONS` connections at a time (more are closed at
once), a request head of at most :data:`MAX_REQUEST_BYTES` bytes, read within
:data:`REQUEST_TIMEOUT` seconds; anything else gets a 4xx and the connection closes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ipaddress
import json
import logging
import threading
from collections.abc import Iterable
from typing import Any, Final, Protocol, TypeAlias

from . import metrics
from .exceptions import ImproperlyInstalled

__all__ = [
    "MAX_CONNECTIONS",
    "MAX_REQUEST_BYTES",
    "REQUEST_TIMEOUT",
    "HealthReport",
    "HealthServer",
    "HealthTarget",
    "ThreadedHealthServer",
]

logger = logging.getLogger(__name__)

Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Connections served at once; more are closed without an answer.
MAX_CONNECTIONS: Final = 8
#: The largest request head (request line and headers) read, in bytes.
MAX_REQUEST_BYTES: Final = 8192
#: Seconds a client has to send its request head (and to read the answer).
REQUEST_TIMEOUT: Final = 5.0

_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}


class HealthReport(Protocol):
    """A snapshot of a service's state, as :class:`HealthServer` reports it.

    :class:`~appsync_events.listener.ListenerHealth` and
    :class:`~appsync_events.outbox.drainer.DrainerHealth` implement it.
    """

    @property
    def phase(self) -> str:
        """Where the service is in its life: ``"starting"``, ``"running"``, ``"stopping"``,
        ``"stopped"`` (the listener adds ``"standby"``)."""

    @property
    def alive(self) -> tuple[bool, str]:
        """Whether the service still makes progress (``/healthz``), and why not."""

    @property
    def ready(self) -> tuple[bool, str]:
        """Whether the service does its job now (``/readyz``), and why (not)."""

    def details(self) -> dict[str, Any]:
        """Return the extra JSON members of the ``/readyz`` answer."""


class HealthTarget(Protocol):
    """What :class:`HealthServer` serves: anything with a ``health()`` snapshot.

    ``health()`` is called on the server's event loop for every probe: it must be quick,
    must not block, and must be safe to call from that loop's thread.
    """

    def health(self) -> HealthReport:
        """Return a snapshot of the service's state."""


class HealthServer:
    """Serve a target's probes and the process's metrics on ``host:port``.

    Args:
        target: what ``/healthz`` and ``/readyz`` report (a
            :class:`~appsync_events.listener.Listener`, an
            :class:`~appsync_events.outbox.drainer.OutboxDrainer`, or any
            :class:`HealthTarget`).
        host: the interface to bind.
        port: the port to bind (0 picks a free one; :meth:`start` returns it).
        allowed_ips: networks besides loopback whose peers may read ``/metrics``
            (``METRICS['ALLOWED_IPS']``).
    """

    def __init__(
        self, target: HealthTarget, host: str, port: int, allowed_ips: Iterable[Network] = ()
    ) -> None:
        self.target = target
        self.host = host
        self.port = port
        self.allowed_ips = tuple(allowed_ips)
        self._server: asyncio.Server | None = None
        self._active = 0
        self._open: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}

    @property
    def url(self) -> str:
        """``http://host:port`` of the server."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> int:
        """Start listening; return the port.

        Raises:
            OSError: the address cannot be bound.
        """
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, limit=MAX_REQUEST_BYTES, backlog=16
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        """Stop listening and drop the connections still open."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        # Dropping the connections ends their handlers (a read fails); cancelling the
        # handler tasks instead makes asyncio's stream callback log the cancellation.
        for writer in list(self._open.values()):
            writer.transport.abort()
        if self._open:
            await asyncio.wait(set(self._open), timeout=1.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 1.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._active >= MAX_CONNECTIONS:
            writer.transport.abort()  # over the bound: no answer, no buffer
            return
        self._active += 1
        task = asyncio.current_task()
        if task is not None:
            self._open[task] = writer
        try:
            status, content_type, body, head = await self._answer(
                reader, writer.get_extra_info("peername")
            )
            await asyncio.wait_for(
                self._write(writer, status, content_type, b"" if head else body, len(body)),
                REQUEST_TIMEOUT,
            )
        except (TimeoutError, ConnectionError):
            pass  # the client went away or is too slow: nothing to tell it
        except Exception:
            logger.exception("The health server failed to answer a request")
        finally:
            self._active -= 1
            if task is not None:
                self._open.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception):  # the client may be gone already
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _answer(
        self, reader: asyncio.StreamReader, peer: Any
    ) -> tuple[int, str, bytes, bool]:
        """Read one request head; return status, content type, body and whether HEAD."""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
        except TimeoutError:
            return (*_json(408, {"error": "request timeout"}), False)
        except asyncio.LimitOverrunError:
            return (*_json(431, {"error": "request head too large"}), False)
        except asyncio.IncompleteReadError:
            raise ConnectionResetError from None
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return (*_json(400, {"error": "malformed request line"}), False)
        method, target, _ = parts
        if method not in ("GET", "HEAD"):
            return (*_json(405, {"error": "only GET and HEAD"}), False)
        path = target.split("?", 1)[0]
        is_head = method == "HEAD"
        if path == "/healthz":
            return (*self._liveness(), is_head)
        if path == "/readyz":
            return (*self._readiness(), is_head)
        if path == "/metrics":
            if not self._may_scrape(peer):
                return (
                    *_json(
                        403,
                        {
                            "error": "forbidden: /metrics answers loopback and the "
                            "addresses in APPSYNC_EVENTS[...]['METRICS']['ALLOWED_IPS']"
                        },
                    ),
                    is_head,
                )
            try:
                body, content_type = await asyncio.to_thread(_scrape)
            except ImproperlyInstalled as exc:
                return (501, "text/plain; charset=utf-8", f"{exc}\n".encode(), is_head)
            return (200, content_type, body, is_head)
        return (*_json(404, {"error": "not found; try /healthz, /readyz or /metrics"}), is_head)

    def _may_scrape(self, peer: Any) -> bool:
        """Whether the peer (``peername``) is loopback or in :attr:`allowed_ips`."""
        try:
            ip = ipaddress.ip_address(peer[0])
        except (TypeError, IndexError, ValueError):
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return ip.is_loopback or any(ip in network for network in self.allowed_ips)

    def _liveness(self) -> tuple[int, str, bytes]:
        health = self.target.health()
        alive, reason = health.alive
        if alive:
            return _json(200, {"status": "alive", "phase": health.phase})
        return _json(503, {"status": "not alive", "reason": reason, "phase": health.phase})

    def _readiness(self) -> tuple[int, str, bytes]:
        health = self.target.health()
        ready, reason = health.ready
        return _json(
            200 if ready else 503,
            {
                "status": "ready" if ready else "not ready",
                "reason": reason,
                "phase": health.phase,
                **health.details(),
            },
        )

    @staticmethod
    async def _write(
        writer: asyncio.StreamWriter, status: int, content_type: str, body: bytes, length: int
    ) -> None:
        writer.write(
            (
                f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"
                f"Content-Type: {content_type}\r\n"
                f"Content-Length: {length}\r\n"
                "Cache-Control: no-store\r\n"
                "Connection: close\r\n\r\n"
            ).encode("latin-1")
            + body
        )
        await writer.drain()


class ThreadedHealthServer:
    """Run a :class:`HealthServer` on an event loop of its own, in a daemon thread.

    For a process whose work is synchronous (``appsync_outbox``): the probes answer
    while the main thread drains.

    Args:
        target: what ``/healthz`` and ``/readyz`` report; its ``health()`` is called
            from the server's thread.
        host: the interface to bind.
        port: the port to bind (0 picks a free one; :meth:`start` returns it).
        allowed_ips: networks besides loopback whose peers may read ``/metrics``.
    """

    #: Seconds :meth:`stop` waits for the server's thread to end.
    STOP_TIMEOUT: Final = 5.0

    def __init__(
        self, target: HealthTarget, host: str, port: int, allowed_ips: Iterable[Network] = ()
    ) -> None:
        self.server = HealthServer(target, host, port, allowed_ips)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` of the server (the real port once started)."""
        return self.server.url

    def start(self) -> int:
        """Start the thread and bind; return the port once the server listens.

        Raises:
            OSError: the address cannot be bound (the thread has ended).
        """
        started: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._main(started),), name="appsync-health", daemon=True
        )
        self._thread.start()
        try:
            return started.result()
        except BaseException:
            self.stop()  # the thread has ended (a bind error) or is told to (an interrupt)
            raise

    def stop(self) -> None:
        """Stop the server and its thread (waiting at most :attr:`STOP_TIMEOUT` seconds)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(stop.set)
        thread.join(self.STOP_TIMEOUT)
        if thread.is_alive():
            logger.warning(
                "The health server on %s did not stop within %g s; leaving its thread",
                self.url,
                self.STOP_TIMEOUT,
            )

    async def _main(self, started: concurrent.futures.Future[int]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            port = await self.server.start()
        except BaseException as exc:
            started.set_exception(exc)
            return
        started.set_result(port)
        try:
            await self._stop.wait()
        finally:
            await self.server.stop()


def _json(status: int, value: Any) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(value).encode() + b"\n"


def _scrape() -> tuple[bytes, str]:
    """Produce the metrics (in a worker thread); close the thread's database connection."""
    try:
        return metrics.exposition()
    finally:
        from django.db import connections

        connections.close_all()
