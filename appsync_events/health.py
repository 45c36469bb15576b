"""The listener's health and metrics server: ``/healthz``, ``/readyz``, ``/metrics``.

``appsync_listen --http-port PORT`` (or ``LISTENER['HTTP_PORT']``) starts it on the
listener's own event loop, with no web framework: a small HTTP/1.1 server on
:func:`asyncio.start_server` that answers ``GET`` (and ``HEAD``) and closes each
connection after its answer. Serving from the listener's loop is deliberate: a loop
blocked by a handler answers nothing, so the liveness probe sees it.

``/healthz``
    Liveness: 200 ``{"status": "alive", ...}`` while the listener runs.
``/readyz``
    Readiness: 200 when connected and every configured subscription is established
    (also for a standby waiting for the ``--exclusive`` lease, so rolling updates
    proceed); otherwise 503 with ``{"status": "not ready", "reason": ...}``.
``/metrics``
    The process's Prometheus metrics (501 without ``prometheus-client``), produced in a
    worker thread since the outbox gauges query the database.

Bounded: at most :data:`MAX_CONNECTIONS` connections at a time (more are closed at
once), a request head of at most :data:`MAX_REQUEST_BYTES` bytes, read within
:data:`REQUEST_TIMEOUT` seconds; anything else gets a 4xx and the connection closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any, Final

from . import metrics
from .exceptions import ImproperlyInstalled

if TYPE_CHECKING:
    from .listener import Listener

__all__ = ["MAX_CONNECTIONS", "MAX_REQUEST_BYTES", "REQUEST_TIMEOUT", "HealthServer"]

logger = logging.getLogger(__name__)

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


class HealthServer:
    """Serve a listener's probes and metrics on ``host:port`` (``port`` 0: a free one).

    Args:
        listener: the listener whose :meth:`~appsync_events.listener.Listener.health`
            is reported.
        host: the interface to bind.
        port: the port to bind (0 picks a free one; :meth:`start` returns it).
    """

    def __init__(self, listener: Listener, host: str, port: int) -> None:
        self.listener = listener
        self.host = host
        self.port = port
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
            status, content_type, body, head = await self._answer(reader)
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

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[int, str, bytes, bool]:
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
            health = self.listener.health()
            return (*_json(200, {"status": "alive", "phase": health.phase}), is_head)
        if path == "/readyz":
            return (*self._readiness(), is_head)
        if path == "/metrics":
            try:
                body, content_type = await asyncio.to_thread(_scrape)
            except ImproperlyInstalled as exc:
                return (501, "text/plain; charset=utf-8", f"{exc}\n".encode(), is_head)
            return (200, content_type, body, is_head)
        return (*_json(404, {"error": "not found; try /healthz, /readyz or /metrics"}), is_head)

    def _readiness(self) -> tuple[int, str, bytes]:
        health = self.listener.health()
        ready, reason = health.ready
        return _json(
            200 if ready else 503,
            {
                "status": "ready" if ready else "not ready",
                "reason": reason,
                "phase": health.phase,
                "connection": health.connection,
                "subscriptions": health.subscriptions,
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


def _json(status: int, value: Any) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(value).encode() + b"\n"


def _scrape() -> tuple[bytes, str]:
    """Produce the metrics (in a worker thread); close the thread's database connection."""
    try:
        return metrics.exposition()
    finally:
        from django.db import connections

        connections.close_all()
