"""Benchmark the emulator against MiniStack: fan-out rate and memory per idle connection.

Run: ``python -m bench.bench_emulator [--sizes 1,10,100,1000] [--seconds 3] [--rounds 2]
[--no-write] [--json PATH]`` (MiniStack: the ``ministack`` package of the ``bench``
dependency group, run by this interpreter or by the one ``BENCH_MINISTACK_PYTHON`` names).

Two servers of the AppSync Events data plane, each in its own process on loopback, one at
a time: the emulator (``appsync_events.emulator``, uvicorn) and MiniStack (its AppSync
Events service, hypercorn). This process drives both with the same clients
(``bench/_wire.py``): subscribers are raw websockets that count frames, and the publisher
sends 5-event batches, each as an HTTP ``POST /event`` on a new connection (``Connection:
close``, as MiniStack's publisher clients do), 4 requests in flight. At 1 subscriber the
servers' per-request cost decides; at 1,000 their fan-out.

For each size the two servers alternate for ``--rounds`` rounds of ``--seconds`` each, so
other load on the machine hits both alike; a rate is the frames delivered over the time
spent. Goal: the emulator at least 2x MiniStack at every size. Results replace the
section "## Emulator fan-out" of ``BENCHMARKS.md`` unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

try:
    from bench import _common, _wire  # python -m bench.bench_x, or imported from the root
except ImportError:  # run as bench/bench_x.py
    import _common  # type: ignore[import-not-found,no-redef]
    import _wire  # type: ignore[import-not-found,no-redef]

SECTION = "## Emulator fan-out"
API_KEY = "da2-bench000000000000000000000000"
CHANNEL = "/default/bench"
EVENTS = [json.dumps({"n": n, "text": "hello from the bench"}) for n in range(5)]
IN_FLIGHT = int(os.environ.get("BENCH_IN_FLIGHT", "4"))
GOAL = 2.0


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's open-file soft limit towards ``wanted``; return the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(hard, max(soft, wanted))
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def free_port() -> int:
    """A loopback port free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Emulator:
    """The emulator in a child process."""

    name = "emulator"

    def __init__(self) -> None:
        self.proc, self.port = _common.start_emulator(API_KEY)
        self.pid = self.proc.pid
        self.http_host = self.ws_host = f"127.0.0.1:{self.port}"
        self.auth = {"host": self.http_host, "x-api-key": API_KEY}

    def close(self) -> None:
        _common.stop_child(self.proc, timeout=30)


def ministack_python() -> str:
    """The interpreter that runs MiniStack: ``BENCH_MINISTACK_PYTHON``, else this one."""
    named = os.environ.get("BENCH_MINISTACK_PYTHON")
    if named:
        return named
    import importlib.util

    if importlib.util.find_spec("ministack") is None:
        raise SystemExit(
            "MiniStack is not installed here: run the benchmarks with `make bench` (it "
            "installs the bench dependency group into .venv-bench), or set "
            "BENCH_MINISTACK_PYTHON to an interpreter that has the ministack package."
        )
    return sys.executable


class MiniStack:
    """MiniStack in a child process, with one Event API (API key auth, namespace default)."""

    name = "MiniStack"

    def __init__(self) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "GATEWAY_PORT": str(self.port),
            "BIND_HOST": "127.0.0.1",
            "LOG_LEVEL": "WARNING",  # no access line per request (the emulator writes none)
            "APPSYNC_EVENTS_KA_INTERVAL_SECS": "3600",  # no keep-alive frames while counting
            "TMPDIR": os.environ.get("TMPDIR", "/tmp"),  # noqa: S108 - MiniStack's pid file
        }
        env.pop("PYTHONPATH", None)
        self.proc = subprocess.Popen(
            [ministack_python(), "-m", "ministack"],
            env=env,
            cwd=Path(env["TMPDIR"]),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.pid = self.proc.pid
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"MiniStack did not start on port {self.port}")
            time.sleep(0.1)
        self.http_host, self.ws_host, key = self._create_api()
        self.auth = {"host": self.http_host, "x-api-key": key}

    def _create_api(self) -> tuple[str, str, str]:
        """Create the Event API through MiniStack's control plane; return hosts and key."""
        import boto3

        client = boto3.client(
            "appsync",
            endpoint_url=f"http://127.0.0.1:{self.port}",
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",  # noqa: S106 - MiniStack accepts any
        )
        modes = [{"authType": "API_KEY"}]
        api = client.create_api(
            name="bench",
            eventConfig={
                "authProviders": modes,
                "connectionAuthModes": modes,
                "defaultPublishAuthModes": modes,
                "defaultSubscribeAuthModes": modes,
            },
        )["api"]
        client.create_channel_namespace(apiId=api["apiId"], name="default")
        key = client.create_api_key(apiId=api["apiId"])["apiKey"]["id"]
        return api["dns"]["HTTP"], api["dns"]["REALTIME"], key

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


async def open_subscribers(server: Any, count: int) -> list[_wire.Subscriber]:
    """Open ``count`` subscribers to CHANNEL, 100 connecting at a time."""
    out: list[_wire.Subscriber] = []
    for start in range(0, count, 100):
        out += await asyncio.gather(
            *(
                _wire.Subscriber.open(server.port, server.ws_host, server.auth, CHANNEL, f"s{i}")
                for i in range(start, min(count, start + 100))
            )
        )
    return out


async def fanout(server: Any, subscribers: list[_wire.Subscriber], seconds: float) -> dict:
    """Publish for ``seconds`` (4 requests in flight); return frames and time spent."""
    size = len(subscribers)
    state = {"received": 0, "published": 0}
    done = asyncio.Event()
    expected: list[int] = []

    def on_frames(n: int) -> None:
        state["received"] += n
        if expected and state["received"] >= expected[0]:
            done.set()

    readers = [asyncio.create_task(s.count_forever(on_frames)) for s in subscribers]
    cpu = (_common.cpu_seconds(server.pid), _common.cpu_seconds())
    started = time.perf_counter()
    deadline = started + seconds

    async def publisher() -> None:
        while time.perf_counter() < deadline:
            # A rate valve: deliveries may lag at most ~50 events per subscriber.
            while state["received"] < (state["published"] - 50) * size:  # noqa: ASYNC110
                await asyncio.sleep(0.001)
            status, body = await _wire.post_events(
                server.port, server.http_host, server.auth["x-api-key"], CHANNEL, EVENTS
            )
            if status != 200:
                raise SystemExit(f"{server.name} refused a publish: {status} {body[:300]!r}")
            state["published"] += 5

    await asyncio.gather(*(publisher() for _ in range(IN_FLIGHT)))
    expected.append(state["published"] * size)
    if state["received"] < expected[0]:
        await asyncio.wait_for(done.wait(), timeout=300)
    elapsed = time.perf_counter() - started
    server_cpu = _common.cpu_seconds(server.pid) - cpu[0]
    client_cpu = _common.cpu_seconds() - cpu[1]
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    if state["received"] != expected[0]:
        raise SystemExit(f"{server.name}: {state['received']} frames for {expected[0]} expected")
    first = subscribers[0].first or b""
    if b'"data"' not in first:
        raise SystemExit(f"{server.name}: the first frame is not a data frame: {first[:200]!r}")
    return {
        "frames": state["received"],
        "events": state["published"],
        "seconds": elapsed,
        "server_cpu": server_cpu,
        "client_cpu": client_cpu,
    }


async def compare(size: int, seconds: float, rounds: int) -> dict[str, Any]:
    """Run both servers at ``size`` subscribers, alternating; return their rates."""
    totals: dict[str, dict[str, float]] = {}
    order = [Emulator, MiniStack]
    for _ in range(rounds):
        for kind in order:
            server = await asyncio.to_thread(kind)
            try:
                subscribers = await open_subscribers(server, size)
                result = await fanout(server, subscribers, seconds)
                for sub in subscribers:
                    sub.close()
            finally:
                await asyncio.to_thread(server.close)
            total = totals.setdefault(
                kind.name,
                {"frames": 0, "events": 0, "seconds": 0.0, "server_cpu": 0.0, "client_cpu": 0.0},
            )
            for key in total:
                total[key] += result[key]
        order.reverse()
    row: dict[str, Any] = {"subscribers": size}
    for name, total in totals.items():
        row[name] = {
            "delivered_per_s": total["frames"] / total["seconds"],
            "published_per_s": total["events"] / total["seconds"],
            "frames": total["frames"],
            # CPU time per delivered frame: what the server spends, whatever else runs.
            "server_cpu_us_per_frame": total["server_cpu"] / total["frames"] * 1e6,
            "client_cpu_us_per_frame": total["client_cpu"] / total["frames"] * 1e6,
            "server_cpu_share": total["server_cpu"] / total["seconds"],
        }
    row["ratio"] = row["emulator"]["delivered_per_s"] / row["MiniStack"]["delivered_per_s"]
    print(json.dumps(row), flush=True)
    return row


async def idle_memory(kind: Any, count: int) -> dict[str, float]:
    """RSS growth of a fresh server process per idle, acked, subscribed connection."""
    server = await asyncio.to_thread(kind)
    try:
        await asyncio.sleep(0.5)
        before = _common.rss_kib(server.pid)
        subscribers = await open_subscribers(server, count)
        await asyncio.sleep(1.0)
        after = _common.rss_kib(server.pid)
        for sub in subscribers:
            sub.close()
    finally:
        await asyncio.to_thread(server.close)
    return {
        "connections": count,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_connection": (after - before) / count,
    }


LIMIT = (
    "At 1 subscriber each event batch is one HTTP request on a new connection, so the "
    "servers' per-request cost decides (TCP accept, HTTP parsing, auth, JSON); both run "
    "in one Python process on a machine whose 2 cores the benchmark client, the other "
    "server's leftovers and other jobs share."
)


def render(
    rows: list[dict[str, Any]], memory: dict[str, dict[str, float]], args: argparse.Namespace
) -> tuple[str, list[dict[str, Any]]]:
    """The section's Markdown and its goals."""
    lines = [
        SECTION,
        "",
        _common.provenance(memory=True),
        f"`python -m bench.bench_emulator --sizes {args.sizes} --seconds {args.seconds:g} "
        f"--rounds {args.rounds}`: each server in its own process on loopback, one at a "
        "time; the same clients for both (`bench/_wire.py`): raw websocket subscribers that "
        "count frames, and 5-event HTTP publishes, each on a new connection (`Connection: "
        f"close`), {IN_FLIGHT} in flight. The two servers alternate for "
        f"{args.rounds} rounds of {args.seconds:g} s per size. MiniStack runs with "
        "`LOG_LEVEL=WARNING` (no access log line per request, like the emulator).",
        "",
        "How each serves AppSync Events: the emulator is uvicorn (httptools parser, "
        "websockets-sansio) with one writer task per socket, a subscription index by "
        "channel, and each event encoded once per publish (a prefix per subscription); "
        "MiniStack's AppSync Events "
        "service runs inside its one hypercorn application (h11, wsproto) for every AWS "
        "service it emulates, routes the data plane by the `Host` header "
        "(`<api>.appsync-api.<region>.localhost` for `POST /event`, "
        "`<api>.appsync-realtime-api...` for the websocket), and on a publish walks every "
        "connection of the API, matches each subscription pattern and queues a dict that "
        "the socket's task encodes with `json.dumps`.",
        "",
        "| subscribers | emulator frames/s | MiniStack frames/s | emulator vs MiniStack | "
        "emulator events/s | MiniStack events/s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        e, m = r["emulator"], r["MiniStack"]
        lines.append(
            f"| {r['subscribers']:,} | {e['delivered_per_s']:,.0f} | "
            f"{m['delivered_per_s']:,.0f} | **{r['ratio']:.2f}x** | "
            f"{e['published_per_s']:,.0f} | {m['published_per_s']:,.0f} |"
        )
    worst = min(rows, key=lambda r: r["ratio"])
    met = all(r["ratio"] >= GOAL for r in rows)
    lines += [
        "",
        f"Goal (the emulator at least {GOAL:g}x MiniStack at every size): "
        f"**{'met' if met else 'NOT met'}** (lowest {worst['ratio']:.2f}x, at "
        f"{worst['subscribers']:,} subscriber{'s' if worst['subscribers'] > 1 else ''}).",
        "",
        "Frames/s counts the `data` frames all subscribers received; events/s the events "
        "published (each reaches every subscriber).",
        "",
        "CPU time each server spent per frame delivered (user + system, from `/proc`), "
        "which other load on the machine changes much less than the rates:",
        "",
        "| subscribers | emulator µs/frame | MiniStack µs/frame | MiniStack vs emulator |",
        "|---:|---:|---:|---:|",
    ]
    for r in rows:
        e, m = r["emulator"], r["MiniStack"]
        lines.append(
            f"| {r['subscribers']:,} | {e['server_cpu_us_per_frame']:.1f} | "
            f"{m['server_cpu_us_per_frame']:.1f} | "
            f"{m['server_cpu_us_per_frame'] / e['server_cpu_us_per_frame']:.2f}x |"
        )
    lines.append("")
    if memory:
        e, m = memory["emulator"], memory["MiniStack"]
        lines += [
            "| memory per idle connection (acked, one subscription) | emulator | MiniStack |",
            "|---|---:|---:|",
            f"| KiB per connection ({e['connections']:,} connections) | "
            f"{e['kib_per_connection']:.1f} | {m['kib_per_connection']:.1f} |",
            f"| server RSS before → after, MiB | {e['rss_before_kib'] / 1024:.1f} → "
            f"{e['rss_after_kib'] / 1024:.1f} | {m['rss_before_kib'] / 1024:.1f} → "
            f"{m['rss_after_kib'] / 1024:.1f} |",
            "",
        ]
    goals = [
        _common.goal(
            f"emulator vs MiniStack, fan-out to {r['subscribers']:,} subscriber"
            + ("s" if r["subscribers"] > 1 else ""),
            f"at least {GOAL:g}x",
            f"{r['ratio']:.2f}x ({r['emulator']['delivered_per_s']:,.0f} vs "
            f"{r['MiniStack']['delivered_per_s']:,.0f} frames/s)",
            r["ratio"] >= GOAL,
            limit=LIMIT,
            value=r["ratio"],
        )
        for r in rows
    ]
    return "\n".join(lines), goals


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="1,10,100,1000", help="subscriber counts")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per server and size")
    parser.add_argument("--memory", type=int, default=1000, help="idle connections (0: skip)")
    _common.add_output_args(parser)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    raise_fd_limit(max([*sizes, args.memory]) * 2 + 256)
    ministack_python()  # fails early, saying how to install it, when MiniStack is missing
    rows = [await compare(size, args.seconds, args.rounds) for size in sizes]
    memory: dict[str, dict[str, float]] = {}
    if args.memory:
        for kind in (Emulator, MiniStack):
            memory[kind.name] = await idle_memory(kind, args.memory)
        print(json.dumps(memory), flush=True)
    text, goals = render(rows, memory, args)
    _common.emit(args, SECTION, text, {"sizes": rows, "memory": memory}, goals)


if __name__ == "__main__":
    asyncio.run(main())
