"""Raw protocol helpers for the emulator tests (no tests here; imported by test_emulator*).

Tests drive the emulator with plain ``websockets`` and ``httpx`` calls, never through our
own client, so they check the wire exactly.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

from appsync_events.auth import encode_header_subprotocol
from appsync_events.emulator import AppSyncEventsEmulator

#: Scales every wait (slow CI machines set APPSYNC_EVENTS_TESTS_TIMEOUT_FACTOR).
FACTOR = float(os.environ.get("APPSYNC_EVENTS_TESTS_TIMEOUT_FACTOR", "1"))
TIMEOUT = 5.0 * FACTOR
SUBPROTOCOL = "aws-appsync-event-ws"


def api_key_auth(emulator: AppSyncEventsEmulator, key: str | None = None) -> dict[str, str]:
    """The API-key header object Amplify sends."""
    return {"host": emulator.http_host, "x-api-key": key or emulator.api_key}


class RawClient:
    """A bare websocket speaking the AppSync Events protocol frame by frame."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def open(
        cls,
        emulator: AppSyncEventsEmulator,
        auth: Mapping[str, str] | None = None,
        *,
        via: str = "subprotocol",
        subprotocols: list[str] | None = None,
        url: str | None = None,
        compression: str | None = "deflate",
    ) -> RawClient:
        """Open a websocket with the connect auth in the ``header-`` subprotocol or headers."""
        auth = api_key_auth(emulator) if auth is None else dict(auth)
        protocols = [SUBPROTOCOL] if subprotocols is None else list(subprotocols)
        headers: dict[str, str] = {}
        if via == "subprotocol":
            protocols.append(encode_header_subprotocol(auth))
        elif via == "headers":
            headers = {k: v for k, v in auth.items() if k.lower() != "host"}
        ws = await websockets.connect(
            url or emulator.realtime_url,
            subprotocols=protocols,  # type: ignore[arg-type]
            additional_headers=headers,
            compression=compression,
            open_timeout=TIMEOUT,
            max_size=None,
        )
        return cls(ws)

    async def send(self, message: Mapping[str, Any] | str | bytes) -> None:
        """Send a dict as JSON, or a raw text/binary frame."""
        await self.ws.send(json.dumps(message) if isinstance(message, Mapping) else message)

    async def recv(self, within: float = TIMEOUT) -> dict[str, Any]:
        """Receive the next frame, decoded."""
        frame = await asyncio.wait_for(self.ws.recv(), within)
        return json.loads(frame)

    async def recv_type(self, *types: str, within: float = TIMEOUT) -> dict[str, Any]:
        """Receive frames until one of ``types`` arrives (``ka`` and others are skipped)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            message = await self.recv(max(0.01, deadline - loop.time()))
            if message["type"] in types:
                return message

    async def init(self) -> dict[str, Any]:
        """Send ``connection_init``; return ``connection_ack`` (or ``connection_error``)."""
        await self.send({"type": "connection_init"})
        return await self.recv_type("connection_ack", "connection_error")

    async def subscribe(
        self, sub_id: str, channel: str, auth: Mapping[str, str], **extra: Any
    ) -> dict[str, Any]:
        """Subscribe; return the answer."""
        await self.send(
            {"type": "subscribe", "id": sub_id, "channel": channel, "authorization": dict(auth)}
            | extra
        )
        return await self.recv_type("subscribe_success", "subscribe_error", "error")

    async def publish(
        self, pub_id: str, channel: str, events: list[str], auth: Mapping[str, str]
    ) -> dict[str, Any]:
        """Publish; return the answer."""
        await self.send(
            {
                "type": "publish",
                "id": pub_id,
                "channel": channel,
                "events": events,
                "authorization": dict(auth),
            }
        )
        return await self.recv_type("publish_success", "publish_error", "error")

    async def data(self, count: int, within: float = TIMEOUT) -> list[dict[str, Any]]:
        """Receive ``count`` data frames (skipping ``ka``)."""
        return [await self.recv_type("data", within=within) for _ in range(count)]

    async def no_frame(self, types: tuple[str, ...] = ("data",), wait: float = 0.2) -> None:
        """Assert no frame of ``types`` arrives within ``wait`` seconds (``ka`` ignored).

        The wait is a bound on absence, not a synchronisation: a frame that should not
        exist can only be checked for a while.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while (left := deadline - loop.time()) > 0:
            try:
                message = await self.recv(left)
            except TimeoutError:
                return
            assert message["type"] not in types, f"unexpected frame {message}"

    async def close(self) -> None:
        """Close the websocket."""
        await self.ws.close()

    async def __aenter__(self) -> RawClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def connected(
    emulator: AppSyncEventsEmulator, auth: Mapping[str, str] | None = None
) -> RawClient:
    """Open a websocket and complete the handshake (asserting the ack)."""
    client = await RawClient.open(emulator, auth)
    ack = await client.init()
    assert ack["type"] == "connection_ack", ack
    return client


async def http_publish(
    emulator: AppSyncEventsEmulator,
    channel: str,
    events: list[str],
    headers: Mapping[str, str] | None = None,
    *,
    body: bytes | None = None,
) -> httpx.Response:
    """POST /event with the given headers (API key by default)."""
    if headers is None:
        headers = {"x-api-key": emulator.api_key}
    content = (
        body if body is not None else json.dumps({"channel": channel, "events": events}).encode()
    )
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        return await client.post(
            emulator.http_url,
            content=content,
            headers={"content-type": "application/json", **headers},
        )
