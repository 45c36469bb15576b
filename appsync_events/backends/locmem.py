"""The ``locmem`` backend: records publishes in memory for tests, like ``mail.outbox``.

.. code-block:: python

    from appsync_events.backends import locmem

    def test_view_announces(client):
        client.post("/rooms/7/messages", {"text": "hi"})
        locmem.assert_published("/chat/rooms/7", {"text": "hi", ...})

The records are module-level lists shared by every alias using this backend;
:func:`clear` empties them (the test plugin does so between tests, when it is active).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from django.utils.module_loading import import_string

from ..conf import APIConfig
from ..exceptions import ConfigurationError
from ..paths import normalize_channel
from ..protocol import FailedEvent, PublishSuccess, SuccessfulEvent
from ..results import PublishResult
from .base import BaseBackend
from .dummy import accept_all

__all__ = [
    "LocMemBackend",
    "PublishRecord",
    "assert_nothing_published",
    "assert_published",
    "clear",
    "published",
    "published_events",
    "requests",
]

_MISSING: Final[Any] = object()


@dataclass(frozen=True, slots=True)
class PublishRecord:
    """One ``send`` a locmem backend handled (one ``publish()`` call, or an outbox batch).

    Attributes:
        api: the alias.
        channel: the normalised channel.
        events: the encoded JSON texts, in the caller's order.
        requests: the texts of each request, as chunked (``[[5], [5], [2]]`` for 12).
        result: what the backend answered.
    """

    api: str
    channel: str
    events: tuple[str, ...]
    requests: tuple[tuple[str, ...], ...] = ()
    result: PublishResult | None = field(default=None, compare=False)

    @property
    def payloads(self) -> list[Any]:
        """The events decoded from JSON."""
        return [json.loads(e) for e in self.events]


#: Every send, in order.
published: list[PublishRecord] = []
#: Every request (chunk) as ``(api, channel, texts)``, in order.
requests: list[tuple[str, str, tuple[str, ...]]] = []

_lock = threading.RLock()


def clear() -> None:
    """Forget every recorded publish."""
    with _lock:
        published.clear()
        requests.clear()


def published_events(channel: str | None = None, *, api: str | None = None) -> list[Any]:
    """Return the decoded events recorded (for ``channel`` and ``api`` when given)."""
    path = normalize_channel(channel) if channel is not None else None
    return [
        payload
        for record in list(published)
        if (path is None or record.channel == path) and (api is None or record.api == api)
        for payload in record.payloads
    ]


def assert_published(
    channel: str, event: Any = _MISSING, *, api: str | None = None, count: int | None = None
) -> None:
    """Assert that ``event`` (or anything, when omitted) was published to ``channel``.

    Args:
        channel: the channel, in any accepted spelling (``chat/a`` or ``/chat/a``).
        event: the expected decoded event (compared with ``==``).
        api: restrict to one alias.
        count: also require exactly this many matching events.

    Raises:
        AssertionError: listing what was published instead.
    """
    path = normalize_channel(channel)
    found = published_events(path, api=api)
    matching = found if event is _MISSING else [e for e in found if e == event]
    if (count is None and matching) or (count is not None and len(matching) == count):
        return
    seen = [(r.api, r.channel, r.payloads) for r in list(published)]
    wanted = "an event" if event is _MISSING else f"event {event!r}"
    times = "" if count is None else f" exactly {count} time(s) (found {len(matching)})"
    raise AssertionError(f"Expected {wanted} published to {path}{times}; published: {seen!r}")


def assert_nothing_published() -> None:
    """Assert that nothing was published since the last :func:`clear`."""
    if published:
        seen = [(r.api, r.channel, r.payloads) for r in list(published)]
        raise AssertionError(f"Expected nothing published; published: {seen!r}")


Rejecter = Callable[[str, str], "str | None"]


class LocMemBackend(BaseBackend):
    """Record publishes in :data:`published` and accept the events.

    Options:
        reject: a callable ``(channel, event_text) -> error code or None`` (or its dotted
            path); events for which it returns a code are reported in ``failed`` with it,
            as the service reports an event its handler refused. For testing failures.
    """

    option_names = frozenset({"reject"})

    def __init__(self, api: APIConfig, **options: Any) -> None:
        super().__init__(api, **options)
        reject = options.get("reject")
        if isinstance(reject, str):
            reject = import_string(reject)
        if reject is not None and not callable(reject):
            raise ConfigurationError(
                f"APPSYNC_EVENTS[{api.alias!r}]['PUBLISH']['OPTIONS']['REJECT'] must be a "
                "callable or its dotted path.",
                api=api.alias,
                key="PUBLISH",
                check_id="appsync_events.E009",
            )
        self._reject: Rejecter | None = reject

    def send_chunk(self, channel: str, events: Sequence[str]) -> PublishSuccess:
        """Record the request and answer as the service would."""
        with _lock:
            requests.append((self.api.alias, channel, tuple(events)))
        if self._reject is None:
            return accept_all(events)
        ok: list[SuccessfulEvent] = []
        failed: list[FailedEvent] = []
        for index, event in zip(range(len(events)), events, strict=True):
            code = self._reject(channel, event)
            if code:
                failed.append(FailedEvent(None, index, code, f"rejected by locmem: {code}"))
            else:
                ok.append(SuccessfulEvent(accept_all([event]).successful[0].identifier, index))
        return PublishSuccess("", tuple(ok), tuple(failed))

    def send(self, channel: str, events: Sequence[str]) -> PublishResult:
        """Send as every backend does, then record the publish."""
        with _lock:
            start = len(requests)
            result = super().send(channel, events)
            chunks = tuple(texts for (_, _, texts) in requests[start:])
            published.append(PublishRecord(self.api.alias, channel, tuple(events), chunks, result))
        return result

    async def asend(self, channel: str, events: Sequence[str]) -> PublishResult:
        """Async twin of :meth:`send` (nothing here blocks)."""
        return self.send(channel, events)
