"""The publishing backend contract: :class:`BaseBackend`.

A backend receives events already validated and encoded (JSON texts) for one concrete,
normalised channel, and delivers them, returning a
:class:`~appsync_events.results.PublishResult` keyed by the caller's event indices.
Chunking (5 events, 1.2 MB per request) happens here, once, for every backend.

Subclasses implement :meth:`BaseBackend.send_chunk` (one request of at most five events)
and, when that does I/O, :meth:`BaseBackend.asend_chunk`; they declare the options they
accept in :attr:`BaseBackend.option_names`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

from .. import instrumentation
from .._loading import reject_unknown_options
from ..batching import chunk_indices
from ..conf import APIConfig
from ..exceptions import AppSyncEventsError, PartialPublishError
from ..protocol import PublishSuccess
from ..results import PublishResult

__all__ = ["BaseBackend"]

logger = logging.getLogger(__name__)


class BaseBackend:
    """Base class of publishing backends (the ``PUBLISH['BACKEND']`` of an alias).

    Args:
        api: the alias's configuration.
        **options: ``PUBLISH['OPTIONS']`` with lowercased keys; unknown names are refused.

    One instance serves a process (see :func:`appsync_events.backends.get_backend`), from
    any thread and from async code: implementations must be thread-safe.
    """

    #: The option names the backend accepts (lowercase).
    option_names: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, api: APIConfig, **options: Any) -> None:
        self.api = api
        reject_unknown_options(
            options,
            self.option_names,
            owner=type(self),
            setting=f"APPSYNC_EVENTS[{api.alias!r}]['PUBLISH']['OPTIONS']",
            api=api.alias,
            key="PUBLISH",
            check_id="appsync_events.E009",
        )
        self.options = options

    # -- what subclasses implement ------------------------------------------------------

    def send_chunk(self, channel: str, events: Sequence[str]) -> PublishSuccess:
        """Deliver one request of at most five events; return the service's answer.

        ``index`` in the answer is the position within ``events``.

        Raises:
            PublishError: when the whole request was refused or could not be made.
        """
        raise NotImplementedError

    async def asend_chunk(self, channel: str, events: Sequence[str]) -> PublishSuccess:
        """Async twin of :meth:`send_chunk`; the default calls it (fine when it does no I/O)."""
        return self.send_chunk(channel, events)

    def close(self) -> None:
        """Release connections held by the backend (it may be used again afterwards)."""

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        self.close()

    # -- the chunking every backend shares ------------------------------------------------

    def send(self, channel: str, events: Sequence[str]) -> PublishResult:
        """Deliver ``events`` to ``channel`` in as many requests as the limits require.

        Args:
            channel: a normalised concrete channel (``/ns/a``).
            events: encoded JSON texts, each within the per-event limit.

        Returns:
            every event by its index in ``events``: successful or failed.

        Raises:
            PartialPublishError: a request failed after earlier ones were accepted; it says
                which indices were accepted and which were not sent.
            PublishError: the first request failed (nothing was accepted).
        """
        result = PublishResult(self.api.alias, channel)
        chunks = chunk_indices(channel, events)
        with instrumentation.publishing(self, channel, len(events)) as probe:
            for number, chunk in enumerate(chunks):
                try:
                    with probe.request(len(chunk)):
                        answer = self.send_chunk(channel, [events[i] for i in chunk])
                except AppSyncEventsError as exc:
                    probe.not_sent(sum(map(len, chunks[number + 1 :])))
                    self._raise_partial(exc, result, chunks[number:], channel)
                    raise
                part = PublishResult.from_message(
                    answer, api=self.api.alias, channel=channel, indices=chunk
                )
                probe.answered(part)
                result = result.merge(part)
        return result

    async def asend(self, channel: str, events: Sequence[str]) -> PublishResult:
        """Async twin of :meth:`send`."""
        result = PublishResult(self.api.alias, channel)
        chunks = chunk_indices(channel, events)
        with instrumentation.publishing(self, channel, len(events)) as probe:
            for number, chunk in enumerate(chunks):
                try:
                    with probe.request(len(chunk)):
                        answer = await self.asend_chunk(channel, [events[i] for i in chunk])
                except AppSyncEventsError as exc:
                    probe.not_sent(sum(map(len, chunks[number + 1 :])))
                    self._raise_partial(exc, result, chunks[number:], channel)
                    raise
                part = PublishResult.from_message(
                    answer, api=self.api.alias, channel=channel, indices=chunk
                )
                probe.answered(part)
                result = result.merge(part)
        return result

    def _raise_partial(
        self,
        exc: AppSyncEventsError,
        result: PublishResult,
        remaining: Sequence[Sequence[int]],
        channel: str,
    ) -> None:
        """Raise :class:`PartialPublishError` when earlier requests were accepted."""
        if not result.successful and not result.failed:
            return  # nothing went out: the original error says it all
        accepted = [e.index for e in result.successful]
        not_sent = [i for chunk in remaining for i in chunk]
        logger.warning(
            "Publish to %s on %r failed part-way: %d events accepted, %d not sent",
            channel,
            self.api.alias,
            len(accepted),
            len(not_sent),
        )
        raise PartialPublishError(
            f"Publish failed part-way: {exc.message or type(exc).__name__}",
            accepted=accepted,
            not_sent=not_sent,
            result=result,
            api=self.api.alias,
            channel=channel,
            errors=exc.errors,
            status=getattr(exc, "status", None),
        ) from exc

    def __repr__(self) -> str:  # options may hold secrets
        return f"<{type(self).__name__} api={self.api.alias!r}>"
