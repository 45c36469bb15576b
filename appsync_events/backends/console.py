"""The ``console`` backend: writes each publish request to a stream (stdout by default)."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Sequence
from typing import IO, Any

from ..conf import APIConfig
from ..protocol import PublishSuccess, dumps
from .base import BaseBackend
from .dummy import accept_all

__all__ = ["ConsoleBackend"]


class ConsoleBackend(BaseBackend):
    """Print every request as one JSON line and accept its events (for development).

    Each line is ``{"api": …, "channel": …, "events": [<decoded events>]}``.

    Options:
        stream: a text stream to write to; default ``sys.stdout`` at the time of writing
            (so test runners that capture stdout see it).
    """

    option_names = frozenset({"stream"})

    def __init__(self, api: APIConfig, **options: Any) -> None:
        super().__init__(api, **options)
        self._stream: IO[str] | None = options.get("stream")
        self._lock = threading.Lock()

    def send_chunk(self, channel: str, events: Sequence[str]) -> PublishSuccess:
        """Write the request and accept its events."""
        line = dumps(
            {"api": self.api.alias, "channel": channel, "events": [json.loads(e) for e in events]}
        )
        stream = self._stream or sys.stdout
        with self._lock:
            stream.write(line + "\n")
            stream.flush()
        return accept_all(events)
