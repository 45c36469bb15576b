"""Benchmark HTTP publishing: pooled and batched versus one event per request.

Run: ``python -m bench.bench_publish [--events 2000] [--no-write]
[--json PATH]`` from the repository root (``make bench`` runs it too)

The emulator runs in its own process on a loopback port. This process publishes
``--events`` events (a small JSON object each) to one channel, four ways:

1. ``publish()`` through the ``appsync`` backend: keep-alive pool, 5 events per request
   (what the library does);
2. a keep-alive ``httpx.Client`` sending one event per request, with ``TCP_NODELAY`` like
   ours (the comparison the goal is about: batching, all else equal);
3. the same with httpx's defaults (no ``TCP_NODELAY``: each request waits for the
   server's delayed ACK), reported;
4. a new connection for every request, one event each (no reuse), reported.

Each way is bounded: at most ``--events`` events or ``--seconds`` seconds, whichever
comes first, and the rate is events accepted per second. Results replace the section
"## Publishing" of ``BENCHMARKS.md`` (with commit, machine and date) unless
``--no-write``.
"""

from __future__ import annotations

import argparse
import json
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx

try:
    from bench import _common  # python -m bench.bench_x, or imported from the repo root
except ImportError:
    import _common  # type: ignore[import-not-found,no-redef]  # run as bench/bench_x.py

SECTION = "## Publishing"
API_KEY = "da2-benchpublish0000000000000000"
CHANNEL = "/default/bench"


def setup_django(port: int) -> None:
    """Configure Django minimally with an alias pointing at the emulator."""
    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=["appsync_events"],
        DATABASES={},
        USE_TZ=True,
        APPSYNC_EVENTS={
            "default": {
                "HTTP_URL": f"http://127.0.0.1:{port}/event",
                "REGION": "us-east-1",
                "AUTH": {"API_KEY": API_KEY},
                "NAMESPACES": ["default"],
                "PUBLISH": {"ON_COMMIT": False},
            }
        },
    )
    django.setup()


def event(n: int) -> dict[str, Any]:
    """A small, realistic event."""
    return {"type": "message", "room": "bench", "n": n, "text": "hello from the benchmark"}


def measure(name: str, total: int, seconds: float, step: Callable[[int], int]) -> dict[str, Any]:
    """Call ``step(n)`` (which sends events from index n and returns how many) until done."""
    sent = 0
    started = time.perf_counter()
    deadline = started + seconds
    while sent < total and time.perf_counter() < deadline:
        sent += step(sent)
    elapsed = time.perf_counter() - started
    result = {"name": name, "events": sent, "seconds": elapsed, "per_s": sent / elapsed}
    print(json.dumps(result), flush=True)
    return result


def post_one(client: httpx.Client, url: str, n: int) -> int:
    body = json.dumps({"channel": CHANNEL, "events": [json.dumps(event(n))]})
    response = client.post(
        url, content=body, headers={"x-api-key": API_KEY, "content-type": "application/json"}
    )
    response.raise_for_status()
    if len(response.json()["successful"]) != 1:
        raise RuntimeError(f"not accepted: {response.text}")
    return 1


def run(total: int, seconds: float, port: int) -> list[dict[str, Any]]:
    """Run the four ways; return their results."""
    from appsync_events import publish
    from appsync_events.backends import get_backend
    from appsync_events.results import PublishResult

    url = f"http://127.0.0.1:{port}/event"
    nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
    results = []

    def batched(n: int) -> int:
        # 50 events per call: publish() chunks them into 10 requests of 5.
        count = min(50, total - n)
        result = publish(CHANNEL, *[event(n + i) for i in range(count)])
        if not isinstance(result, PublishResult) or not result.ok:
            raise RuntimeError(f"publish failed: {result!r}")
        return count

    publish(CHANNEL, event(-1))  # open the pool before timing
    results.append(measure("library: pooled, 5 events per request", total, seconds, batched))
    get_backend().close()

    with httpx.Client(transport=httpx.HTTPTransport(socket_options=nodelay)) as client:
        post_one(client, url, -1)
        results.append(
            measure(
                "keep-alive client, 1 event per request (TCP_NODELAY)",
                total,
                seconds,
                lambda n: post_one(client, url, n),
            )
        )
    with httpx.Client() as client:
        post_one(client, url, -1)
        results.append(
            measure(
                "keep-alive client, 1 event per request (httpx defaults)",
                total,
                seconds,
                lambda n: post_one(client, url, n),
            )
        )

    def fresh(n: int) -> int:
        with httpx.Client(
            transport=httpx.HTTPTransport(socket_options=nodelay),
            headers={"connection": "close"},
        ) as client:
            return post_one(client, url, n)

    results.append(
        measure("new connection per request, 1 event per request", total, seconds, fresh)
    )
    return results


def render(results: list[dict[str, Any]], total: int, seconds: float) -> str:
    base = results[0]["per_s"]
    keepalive = results[1]["per_s"]
    lines = [
        SECTION,
        "",
        _common.provenance(),
        f"`python -m bench.bench_publish --events {total} --seconds {seconds:g}`: the emulator "
        "in its own process on loopback; small JSON events (~80 bytes) to one channel; API key "
        "auth; sequential requests from one thread.",
        "",
        "| way | events | events/s | library is faster by |",
        "|---|---:|---:|---:|",
    ]
    for r in results:
        ratio = base / r["per_s"] if r["per_s"] else float("inf")
        lines.append(
            f"| {r['name']} | {r['events']:,} | {r['per_s']:,.0f} | "
            f"{'—' if r is results[0] else f'{ratio:.1f}x'} |"
        )
    verdict = "met" if base >= 3 * keepalive else "NOT met"
    lines += [
        "",
        f"Goal (pooled and batched at least 3x a keep-alive client sending one event per request): "
        f"**{verdict}** ({base / keepalive:.1f}x).",
        "",
        "The library's pool sets `TCP_NODELAY`: without it a request written in two parts "
        "(headers, then body) can wait for the peer's delayed ACK. With one-event bodies the "
        "effect is small here (the httpx-defaults row); with 5-event bodies from the outbox "
        "drainer we measured about 35 ms per request before setting it. The last row pays a "
        "TCP handshake and a server-side connection setup for every event.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--events", type=int, default=2000, help="events per way (bound)")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per way (bound)")
    _common.add_output_args(parser)
    args = parser.parse_args()
    server, port = _common.start_emulator(API_KEY)
    try:
        setup_django(port)
        results = run(args.events, args.seconds, port)
    finally:
        _common.stop_child(server, 30)
    text = render(results, args.events, args.seconds)
    ratio = results[0]["per_s"] / results[1]["per_s"]
    goals = [
        _common.goal(
            "publishing: pooled and batched vs a keep-alive client, one event per request",
            "at least 3x",
            f"{ratio:.1f}x ({results[0]['per_s']:,.0f} vs {results[1]['per_s']:,.0f} events/s)",
            ratio >= 3,
            limit="The emulator's cost per request and per event, on the same 2 cores.",
            value=ratio,
        )
    ]
    _common.emit(args, SECTION, text, {"ways": results}, goals)


if __name__ == "__main__":
    main()
