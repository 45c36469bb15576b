"""Soak the listener: 1M events through ``manage.py appsync_listen``, its memory sampled.

Run: ``python -m bench.bench_soak [--events 1000000] [--layer pubsub] [--interval 0.5]
[--no-write] [--json PATH]`` (needs Redis on 127.0.0.1:6379, or ``REDIS_HOST``/
``REDIS_PORT``).

The sender of ``bench/bench_listener.py`` (its own process) streams ``--events`` data
frames to the listener, as fast as the listener takes them. The listener is the real
command, ``manage.py appsync_listen --max-events N``, in its own process, with the
settings of ``bench/pipeline_settings.py``: it decodes every event and forwards it into
the channels_redis layer ``--layer`` (pubsub by default, or core; no consumer joined the
group). This process samples the listener's resident set size
(``VmRSS``) every ``--interval`` seconds until it exits after the last event.

Goal: flat memory, i.e. RSS grows less than 5 MB over the last 80 % of the run (from the
sample at 20 % of the time to the last one). Results replace the section
"## Listener soak" of ``BENCHMARKS.md`` unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any

try:
    from bench import _common, bench_forwarding, bench_listener
except ImportError:  # run as bench/bench_x.py
    import _common  # type: ignore[import-not-found,no-redef]
    import bench_forwarding  # type: ignore[import-not-found,no-redef]
    import bench_listener  # type: ignore[import-not-found,no-redef]

SECTION = "## Listener soak"
GOAL_MB = 5.0
CHANNEL = "/bench/soak"


def soak(events: int, layer: str, interval: float) -> dict[str, Any]:
    """Run the listener through ``events`` events; return its RSS samples and rate."""
    sender, port = bench_listener.start_sender(events)
    config = bench_forwarding.layer_config(layer, f"bench-soak-{uuid.uuid4().hex[:8]}")
    env = {
        **os.environ,
        "PYTHONPATH": str(_common.ROOT),
        "DJANGO_SETTINGS_MODULE": "bench.pipeline_settings",
        "BENCH_HTTP_URL": f"http://127.0.0.1:{port}/event",
        "BENCH_API_KEY": "da2-bench-soak",
        "BENCH_CHANNEL_LAYER": json.dumps(config),
        "BENCH_SUBSCRIPTIONS": CHANNEL,
    }
    samples: list[tuple[float, int]] = []
    try:
        listener = subprocess.Popen(
            [sys.executable, "manage.py", "appsync_listen", "--max-events", str(events)],
            cwd=_common.ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        started = time.perf_counter()
        cpu = 0.0
        while listener.poll() is None:
            try:
                rss = _common.rss_kib(listener.pid)
                cpu = _common.cpu_seconds(listener.pid)
            except (OSError, RuntimeError):  # exited between poll() and the read
                break
            if rss:  # 0 until the new process has its own memory
                samples.append((time.perf_counter() - started, rss))
            time.sleep(interval)
        elapsed = time.perf_counter() - started
        _, errors = listener.communicate(timeout=60)
    finally:
        _common.stop_child(sender, 30)
    if listener.returncode != 0:
        raise SystemExit(f"the listener exited with {listener.returncode}:\n{errors[-4000:]}")
    if len(samples) < 5:
        raise SystemExit(f"only {len(samples)} samples: raise --events or lower --interval")
    at20 = next(rss for t, rss in samples if t >= samples[-1][0] * 0.2)
    tail = [rss for t, rss in samples if t >= samples[-1][0] * 0.2]
    return {
        "events": events,
        "layer": layer,
        "seconds": elapsed,
        "rate": events / elapsed,
        "cpu_seconds": cpu,
        "samples": samples,
        "rss_start_kib": samples[0][1],
        "rss_at_20_kib": at20,
        "rss_end_kib": samples[-1][1],
        "rss_peak_kib": max(rss for _, rss in samples),
        "growth_last_80_kib": samples[-1][1] - at20,
        "spread_last_80_kib": max(tail) - min(tail),
    }


def render(r: dict[str, Any], args: argparse.Namespace) -> tuple[str, list[dict[str, Any]]]:
    """The section's Markdown and its goal."""
    growth_mb = r["growth_last_80_kib"] / 1024
    met = growth_mb < GOAL_MB
    text = "\n".join(
        [
            SECTION,
            "",
            _common.provenance(memory=True),
            f"`python -m bench.bench_soak --events {args.events} --layer {args.layer} "
            f"--interval {args.interval:g}`: the sender of `bench/bench_listener.py` streams "
            f"{r['events']:,} data frames; `manage.py appsync_listen --max-events "
            f"{r['events']}` (its own process) decodes each event and forwards it into "
            f"channels_redis ({r['layer']} layer, loopback Redis, no consumer in the group); "
            f"its RSS sampled every {args.interval:g} s.",
            "",
            "| measure | value |",
            "|---|---:|",
            f"| events | {r['events']:,} |",
            f"| run time, start-up included | {r['seconds']:,.0f} s ({r['rate']:,.0f} "
            f"events/s; listener CPU {r['cpu_seconds']:,.0f} s) |",
            f"| RSS at the first sample | {r['rss_start_kib'] / 1024:.1f} MiB |",
            f"| RSS at 20 % of the run | {r['rss_at_20_kib'] / 1024:.1f} MiB |",
            f"| RSS at the end | {r['rss_end_kib'] / 1024:.1f} MiB |",
            f"| RSS peak | {r['rss_peak_kib'] / 1024:.1f} MiB |",
            f"| growth over the last 80 % (end - at 20 %) | {growth_mb:+.2f} MiB "
            f"({r['rss_end_kib'] / r['rss_at_20_kib']:.3f}x) |",
            f"| spread over the last 80 % (max - min) | {r['spread_last_80_kib'] / 1024:.2f} MiB |",
            "",
            f"Goal (flat: growth under {GOAL_MB:g} MB over the last 80 % of the run): "
            f"**{'met' if met else 'NOT met'}** ({growth_mb:+.2f} MiB).",
            "",
            "The first 20 % hold the warm-up: imports done lazily, the listener's queue "
            "filling up to its `QUEUE_SIZE` (the sender is faster than the listener), the "
            "allocator's pools growing to their working size.",
            "",
        ]
    )
    goal = _common.goal(
        f"listener memory over {r['events']:,} events",
        f"growth < {GOAL_MB:g} MB over the last 80 %",
        f"{growth_mb:+.2f} MiB ({r['rss_at_20_kib'] / 1024:.1f} → "
        f"{r['rss_end_kib'] / 1024:.1f} MiB)",
        met,
        limit="Memory that grows with events is a leak: see the curve for where it starts.",
        value=growth_mb,
    )
    return text, [goal]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--layer", choices=sorted(bench_forwarding.LAYERS), default="pubsub")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between samples")
    _common.add_output_args(parser)
    args = parser.parse_args()
    result = soak(args.events, args.layer, args.interval)
    text, goals = render(result, args)
    _common.emit(args, SECTION, text, result, goals)


if __name__ == "__main__":
    main()
