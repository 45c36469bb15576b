"""Benchmark listener throughput against a bare ``websockets`` receive loop.

Run: ``python -m bench.bench_listener [--events 30000] [--no-write]
[--json PATH]`` from the repository root (``make bench`` runs it too)

A sender process (a plain ``websockets`` server on loopback) answers the handshake and
the subscribe, then writes ``--events`` ``data`` frames, pre-encoded down to the wire
bytes, straight to its socket: the same sender, the same frames, for every receiver,
and it never limits the rate. In this process, one after the other:

1. **bare loop**: a ``websockets`` client that does the handshake and the subscribe by
   hand, then only counts frames (``async for frame in ws``); the ceiling;
   (reference) the same loop also decoding each frame and its payload, nothing else;
2. **listener, async handler**: :class:`appsync_events.listener.Listener` with one async
   handler: receive → decode (frame and payload) → queue → handler, per event;
3. the same plus one async ``event_received`` receiver (the signal goes through Django's
   ``Signal.asend_robust``);
4. the same with a sync handler (run in a worker thread, database connections checked
   around it, as for ORM handlers); reported.

Each rate is events per second from the first event the receiver saw to the last one
processed. The goal: (2) absorbs at least 30,000 events/s (three times AppSync's default
inbound quota of 10,000 events/s per API). Results replace the section
"## Listener throughput" of ``BENCHMARKS.md`` unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any

try:
    from bench import _common  # python -m bench.bench_x, or imported from the repo root
except ImportError:
    import _common  # type: ignore[import-not-found,no-redef]  # run as bench/bench_x.py


SECTION = "## Listener throughput"
PLACEHOLDER = "SUBSCRIPTION-ID-PLACEHOLDER"


# -- the sender (its own process) -------------------------------------------------------


#: Frames pre-encoded once and written over and over (the payloads' ``n`` repeats).
CHUNK = 1000
#: Bytes the sender lets wait in its socket buffer before it waits for the receiver.
HIGH_WATER = 4 * 1024 * 1024


async def serve(events: int) -> None:
    """Serve the sender until stdin closes; print the port first.

    Each subscriber gets ``events`` data frames, written as pre-encoded wire bytes in
    chunks of :data:`CHUNK` frames straight to the socket, pausing only while more than
    :data:`HIGH_WATER` bytes wait in its buffer: the sender costs next to nothing per
    frame, so the receiver sets the pace, for 30,000 events as for a 1M-event soak.
    """
    from websockets.asyncio.server import ServerConnection
    from websockets.asyncio.server import serve as ws_serve
    from websockets.frames import Frame, Opcode

    # Pre-encoded once: only the subscription id is substituted when a subscribe comes.
    template = [
        json.dumps(
            {
                "type": "data",
                "id": PLACEHOLDER,
                "event": json.dumps({"n": n, "text": "hello from the bench", "room": 7}),
            }
        )
        for n in range(min(events, CHUNK))
    ]

    def wire(frames: list[str], sub_id: str) -> bytes:
        # Server frames are unmasked.
        return b"".join(
            Frame(Opcode.TEXT, f.replace(PLACEHOLDER, sub_id).encode()).serialize(mask=False)
            for f in frames
        )

    async def stream(ws: ServerConnection, sub_id: str) -> None:
        chunk = wire(template, sub_id)
        transport = ws.transport
        sent = 0
        while sent < events and not transport.is_closing():
            while transport.get_write_buffer_size() > HIGH_WATER:  # noqa: ASYNC110
                await asyncio.sleep(0.002)
            count = min(CHUNK, events - sent)
            transport.write(chunk if count == CHUNK else wire(template[:count], sub_id))
            sent += count

    tasks: set[asyncio.Task[None]] = set()

    async def handler(ws: ServerConnection) -> None:
        async for frame in ws:
            message = json.loads(frame)
            kind = message.get("type")
            if kind == "connection_init":
                await ws.send('{"type":"connection_ack","connectionTimeoutMs":300000}')
            elif kind == "subscribe":
                sub_id = message["id"]
                await ws.send(json.dumps({"type": "subscribe_success", "id": sub_id}))
                # Written straight to the transport, after subscribe_success (the transport
                # keeps the order); the kernel's socket buffers then pace the receiver.
                task = asyncio.create_task(stream(ws, sub_id))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            elif kind == "unsubscribe":
                await ws.send(json.dumps({"type": "unsubscribe_success", "id": message["id"]}))

    async with ws_serve(
        handler,
        "127.0.0.1",
        0,
        subprotocols=["aws-appsync-event-ws"],  # type: ignore[list-item]
        compression=None,
        ping_interval=None,
        max_queue=None,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print(port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


def start_sender(events: int) -> tuple[subprocess.Popen[str], int]:
    """Start the sender process (``--serve``); return it and its port."""
    return _common.start_child(
        [sys.executable, "-m", "bench.bench_listener", "--serve", "--events", str(events)],
        cwd=_common.ROOT,
        env={**os.environ, "PYTHONPATH": str(_common.ROOT)},
    )


# -- receivers ----------------------------------------------------------------------------


def connect_to(port: int, **options: Any) -> Any:
    """``websockets``' ``connect`` to the sender, with the listener's subprotocols."""
    from websockets.asyncio.client import connect

    from appsync_events.auth import encode_header_subprotocol

    header = encode_header_subprotocol({"host": f"127.0.0.1:{port}", "x-api-key": "da2-bench"})
    return connect(
        f"ws://127.0.0.1:{port}/event/realtime",
        subprotocols=["aws-appsync-event-ws", header],
        compression=None,
        ping_interval=None,
        proxy=None,
        **options,
    )


async def bare_loop(port: int, events: int, *, decode: bool = False) -> float:
    """Count frames with a bare websockets client; return events per second.

    With ``decode``, each frame is also decoded with the shared codec and its event
    payload parsed (the work the listener cannot skip), and nothing else: the ceiling
    for any listener that decodes every frame.
    """
    from appsync_events.protocol import SERVER_TYPES, Data, loads
    from appsync_events.protocol import decode as decode_frame

    async with connect_to(port) as ws:
        await ws.send('{"type":"connection_init"}')
        await ws.recv()
        # A subscription id like the listener's (a UUID), so both get frames of one size.
        sub_id = str(uuid.uuid4())
        await ws.send(json.dumps({"type": "subscribe", "id": sub_id, "channel": "/bench/*"}))
        await ws.recv()  # subscribe_success
        count = 0
        start = 0.0
        async for frame in ws:
            if count == 0:
                start = time.perf_counter()
            if decode:
                message = decode_frame(frame, accept=SERVER_TYPES)
                assert isinstance(message, Data)
                loads(message.event)
            count += 1
            if count == events:
                break
        return events / (time.perf_counter() - start)


async def listener_run(port: int, events: int, *, sync_handler: bool, receiver: bool) -> float:
    """Run the Listener with one handler (and a receiver); return events per second."""
    from appsync_events.dispatch import Router
    from appsync_events.listener import Listener
    from appsync_events.signals import event_received

    router = Router()
    state = {"count": 0, "start": 0.0, "end": 0.0}
    done = asyncio.Event()
    loop = asyncio.get_running_loop()

    def record() -> None:
        if state["count"] == 0:
            state["start"] = time.perf_counter()
        state["count"] += 1
        if state["count"] == events:
            state["end"] = time.perf_counter()
            loop.call_soon_threadsafe(done.set)

    if sync_handler:

        def handler(event: Any) -> None:
            record()

    else:

        async def handler(event: Any) -> None:  # type: ignore[misc]
            record()

    router.add("/bench/*", handler)

    async def on_event(sender: str, **kwargs: Any) -> None:
        return None

    if receiver:
        event_received.connect(on_event)
    listener = Listener(channels=["/bench/*"], router=router, sinks=[])
    task = asyncio.create_task(listener.run(install_signal_handlers=False))
    try:
        await asyncio.wait_for(done.wait(), 120)
    finally:
        listener.request_stop("benchmark over")
        await task
        event_received.disconnect(on_event)
    return events / (state["end"] - state["start"])


def setup_django(port: int) -> None:
    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=["django.contrib.contenttypes", "appsync_events"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        USE_TZ=True,
        APPSYNC_EVENTS={
            "default": {
                "HTTP_URL": f"http://127.0.0.1:{port}/event",
                "REGION": "us-east-1",
                "AUTH": {"API_KEY": "da2-bench-not-a-secret-000000"},
                "NAMESPACES": ["bench"],
                "FORWARDING": {"ENABLED": False},
                "LISTENER": {"STATS_INTERVAL": 3600},
            }
        },
    )
    django.setup()


# -- report -------------------------------------------------------------------------------


#: The goal: three times AppSync's default inbound quota (10,000 events/s per API).
GOAL = 30_000

#: The last run of the previous receive path (its own frame parser reading websockets'
#: private connection internals), kept to state what moving to the public API cost.
PREVIOUS = ("137a0dd", 351_134)


def render(
    bare: float,
    decode_rate: float,
    async_rate: float,
    signal_rate: float,
    sync_rate: float,
    events: int,
) -> str:
    ratio = async_rate / bare
    verdict = "met" if async_rate >= GOAL else "NOT met"

    def us(rate: float) -> float:
        return 1e6 / rate

    return "\n".join(
        [
            SECTION,
            "",
            _common.provenance(),
            f"`python -m bench.bench_listener --events {events}`: one sender process (plain "
            "`websockets` server on loopback) pushes the same pre-encoded `data` frames "
            "(~90-byte events) to each receiver in turn; the receivers run in this process, "
            "one at a time.",
            "",
            "| receiver | events/s | µs/event | vs bare loop |",
            "|---|---:|---:|---:|",
            f"| bare `websockets` receive loop (count frames only) | {bare:,.0f} | "
            f"{us(bare):.1f} | 1.00x |",
            f"| (reference) bare loop + `protocol.decode` + payload `loads`, no dispatch | "
            f"{decode_rate:,.0f} | {us(decode_rate):.1f} | {decode_rate / bare:.2f}x |",
            f"| **Listener: decode → queue → async handler** | "
            f"{async_rate:,.0f} | {us(async_rate):.1f} | {ratio:.2f}x |",
            f"| Listener: decode → queue → `event_received` (async receiver) → async handler | "
            f"{signal_rate:,.0f} | {us(signal_rate):.1f} | {signal_rate / bare:.2f}x |",
            f"| Listener: decode → queue → sync handler (thread) | "
            f"{sync_rate:,.0f} | {us(sync_rate):.1f} | {sync_rate / bare:.2f}x |",
            "",
            f"Goal (the listener with an async handler absorbs at least {GOAL:,} events/s, "
            f"three times AppSync's default inbound quota of 10,000/s per API): **{verdict}** "
            f"({async_rate:,.0f} events/s, {async_rate / GOAL:.1f}x the goal).",
            "",
            "The sender writes every frame as pre-encoded wire bytes straight to its socket, "
            "so it costs nothing per frame and the receiver alone sets the pace.",
            "",
            "The listener reads through `websockets`' public API only (`recv()`, with "
            "`max_queue` for backpressure), decodes with `json.loads`, builds each "
            "`ReceivedEvent` with its constructor, queues through `asyncio.Queue` and sends "
            "`event_received` with `Signal.asend_robust`. What that costs against the "
            f"previous receive path (its own frame parser on `websockets`' private "
            f"connection internals; commit `{PREVIOUS[0]}`: {PREVIOUS[1]:,} events/s on "
            f"this machine): {us(async_rate) - 1e6 / PREVIOUS[1]:.1f} µs more per event, "
            f"{async_rate / PREVIOUS[1]:.2f}x its rate. Still far above what the stages "
            "behind the listener take (forwarding into Redis: about 2,000 events/s, "
            "see the channel-layer section).",
            "",
            "The signal row pays for Django's `Signal.asend_robust`, which runs the async "
            "receivers as tasks gathered per event (the listener sends the signal only when "
            "a receiver is connected).",
            "",
            "The sync-handler row pays a thread hop per event (to the listener's handler "
            "thread, with `close_old_connections()` around the handler so ORM code is safe).",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--events", type=int, default=30000, help="events per receiver")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    _common.add_output_args(parser)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.events))
        return
    sender, port = start_sender(args.events)
    try:
        setup_django(port)
        bare = asyncio.run(bare_loop(port, args.events))
        decode_rate = asyncio.run(bare_loop(port, args.events, decode=True))
        async_rate = asyncio.run(
            listener_run(port, args.events, sync_handler=False, receiver=False)
        )
        signal_rate = asyncio.run(
            listener_run(port, args.events, sync_handler=False, receiver=True)
        )
        sync_rate = asyncio.run(listener_run(port, args.events, sync_handler=True, receiver=False))
    finally:
        _common.stop_child(sender, 30)
    text = render(bare, decode_rate, async_rate, signal_rate, sync_rate, args.events)
    results = {
        "events": args.events,
        "bare_loop": bare,
        "bare_loop_decode": decode_rate,
        "listener_async_handler": async_rate,
        "listener_signal": signal_rate,
        "listener_sync_handler": sync_rate,
    }
    goals = [
        _common.goal(
            "listener with an async handler, events absorbed per second",
            f"at least {GOAL:,} events/s",
            f"{async_rate:,.0f} events/s ({async_rate / bare:.2f}x the bare receive loop)",
            async_rate >= GOAL,
            limit="One Python process decoding every frame and its payload on one core.",
            value=async_rate,
        )
    ]
    _common.emit(args, SECTION, text, results, goals)


if __name__ == "__main__":
    main()
