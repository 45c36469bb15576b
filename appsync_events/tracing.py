"""OpenTelemetry traces of appsync_events (optional: ``pip install django-appsync-events[otel]``).

Spans are made through the OpenTelemetry API, and only when a tracer provider is
configured in the process (the SDK's ``trace.set_tracer_provider(...)``, or
``opentelemetry-instrument``): without ``opentelemetry-api``, or without a provider,
:func:`get_tracer` returns ``None`` and instrumented code skips every span.

The spans (names, kinds, attributes) are listed in ``docs/observability.md``:
``appsync_events.publish`` (PRODUCER), ``appsync_events.outbox.drain``,
``appsync_events.receive`` (CONSUMER, one per event the listener dispatches) and
``appsync_events.handler`` (one per handler run, its child).

Trace context in payloads: a declarative event class with ``Meta.trace_context = True``
puts the W3C trace context of the code publishing it (``traceparent``, ``tracestate``)
under the payload key ``"trace_context"``; the listener's receive and handler spans
then carry a link to that span, so a handler's span leads to the request that published
its event.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Final

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
except ImportError:  # the [otel] extra is not installed: no spans
    trace = None  # type: ignore[assignment]

__all__ = [
    "AVAILABLE",
    "SYSTEM",
    "TRACE_CONTEXT_KEY",
    "end_span",
    "get_tracer",
    "inject",
    "links_from_payload",
    "span",
    "start_span",
]

logger = logging.getLogger(__name__)

#: Whether ``opentelemetry-api`` is installed.
AVAILABLE: Final = trace is not None

#: The payload key holding the publisher's trace context (opt-in, see the module docs).
TRACE_CONTEXT_KEY: Final = "trace_context"

#: ``messaging.system`` of every span.
SYSTEM: Final = "aws_appsync_events"

_cache: tuple[Any, Any] | None = None


def get_tracer() -> Any:
    """Return the library's tracer, or ``None`` when no tracer provider is configured."""
    global _cache
    if trace is None:
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    cache = _cache
    if cache is not None and cache[0] is provider:
        return cache[1]
    from . import __version__

    tracer = provider.get_tracer("appsync_events", __version__)
    _cache = (provider, tracer)
    return tracer


def _kind(name: str) -> Any:
    return getattr(trace.SpanKind, name.upper())


def start_span(
    tracer: Any,
    name: str,
    *,
    kind: str = "internal",
    attributes: Mapping[str, Any] | None = None,
    links: list[Any] | None = None,
    start: datetime | None = None,
) -> tuple[Any, Any]:
    """Start a span and make it current; return ``(span, token)`` for :func:`end_span`.

    ``start`` backdates the span (the listener starts its receive span when the frame
    was read, so the span covers the time in the queue).
    """
    kwargs: dict[str, Any] = {"kind": _kind(kind), "attributes": dict(attributes or {})}
    if links:
        kwargs["links"] = links
    if start is not None:
        kwargs["start_time"] = int(start.timestamp() * 1e9)
    current = tracer.start_span(name, **kwargs)
    token = otel_context.attach(trace.set_span_in_context(current))
    return current, token


def end_span(current: Any, token: Any, error: BaseException | None = None) -> None:
    """Detach and end a span of :func:`start_span`, recording ``error`` if any."""
    otel_context.detach(token)
    if error is not None:
        current.record_exception(error)
        current.set_status(trace.Status(trace.StatusCode.ERROR, type(error).__name__))
    current.end()


@contextmanager
def span(
    name: str,
    *,
    kind: str = "internal",
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Any]:
    """Run the block in a span (yielding it), or yield ``None`` when tracing is off.

    An exception leaving the block is recorded on the span and re-raised.
    """
    tracer = get_tracer()
    if tracer is None:
        yield None
        return
    current, token = start_span(tracer, name, kind=kind, attributes=attributes)
    try:
        yield current
    except BaseException as exc:
        end_span(current, token, exc)
        raise
    end_span(current, token)


def inject(carrier: dict[str, str]) -> dict[str, str]:
    """Write the current trace context into ``carrier`` (W3C ``traceparent``...).

    Returns ``carrier``, empty when no span is recording (or tracing is off).
    """
    if get_tracer() is None:
        return carrier
    propagate.inject(carrier)
    return carrier


def links_from_payload(payload: Any) -> list[Any]:
    """Return a link to the span a payload's ``"trace_context"`` names, if it names one."""
    if trace is None or not isinstance(payload, dict):
        return []
    carrier = payload.get(TRACE_CONTEXT_KEY)
    if not isinstance(carrier, dict):
        return []
    try:
        context = propagate.extract({str(k): str(v) for k, v in carrier.items()})
    except Exception:  # a malformed context from a publisher must not stop a dispatch
        logger.debug("Ignored a malformed trace_context in an event", exc_info=True)
        return []
    span_context = trace.get_current_span(context).get_span_context()
    if not span_context.is_valid:
        return []
    return [trace.Link(span_context, {"appsync_events.link": "publish"})]
