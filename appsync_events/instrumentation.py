"""What the listener, the backends, the outbox drainer and the consumer call to record
metrics (:mod:`appsync_events.metrics`) and traces (:mod:`appsync_events.tracing`).

One call per hot spot, each cheap when nothing is recorded: the listener builds a
:class:`ListenerObserver` only when metrics or traces are on (``None`` otherwise, one
``is None`` test per event); publishing and the outbox get a no-op probe when neither
is on for the alias.
"""

from __future__ import annotations

import time
from bisect import bisect_left as _bisect_left
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, Final

from . import metrics, tracing
from .config import PUBLISH_BACKENDS

if TYPE_CHECKING:
    from .config import APIConfig
    from .events import ReceivedEvent
    from .listener import Listener
    from .results import PublishResult

__all__ = [
    "EXACT_RATE",
    "FOLLOWED",
    "RATE_WINDOW",
    "SAMPLE_EVERY",
    "ListenerObserver",
    "PublishProbe",
    "backend_label",
    "consumer_follows",
    "consumer_gap",
    "consumer_refused",
    "consumer_socket",
    "listener_observer",
    "outbox_counts",
    "outbox_drain",
    "publishing",
]

#: The ``subscription`` label of events on subscriptions browsers follow.
FOLLOWED: Final = "followed"
#: Above this many events per second the listener times one event in
#: :data:`SAMPLE_EVERY` (the histograms count it that many times); below, every event.
EXACT_RATE: Final = 1000.0
#: One event in this many is timed above :data:`EXACT_RATE`.
SAMPLE_EVERY: Final = 8
#: The rate is measured over this many events (a short burst is still timed whole).
RATE_WINDOW: Final = 256

_perf_counter = time.perf_counter


def _metrics_on(config: APIConfig) -> bool:
    return metrics.AVAILABLE and config.metrics.enabled


# -- the listener ------------------------------------------------------------------------


class ListenerObserver:
    """Records one listener's dispatches and handler runs (metrics and spans).

    Also the :class:`~appsync_events.dispatch.Dispatcher`'s ``observer``: it is told
    about every handler run and every failing ``event_received`` receiver. What the
    listener counts anyway (received, dropped, reconnects) is read from its
    :class:`~appsync_events.listener.ListenerStats` at scrape time instead.

    Per event (metrics on, traces off): four ``perf_counter()`` readings, two
    bisections into bucket bounds and a few increments, nothing else.
    """

    def __init__(self, listener: Listener, *, record_metrics: bool, tracer: Any) -> None:
        config = listener.config
        store = (
            metrics.listener_metrics(config.alias, config.metrics.max_label_values)
            if record_metrics
            else None
        )
        self.metrics = store
        self.tracer = tracer
        labels = config.metrics.subscription_labels
        self.labelled = frozenset(
            (c.path for c in labels) if labels is not None else listener.static_channels
        )
        self.static = listener.static_channels
        self._dispatched: dict[str, metrics.Count] = {}
        self._handlers: dict[str, metrics.Histogram] = {}
        self._dispatch = store.dispatch_duration if store is not None else None
        if store is not None:
            store.start(listener)
            if tracer is None:
                self._fast_paths(store)

    def _fast_paths(self, store: metrics.ListenerMetrics) -> None:
        """Replace the per-event methods by closures for metrics without traces.

        They run for every event. Closures read their state from cells instead of
        attributes, and above :data:`EXACT_RATE` events per second (measured over
        :data:`RATE_WINDOW` events) the durations of one event in :data:`SAMPLE_EVERY` are measured,
        each counted ``SAMPLE_EVERY`` times in the histograms; the counters stay exact.
        That keeps the listener's overhead within a few percent when it is busy
        (``bench/bench_metrics.py``); below that rate every event is timed, at a cost
        nobody notices.
        """
        perf_counter = _perf_counter
        bisect_left = _bisect_left
        by_subscription = self._dispatched
        count_for = self._count
        dispatch = store.dispatch_duration
        dispatch_counts, dispatch_bounds = dispatch.counts, dispatch.bounds
        handlers = self._handlers
        histogram_for = self._histogram
        failed = store.handler_failed
        stride = 1  # time one event in this many
        left = 1  # events until the next timed one
        seen = 0  # events since the rate was last measured
        since = perf_counter()  # when it was
        weight = 0  # how many events the current one stands for (0: not timed)

        def event_started(event: ReceivedEvent) -> float:
            nonlocal stride, left, seen, since, weight
            left -= 1
            if left:
                return 0.0  # not timed: the token says so
            now = perf_counter()
            weight = stride
            seen += stride
            if seen >= RATE_WINDOW:  # measured on timed events only: no reading otherwise
                stride = SAMPLE_EVERY if now - since < seen / EXACT_RATE else 1
                seen, since = 0, now
            left = stride
            return now

        def event_finished(token: float, event: ReceivedEvent, done: bool) -> None:
            nonlocal weight
            if done:
                subscription = event.subscription
                (by_subscription.get(subscription) or count_for(subscription)).value += 1
                if token:
                    elapsed = perf_counter() - token
                    dispatch_counts[bisect_left(dispatch_bounds, elapsed)] += weight
                    dispatch.sum += elapsed * weight
            if token:
                weight = 0

        def handler_started(name: str, event: ReceivedEvent) -> float:
            return perf_counter() if weight else 0.0

        def handler_finished(token: float, name: str, error: BaseException | None) -> None:
            if token:
                elapsed = perf_counter() - token
                histogram = handlers.get(name) or histogram_for(name)
                histogram.counts[bisect_left(histogram.bounds, elapsed)] += weight
                histogram.sum += elapsed * weight
            if error is not None:
                failed(name)

        self.event_started = event_started  # type: ignore[method-assign]
        self.event_finished = event_finished  # type: ignore[method-assign,assignment]
        self.handler_started = handler_started  # type: ignore[method-assign]
        self.handler_finished = handler_finished  # type: ignore[method-assign]

    def close(self, listener: Listener) -> None:
        """The listener stopped: keep its counts; its gauges go away."""
        if self.metrics is not None:
            self.metrics.carry(listener)

    def _label(self, subscription: str) -> str:
        if subscription in self.labelled:
            return subscription
        return metrics.OTHER if subscription in self.static else FOLLOWED

    def _count(self, subscription: str) -> metrics.Count:
        """The dispatched counter of ``subscription``, remembered for the listener's own
        paths only: paths browsers follow come and go, and share one counter."""
        assert self.metrics is not None  # noqa: S101 - only called when recording
        count = self.metrics.dispatched_count(self._label(subscription))
        if subscription in self.static or subscription in self.labelled:
            self._dispatched[subscription] = count
        return count

    def _histogram(self, name: str) -> metrics.Histogram:
        assert self.metrics is not None  # noqa: S101 - only called when recording
        histogram = self._handlers[name] = self.metrics.handler_histogram(name)
        return histogram

    # -- events

    def event_started(self, event: ReceivedEvent) -> Any:
        """An event was taken off the queue; return the token for :meth:`event_finished`."""
        tracer = self.tracer
        if tracer is None:
            return _perf_counter()
        started = _perf_counter()
        current, token = tracing.start_span(
            tracer,
            "appsync_events.receive",
            kind="consumer",
            attributes={
                "messaging.system": tracing.SYSTEM,
                "messaging.operation.type": "process",
                "messaging.destination.name": event.subscription,
                "messaging.destination.subscription.name": event.subscription,
                "appsync_events.api": event.api,
            },
            links=tracing.links_from_payload(event.payload),
            start=event.received_at,
        )
        return (started, current, token)

    def event_finished(self, token: Any, event: ReceivedEvent, dispatched: bool) -> None:
        """The event's dispatch ended (``dispatched``: it went through, not cancelled)."""
        if type(token) is tuple:
            started, current, span_token = token
            tracing.end_span(current, span_token)
        else:
            started = token
        histogram = self._dispatch
        if histogram is None or not dispatched:
            return
        elapsed = _perf_counter() - started
        count = self._dispatched.get(event.subscription) or self._count(event.subscription)
        count.value += 1
        # Histogram.observe, inlined: this runs once per event.
        histogram.counts[_bisect_left(histogram.bounds, elapsed)] += 1
        histogram.sum += elapsed

    # -- handlers (the Dispatcher's observer)

    def handler_started(self, name: str, event: ReceivedEvent) -> Any:
        """A handler starts running for ``event``; return the token for the end."""
        tracer = self.tracer
        if tracer is None:
            return _perf_counter()
        started = _perf_counter()
        current, token = tracing.start_span(
            tracer,
            "appsync_events.handler",
            attributes={
                "appsync_events.handler": name,
                "appsync_events.api": event.api,
                "messaging.destination.subscription.name": event.subscription,
            },
            links=tracing.links_from_payload(event.payload),
        )
        return (started, current, token)

    def handler_finished(self, token: Any, name: str, error: BaseException | None) -> None:
        """The handler of :meth:`handler_started` returned, or raised ``error``."""
        if type(token) is tuple:
            started, current, span_token = token
            tracing.end_span(current, span_token, error)
        else:
            started = token
        store = self.metrics
        if store is None:
            return
        elapsed = _perf_counter() - started
        histogram = self._handlers.get(name) or self._histogram(name)
        histogram.counts[_bisect_left(histogram.bounds, elapsed)] += 1
        histogram.sum += elapsed
        if error is not None:
            store.handler_failed(name)

    def receiver_failed(self, receiver: Any) -> None:
        """A signal receiver raised."""
        if self.metrics is not None:
            self.metrics.handler_failed(f"receiver:{_qualname(receiver)}")

    def sink_failed(self, sink: Any) -> None:
        """A sink's ``dispatch`` raised."""
        if self.metrics is not None:
            self.metrics.handler_failed(f"sink:{type(sink).__qualname__}")


def _qualname(obj: Any) -> str:
    module = getattr(obj, "__module__", None)
    name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{module}.{name}" if module else str(name)


def listener_observer(listener: Listener) -> ListenerObserver | None:
    """Return the observer of ``listener``, or ``None`` when neither metrics nor traces
    are recorded for its alias (the listener then skips every call)."""
    record = _metrics_on(listener.config)
    tracer = tracing.get_tracer()
    if not record and tracer is None:
        return None
    return ListenerObserver(listener, record_metrics=record, tracer=tracer)


# -- publishing ----------------------------------------------------------------------------

_backend_labels: dict[type[Any], str] = {}
_short_names: Final = {path: name for name, path in PUBLISH_BACKENDS.items()}
_code_bounds: dict[str, metrics.LabelBound] = {}


def backend_label(backend: Any) -> str:
    """The ``backend`` label of a backend: its short name, else its class's dotted path."""
    cls = type(backend)
    label = _backend_labels.get(cls)
    if label is None:
        path = f"{cls.__module__}.{cls.__qualname__}"
        label = _backend_labels[cls] = _short_names.get(path, path)
    return label


def _code(config: APIConfig, code: str) -> str:
    bound = _code_bounds.get(config.alias)
    if bound is None:
        bound = _code_bounds[config.alias] = metrics.LabelBound(
            "code", config.metrics.max_label_values
        )
    return bound(code)


class PublishProbe:
    """Records one ``send()`` of a backend: its requests, their outcome, its span."""

    def __init__(self, config: APIConfig, backend: str, record: bool, span: Any) -> None:
        self.config = config
        self.api = config.alias
        self.backend = backend
        self.record = record
        self.span = span
        self.successful = 0
        self.failed = 0

    def _failed(self, code: str, count: int) -> None:
        self.failed += count
        if self.record and count:
            metrics.PUBLISH_FAILED_EVENTS.labels(
                self.api, self.backend, _code(self.config, code)
            ).inc(count)

    @contextmanager
    def request(self, count: int) -> Iterator[None]:
        """Time one request of ``count`` events; a failure counts them as failed."""
        started = _perf_counter()
        try:
            yield
        except BaseException as exc:
            self._failed(metrics.error_code(exc), count)
            raise
        finally:
            if self.record:
                metrics.PUBLISH_DURATION.labels(self.api, self.backend).observe(
                    _perf_counter() - started
                )

    def answered(self, part: PublishResult) -> None:
        """Count the service's answer to one request: accepted and refused events."""
        accepted = len(part.successful)
        self.successful += accepted
        if self.record and accepted:
            metrics.PUBLISHED_EVENTS.labels(self.api, self.backend).inc(accepted)
        for entry in part.failed:
            self._failed(entry.code or "refused", 1)

    def not_sent(self, count: int) -> None:
        """Count events left unsent after an earlier request failed."""
        self._failed("not_sent", count)


class _NullProbe(PublishProbe):
    def __init__(self) -> None:
        pass

    def request(self, count: int) -> AbstractContextManager[None]:  # type: ignore[override]
        return nullcontext()

    def answered(self, part: PublishResult) -> None:
        return None

    def not_sent(self, count: int) -> None:
        return None


_NULL_PROBE: Final = _NullProbe()


@contextmanager
def publishing(backend: Any, channel: str, events: int) -> Iterator[PublishProbe]:
    """Record one ``send()`` of ``backend`` (metrics, and an ``appsync_events.publish`` span).

    Yields a :class:`PublishProbe`, a no-op one when nothing is recorded.
    """
    config: APIConfig = backend.api
    record = _metrics_on(config)
    tracer = tracing.get_tracer()
    if not record and tracer is None:
        yield _NULL_PROBE
        return
    label = backend_label(backend)
    if tracer is None:
        yield PublishProbe(config, label, record, None)
        return
    current, token = tracing.start_span(
        tracer,
        "appsync_events.publish",
        kind="producer",
        attributes={
            "messaging.system": tracing.SYSTEM,
            "messaging.operation.type": "send",
            "messaging.destination.name": channel,
            "messaging.batch.message_count": events,
            "appsync_events.api": config.alias,
            "appsync_events.backend": label,
        },
    )
    probe = PublishProbe(config, label, record, current)
    try:
        yield probe
    except BaseException as exc:
        current.set_attribute("appsync_events.successful", probe.successful)
        tracing.end_span(current, token, exc)
        raise
    current.set_attribute("appsync_events.successful", probe.successful)
    current.set_attribute("appsync_events.failed", probe.failed)
    tracing.end_span(current, token)


# -- the outbox --------------------------------------------------------------------------


def outbox_drain(worker: str) -> AbstractContextManager[Any]:
    """Run one drained batch in an ``appsync_events.outbox.drain`` span (when tracing)."""
    return tracing.span(
        "appsync_events.outbox.drain",
        attributes={"messaging.system": tracing.SYSTEM, "appsync_events.worker": worker},
    )


def outbox_counts(api: str, sent: int, retried: int, failed: int) -> None:
    """Count outbox rows sent, scheduled for a retry, and given up on, for alias ``api``."""
    if not metrics.AVAILABLE:
        return
    if sent:
        metrics.OUTBOX_SENT.labels(api).inc(sent)
    if retried:
        metrics.PUBLISH_RETRIES.labels(api).inc(retried)
    if failed:
        metrics.OUTBOX_FAILED.labels(api).inc(failed)


# -- the browser consumer ------------------------------------------------------------------


def consumer_socket(api: str, opened: bool) -> None:
    """Count a browser websocket opened (``opened``) or closed."""
    gauge = metrics.CONSUMER_SOCKETS.labels(api)
    if opened:
        gauge.inc()
    else:
        gauge.dec()


def consumer_follows(api: str, delta: int) -> None:
    """Count channels followed by browser sockets (``delta``: +1 or -1)."""
    metrics.CONSUMER_FOLLOWS.labels(api).inc(delta)


def consumer_refused(api: str, reason: str) -> None:
    """Count one browser request answered with error ``reason``."""
    metrics.CONSUMER_REFUSALS.labels(api, reason).inc()


def consumer_gap(api: str, reason: str, missed: tuple[int, int] | None) -> None:
    """Count one gap reported to a browser socket, and the events known missed."""
    metrics.CONSUMER_GAPS.labels(api, reason).inc()
    if missed is not None:
        metrics.CONSUMER_MISSED.labels(api).inc(missed[1] - missed[0] + 1)
