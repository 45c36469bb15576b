"""Benchmark the emulator: fan-out rate and memory per idle websocket connection.

Run: ``.venv/bin/python bench/bench_emulator.py [--seconds 3] [--no-write]``

The emulator runs in its own process (so its memory is measured alone) on a loopback
port; this process opens the subscriber websockets (raising its file-descriptor limit
for 1,000 of them) and publishes over HTTP in batches of 5 events. Each measurement is
bounded by ``--seconds``. Results replace the section "## Emulator fan-out" of
``BENCHMARKS.md`` (with commit, machine and date) unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from pathlib import Path

import httpx
import websockets

try:
    from bench import _common  # python -m bench.bench_x, or imported from the repo root
except ImportError:
    import _common  # type: ignore[import-not-found,no-redef]  # run as bench/bench_x.py

SECTION = "## Emulator fan-out"
API_KEY = "da2-bench000000000000000000000000"


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's open-file soft limit towards ``wanted``; return the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(hard, max(soft, wanted))
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Server:
    """The emulator in a child process."""

    def __init__(self) -> None:
        self.proc, self.port = _common.start_emulator(API_KEY)
        self.http_url = f"http://127.0.0.1:{self.port}/event"
        self.ws_url = f"ws://127.0.0.1:{self.port}/event/realtime"

    def close(self) -> None:
        _common.stop_child(self.proc, timeout=30)


def header() -> str:
    from appsync_events.auth import encode_header_subprotocol

    return encode_header_subprotocol({"host": "bench", "x-api-key": API_KEY})


async def open_subscribers(server: Server, count: int, channel: str) -> list:
    """Open ``count`` websockets, each acked and subscribed to ``channel``."""
    protocols = ["aws-appsync-event-ws", header()]
    auth = {"x-api-key": API_KEY}

    async def one(i: int):
        ws = await websockets.connect(
            server.ws_url, subprotocols=protocols, compression=None, max_queue=None
        )
        await ws.send('{"type":"connection_init"}')
        while json.loads(await ws.recv())["type"] != "connection_ack":
            pass
        await ws.send(
            json.dumps(
                {"type": "subscribe", "id": f"s{i}", "channel": channel, "authorization": auth}
            )
        )
        while json.loads(await ws.recv())["type"] != "subscribe_success":
            pass
        return ws

    clients = []
    for start in range(0, count, 100):
        clients += await asyncio.gather(*(one(i) for i in range(start, min(count, start + 100))))
    return clients


async def fanout(server: Server, subscribers: int, seconds: float) -> dict[str, float]:
    """Publish 5-event batches for ``seconds``; return delivered events per second."""
    clients = await open_subscribers(server, subscribers, "/default/bench")
    received = 0
    done = asyncio.Event()
    expected: list[int] = []

    async def reader(ws) -> None:
        nonlocal received
        async for _ in ws:
            received += 1
            if expected and received >= expected[0]:
                done.set()

    readers = [asyncio.create_task(reader(ws)) for ws in clients]
    body = json.dumps({"channel": "/default/bench", "events": ['{"n":1,"text":"hello"}'] * 5})
    published = 0
    started = time.perf_counter()
    async with httpx.AsyncClient(headers={"x-api-key": API_KEY}, timeout=30) as http:
        deadline = started + seconds
        while time.perf_counter() < deadline:
            # Keep the emulator's queue bounded: wait for deliveries to catch up a bit.
            while received < (published - 50) * subscribers:  # noqa: ASYNC110 - a rate valve
                await asyncio.sleep(0.001)
            response = await http.post(server.http_url, content=body)
            response.raise_for_status()
            published += 5
    expected.append(published * subscribers)
    if received < expected[0]:
        await asyncio.wait_for(done.wait(), timeout=120)
    elapsed = time.perf_counter() - started
    for task in readers:
        task.cancel()
    await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)
    return {
        "subscribers": subscribers,
        "events_published": published,
        "frames_delivered": received,
        "delivered_per_s": received / elapsed,
        "published_per_s": published / elapsed,
    }


async def idle_memory(count: int) -> dict[str, float]:
    """RSS growth of a fresh emulator process per idle, acked, subscribed connection."""
    server = Server()
    try:
        await asyncio.sleep(0.5)
        before = rss_kib(server.proc.pid)
        clients = await open_subscribers(server, count, "/default/idle")
        await asyncio.sleep(1.0)
        after = rss_kib(server.proc.pid)
        await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)
    finally:
        server.close()
    return {
        "connections": count,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_connection": (after - before) / count,
    }


def render(results: list[dict[str, float]], memory: dict[str, float], seconds: float) -> str:
    lines = [
        SECTION,
        "",
        _common.provenance(memory=True),
        f"`bench/bench_emulator.py --seconds {seconds:g}`: the emulator in its own process on "
        "loopback, subscribers (one websocket each, no compression) and an HTTP publisher "
        "(batches of 5 events) in the benchmark process, both on the same machine.",
        "",
        "| subscribers | events published/s | data frames delivered/s |",
        "|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['subscribers']:,} | {r['published_per_s']:,.0f} | {r['delivered_per_s']:,.0f} |"
        )
    lines += [
        "",
        f"Memory per idle connection (acked, one subscription): "
        f"{memory['kib_per_connection']:.1f} KiB (emulator RSS "
        f"{memory['rss_before_kib'] / 1024:.1f} → {memory['rss_after_kib'] / 1024:.1f} MiB "
        f"for {memory['connections']:,} connections).",
        "",
    ]
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    raise_fd_limit(4096)
    results = []
    server = Server()
    try:
        for subscribers in (1, 100, 1000):
            result = await fanout(server, subscribers, args.seconds)
            print(json.dumps(result), flush=True)
            results.append(result)
    finally:
        server.close()
    memory = await idle_memory(1000)
    print(json.dumps(memory), flush=True)
    text = render(results, memory, args.seconds)
    print(text)
    if not args.no_write:
        _common.write_section(SECTION, text)


if __name__ == "__main__":
    asyncio.run(main())
