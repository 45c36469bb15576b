"""The pooled HTTP publisher: ``POST /event`` over keep-alive connections, sync and async.

:class:`HTTPPublisher` (on ``httpx.Client``) and :class:`AsyncHTTPPublisher` (on
``httpx.AsyncClient``) each hold a connection pool, so consecutive publishes reuse one
TCP (and TLS) connection. Each call sends **one** request of at most five events; the
backends above do the chunking.

Retries, and why so few: a publish is not idempotent (the service gives every accepted
event a new identifier and fans it out). Only failures to *establish* a connection are
retried (``retries``, handled by the httpx transport), because then no byte of the
request was sent. A timeout or a dropped connection *after* the request went out is not
retried: the service may have accepted the events, and sending them again would deliver
them twice. Such failures raise :class:`~appsync_events.exceptions.PublishError`; the
durable outbox retries them later, which is at-least-once delivery (documented in
``docs/publishing.md``).
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Sequence
from typing import Any, Final

import httpx

from .auth import ahttp_headers, http_headers
from .batching import request_body
from .config import APIConfig
from .exceptions import PublishError
from .hints import namespace_hint, unreachable_hint
from .protocol import SERVER_TYPES, DecodeError, ErrorEntry, PublishSuccess, decode, dumps
from .proxies import proxy_for

__all__ = ["AsyncHTTPPublisher", "HTTPPublisher"]

logger = logging.getLogger(__name__)

_BASE_HEADERS: Final = {
    "content-type": "application/json",
    "accept": "application/json",
}
_PUBLISH_SUCCESS: Final = frozenset({"publish_success"}) & SERVER_TYPES


# Without TCP_NODELAY, a request written in two parts (headers, then body) waits for the
# peer's delayed ACK (about 40 ms on Linux) before the body leaves: Nagle's algorithm.
_SOCKET_OPTIONS: Final = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


def _proxy(api: APIConfig) -> httpx.Proxy | None:
    """The proxy :func:`~appsync_events.proxies.proxy_for` picks, as httpx's transport takes it."""
    url = proxy_for(api.http_url, api.proxy)
    return httpx.Proxy(url) if url else None


def _limits(max_connections: int) -> httpx.Limits:
    return httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=30.0,
    )


def _parse(response: httpx.Response, api: APIConfig, channel: str) -> PublishSuccess:
    """Map an HTTP response to the service's answer, or raise ``PublishError``."""
    status = response.status_code
    try:
        body: Any = json.loads(response.content) if response.content else None
    except ValueError:
        body = None
    if 200 <= status < 300:
        if isinstance(body, dict):
            frame = dumps({"type": "publish_success", "id": "http", **body})
            try:
                message = decode(frame, accept=_PUBLISH_SUCCESS)
            except DecodeError as exc:
                raise PublishError(
                    f"HTTP {status} answer is not a publish result: {exc.message}",
                    api=api.alias,
                    channel=channel,
                    status=status,
                ) from None
            if isinstance(message, PublishSuccess):
                return message
        raise PublishError(
            f"HTTP {status} answer is not a JSON publish result",
            api=api.alias,
            channel=channel,
            status=status,
        )
    errors: list[dict[str, Any]] = []
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        errors = [ErrorEntry.from_json(e).to_json() for e in body["errors"]]
    elif response.text:
        # Not the service's error shape (a proxy, a load balancer): keep a short excerpt.
        errors = [{"errorType": f"HTTP{status}", "message": response.text[:200]}]
    raise PublishError(
        f"HTTP publish refused with status {status}",
        api=api.alias,
        channel=channel,
        status=status,
        errors=errors,
        hint=namespace_hint(api, channel) if status in (401, 403) else "",
    )


def _network_error(exc: httpx.HTTPError, api: APIConfig, channel: str) -> PublishError:
    hint = ""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        text = f"could not connect to {api.http_url} ({type(exc).__name__}); nothing was sent"
        hint = unreachable_hint(api.http_url)
    elif isinstance(exc, httpx.TimeoutException):
        text = (
            f"no answer from {api.http_url} in time ({type(exc).__name__}); the service may "
            "have accepted the events"
        )
    else:
        text = (
            f"HTTP publish to {api.http_url} failed ({type(exc).__name__}: {exc}); the "
            "service may have accepted the events"
        )
    return PublishError(text, api=api.alias, channel=channel, hint=hint)


class _PublisherBase:
    def __init__(
        self,
        api: APIConfig,
        *,
        timeout: float | None = None,
        retries: int = 2,
        max_connections: int = 10,
        mode: str | None = None,
    ) -> None:
        if retries < 0:
            raise ValueError(f"retries must be 0 or more, not {retries!r}")
        if max_connections < 1:
            raise ValueError(f"max_connections must be 1 or more, not {max_connections!r}")
        self.api = api
        self.timeout = api.timeouts.http if timeout is None else timeout
        self.retries = retries
        self.max_connections = max_connections
        self.mode = mode

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.api.http_url}>"


class HTTPPublisher(_PublisherBase):
    """Publish over HTTP with a pool of keep-alive connections (thread-safe).

    Args:
        api: the alias's configuration (endpoint, auth, ``TIMEOUTS['HTTP']``).
        timeout: seconds per request; default ``TIMEOUTS['HTTP']``.
        retries: connection attempts retried when a connection cannot be opened.
        max_connections: pool size.
        mode: force an auth mode instead of the namespace's first held mode.
        transport: an ``httpx.BaseTransport`` replacing the network (tests).
    """

    def __init__(
        self,
        api: APIConfig,
        *,
        timeout: float | None = None,
        retries: int = 2,
        max_connections: int = 10,
        mode: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            api, timeout=timeout, retries=retries, max_connections=max_connections, mode=mode
        )
        self._client = httpx.Client(
            transport=transport
            or httpx.HTTPTransport(
                retries=retries,
                limits=_limits(max_connections),
                socket_options=_SOCKET_OPTIONS,
                proxy=_proxy(api),
            ),
            timeout=self.timeout,
            headers=_BASE_HEADERS,
        )

    def publish(self, channel: str, events: Sequence[str]) -> PublishSuccess:
        """Send one request of at most five encoded events to ``channel``.

        Raises:
            PublishError: a non-2xx answer (with the service's ``errors`` and ``status``),
                or a network failure.
            AuthError: auth headers could not be produced.
        """
        body = request_body(channel, events)
        headers = http_headers(self.api, channel, body, mode=self.mode)
        try:
            response = self._client.post(self.api.http_url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise _network_error(exc, self.api, channel) from exc
        return _parse(response, self.api, channel)

    def close(self) -> None:
        """Close the pooled connections."""
        self._client.close()

    def __enter__(self) -> HTTPPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncHTTPPublisher(_PublisherBase):
    """Publish over HTTP from async code with a pool of keep-alive connections.

    Args:
        api: the alias's configuration (endpoint, auth, ``TIMEOUTS['HTTP']``).
        timeout: seconds per request; default ``TIMEOUTS['HTTP']``.
        retries: connection attempts retried when a connection cannot be opened.
        max_connections: pool size.
        mode: force an auth mode instead of the namespace's first held mode.
        transport: an ``httpx.AsyncBaseTransport`` replacing the network (tests).

    An instance belongs to the event loop it is first used on (httpx's rule).
    """

    def __init__(
        self,
        api: APIConfig,
        *,
        timeout: float | None = None,
        retries: int = 2,
        max_connections: int = 10,
        mode: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            api, timeout=timeout, retries=retries, max_connections=max_connections, mode=mode
        )
        self._client = httpx.AsyncClient(
            transport=transport
            or httpx.AsyncHTTPTransport(
                retries=retries,
                limits=_limits(max_connections),
                socket_options=_SOCKET_OPTIONS,
                proxy=_proxy(api),
            ),
            timeout=self.timeout,
            headers=_BASE_HEADERS,
        )

    async def publish(self, channel: str, events: Sequence[str]) -> PublishSuccess:
        """Send one request of at most five encoded events to ``channel``.

        Raises:
            PublishError: a non-2xx answer (with the service's ``errors`` and ``status``),
                or a network failure.
            AuthError: auth headers could not be produced.
        """
        body = request_body(channel, events)
        headers = await ahttp_headers(self.api, channel, body, mode=self.mode)
        try:
            response = await self._client.post(self.api.http_url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise _network_error(exc, self.api, channel) from exc
        return _parse(response, self.api, channel)

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._client.aclose()

    async def __aenter__(self) -> AsyncHTTPPublisher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
