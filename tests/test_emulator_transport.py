"""The emulator's coalescing transport: the writes of one event-loop pass go out as one."""

from __future__ import annotations

import asyncio
from typing import Any

from appsync_events.emulator.asgi import _CoalescingTransport


class FakeTransport:
    """Records what reaches the real transport."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.calls: list[str] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        self.calls.append("write")

    def close(self) -> None:
        self.calls.append("close")

    def write_eof(self) -> None:
        self.calls.append("write_eof")

    def abort(self) -> None:
        self.calls.append("abort")

    def get_write_buffer_size(self) -> int:
        return 10

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default


async def test_writes_of_one_pass_reach_the_transport_once_in_order() -> None:
    """Three writes in one pass become one write of their bytes, in order, on the next pass."""
    real = FakeTransport()
    transport = _CoalescingTransport(real)  # type: ignore[arg-type]
    transport.write(b"a")
    transport.write(b"")
    transport.writelines([b"b", b"c"])
    assert real.writes == []
    assert transport.get_write_buffer_size() == 13
    await asyncio.sleep(0)
    assert real.writes == [b"abc"]
    transport.write(b"d")
    await asyncio.sleep(0)
    assert real.writes == [b"abc", b"d"]


async def test_close_and_write_eof_send_what_is_pending_first() -> None:
    """close() and write_eof() hand pending bytes over before closing; abort() drops them."""
    real = FakeTransport()
    transport = _CoalescingTransport(real)  # type: ignore[arg-type]
    transport.write(b"bye")
    transport.write_eof()
    transport.write(b"again")
    transport.close()
    assert real.calls == ["write", "write_eof", "write", "close"]
    assert real.writes == [b"bye", b"again"]
    transport.write(b"lost")
    transport.abort()
    await asyncio.sleep(0)
    assert real.writes == [b"bye", b"again"]
    assert real.calls[-1] == "abort"
    assert transport.get_extra_info("peername") == ("127.0.0.1", 1)
