"""Benchmark direct mode: 1,000 browser-like websocket clients on the emulator with Lambda auth.

Run: ``python -m bench.bench_direct [--clients 1000] [--per-task 10] [--seconds 5]
[--no-write] [--json PATH]`` from the repository root (``make bench`` runs it too)

The emulator runs in its own process with ``appsync_events.lambda_authorizer.handler`` as
its ``AWS_LAMBDA`` authorizer (the real module, keys in ``APPSYNC_EVENTS_TOKEN_KEYS``, as
in AWS). This process plays Django: it mints one token per client with
``appsync_events.tokens.mint`` and publishes with ``apublish`` over HTTP (API key), holding
no websocket itself. The clients are plain ``websockets`` connections speaking the AppSync
protocol as ``appsync-events.js`` does in direct mode (``header-`` subprotocol with the
token, ``connection_init``, a subscribe authorized by the token), several per asyncio task.

Measured: the connect rate (connect + ack + subscribe, each connect and subscribe decided
by the authorizer) and the fan-out rate (data frames delivered per second to all clients).
Results replace the section "## Direct mode" of ``BENCHMARKS.md`` unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

import websockets

try:
    from bench import _common  # python -m bench.bench_x, or imported from the repo root
    from bench.bench_emulator import raise_fd_limit
except ImportError:
    import _common  # type: ignore[import-not-found,no-redef]  # run as bench/bench_x.py
    from bench_emulator import raise_fd_limit  # type: ignore[import-not-found,no-redef]

SECTION = "## Direct mode"
API_KEY = "da2-benchdirect00000000000000000"
KEY_ID = "bench"
SIGNING_KEY = "bench-direct-signing-key-0123456789abcdef"
CHANNEL = "/chat/rooms/bench"

# The emulator as a child process, running the real authorizer module by dotted path.
_EMULATOR_SCRIPT = f"""
import sys
from appsync_events.emulator import AppSyncEventsEmulator, NamespaceSpec
emulator = AppSyncEventsEmulator(
    api_keys=[{API_KEY!r}],
    namespaces=[NamespaceSpec("chat", ("API_KEY", "AWS_LAMBDA"), ("API_KEY", "AWS_LAMBDA"))],
    lambda_authorizer="appsync_events.lambda_authorizer.handler",
    ka_interval=3600.0,
    publishes_per_second=1_000_000,
)
emulator.start()
print(emulator.port, flush=True)
sys.stdin.read()
emulator.stop()
"""


def setup_django(port: int) -> None:
    """Configure Django minimally: the emulator's alias, GRANTS and the token key."""
    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "appsync_events"],
        DATABASES={},
        USE_TZ=True,
        SECRET_KEY="bench-not-the-signing-key",  # noqa: S106 - a benchmark's throwaway
        APPSYNC_EVENTS={
            "default": {
                "HTTP_URL": f"http://127.0.0.1:{port}/event",
                "AUTH": {"API_KEY": API_KEY},
                "NAMESPACES": {
                    "chat": {
                        "PUBLISH_AUTH_MODES": ["API_KEY", "AWS_LAMBDA"],
                        "SUBSCRIBE_AUTH_MODES": ["API_KEY", "AWS_LAMBDA"],
                    }
                },
                "GRANTS": [{"WHO": "everyone", "SUBSCRIBE": ["/chat/rooms/*"]}],
                "TOKENS": {"SIGNING_KEYS": {KEY_ID: SIGNING_KEY}},
                "PUBLISH": {"ON_COMMIT": False},
            }
        },
    )
    django.setup()


class Client:
    """One browser-like direct-mode connection."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.received = 0


async def open_client(url: str, auth: dict[str, str], index: int) -> Client:
    """Connect, wait for the ack and subscribe to CHANNEL with the ``auth`` header object
    (``{"Authorization": token, "host": ...}`` in direct mode), as the browser does."""
    from appsync_events.protocol import encode_header_subprotocol

    ws = await websockets.connect(
        url,
        subprotocols=["aws-appsync-event-ws", encode_header_subprotocol(auth)],  # type: ignore[list-item]
        compression=None,
        max_queue=None,
    )
    await ws.send('{"type":"connection_init"}')
    while (frame := json.loads(await ws.recv()))["type"] != "connection_ack":
        if frame["type"] == "connection_error":
            raise RuntimeError(f"connect refused: {frame}")
    await ws.send(
        json.dumps(
            {"type": "subscribe", "id": f"s{index}", "channel": CHANNEL, "authorization": auth}
        )
    )
    while (frame := json.loads(await ws.recv()))["type"] != "subscribe_success":
        if frame["type"] == "subscribe_error":
            raise RuntimeError(f"subscribe refused: {frame}")
    return Client(ws)


async def connect_all(
    url: str, auths: list[dict[str, str]], per_task: int
) -> tuple[list[list[Client]], float]:
    """Open every client, ``per_task`` of them one after the other in each task."""

    async def group(start: int) -> list[Client]:
        return [
            await open_client(url, auths[i], i)
            for i in range(start, min(len(auths), start + per_task))
        ]

    started = time.perf_counter()
    groups = await asyncio.gather(*(group(i) for i in range(0, len(auths), per_task)))
    return list(groups), time.perf_counter() - started


async def read_group(clients: list[Client], counter: list[int], done: asyncio.Event) -> None:
    """Read the clients of one task in turn: every client receives every event."""
    while True:
        for client in clients:
            await client.ws.recv()
            client.received += 1
            counter[0] += 1
            if counter[1] and counter[0] >= counter[1]:
                done.set()


async def fanout(groups: list[list[Client]], seconds: float) -> dict[str, float]:
    """Publish 5-event batches with ``apublish`` for ``seconds``; return the delivery rate."""
    from appsync_events.publishing import apublish

    clients = sum(len(g) for g in groups)
    counter = [0, 0]  # delivered, expected (0: still publishing)
    done = asyncio.Event()
    readers = [asyncio.create_task(read_group(g, counter, done)) for g in groups]
    events = [{"n": n, "text": "hello from Django"} for n in range(5)]
    published = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        # A rate valve: let deliveries catch up so the emulator's queues stay bounded.
        while counter[0] < (published - 50) * clients:  # noqa: ASYNC110
            await asyncio.sleep(0.001)
        await apublish(CHANNEL, *events)
        published += 5
    counter[1] = published * clients
    if counter[0] < counter[1]:
        await asyncio.wait_for(done.wait(), timeout=300)
    elapsed = time.perf_counter() - started
    for task in readers:
        task.cancel()
    return {
        "clients": clients,
        "events_published": published,
        "frames_delivered": counter[0],
        "published_per_s": published / elapsed,
        "delivered_per_s": counter[0] / elapsed,
    }


async def run_round(
    url: str, auths: list[dict[str, str]], args: argparse.Namespace
) -> dict[str, Any]:
    """Connect every client, measure the fan-out, close them all."""
    groups, connect_seconds = await connect_all(url, auths, args.per_task)
    clients = sum(len(g) for g in groups)
    print(json.dumps({"connected": clients, "seconds": connect_seconds}), flush=True)
    result = await fanout(groups, args.seconds)
    result["connect_per_s"] = clients / connect_seconds
    await asyncio.gather(*(c.ws.close() for g in groups for c in g), return_exceptions=True)
    print(json.dumps(result), flush=True)
    return result


def render(
    result: dict[str, Any], baseline: dict[str, Any], args: argparse.Namespace, load: str
) -> str:
    lines = [
        SECTION,
        "",
        _common.provenance(memory=True),
        f"`python -m bench.bench_direct --clients {args.clients} --per-task {args.per_task} "
        f"--seconds {args.seconds:g}`: the emulator in its own process on loopback, running "
        "`appsync_events.lambda_authorizer.handler` as its Lambda authorizer; the benchmark "
        "process plays Django (mints the tokens, publishes over HTTP with `apublish`, batches "
        "of 5, and holds no websocket) and opens the browser-like clients (plain `websockets`, "
        f"{args.per_task} per asyncio task, the AppSync protocol as `appsync-events.js` "
        "speaks it in direct mode), all subscribed to one channel.",
        "",
        "| measure | direct (token, Lambda auth) | same run, API key |",
        "|---|---:|---:|",
        f"| tokens minted (`tokens.mint`) | {result['mint_per_s']:,.0f}/s | — |",
        f"| clients connected, acked and subscribed | {result['clients']:,} "
        f"| {baseline['clients']:,} |",
        f"| connect rate (connect + ack + subscribe) | {result['connect_per_s']:,.0f}/s "
        f"| {baseline['connect_per_s']:,.0f}/s |",
        f"| events published (HTTP, by Django) | {result['published_per_s']:,.0f}/s "
        f"| {baseline['published_per_s']:,.0f}/s |",
        f"| fan-out: data frames delivered to the clients | {result['delivered_per_s']:,.0f}/s "
        f"| {baseline['delivered_per_s']:,.0f}/s |",
        "",
        f"Control: a subscribe with a token lacking the channel was {result['refused']}. "
        "The API-key column repeats the round with the same number of clients authorized by "
        "an API key instead of a token, in the same run, so the machine's load hits both "
        "alike.",
        "",
        f"Load on the shared machine while it ran: {load}; on a loaded machine the rates "
        "vary from run to run by a third or so, and the fan-out gap between the columns is "
        "noise of that size (the emulator's delivery path does not look at the auth mode). "
        "Authorization costs only at "
        "connect and subscribe time (the authorizer answers `ttlOverride: 0`, so each of "
        "those two calls per client runs it, in the emulator's worker threads); delivery is "
        "the emulator's plain fan-out, whatever authorized the subscription. These are the "
        "emulator's figures on one machine, not the service's: in AWS the sockets and the "
        "fan-out are AppSync's, and each authorizer call is a Lambda invocation.",
        "",
    ]
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--per-task", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=5.0)
    _common.add_output_args(parser)
    args = parser.parse_args()
    raise_fd_limit(args.clients * 2 + 256)
    load_before = _common.load_average()
    env = {
        **os.environ,
        "PYTHONPATH": str(_common.ROOT),
        "APPSYNC_EVENTS_TOKEN_KEYS": json.dumps({KEY_ID: SIGNING_KEY}),
    }
    proc, port = _common.start_child(
        [sys.executable, "-c", _EMULATOR_SCRIPT], cwd=_common.ROOT, env=env
    )
    try:
        setup_django(port)
        from django.contrib.auth.models import AnonymousUser

        from appsync_events.tokens import granted, mint

        visitor = AnonymousUser()
        started = time.perf_counter()
        patterns = granted(visitor, "subscribe")
        tokens = [mint(visitor, subscribe=patterns) for _ in range(args.clients)]
        mint_per_s = len(tokens) / (time.perf_counter() - started)
        url = f"ws://127.0.0.1:{port}/event/realtime"
        host = f"127.0.0.1:{port}"
        # A token without the channel is refused: the authorizer really decides.
        refused = False
        other = mint(visitor, subscribe=["/chat/other/*"])
        try:
            extra = await open_client(url, {"Authorization": other, "host": host}, 10**6)
            await extra.ws.close()
        except RuntimeError:
            refused = True
        direct = [{"Authorization": token, "host": host} for token in tokens]
        result = await run_round(url, direct, args)
        result.update(
            mint_per_s=mint_per_s,
            refused="refused" if refused else "ALLOWED (the authorizer did not decide)",
        )
        baseline = await run_round(url, [{"x-api-key": API_KEY, "host": host}] * len(tokens), args)
    finally:
        _common.stop_child(proc, timeout=60)
    text = render(result, baseline, args, f"{load_before} before, {_common.load_average()} after")
    _common.emit(args, SECTION, text, {"direct": result, "api_key": baseline})


if __name__ == "__main__":
    asyncio.run(main())
