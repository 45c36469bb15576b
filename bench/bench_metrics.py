"""Benchmark what the Prometheus metrics (and traces) cost the listener's hot path.

Run: ``python -m bench.bench_metrics [--events 30000] [--rounds 9] [--no-write]
[--json PATH]`` from the repository root (``make bench`` runs it too)

The set-up of ``bench/bench_listener.py``: a sender process (a plain ``websockets``
server on loopback) writes ``--events`` pre-encoded ``data`` frames to each receiver,
which here is always :class:`appsync_events.listener.Listener` with one async handler.
The receiver runs with ``METRICS['ENABLED']`` off and on, **interleaved** (off, on, on,
off, off, on...: each round runs both, in alternating order), so that the load other
processes put on this shared machine falls on both alike. Each run measures the wall-clock
rate and the **CPU time this process spent per event** (``time.process_time()`` from the
first event to the last), which other processes' load barely moves. Each round gives one
ratio (CPU per event on / off); the overhead is the median ratio minus one, and the spread
is the range of the ratios. A last pair of rows runs with OpenTelemetry spans on (the SDK's
``TracerProvider`` with no exporter: the spans are made, recorded and dropped).

Results replace the section "## Listener metrics overhead" of ``BENCHMARKS.md`` unless
``--no-write``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from typing import Any

try:
    from bench import _common  # python -m bench.bench_x, or imported from the repo root
    from bench.bench_listener import setup_django, start_sender
except ImportError:
    import _common  # type: ignore[import-not-found,no-redef]  # run as bench/bench_x.py
    from bench_listener import (  # type: ignore[import-not-found,no-redef]
        setup_django,
        start_sender,
    )

SECTION = "## Listener metrics overhead"
GOAL = 0.05  # metrics may cost the listener at most 5 % of its rate


def set_metrics(enabled: bool) -> None:
    """Switch ``METRICS['ENABLED']`` of the bench alias (the next listener reads it)."""
    from django.conf import settings

    from appsync_events import conf

    settings.APPSYNC_EVENTS["default"]["METRICS"] = {"ENABLED": enabled}
    conf.reset()


async def listener_run(port: int, events: int) -> tuple[float, float]:
    """Run the Listener with one async handler; return events/s and CPU µs per event."""
    from appsync_events.dispatch import Router
    from appsync_events.listener import Listener

    router = Router()
    state = {"count": 0, "start": 0.0, "end": 0.0, "cpu_start": 0.0, "cpu_end": 0.0}
    done = asyncio.Event()

    async def handler(event: Any) -> None:
        if state["count"] == 0:
            state["start"], state["cpu_start"] = time.perf_counter(), time.process_time()
        state["count"] += 1
        if state["count"] == events:
            state["end"], state["cpu_end"] = time.perf_counter(), time.process_time()
            done.set()

    router.add("/bench/*", handler)
    listener = Listener(channels=["/bench/*"], router=router, sinks=[])
    task = asyncio.create_task(listener.run(install_signal_handlers=False))
    try:
        await asyncio.wait_for(done.wait(), 300)
    finally:
        listener.request_stop("benchmark over")
        await task
    rate = events / (state["end"] - state["start"])
    return rate, (state["cpu_end"] - state["cpu_start"]) * 1e6 / events


async def dispatch_only(events: int) -> float:
    """CPU µs per event of the dispatch loop alone: events queued up front, no socket.

    Reaches into the listener (its queue and dispatch loop) to leave the receive path
    out: what is left is exactly where the metrics are recorded.
    """
    from appsync_events import instrumentation
    from appsync_events.dispatch import Router
    from appsync_events.events import ReceivedEvent
    from appsync_events.listener import Listener

    router = Router()
    done = asyncio.Event()
    count = [0]

    async def handler(event: Any) -> None:
        count[0] += 1
        if count[0] == events:
            done.set()

    router.add("/bench/*", handler)
    listener = Listener(channels=["/bench/*"], router=router, sinks=[])
    observer = instrumentation.listener_observer(listener)
    listener._observer = listener.dispatcher.observer = observer
    listener._accepting = True
    listener._queue = asyncio.Queue()
    for n in range(events):
        listener._on_event(ReceivedEvent("default", "/bench/*", {"n": n}, "{}"))
    started = time.process_time()
    task = asyncio.create_task(listener._dispatch_loop())
    await done.wait()
    cpu = time.process_time() - started
    task.cancel()
    if observer is not None:
        observer.close(listener)
    return cpu * 1e6 / events


def dispatch_run(events: int, *, enabled: bool) -> float:
    set_metrics(enabled)
    return asyncio.run(dispatch_only(events))


def run(port: int, events: int, *, enabled: bool) -> tuple[float, float]:
    set_metrics(enabled)
    return asyncio.run(listener_run(port, events))


def traced(port: int, events: int) -> tuple[float, float]:
    """The rate with metrics on and an SDK tracer provider (spans made, not exported)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    previous = trace._TRACER_PROVIDER  # bench only: swap the provider in and out
    trace._TRACER_PROVIDER = TracerProvider()
    try:
        return run(port, events, enabled=True)
    finally:
        trace._TRACER_PROVIDER = previous


Run = tuple[float, float]  # events/s, CPU µs per event


def render(
    off: list[Run],
    on: list[Run],
    traced_runs: list[Run],
    events: int,
    dispatch: tuple[list[float], list[float]],
) -> tuple[str, float]:
    """Return the section's Markdown and the overhead (a fraction of the listener's cost)."""
    ratios = [b[1] / a[1] for a, b in zip(off, on, strict=True)]
    wall = [a[0] / b[0] for a, b in zip(off, on, strict=True)]
    direct = statistics.median(ratios) - 1

    def row(name: str, runs: list[Run]) -> str:
        rate = statistics.median(r for r, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        return f"| {name} | {rate:,.0f} | {cpu:.2f} | {', '.join(f'{c:.2f}' for _, c in runs)} |"

    cpu_off = statistics.median(c for _, c in off)
    cpu_traced = statistics.median(c for _, c in traced_runs)
    d_off, d_on = min(dispatch[0]), min(dispatch[1])
    best_off = min(c for _, c in off)
    # The metrics' code runs in the dispatch loop only: its cost measured there (best of
    # the rounds), over the whole listener's cost per event (its best round: the larger
    # share, so the conservative estimate).
    overhead = (d_on - d_off) / best_off
    verdict = "met" if overhead < GOAL else "NOT met"
    text = "\n".join(
        [
            SECTION,
            "",
            _common.provenance(),
            f"`{_common.command_line()}`: the sender of "
            "`bench/bench_listener.py` (a plain `websockets` server on loopback writing "
            "pre-encoded `data` frames) and the `Listener` with one async handler, "
            "`METRICS['ENABLED']` off and on **interleaved** (each round runs both, in "
            "alternating order), so that the load of other processes on this shared machine "
            "falls on both alike. Besides the wall-clock rate, each run measures the CPU time "
            "this process spent per event (`time.process_time()` from the first event to the "
            "last), which the other processes' load moves far less.",
            "",
            "| listener | median events/s | median CPU µs/event | CPU µs/event, each round |",
            "|---|---:|---:|---|",
            row("metrics off", off),
            row("**metrics on**", on),
            row("metrics and traces on (SDK provider, no exporter)", traced_runs),
            "",
            f"Compared directly, round by round (CPU per event on / off, minus one): median "
            f"{direct:+.1%}, spread {min(ratios) - 1:+.1%} to {max(ratios) - 1:+.1%}; on "
            f"wall-clock rates: median {statistics.median(wall) - 1:+.1%}, spread "
            f"{min(wall) - 1:+.1%} to {max(wall) - 1:+.1%}. On this shared machine the other "
            "processes' load moves single runs by far more than the metrics do, so this "
            "comparison cannot resolve a few percent. Hence a second measurement:",
            "",
            f"The dispatch loop alone (events queued up front, no socket; the best of "
            f"{len(dispatch[0])} interleaved runs each, the least disturbed by other "
            f"processes), where all of the metrics' code runs: {d_off:.2f} µs per event off, "
            f"{d_on:.2f} µs on, so the metrics cost a busy listener {d_on - d_off:.2f} µs per "
            f"event. Against the whole listener's cost per event (its best round, "
            f"{best_off:.2f} µs): **{overhead:.1%}**. Goal (under {GOAL:.0%}): "
            f"**{verdict}**.",
            "",
            "Why it is cheap: the listener does not call `prometheus_client` per event. Its "
            "counters and histograms are plain numbers owned by the event loop "
            "(`appsync_events.metrics.ListenerMetrics`), updated by closures, and turned "
            "into metric families only when `/metrics` is scraped. A timed event costs four "
            "`perf_counter()` readings and two bisections into bucket bounds; above 1,000 "
            "events per second (a listener this busy is where the overhead would show) one "
            "event in 8 is timed and counted 8 times in the duration histograms, while the "
            "counters stay exact. Below that rate every event is timed, and the cost (the "
            "dispatch-loop figure above, a small fraction of a CPU at that rate) is not "
            "felt.",
            "",
            f"Traces cost more ({cpu_traced - cpu_off:+.1f} µs per event here: two spans per "
            "event, receive and handler, each started, made current, ended and handed to the "
            "span processors); they are off unless a tracer provider is configured in the "
            "process.",
            "",
        ]
    )
    return text, overhead


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--events", type=int, default=30000, help="events per run")
    parser.add_argument("--rounds", type=int, default=9, help="rounds of off and on")
    _common.add_output_args(parser)
    args = parser.parse_args()
    sender, port = start_sender(args.events)
    off: list[Run] = []
    on: list[Run] = []
    traced_runs: list[Run] = []
    try:
        setup_django(port)
        run(port, args.events, enabled=True)  # warm-up: imports, first connection
        for number in range(args.rounds):
            order = (False, True) if number % 2 == 0 else (True, False)
            for enabled in order:
                (on if enabled else off).append(run(port, args.events, enabled=enabled))
            print(
                f"round {number + 1}: off {off[-1][0]:,.0f}/s {off[-1][1]:.2f} µs, "
                f"on {on[-1][0]:,.0f}/s {on[-1][1]:.2f} µs",
                file=sys.stderr,
            )
        for _ in range(3):
            traced_runs.append(traced(port, args.events))
    finally:
        _common.stop_child(sender, 30)
    dispatch: tuple[list[float], list[float]] = ([], [])
    for number in range(args.rounds):
        for enabled in (False, True) if number % 2 == 0 else (True, False):
            dispatch[enabled].append(dispatch_run(args.events, enabled=enabled))
    text, overhead = render(off, on, traced_runs, args.events, dispatch)
    results = {
        "events": args.events,
        "off": off,
        "on": on,
        "traced": traced_runs,
        "dispatch_us": {"off": dispatch[0], "on": dispatch[1]},
        "overhead": overhead,
    }
    goals = [
        _common.goal(
            "listener metrics, cost in the dispatch loop over the listener's cost per event",
            f"under {GOAL:.0%}",
            f"{overhead:.1%}",
            overhead < GOAL,
            value=overhead,
        )
    ]
    _common.emit(args, SECTION, text, results, goals)


if __name__ == "__main__":
    main()
