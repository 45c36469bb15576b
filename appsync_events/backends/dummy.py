"""The ``dummy`` backend: accepts every event and sends nothing (like Django's dummy mail)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from ..protocol import PublishSuccess, SuccessfulEvent
from .base import BaseBackend

__all__ = ["DummyBackend", "accept_all"]


def accept_all(events: Sequence[str]) -> PublishSuccess:
    """Return an answer accepting every event, each with a fresh UUID identifier."""
    return PublishSuccess(
        "", tuple(SuccessfulEvent(str(uuid.uuid4()), index) for index in range(len(events)))
    )


class DummyBackend(BaseBackend):
    """Accept and drop every event: for environments that must not publish at all."""

    def send_chunk(self, channel: str, events: Sequence[str]) -> PublishSuccess:
        """Accept every event without sending it."""
        return accept_all(events)
