"""The ``websocket`` backend: publish over one long-lived websocket connection.

For processes that keep running (workers, the listener, long scripts), publishing over
an open websocket avoids a request per publish. The backend owns an
:class:`~appsync_events.client.AppSyncEventsClient` running on a private event loop in a
daemon thread, so sync callers (views, tasks) and async callers (on any loop) share one
connection. The service allows 25 publish requests per second per connection; a
client-side limiter (a sliding one-second window) delays requests rather than let the
service refuse them.

AWS_IAM and ``<``, ``>``, ``&``: the service rejects an IAM-signed *websocket* publish of
events containing these characters ("signature mismatch"), while the same publish over
HTTP succeeds. Such a chunk is therefore sent with ``POST /event`` (through the pooled
HTTP publisher of :mod:`appsync_events.http`) and logged at DEBUG; every other chunk goes
over the websocket. See :func:`appsync_events.auth.websocket_publish_safe`.

Losing the connection while a publish waits for its answer raises
:class:`~appsync_events.exceptions.PublishError`: the events may or may not have been
published, and they are not re-sent automatically (the durable outbox retries; delivery
is then at-least-once).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from ..auth import websocket_publish_safe
from ..conf import APIConfig
from ..exceptions import PublishError
from ..limits import PUBLISHES_PER_SECOND
from ..protocol import PublishSuccess
from .base import BaseBackend

__all__ = ["RateLimiter", "WebSocketBackend"]

_T = TypeVar("_T")

logger = logging.getLogger(__name__)


class RateLimiter:
    """Allow at most ``rate`` acquisitions in any ``period`` seconds (async, one loop).

    Args:
        rate: acquisitions per period.
        period: the window, in seconds.
        clock: a monotonic clock (tests pass their own).
    """

    def __init__(
        self, rate: int = PUBLISHES_PER_SECOND, period: float = 1.0, clock: Any = time.monotonic
    ) -> None:
        if rate < 1 or period <= 0:
            raise ValueError("rate must be at least 1 and period positive")
        self.rate = rate
        self.period = period
        self._clock = clock
        self._stamps: collections.deque[float] = collections.deque()
        self._lock = asyncio.Lock()

    def delay(self) -> float:
        """Seconds to wait before the next acquisition is allowed (0 when allowed now)."""
        now: float = self._clock()
        while self._stamps and now - self._stamps[0] >= self.period:
            self._stamps.popleft()
        if len(self._stamps) < self.rate:
            return 0.0
        return float(self._stamps[0] + self.period - now)

    async def acquire(self) -> None:
        """Wait until a request may go out, then count it."""
        async with self._lock:
            wait = self.delay()
            if wait > 0:
                # The oldest request in the window leaves it after ``wait`` seconds.
                await asyncio.sleep(wait)
                self.delay()  # drop it
            self._stamps.append(self._clock())


class WebSocketBackend(BaseBackend):
    """Publish over a websocket connection kept open for the process's lifetime.

    Its options are the keys of ``PUBLISH['OPTIONS']``.

    Options:
        rate: publish requests per second on the connection (default 25, the quota).
        timeout: seconds to wait for each answer (default ``TIMEOUTS['OPERATION']``).
        auth_mode: force an auth mode for publishing.
    """

    option_names = frozenset({"rate", "timeout", "auth_mode"})

    def __init__(self, api: APIConfig, **options: Any) -> None:
        super().__init__(api, **options)
        rate = options.get("rate", PUBLISHES_PER_SECOND)
        if isinstance(rate, bool) or not isinstance(rate, int) or not 1 <= rate:
            raise ValueError(f"rate must be a positive integer, not {rate!r}")
        self.rate: int = rate
        self.timeout: float = options.get("timeout") or api.timeouts.operation
        self.mode: str | None = options.get("auth_mode")
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self._limiter: RateLimiter | None = None
        # Chunks the service would refuse over the websocket go over HTTP instead.
        self._http: Any = None

    def _http_fallback(self, channel: str, events: Sequence[str]) -> Any:
        """Return the HTTP backend when this chunk must not go over the websocket."""
        if websocket_publish_safe(self.api, channel, events, mode=self.mode):
            return None
        logger.debug(
            "Publishing %d event(s) to %s over HTTP: IAM-signed websocket publishes of "
            "events containing <, > or & are refused by the service",
            len(events),
            channel,
        )
        with self._lock:
            if self._http is None:
                from .appsync import AppSyncBackend

                options = {"auth_mode": self.mode} if self.mode else {}
                self._http = AppSyncBackend(self.api, **options)
            return self._http

    # -- the private loop -----------------------------------------------------------------

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or not self._loop.is_running():
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()
                    loop.close()

                thread = threading.Thread(
                    target=run, name=f"appsync-events-ws-publish-{self.api.alias}", daemon=True
                )
                thread.start()
                ready.wait()
                self._loop, self._thread = loop, thread
                self._client = None
            return self._loop

    def _submit(self, coro: Coroutine[Any, Any, _T]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._ensure_loop())

    async def _publish(self, channel: str, events: Sequence[str]) -> PublishSuccess:
        # Runs on the private loop: one client, one limiter, one connection.
        if self._client is None:
            from ..client import AppSyncEventsClient

            self._client = AppSyncEventsClient(self.api, operation_timeout=self.timeout)
            self._limiter = RateLimiter(self.rate)
        assert self._limiter is not None  # noqa: S101 - set together with the client
        await self._limiter.acquire()
        result = await self._client.publish(channel, list(events), mode=self.mode)
        return PublishSuccess("", result.successful, result.failed)

    # -- the backend contract ---------------------------------------------------------------

    def send_chunk(self, channel: str, events: Sequence[str]) -> PublishSuccess:
        """Publish one request over the shared connection and wait for the answer."""
        http = self._http_fallback(channel, events)
        if http is not None:
            answer_http: PublishSuccess = http.send_chunk(channel, events)
            return answer_http
        future = self._submit(self._publish(channel, events))
        try:
            answer: PublishSuccess = future.result(self.timeout * 2 + self.api.timeouts.connect)
        except TimeoutError:
            future.cancel()
            raise PublishError(
                "no answer over the websocket in time; the events may have been published",
                api=self.api.alias,
                channel=channel,
            ) from None
        return answer

    async def asend_chunk(self, channel: str, events: Sequence[str]) -> PublishSuccess:
        """Publish one request over the shared connection without blocking this loop."""
        http = self._http_fallback(channel, events)
        if http is not None:
            answer_http: PublishSuccess = await http.asend_chunk(channel, events)
            return answer_http
        answer: PublishSuccess = await asyncio.wrap_future(
            self._submit(self._publish(channel, events))
        )
        return answer

    def close(self) -> None:
        """Close the connection and stop the private loop."""
        with self._lock:
            loop, thread, client = self._loop, self._thread, self._client
            self._loop = self._thread = self._client = None
            http, self._http = self._http, None
        if http is not None:
            http.close()
        if loop is None:
            return
        if client is not None and loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(client.aclose(), loop).result(10)
            except Exception as exc:  # closing must not raise; say why it was not clean
                logger.warning("Closing the publish websocket failed: %s", exc)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None and thread is not threading.current_thread():
            thread.join(10)

    async def aclose(self) -> None:
        """Async twin of :meth:`close` (runs it in a thread)."""
        await asyncio.to_thread(self.close)
