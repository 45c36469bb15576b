"""Benchmark Channels forwarding: forwarder vs bare group_send, and publish → browser latency.

Run: ``.venv/bin/python bench/bench_forwarding.py [--events 3000] [--no-write]``
(needs Redis on 127.0.0.1:6379, or ``REDIS_HOST``/``REDIS_PORT``, loopback only).

1. **Forwarding overhead**: ``ChannelLayerForwarder.dispatch`` over a ``channels_redis``
   layer against a bare loop of ``group_send`` calls carrying the same message to the
   same group (one member), alternating rounds, best round of each. Goal: at least 0.9x.
2. **Publish → consumer latency**: the emulator in its own process, ``appsync_listen``
   in its own process forwarding into Redis, and in this process an
   ``AppSyncEventsConsumer`` (through ``WebsocketCommunicator``) plus an HTTP publisher
   (``apublish``, batches of 5). First the maximum end-to-end rate, then p50 / p99
   latency at half of it.

Every phase is bounded (``--events``, ``--seconds``). Results replace the section
"## Channels forwarding" of ``BENCHMARKS.md`` (commit, machine, date) unless
``--no-write``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

try:
    from bench import _common  # python -m bench.bench_x, or imported from the repo root
except ImportError:
    import _common  # type: ignore[import-not-found,no-redef]  # run as bench/bench_x.py

ROOT = _common.ROOT
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

SECTION = "## Channels forwarding"
API_KEY = "da2-benchforward00000000000000000"
CHANNEL = "/default/bench"
GOAL = 0.9
LISTENER_SETTINGS = """
import json, os
from tests.settings import *  # noqa: F403
APPSYNC_EVENTS = json.loads(os.environ["BENCH_APPSYNC_EVENTS"])
CHANNEL_LAYERS = json.loads(os.environ["BENCH_CHANNEL_LAYERS"])
"""


def redis_address() -> tuple[str, int]:
    """The Redis to use: loopback by default; anything else is refused."""
    host = os.environ.get("REDIS_HOST") or "127.0.0.1"
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"REDIS_HOST={host!r}: this benchmark only runs against loopback")
    return host, int(os.environ.get("REDIS_PORT") or 6379)


def layer_config(prefix: str) -> dict[str, Any]:
    """A channels_redis layer under its own key prefix, with room for a whole round."""
    return {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [list(redis_address())], "prefix": prefix, "capacity": 100_000},
    }


def api_settings(port: int) -> dict[str, Any]:
    """``APPSYNC_EVENTS`` for the benchmark: the emulator, one static subscription."""
    return {
        "default": {
            "HTTP_URL": f"http://127.0.0.1:{port}/event",
            "REGION": "us-east-1",
            "AUTH": {"API_KEY": API_KEY},
            "NAMESPACES": {"default": {}},
            "SUBSCRIPTIONS": [CHANNEL],
            "LISTENER": {"QUEUE_SIZE": 10_000},
        }
    }


# -- 1. forwarder vs bare group_send --------------------------------------------------


async def forwarding_overhead(events: int, rounds: int) -> dict[str, float]:
    """Events/s of the forwarder and of a bare ``group_send`` loop over Redis.

    The two alternate in slices of 100 events (who goes first alternates too), so load
    from anything else on the machine hits both alike; each rate is the total events
    over the total time spent in that mode. Also measures the forwarder's own cost per
    event over a layer that does nothing.
    """
    from channels.layers import get_channel_layer

    from appsync_events.events import ReceivedEvent
    from appsync_events.forwarding import ChannelLayerForwarder, forward_message

    layer = get_channel_layer()
    member = await layer.new_channel()
    forwarder = ChannelLayerForwarder(layer, in_process=True)
    group = forwarder.group_for(CHANNEL)
    received = [
        ReceivedEvent("default", CHANNEL, {"n": i, "text": "hello"}, "") for i in range(events)
    ]
    messages = [forward_message(e) for e in received]
    spent = {"bare": 0.0, "forwarder": 0.0}
    step = 100

    async def bare(lo: int) -> None:
        for message in messages[lo : lo + step]:
            await layer.group_send(group, message)

    async def forwarded(lo: int) -> None:
        for event in received[lo : lo + step]:
            await forwarder.dispatch(event)

    order = [("bare", bare), ("forwarder", forwarded)]
    for _ in range(rounds):
        await layer.flush()
        await layer.group_add(group, member)
        for lo in range(0, events, step):
            order.reverse()
            for name, run in order:
                started = time.perf_counter()
                await run(lo)
                spent[name] += time.perf_counter() - started
    if forwarder.stats.errors or forwarder.stats.channel_full:
        raise SystemExit(f"forwarding failed during the benchmark: {forwarder.stats}")
    await layer.flush()

    class NullLayer:
        async def group_send(self, group: str, message: dict[str, Any]) -> None:
            return None

    null = ChannelLayerForwarder(NullLayer(), in_process=True)
    started = time.perf_counter()
    for event in received:
        await null.dispatch(event)
    own_us = (time.perf_counter() - started) / events * 1e6
    total = events * rounds
    return {
        "bare": total / spent["bare"],
        "forwarder": total / spent["forwarder"],
        "own_us": own_us,
    }


# -- 2. end to end -------------------------------------------------------------------


class Endpoint:
    """A browser socket on the consumer, subscribed to the benchmark channel."""

    def __init__(self) -> None:
        from channels.testing.websocket import WebsocketCommunicator
        from django.contrib.auth.models import User

        from appsync_events.consumers import AppSyncEventsConsumer

        self.ws = WebsocketCommunicator(AppSyncEventsConsumer.as_asgi(), "/ws/appsync/")
        self.ws.scope["user"] = User(username="bench")

    async def open(self) -> None:
        connected, _ = await self.ws.connect(timeout=10)
        assert connected
        await self.ws.send_json_to({"action": "subscribe", "channel": CHANNEL})
        reply = await self.ws.receive_json_from(timeout=10)
        assert reply["type"] == "subscribed", reply

    async def collect(self, count: int, deadline: float) -> list[tuple[float, Any]]:
        """Receive ``count`` events (or until ``deadline``): (arrival time, payload).

        Reads the communicator's output queue directly: its own ``receive_*`` calls
        cancel the application on a timeout, and ``receive_nothing`` polls every 10 ms,
        which would blur the latencies.
        """
        out: list[tuple[float, Any]] = []
        queue = self.ws.output_queue
        while len(out) < count:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            try:
                message = await asyncio.wait_for(queue.get(), remaining)
            except TimeoutError:
                break
            arrived = time.perf_counter()
            content = json.loads(message["text"])
            if content.get("type") == "event":
                out.append((arrived, content["payload"]))
        return out


async def publish_batch(start: int, size: int) -> None:
    from appsync_events.publishing import apublish

    stamp = time.perf_counter()
    events = [{"n": start + i, "t": stamp} for i in range(size)]
    result = await apublish(CHANNEL, *events)
    if getattr(result, "failed", ()):
        raise SystemExit(f"publish failed: {result}")


async def max_rate(endpoint: Endpoint, events: int, seconds: float) -> float:
    """End-to-end events/s with publishers going flat out (2 in flight, batches of 5)."""
    deadline = time.perf_counter() + seconds
    batches = list(range(0, events, 5))
    queue: asyncio.Queue[int] = asyncio.Queue()
    for b in batches:
        queue.put_nowait(b)

    async def publisher() -> None:
        while not queue.empty() and time.perf_counter() < deadline:
            await publish_batch(queue.get_nowait(), 5)

    started = time.perf_counter()
    collector = asyncio.create_task(endpoint.collect(events, deadline))
    await asyncio.gather(publisher(), publisher())
    got = await collector
    if not got:
        raise SystemExit("no event reached the consumer")
    return len(got) / (got[-1][0] - started)


async def latency(endpoint: Endpoint, rate: float, events: int, seconds: float) -> dict[str, Any]:
    """Publish at ``rate`` events/s (batches of 5) and measure publish → browser latency."""
    interval = 5 / rate
    count = min(events, int(rate * seconds) // 5 * 5) or 5
    deadline = time.perf_counter() + seconds + 10
    collector = asyncio.create_task(endpoint.collect(count, deadline))
    tasks = []
    started = time.perf_counter()
    for i, start in enumerate(range(0, count, 5)):
        # Pace by the clock, not by sleeps that add up: batch i leaves at i * interval.
        delay = started + i * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(publish_batch(start, 5)))
    await asyncio.gather(*tasks)
    got = await collector
    in_order = [(arrived - payload["t"]) * 1000 for arrived, payload in got]
    tenth = max(1, len(in_order) // 10)
    print(
        f"latency run at {rate:.0f}/s: first tenth p50 "
        f"{statistics.median(in_order[:tenth]):.1f} ms, last tenth p50 "
        f"{statistics.median(in_order[-tenth:]):.1f} ms",
        flush=True,
    )
    samples = sorted(in_order)
    if not samples:
        raise SystemExit("no event reached the consumer")
    return {
        "events": len(samples),
        "sent": count,
        "p50": statistics.median(samples),
        "p99": samples[min(len(samples) - 1, int(len(samples) * 0.99))],
        "max": samples[-1],
    }


async def end_to_end(port: int, layer: dict[str, Any], events: int, seconds: float) -> dict:
    """Run the listener process and the consumer; return the max rate and latencies."""
    with tempfile.TemporaryDirectory() as tmp:
        await asyncio.to_thread(
            Path(tmp, "bench_listener_settings.py").write_text, LISTENER_SETTINGS
        )
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([tmp, str(ROOT)]),
            "DJANGO_SETTINGS_MODULE": "bench_listener_settings",
            "BENCH_APPSYNC_EVENTS": json.dumps(api_settings(port)),
            "BENCH_CHANNEL_LAYERS": json.dumps({"default": layer}),
        }
        listener = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "django",
            "appsync_listen",
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            await wait_subscribed(port)
            endpoint = Endpoint()
            await endpoint.open()
            await max_rate(endpoint, min(events, 500), seconds)  # warm-up
            peak = await max_rate(endpoint, events, seconds)
            lat = await latency(endpoint, peak / 2, events, seconds)
            await endpoint.ws.disconnect()
        finally:
            listener.terminate()
            await listener.wait()
    return {"max_rate": peak, **lat}


async def wait_subscribed(port: int) -> None:
    """Wait until the listener process forwards: publish probes until a socket gets one."""
    endpoint = Endpoint()
    await endpoint.open()
    deadline = time.perf_counter() + 30
    while time.perf_counter() < deadline:
        await publish_batch(-1, 1)
        if await endpoint.collect(1, time.perf_counter() + 0.5):
            # Drain probes still in flight so they do not count as benchmark events.
            while await endpoint.collect(1, time.perf_counter() + 0.3):
                pass
            await endpoint.ws.disconnect()
            return
    raise SystemExit(f"the listener process never forwarded an event (emulator port {port})")


# -- report ---------------------------------------------------------------------------


def render(overhead: dict[str, float], e2e: dict[str, Any], args: argparse.Namespace) -> str:
    ratio = overhead["forwarder"] / overhead["bare"]
    verdict = "met" if ratio >= GOAL else "NOT met"
    return "\n".join(
        [
            SECTION,
            "",
            _common.provenance(),
            f"`bench/bench_forwarding.py --events {args.events} --rounds {args.rounds} "
            f"--seconds {args.seconds:g}`: channels_redis on loopback Redis.",
            "",
            "| forwarding into Redis, one group member | events/s |",
            "|---|---:|",
            f"| bare `group_send` loop (prebuilt messages) | {overhead['bare']:,.0f} |",
            f"| `ChannelLayerForwarder.dispatch` | {overhead['forwarder']:,.0f} |",
            "",
            "The two alternate in slices of 100 events, so other load on the machine hits "
            "both alike. The forwarder's own work (the filter, the cached group name, the "
            f"message) costs {overhead['own_us']:.1f} µs per event over a layer that does "
            "nothing; the rest is the Redis round trips both pay.",
            "",
            f"Goal (forwarder at least {GOAL}x the bare loop): **{verdict}** ({ratio:.2f}x).",
            "",
            "Publish → browser, end to end: the emulator and `appsync_listen` (forwarding "
            "into Redis) each in their own process; `apublish` (HTTP, batches of 5) and an "
            "`AppSyncEventsConsumer` behind `WebsocketCommunicator` in the benchmark "
            "process; all on this machine.",
            "",
            "| measure | value |",
            "|---|---:|",
            f"| maximum rate (2 publishers flat out) | {e2e['max_rate']:,.0f} events/s |",
            f"| load for the latency run (half of it) | {e2e['max_rate'] / 2:,.0f} events/s |",
            f"| events measured | {e2e['events']:,} of {e2e['sent']:,} |",
            f"| latency p50 | {e2e['p50']:.1f} ms |",
            f"| latency p99 | {e2e['p99']:.1f} ms |",
            f"| latency max | {e2e['max']:.1f} ms |",
            "",
            "Latency runs from just before `apublish` to the consumer's JSON frame arriving "
            "at the test client: HTTP publish, emulator fan-out, the listener's websocket, "
            "its queue and dispatch (signals, handlers, forwarder), Redis, the consumer.",
        ]
    )


async def run(args: argparse.Namespace) -> str:
    from django.test.utils import override_settings

    emulator, port = _common.start_emulator(API_KEY)
    layer = layer_config(f"bench-{uuid.uuid4().hex[:8]}")
    try:
        with override_settings(
            APPSYNC_EVENTS=api_settings(port), CHANNEL_LAYERS={"default": layer}
        ):
            overhead = await forwarding_overhead(args.events, args.rounds)
            print(f"forwarding overhead: {overhead}", flush=True)
            e2e = await end_to_end(port, layer, args.events, args.seconds)
            print(f"end to end: {e2e}", flush=True)
            from channels.layers import get_channel_layer

            await get_channel_layer().flush()
    finally:
        _common.stop_child(emulator, 10)
    return render(overhead, e2e, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=3000, help="events per phase")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the overhead phase")
    parser.add_argument("--seconds", type=float, default=10.0, help="bound of each e2e phase")
    parser.add_argument("--no-write", action="store_true", help="print, do not write")
    args = parser.parse_args()
    import django

    django.setup()
    text = asyncio.run(run(args))
    print(text)
    if not args.no_write:
        _common.write_section(SECTION, text)


if __name__ == "__main__":
    main()
