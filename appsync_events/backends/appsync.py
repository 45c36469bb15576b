"""The ``appsync`` backend: HTTP publishing over pooled keep-alive connections."""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Sequence
from typing import Any

from ..conf import APIConfig
from ..http import AsyncHTTPPublisher, HTTPPublisher
from ..protocol import PublishSuccess
from .base import BaseBackend

__all__ = ["AppSyncBackend"]


class AppSyncBackend(BaseBackend):
    """Publish with ``POST /event`` (the default backend).

    Sync callers share one :class:`~appsync_events.http.HTTPPublisher` (one pool per
    process); async callers get one :class:`~appsync_events.http.AsyncHTTPPublisher` per
    event loop, because an async connection pool belongs to its loop.

    Its options are the keys of ``PUBLISH['OPTIONS']``.

    Options:
        timeout: seconds per request (default ``TIMEOUTS['HTTP']``).
        retries: retries of a connection that could not be opened (default 2). Nothing
            else is retried: see :mod:`appsync_events.http` for why.
        max_connections: pool size (default 10).
        auth_mode: force an auth mode for publishing.
        transport / async_transport: httpx transports replacing the network (tests).
    """

    option_names = frozenset(
        {"timeout", "retries", "max_connections", "auth_mode", "transport", "async_transport"}
    )

    def __init__(self, api: APIConfig, **options: Any) -> None:
        super().__init__(api, **options)
        self._kwargs: dict[str, Any] = {
            "timeout": options.get("timeout"),
            "retries": options.get("retries", 2),
            "max_connections": options.get("max_connections", 10),
            "mode": options.get("auth_mode"),
        }
        self._lock = threading.Lock()
        self._sync: HTTPPublisher | None = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncHTTPPublisher] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def publisher(self) -> HTTPPublisher:
        """The shared sync publisher (created on first use)."""
        if self._sync is None:
            with self._lock:
                if self._sync is None:
                    self._sync = HTTPPublisher(
                        self.api, transport=self.options.get("transport"), **self._kwargs
                    )
        return self._sync

    def apublisher(self) -> AsyncHTTPPublisher:
        """The async publisher of the running event loop (created on first use)."""
        loop = asyncio.get_running_loop()
        publisher = self._async.get(loop)
        if publisher is None:
            publisher = AsyncHTTPPublisher(
                self.api, transport=self.options.get("async_transport"), **self._kwargs
            )
            self._async[loop] = publisher
        return publisher

    def send_chunk(self, channel: str, events: Sequence[str]) -> PublishSuccess:
        """POST one request."""
        return self.publisher.publish(channel, events)

    async def asend_chunk(self, channel: str, events: Sequence[str]) -> PublishSuccess:
        """POST one request without blocking the event loop."""
        return await self.apublisher().publish(channel, events)

    def close(self) -> None:
        """Close the sync pool; async pools are closed by :meth:`aclose` on their loop."""
        with self._lock:
            publisher, self._sync = self._sync, None
        if publisher is not None:
            publisher.close()

    async def aclose(self) -> None:
        """Close the running loop's async pool and the sync pool."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - always called from a loop
            loop = None
        publisher = self._async.pop(loop, None) if loop is not None else None
        if publisher is not None:
            await publisher.aclose()
        self.close()
