"""Prometheus metrics of appsync_events (optional: ``pip install django-appsync-events[metrics]``).

Every metric is registered in ``prometheus_client``'s default registry, so whatever
already exposes that registry in your process shows them too; the listener serves them
on ``/metrics`` (``appsync_listen --http-port``) and web processes through the view of
:mod:`appsync_events.urls`. The names, labels and what each one counts are in
``docs/observability.md``.

Without ``prometheus-client`` nothing is exported, and the recording calls do (almost)
nothing: the publishing, outbox and consumer metrics are no-op objects, and the listener
records nothing at all.

The listener's hot path does not go through ``prometheus_client``: its counters and
histograms are plain numbers owned by the event loop (:class:`ListenerMetrics`),
turned into metric families only when someone scrapes.
That keeps an event's bookkeeping to a few attribute increments and one bisection.

Labels are low-cardinality by construction: the alias, the subscription path taken
from the configuration (``METRICS['SUBSCRIPTION_LABELS']``), the backend, the error
code, the refusal reason, the handler. Values that come from outside the code (error
codes from the service, handler and subscription names) are bounded by
``METRICS['MAX_LABEL_VALUES']`` per label; further values are counted under ``"other"``.
Nothing is ever labelled by concrete channel or by user.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from .listener import Listener

try:
    import prometheus_client
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
except ImportError:  # the [metrics] extra is not installed: record nothing
    prometheus_client = None  # type: ignore[assignment]

__all__ = [
    "AVAILABLE",
    "CONTENT_TYPE",
    "DURATION_BUCKETS",
    "OTHER",
    "PUBLISH_BUCKETS",
    "Count",
    "Histogram",
    "LabelBound",
    "ListenerMetrics",
    "error_code",
    "exposition",
    "listener_metrics",
    "outbox_backlog",
    "register_outbox_collector",
]

logger = logging.getLogger(__name__)

#: Whether ``prometheus-client`` is installed (metrics are recorded and exported).
AVAILABLE: Final = prometheus_client is not None

#: The ``Content-Type`` of the text exposition format.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

#: The label value standing for every value past a label's bound.
OTHER: Final = "other"

#: Buckets (seconds) of the listener's dispatch and handler durations.
DURATION_BUCKETS: Final = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
#: Buckets (seconds) of one publish request.
PUBLISH_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class LabelBound:
    """Keep one label of one metric to at most ``limit`` distinct values.

    Calling it with a value returns the value while fewer than ``limit`` distinct ones
    were seen (or it was seen before), else :data:`OTHER`; the first overflow is logged.
    """

    def __init__(self, name: str, limit: int) -> None:
        self.name = name
        self.limit = limit
        self._seen: set[str] = set()
        self._warned = False

    def __call__(self, value: str) -> str:
        """Return ``value``, or :data:`OTHER` once the bound is reached."""
        seen = self._seen
        if value in seen:
            return value
        if len(seen) < self.limit:
            seen.add(value)
            return value
        if not self._warned:
            self._warned = True
            logger.warning(
                "Metric label %s reached METRICS['MAX_LABEL_VALUES'] (%d distinct values); "
                "%r and later new values are counted as %r",
                self.name,
                self.limit,
                value,
                OTHER,
            )
        return OTHER


# -- the listener's own bookkeeping ------------------------------------------------------


class Histogram:
    """A histogram written by one thread (the listener's event loop): plain counts.

    Read from other threads only as a snapshot (:meth:`snapshot`), which may lag the
    writer by an observation.
    """

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = DURATION_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count one observation (``le`` semantics: a value equal to a bound is in it)."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def snapshot(self) -> tuple[list[tuple[str, float]], float]:
        """Return the cumulative ``(le, count)`` buckets (``+Inf`` last) and the sum."""
        counts = list(self.counts)
        total = self.sum
        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*map(_float, self.bounds), "+Inf"), counts, strict=True):
            running += count
            buckets.append((bound, running))
        return buckets, total


def _float(value: float) -> str:
    return repr(float(value))


@dataclass(slots=True)
class Count:
    """One counter the event loop increments (``count.value += 1``)."""

    value: int = 0


@dataclass(eq=False)
class ListenerMetrics:
    """The listener metrics of one alias in this process.

    Shared by every listener of the alias the process runs (one after the other, or an
    ASGI process's in-process listener), so the counters only grow. Written by the event
    loop without locks; scrapes read them. What a listener counts anyway
    (:class:`~appsync_events.listener.ListenerStats`: received, dropped, reconnects) is
    read from the running listener and carried over here when it stops (:meth:`carry`),
    so the hot path pays nothing more for it.
    """

    api: str
    max_label_values: int = 50
    dispatched: dict[str, Count] = field(default_factory=dict)
    handler_errors: dict[str, int] = field(default_factory=dict)
    handler_duration: dict[str, Histogram] = field(default_factory=dict)
    dispatch_duration: Histogram = field(default_factory=Histogram)
    #: Counts of listeners of this alias that stopped: received, reconnects, and
    #: dropped by reason.
    received: int = 0
    reconnects: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    #: The listener of this alias that started last and runs now, if any (the gauges).
    live: weakref.ReferenceType[Listener] | None = None
    #: Every listener of this alias running now (their counts).
    running: weakref.WeakSet[Listener] = field(default_factory=weakref.WeakSet)

    def __post_init__(self) -> None:
        self.subscription_label = LabelBound("subscription", self.max_label_values)
        self.handler_label = LabelBound("handler", self.max_label_values)

    def dispatched_count(self, label: str) -> Count:
        """Return the dispatched counter of subscription label ``label`` (bounded)."""
        label = self.subscription_label(label)
        count = self.dispatched.get(label)
        if count is None:
            count = self.dispatched[label] = Count()
        return count

    def totals(self) -> tuple[int, int, dict[str, int]]:
        """Return received, reconnects and dropped (by reason), running listeners included."""
        received, reconnects, dropped = self.received, self.reconnects, dict(self.dropped)
        for listener in list(self.running):
            got, reconnected = _add_dropped(dropped, listener)
            received += got
            reconnects += reconnected
        return received, reconnects, dropped

    def start(self, listener: Listener) -> None:
        """Count ``listener``, which starts, and show its gauges."""
        self.running.add(listener)
        self.live = weakref.ref(listener)

    def carry(self, listener: Listener) -> None:
        """Keep the counts of ``listener``, which stops (its gauges go away)."""
        if listener in self.running:
            self.running.discard(listener)
            got, reconnected = _add_dropped(self.dropped, listener)
            self.received += got
            self.reconnects += reconnected
        if self.live is not None and self.live() is listener:
            self.live = None

    def handler_failed(self, name: str) -> None:
        """Count one failure of handler (receiver, sink) ``name``."""
        name = self.handler_label(name)
        self.handler_errors[name] = self.handler_errors.get(name, 0) + 1

    def handler_histogram(self, name: str) -> Histogram:
        """Return the duration histogram of handler ``name`` (bounded; created on demand)."""
        histogram = self.handler_duration.get(name)
        if histogram is None:
            label = self.handler_label(name)
            histogram = self.handler_duration.get(label)
            if histogram is None:
                histogram = self.handler_duration[label] = Histogram()
            self.handler_duration[name] = histogram
        return histogram


def _add_dropped(dropped: dict[str, int], listener: Listener) -> tuple[int, int]:
    """Add ``listener``'s dropped events to ``dropped``; return its received and reconnects."""
    stats = listener.stats
    policy = listener.config.listener.overflow
    if policy != "block":
        dropped[policy] = dropped.get(policy, 0) + stats.dropped
    dropped["shutdown"] = dropped.get("shutdown", 0) + stats.discarded
    client = listener.client
    if client is not None:
        dropped["undecodable"] = dropped.get("undecodable", 0) + client.undecodable_events
        dropped["unrouted"] = dropped.get("unrouted", 0) + client.unrouted_events
    return stats.received, stats.reconnects


_listener_metrics: dict[str, ListenerMetrics] = {}
_lock = threading.Lock()


def listener_metrics(api: str, max_label_values: int = 50) -> ListenerMetrics:
    """Return the :class:`ListenerMetrics` of alias ``api`` in this process."""
    with _lock:
        found = _listener_metrics.get(api)
        if found is None:
            found = _listener_metrics[api] = ListenerMetrics(api, max_label_values)
            _ensure_listener_collector()
        return found


# -- publishing, outbox and consumer metrics -------------------------------------------


class _NoOp:
    """Stands for a metric when ``prometheus-client`` is not installed."""

    def labels(self, *values: str) -> _NoOp:
        return self

    def inc(self, amount: float = 1) -> None:
        return None

    def dec(self, amount: float = 1) -> None:
        return None

    def observe(self, amount: float) -> None:
        return None


_NOOP: Final = _NoOp()


def _counter(name: str, doc: str, labels: Sequence[str]) -> Any:
    if prometheus_client is None:
        return _NOOP
    return prometheus_client.Counter(name, doc, labels)


def _gauge(name: str, doc: str, labels: Sequence[str]) -> Any:
    if prometheus_client is None:
        return _NOOP
    return prometheus_client.Gauge(name, doc, labels, multiprocess_mode="livesum")


def _histogram(name: str, doc: str, labels: Sequence[str], buckets: Sequence[float]) -> Any:
    if prometheus_client is None:
        return _NOOP
    return prometheus_client.Histogram(name, doc, labels, buckets=buckets)


PUBLISHED_EVENTS: Final = _counter(
    "appsync_events_published_events",
    "Events the service accepted, by alias and publishing backend.",
    ("api", "backend"),
)
PUBLISH_FAILED_EVENTS: Final = _counter(
    "appsync_events_publish_failed_events",
    "Events not published (refused, failed, or not sent after an earlier request of the "
    "same publish failed), by alias, backend and error code.",
    ("api", "backend", "code"),
)
PUBLISH_DURATION: Final = _histogram(
    "appsync_events_publish_duration_seconds",
    "Seconds one publish request (at most 5 events) took, by alias and backend.",
    ("api", "backend"),
    PUBLISH_BUCKETS,
)
PUBLISH_RETRIES: Final = _counter(
    "appsync_events_publish_retries",
    "Events the durable outbox scheduled for another attempt after a failed publish.",
    ("api",),
)
OUTBOX_SENT: Final = _counter(
    "appsync_events_outbox_sent_events",
    "Outbox rows sent (marked sent by a drainer in this process).",
    ("api",),
)
OUTBOX_FAILED: Final = _counter(
    "appsync_events_outbox_failed_events",
    "Outbox rows given up on after OUTBOX['MAX_ATTEMPTS'] attempts.",
    ("api",),
)
CONSUMER_SOCKETS: Final = _gauge(
    "appsync_events_consumer_sockets",
    "Browser websockets open in this process.",
    ("api",),
)
CONSUMER_FOLLOWS: Final = _gauge(
    "appsync_events_consumer_follows",
    "Channels followed by the browser websockets of this process.",
    ("api",),
)
CONSUMER_REFUSALS: Final = _counter(
    "appsync_events_consumer_refusals",
    "Browser requests answered with an error, by reason (the error code).",
    ("api", "reason"),
)
CONSUMER_GAPS: Final = _counter(
    "appsync_events_consumer_gaps",
    "Gaps reported to browser sockets (events the channel layer lost for them), by reason.",
    ("api", "reason"),
)
CONSUMER_MISSED: Final = _counter(
    "appsync_events_consumer_missed_events",
    "Events browser sockets are known to have missed (the ranges of the reported gaps).",
    ("api",),
)


# -- collectors ------------------------------------------------------------------------


class _ListenerCollector:
    """Turns :class:`ListenerMetrics` (and the running listeners' state) into families."""

    def describe(self) -> list[Metric]:
        # Declaring nothing: the registry then calls collect() to learn the names, which
        # needs no database and no running listener.
        return []

    def collect(self) -> Iterator[Metric]:
        received = CounterMetricFamily(
            "appsync_events_listener_events_received",
            "Events read from the websocket.",
            labels=("api",),
        )
        dispatched = CounterMetricFamily(
            "appsync_events_listener_events_dispatched",
            "Events that went through signals, handlers and sinks, by alias and subscription.",
            labels=("api", "subscription"),
        )
        dropped = CounterMetricFamily(
            "appsync_events_listener_events_dropped",
            "Events not dispatched, by reason: drop_newest or drop_oldest (LISTENER['OVERFLOW'] "
            "with a full queue), shutdown (arrived after the shutdown began), undecodable "
            "(the event was not JSON), unrouted (for a subscription the listener no longer "
            "or never held).",
            labels=("api", "reason"),
        )
        errors = CounterMetricFamily(
            "appsync_events_listener_handler_errors",
            "Exceptions raised by handlers, signal receivers (receiver:NAME) and sinks "
            "(sink:NAME).",
            labels=("api", "handler"),
        )
        reconnects = CounterMetricFamily(
            "appsync_events_listener_reconnects",
            "Connections re-established after a loss.",
            labels=("api",),
        )
        dispatch = HistogramMetricFamily(
            "appsync_events_listener_dispatch_duration_seconds",
            "Seconds from taking an event off the queue to the end of its dispatch.",
            labels=("api",),
        )
        handler = HistogramMetricFamily(
            "appsync_events_listener_handler_duration_seconds",
            "Seconds one handler ran for one event.",
            labels=("api", "handler"),
        )
        queue = GaugeMetricFamily(
            "appsync_events_listener_queue_depth",
            "Events waiting for dispatch.",
            labels=("api",),
        )
        capacity = GaugeMetricFamily(
            "appsync_events_listener_queue_capacity",
            "The queue's bound (LISTENER['QUEUE_SIZE']).",
            labels=("api",),
        )
        state = GaugeMetricFamily(
            "appsync_events_listener_connection_state",
            "1 for the first connection's current state, 0 for the others.",
            labels=("api", "state"),
        )
        subscriptions = GaugeMetricFamily(
            "appsync_events_listener_subscriptions",
            "Subscriptions established now: configured (held for the whole run) or "
            "followed (for browsers).",
            labels=("api", "kind"),
        )
        last_frame = GaugeMetricFamily(
            "appsync_events_listener_seconds_since_last_frame",
            "Seconds since the last frame from the service (an event or a keep-alive).",
            labels=("api",),
        )
        last_event = GaugeMetricFamily(
            "appsync_events_listener_seconds_since_last_event",
            "Seconds since the last event was dispatched (or the listener started).",
            labels=("api",),
        )
        with _lock:
            stores = list(_listener_metrics.values())
        for store in stores:
            api = store.api
            got, reconnected, lost = store.totals()
            received.add_metric((api,), got)
            reconnects.add_metric((api,), reconnected)
            for reason, number in sorted(lost.items()):
                dropped.add_metric((api, reason), number)
            for label, count in list(store.dispatched.items()):
                dispatched.add_metric((api, label), count.value)
            for name, failures in list(store.handler_errors.items()):
                errors.add_metric((api, name), failures)
            buckets, seconds = store.dispatch_duration.snapshot()
            dispatch.add_metric((api,), buckets, seconds)
            seen: set[int] = set()
            for name, histogram in list(store.handler_duration.items()):
                if id(histogram) in seen:
                    continue  # a name past the bound shares the "other" histogram
                seen.add(id(histogram))
                buckets, seconds = histogram.snapshot()
                handler.add_metric((api, store.handler_label(name)), buckets, seconds)
            listener = store.live() if store.live is not None else None
            if listener is None:
                continue
            health = listener.health()
            queue.add_metric((api,), health.queue_depth)
            capacity.add_metric((api,), health.queue_capacity)
            for name in ("connecting", "connected", "reconnecting", "closed"):
                state.add_metric((api, name), 1.0 if health.connection == name else 0.0)
            subscriptions.add_metric((api, "configured"), health.configured_active)
            subscriptions.add_metric((api, "followed"), health.followed_active)
            if health.seconds_since_last_frame is not None:
                last_frame.add_metric((api,), health.seconds_since_last_frame)
            last_event.add_metric((api,), health.seconds_since_last_event)
        yield from (received, dispatched, dropped, errors, reconnects, dispatch, handler)
        yield from (queue, capacity, state, subscriptions, last_frame, last_event)


class _OutboxCollector:
    """Reads the outbox's pending rows at scrape time (one aggregate query)."""

    def __init__(self, using: str) -> None:
        self.using = using

    def describe(self) -> list[Metric]:
        return []  # collect() queries the database: not at registration

    def collect(self) -> Iterator[Metric]:
        pending = GaugeMetricFamily(
            "appsync_events_outbox_pending_events",
            "Outbox rows waiting to be sent, by alias.",
            labels=("api",),
        )
        oldest = GaugeMetricFamily(
            "appsync_events_outbox_oldest_pending_age_seconds",
            "Age of the oldest pending outbox row, by alias.",
            labels=("api",),
        )
        try:
            rows = outbox_backlog(self.using)
        except Exception:
            # A scrape must not fail because the database is away: say why, export nothing.
            logger.warning("Could not read the outbox backlog for metrics", exc_info=True)
            return
        for api, (count, age) in sorted(rows.items()):
            pending.add_metric((api,), count)
            oldest.add_metric((api,), age)
        yield pending
        yield oldest


def outbox_backlog(using: str = "default") -> dict[str, tuple[int, float]]:
    """Return ``{alias: (pending rows, age in seconds of the oldest)}`` (one query).

    Every configured alias is in it, with ``(0, 0.0)`` when nothing is pending, so a
    dashboard sees zero rather than no data.

    Raises:
        django.db.DatabaseError: the outbox table cannot be read.
    """
    from django.db.models import Count, Min
    from django.utils import timezone

    from .conf import api_aliases
    from .models import OutboxEvent

    now = timezone.now()
    rows = (
        OutboxEvent.objects.using(using)
        .filter(state=OutboxEvent.State.PENDING)
        .values("api")
        .annotate(count=Count("id"), oldest=Min("created_at"))
        .order_by()
    )
    backlog = dict.fromkeys(api_aliases(), (0, 0.0))
    for row in rows:
        backlog[row["api"]] = (row["count"], max((now - row["oldest"]).total_seconds(), 0.0))
    return backlog


_collectors: set[str] = set()


def _register(key: str, make: Callable[[], Any]) -> None:
    if prometheus_client is None:
        return
    with _collector_lock:
        if key in _collectors:
            return
        prometheus_client.REGISTRY.register(make())
        _collectors.add(key)


_collector_lock = threading.Lock()


def _ensure_listener_collector() -> None:
    _register("listener", _ListenerCollector)


def register_outbox_collector(using: str = "default") -> None:
    """Export the outbox backlog (pending rows, oldest age) from this process's registry.

    Idempotent. Each scrape then runs one aggregate query on ``using``.
    """
    _register(f"outbox:{using}", lambda: _OutboxCollector(using))


def exposition() -> tuple[bytes, str]:
    """Return this process's metrics in the text format, and their content type.

    With ``PROMETHEUS_MULTIPROC_DIR`` set (``prometheus_client``'s multi-process mode, for
    servers running several worker processes), the metrics of every worker are merged.

    Raises:
        ImproperlyInstalled: ``prometheus-client`` is not installed.
    """
    if prometheus_client is None:
        from .exceptions import ImproperlyInstalled

        raise ImproperlyInstalled(missing_package="prometheus-client", install_extra="metrics")
    registry: Any = prometheus_client.REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = prometheus_client.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        for key in list(_collectors):
            # Collectors reading this process's state (listener, outbox) are not in the
            # shared files: add them to the merged view.
            registry.register(
                _ListenerCollector()
                if key == "listener"
                else _OutboxCollector(key.partition(":")[2])
            )
    return prometheus_client.generate_latest(registry), CONTENT_TYPE


def error_code(error: BaseException) -> str:
    """Return the ``code`` label of a publish failure.

    The service's first ``errorType`` (``UnauthorizedException``), else ``http_<status>``,
    else the exception's class name (``PublishError`` for a network failure,
    ``OperationTimeout``...).
    """
    errors: Iterable[Any] = getattr(error, "errors", None) or ()
    for entry in errors:
        kind = entry.get("errorType") if isinstance(entry, dict) else None
        if isinstance(kind, str) and kind:
            return kind[:64]
    status = getattr(error, "status", None)
    if isinstance(status, int):
        return f"http_{status}"
    return type(error).__name__
