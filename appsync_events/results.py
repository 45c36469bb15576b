"""The outcome of a publish, reported by the caller's own event indices."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .exceptions import PublishError
from .protocol import FailedEvent, PublishSuccess, SuccessfulEvent

__all__ = ["FailedEvent", "PublishResult", "SuccessfulEvent"]


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What the service did with each event of one ``publish()`` call.

    Every event the caller passed appears in exactly one of the two lists, by its
    position in the caller's arguments (``index``), however the events were chunked.

    Attributes:
        api: the alias published through.
        channel: the normalised channel.
        successful: accepted events, each with the service's ``identifier``.
        failed: refused events, each with the service's ``code`` and ``message``.
    """

    api: str
    channel: str
    successful: tuple[SuccessfulEvent, ...] = ()
    failed: tuple[FailedEvent, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether every event was accepted."""
        return not self.failed

    @property
    def identifiers(self) -> dict[int, str]:
        """The service identifier of each accepted event, by caller index."""
        return {e.index: e.identifier for e in self.successful}

    def raise_for_failures(self) -> PublishResult:
        """Raise :class:`~appsync_events.exceptions.PublishError` if any event failed.

        Returns:
            ``self``, so calls chain: ``publish(...).raise_for_failures()``.
        """
        if self.failed:
            raise PublishError(
                f"{len(self.failed)} of {len(self.failed) + len(self.successful)} events "
                f"were refused (indices {[e.index for e in self.failed]})",
                api=self.api,
                channel=self.channel,
                errors=[
                    {"errorType": e.code or "Failed", "message": e.message} for e in self.failed
                ],
            )
        return self

    @classmethod
    def from_message(
        cls, message: PublishSuccess, *, api: str, channel: str, indices: Iterable[int]
    ) -> PublishResult:
        """Build a result from one ``publish_success``, mapping chunk positions to caller
        indices (``indices[i]`` is the caller index of the chunk's ``i``-th event)."""
        mapping = list(indices)

        def caller(index: int) -> int:
            return mapping[index] if 0 <= index < len(mapping) else index

        return cls(
            api,
            channel,
            tuple(SuccessfulEvent(e.identifier, caller(e.index)) for e in message.successful),
            tuple(
                FailedEvent(e.identifier, caller(e.index), e.code, e.message)
                for e in message.failed
            ),
        )

    def merge(self, other: PublishResult) -> PublishResult:
        """Combine two chunk results of the same publish, ordered by caller index."""
        return PublishResult(
            self.api,
            self.channel,
            tuple(sorted((*self.successful, *other.successful), key=lambda e: e.index)),
            tuple(sorted((*self.failed, *other.failed), key=lambda e: e.index)),
        )
