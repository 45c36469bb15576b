"""Fault switches the emulator reads while it serves.

One :class:`Faults` object per emulator. Tests flip switches from any thread; the
emulator's loop reads them at the moments they matter (a ``ka`` tick, a connect, an
ack, each frame sent). Actions on live connections (send garbage, close, drop the TCP
connection) are methods of :class:`~appsync_events.emulator.AppSyncEventsEmulator`,
because they need the running loop and, for broken frames, the fault proxy.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

__all__ = ["Faults"]


@dataclass(slots=True)
class _Switches:
    keepalive_stopped: bool = False
    reject_connects: int = 0
    ack_delay: float = 0.0
    close_after_messages: int | None = None
    close_after_seconds: float | None = None
    close_code: int = 1000


class Faults:
    """Thread-safe fault switches (see the module docstring).

    All switches start off; :meth:`reset` turns them all off again (the pytest fixture
    does so before each test).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._s = _Switches()

    def reset(self) -> None:
        """Turn every switch off."""
        with self._lock:
            self._s = _Switches()

    # -- keep-alive --------------------------------------------------------------------

    def stop_keepalive(self) -> None:
        """Stop sending ``ka`` on every connection (open or future) until resumed."""
        with self._lock:
            self._s.keepalive_stopped = True

    def resume_keepalive(self) -> None:
        """Send ``ka`` again."""
        with self._lock:
            self._s.keepalive_stopped = False

    @property
    def keepalive_stopped(self) -> bool:
        """Whether ``ka`` frames are suppressed."""
        return self._s.keepalive_stopped

    # -- connects ----------------------------------------------------------------------

    def reject_next_connects(self, count: int = 1) -> None:
        """Answer the next ``count`` connects with ``connection_error``, whatever their auth."""
        if count < 0:
            raise ValueError("count must be 0 or more")
        with self._lock:
            self._s.reject_connects = count

    def take_connect_rejection(self) -> bool:
        """Consume one pending connect rejection; return whether there was one."""
        with self._lock:
            if self._s.reject_connects > 0:
                self._s.reject_connects -= 1
                return True
            return False

    @property
    def pending_connect_rejections(self) -> int:
        """How many connects will still be rejected."""
        return self._s.reject_connects

    def delay_ack(self, seconds: float) -> None:
        """Wait ``seconds`` before each ``connection_ack`` (0 turns it off)."""
        if seconds < 0:
            raise ValueError("seconds must be 0 or more")
        with self._lock:
            self._s.ack_delay = float(seconds)

    @property
    def ack_delay(self) -> float:
        """Seconds each ``connection_ack`` is held back."""
        return self._s.ack_delay

    # -- closing -----------------------------------------------------------------------

    def close_after(
        self, *, messages: int | None = None, seconds: float | None = None, code: int = 1000
    ) -> None:
        """Close each connection opened from now on after it was sent ``messages`` frames
        (``connection_ack``, ``ka`` and answers included) or after ``seconds``.

        Call with neither to turn it off.
        """
        if messages is not None and messages < 1:
            raise ValueError("messages must be 1 or more")
        if seconds is not None and seconds <= 0:
            raise ValueError("seconds must be greater than 0")
        with self._lock:
            self._s.close_after_messages = messages
            self._s.close_after_seconds = seconds
            self._s.close_code = code

    @property
    def close_after_messages(self) -> int | None:
        """Frames after which new connections are closed, or ``None``."""
        return self._s.close_after_messages

    @property
    def close_after_seconds(self) -> float | None:
        """Seconds after which new connections are closed, or ``None``."""
        return self._s.close_after_seconds

    @property
    def close_code(self) -> int:
        """The close code :meth:`close_after` uses."""
        return self._s.close_code
