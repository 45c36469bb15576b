"""The websocket connection the client reads from: ``websockets``, with a batched receive path.

``websockets`` opens the connection, sends every frame, answers pings, runs the closing
handshake and validates every frame it parses. :class:`EventSocket` (a
``ClientConnection`` subclass, passed to ``websockets``' ``connect`` as its documented
``create_connection`` factory) changes only how received messages reach the client:

* Every message, in arrival order, goes into one deque (:attr:`EventSocket.messages`)
  that the client's reader task drains in batches: one wake-up per batch of frames read
  together, instead of one future and one ``recv()`` call per message.
* Complete, unmasked, unfragmented text frames without reserved bits (every frame
  AppSync sends in practice) are cut out of the byte stream here, with a few integer
  operations per frame. Any other frame (ping, pong, close, fragments, binary, oversize,
  reserved bits, a masked frame, invalid UTF-8) is handed whole and in order to
  ``websockets``' own parser, which handles it exactly as it always does: pongs, the
  close handshake, and failing the connection with 1002 / 1007 / 1009.

Frame boundaries are known here because ``websockets`` only ever receives whole frames
once the connection is open: the upgrade response is handed to it up to its blank line
and not a byte further. A ``websockets`` release without the message size limit the cut
applies (:func:`layout_known`) gets every frame through its own parser: slower, the
same messages.

A failed connection (``websockets`` sent a close frame after a protocol error and waits
for the service to end TCP) is aborted once ``close_timeout`` passes.

Flow control: once :attr:`EventSocket.high_water` messages wait, reading from the socket
pauses until the reader has drained them to :attr:`EventSocket.low_water`, so memory
stays bounded by that many messages plus one read of the socket, and a reader that waits
(backpressure) makes TCP itself push back on the service.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import State

__all__ = ["EventSocket", "frame_size", "layout_known"]

logger = logging.getLogger(__name__)

_TEXT_FIN = 0x81  # FIN set, no reserved bits, opcode 1 (text)


def frame_size(data: bytes | bytearray, pos: int = 0) -> int | None:
    """Return the size of the frame starting at ``data[pos]``, header included.

    ``None`` when ``data`` does not hold the whole header yet. Works for any frame
    (masked or not), so a frame can be handed on whole whatever it is.
    """
    available = len(data) - pos
    if available < 2:
        return None
    second = data[pos + 1]
    length = second & 0x7F
    header = 2
    if length == 126:
        header = 4
        if available < header:
            return None
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
    elif length == 127:
        header = 10
        if available < header:
            return None
        length = int.from_bytes(data[pos + 2 : pos + 10], "big")
    if second & 0x80:  # a mask key follows
        header += 4
    return header + length


def layout_known(protocol: Any) -> bool:
    """Whether ``protocol`` (websockets' Sans-I/O side) has the size limit the cut applies.

    Without it (a websockets release that names it differently), every frame goes
    through websockets' parser, which applies its own limit.
    """
    return hasattr(protocol, "max_message_size")


class EventSocket(ClientConnection):
    """A ``ClientConnection`` whose received messages are read from :attr:`messages`.

    Use :meth:`wait_messages` to wait for messages, pop them from :attr:`messages`
    (``str`` for text, ``bytes`` for binary) and call :meth:`drained` after a batch.
    ``recv()`` and iteration are not used: every message goes to :attr:`messages`.
    """

    #: Pause reading once this many messages wait; resume at :attr:`low_water`.
    high_water = 64
    low_water = 16

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.messages: deque[str | bytes] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._partial = bytearray()  # the start of a frame cut here, awaiting the rest
        self._partial_size = 0  # its whole size, 0 while its header is incomplete
        self._fragments: list[Frame] = []  # a fragmented message websockets parsed
        self._head = b""  # the last bytes of the upgrade response read so far
        self._reading_paused = False
        self._close_timer: asyncio.TimerHandle | None = None

    # -- for the reader -------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        """Whether the connection is closed (no more messages will come)."""
        return self.protocol.state is State.CLOSED

    async def wait_messages(self) -> None:
        """Return once a message waits in :attr:`messages` or the connection closed."""
        if self.messages or self.protocol.state is State.CLOSED:
            return
        waiter = self._waiter = self.loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def drained(self) -> None:
        """Tell the socket the reader took messages: reading resumes at low water."""
        if self._reading_paused and len(self.messages) <= self.low_water:
            self._reading_paused = False
            self.transport.resume_reading()

    # -- asyncio protocol -----------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        protocol = self.protocol
        if protocol.state is State.CONNECTING:
            data = self._upgrade(data)
            if not data:
                return
        if protocol.state is not State.OPEN or not layout_known(protocol):
            self._to_websockets(data)
            return
        if self._partial:
            partial = self._partial
            partial += data
            if self._partial_size == 0:
                self._partial_size = frame_size(partial) or 0
            if self._partial_size == 0 or len(partial) < self._partial_size:
                return
            data = self._take_partial()
        self._cut(data, protocol.max_message_size)
        self._after_websockets()

    def _upgrade(self, data: bytes) -> bytes:
        """Feed websockets the upgrade response, not a byte more; return what follows.

        So websockets never holds part of a frame once the connection is open: from then
        on it only ever receives whole frames, and every frame boundary is known here.
        """
        seen = self._head + data
        end = seen.find(b"\r\n\r\n")
        if end < 0:
            self._head = seen[-3:]
            super().data_received(data)
            return b""
        split = end + 4 - len(self._head)
        self._head = b""
        super().data_received(data[:split])
        return data[split:]

    def _cut(self, data: bytes, max_size: int | None) -> None:
        """Cut the complete frames of ``data``; keep a trailing partial one."""
        messages = self.messages
        protocol = self.protocol
        end = len(data)
        pos = 0
        while pos < end:
            if end - pos < 2:
                break
            first = data[pos]
            second = data[pos + 1]
            length = second
            header = 2
            if length == 126:
                if end - pos < 4:
                    break
                length = (data[pos + 2] << 8) | data[pos + 3]
                header = 4
            elif length > 126:  # masked (never valid from a server) or a 64-bit length
                size = frame_size(data, pos)
                if size is None:
                    break
                stop = pos + size
                if stop > end:
                    break
                self._frame_to_websockets(data, pos, stop, end)
                if protocol.state is not State.OPEN:
                    return
                pos = stop
                continue
            stop = pos + header + length
            if stop > end:
                break
            fast = first == _TEXT_FIN and (max_size is None or length <= max_size)
            if fast and not self._fragments:
                try:
                    messages.append(data[pos + header : stop].decode())
                except UnicodeDecodeError:
                    pass  # websockets fails the connection with 1007 (process_event)
                else:
                    pos = stop
                    continue
            self._frame_to_websockets(data, pos, stop, end)
            if protocol.state is not State.OPEN:
                return
            pos = stop
        if pos < end:
            self._partial = bytearray(data[pos:])
            self._partial_size = frame_size(self._partial) or 0

    def _frame_to_websockets(self, data: bytes, pos: int, stop: int, end: int) -> None:
        """Hand the frame ``data[pos:stop]`` to websockets; the rest too once it closes."""
        super().data_received(data[pos:stop])
        if self.protocol.state is not State.OPEN and stop < end:
            super().data_received(data[stop:])  # discarded by websockets while closing

    def _take_partial(self) -> bytes:
        """Return the bytes of the frame begun here and forget them."""
        partial = bytes(self._partial)
        self._partial = bytearray()
        self._partial_size = 0
        return partial

    def _to_websockets(self, data: bytes) -> None:
        if self._partial:
            data = self._take_partial() + data
        super().data_received(data)
        self._after_websockets()

    def _after_websockets(self) -> None:
        """Wake the reader; bound the wait for the server to end TCP after a failure.

        When websockets failed the connection (a protocol error: it sent a close frame
        and now waits for the server to close TCP), the transport is aborted once its
        close deadline passes, as websockets' own ``recv()`` path would do.
        """
        if self.close_deadline is not None and self._close_timer is None:
            self._close_timer = self.loop.call_at(self.close_deadline, self._close_timed_out)
        self._wake()

    def _close_timed_out(self) -> None:
        if self.protocol.state is not State.CLOSED:
            logger.warning(
                "The service did not end the connection within %s s of the close frame; "
                "aborting it",
                self.close_timeout,
            )
            self.set_connection_exc(TimeoutError("timed out while closing connection"))
            self.transport.abort()

    def process_event(self, event: Any) -> None:
        """Queue the data frames websockets parsed; the rest as websockets does."""
        if self.response is None or not isinstance(event, Frame):
            super().process_event(event)  # the handshake response
            return
        opcode = event.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if event.fin:
                self._queue(opcode, event.data)
            else:
                self._fragments = [event]
        elif opcode is Opcode.CONT:
            self._fragments.append(event)
            if event.fin:
                fragments, self._fragments = self._fragments, []
                self._queue(fragments[0].opcode, b"".join(f.data for f in fragments))
        else:
            super().process_event(event)  # pong: acknowledges pings

    def _queue(self, opcode: Opcode, data: bytes | bytearray | memoryview) -> None:
        if opcode is Opcode.BINARY:
            self.messages.append(bytes(data))
            return
        try:
            self.messages.append(bytes(data).decode())
        except UnicodeDecodeError as exc:
            # RFC 6455 8.1: fail the connection on invalid UTF-8 (websockets' recv()
            # does the same); _after_websockets() bounds the wait for the TCP close.
            logger.warning("The service sent a text frame that is not UTF-8; closing (1007)")
            self.set_connection_exc(exc)
            self.protocol.fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
            self.send_data()
            if self.close_deadline is None and self.close_timeout is not None:
                self.close_deadline = self.loop.time() + self.close_timeout

    def eof_received(self) -> None:
        if self._partial:
            # websockets reports the truncated frame (1006, unexpected end of stream).
            super().data_received(self._take_partial())
        super().eof_received()
        self._after_websockets()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._close_timer is not None:
            self._close_timer.cancel()
        self._wake()

    def _wake(self) -> None:
        if self.messages:
            if len(self.messages) >= self.high_water and not self._reading_paused:
                self._reading_paused = True
                self.transport.pause_reading()
        elif self.protocol.state is not State.CLOSED:
            return
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
