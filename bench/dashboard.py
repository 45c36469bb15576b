"""Write the Grafana dashboard of docs/observability.md, and draw it from a real run.

Run: ``.venv/bin/python -m bench.dashboard [--seconds 90] [--json-only]``
(drawing needs matplotlib: ``pip install --group dashboard``)

One list of panels (:data:`PANELS`) gives both outputs:

* ``docs/grafana-dashboard.json``: the dashboard to import into Grafana (each panel's
  PromQL queries over the metrics of ``appsync_events.metrics``);
* ``docs/img/observability-dashboard.png``: a picture of the same panels. Grafana cannot
  run here, so the picture is drawn with matplotlib from a real run: the emulator, a
  :class:`~appsync_events.listener.Listener` serving ``/metrics`` (and draining the
  durable outbox), HTTP publishing at a varying rate, a handler that takes a few
  milliseconds and sometimes fails, a connection the emulator drops half-way. The run's
  ``/metrics`` is scraped every ``--interval`` seconds; each panel's queries are
  evaluated over that scrape series with the PromQL functions they use (``rate``,
  ``histogram_quantile``, ``sum by``), implemented below for exactly these queries.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    from bench import _common  # python -m bench.dashboard
except ImportError:
    import _common  # type: ignore[import-not-found,no-redef]  # run as bench/dashboard.py

JSON_PATH = _common.ROOT / "docs" / "grafana-dashboard.json"
PNG_PATH = _common.ROOT / "docs" / "img" / "observability-dashboard.png"

Sample = tuple[str, frozenset[tuple[str, str]]]
Scrape = tuple[float, dict[Sample, float]]


# -- the panels: PromQL for Grafana, and the same queries evaluated over a scrape series --


@dataclass
class Query:
    """One line of a panel: its PromQL, its legend, and how to evaluate it here."""

    expr: str
    legend: str
    evaluate: Callable[[list[Scrape], int], float | None]


@dataclass
class Panel:
    title: str
    unit: str
    queries: list[Query] = field(default_factory=list)
    description: str = ""


WINDOW = 10.0  # seconds of rate() windows in the picture ([1m] in Grafana)


def _match(labels: frozenset[tuple[str, str]], wanted: dict[str, str]) -> bool:
    have = dict(labels)
    return all(have.get(k) == v for k, v in wanted.items())


def _sum(scrape: dict[Sample, float], name: str, wanted: dict[str, str]) -> float | None:
    values = [v for (n, labels), v in scrape.items() if n == name and _match(labels, wanted)]
    return sum(values) if values else None


def _before(series: list[Scrape], i: int) -> int:
    t = series[i][0]
    j = i
    while j > 0 and t - series[j - 1][0] <= WINDOW + 1e-6:
        j -= 1
    return j


def rate(name: str, **wanted: str) -> Callable[[list[Scrape], int], float | None]:
    """``sum(rate(name{wanted}[window]))``."""

    def evaluate(series: list[Scrape], i: int) -> float | None:
        j = _before(series, i)
        if j == i:
            return None
        now, then = _sum(series[i][1], name, wanted), _sum(series[j][1], name, wanted)
        if now is None:
            return None
        return max(now - (then or 0.0), 0.0) / (series[i][0] - series[j][0])

    return evaluate


def gauge(name: str, **wanted: str) -> Callable[[list[Scrape], int], float | None]:
    """``sum(name{wanted})``."""
    return lambda series, i: _sum(series[i][1], name, wanted)


def quantile(q: float, name: str, **wanted: str) -> Callable[[list[Scrape], int], float | None]:
    """``histogram_quantile(q, sum by (le) (rate(name_bucket{wanted}[window])))``."""

    def evaluate(series: list[Scrape], i: int) -> float | None:
        j = _before(series, i)
        if j == i:
            return None
        buckets: dict[float, float] = {}
        for (n, labels), v in series[i][1].items():
            if n == f"{name}_bucket" and _match(labels, wanted):
                le = float(dict(labels)["le"])
                old = series[j][1].get((n, labels), 0.0)
                buckets[le] = buckets.get(le, 0.0) + v - old
        if not buckets:
            return None
        bounds = sorted(buckets)
        total = buckets[bounds[-1]]
        if total <= 0:
            return None
        rank, lower, below = q * total, 0.0, 0.0
        for bound in bounds:
            count = buckets[bound]
            if count >= rank:
                if math.isinf(bound):
                    return lower
                return lower + (bound - lower) * (rank - below) / max(count - below, 1e-12)
            lower, below = bound, count
        return lower

    return evaluate


A = 'api=~"$api"'
PANELS: list[Panel] = [
    Panel(
        "Events received and dispatched",
        "ops",
        [
            Query(
                f"sum(rate(appsync_events_listener_events_received_total{{{A}}}[1m]))",
                "received",
                rate("appsync_events_listener_events_received_total"),
            ),
            Query(
                f"sum(rate(appsync_events_listener_events_dispatched_total{{{A}}}[1m]))",
                "dispatched",
                rate("appsync_events_listener_events_dispatched_total"),
            ),
            Query(
                f"sum(rate(appsync_events_published_events_total{{{A}}}[1m]))",
                "published (all processes)",
                rate("appsync_events_published_events_total"),
            ),
        ],
        "What the listeners read and dispatched, next to what was published: a gap that "
        "lasts means events are lost or the listener is down.",
    ),
    Panel(
        "Dispatch and handler duration",
        "s",
        [
            Query(
                "histogram_quantile(0.5, sum by (le) (rate("
                f"appsync_events_listener_dispatch_duration_seconds_bucket{{{A}}}[1m])))",
                "dispatch p50",
                quantile(0.5, "appsync_events_listener_dispatch_duration_seconds"),
            ),
            Query(
                "histogram_quantile(0.99, sum by (le) (rate("
                f"appsync_events_listener_dispatch_duration_seconds_bucket{{{A}}}[1m])))",
                "dispatch p99",
                quantile(0.99, "appsync_events_listener_dispatch_duration_seconds"),
            ),
            Query(
                "histogram_quantile(0.99, sum by (le) (rate("
                f"appsync_events_listener_handler_duration_seconds_bucket{{{A}}}[1m])))",
                "handlers p99",
                quantile(0.99, "appsync_events_listener_handler_duration_seconds"),
            ),
        ],
    ),
    Panel(
        "Queue depth",
        "short",
        [
            Query(
                f"sum(appsync_events_listener_queue_depth{{{A}}})",
                "queued",
                gauge("appsync_events_listener_queue_depth"),
            ),
        ],
        "Events waiting for dispatch; growing: the handlers do not keep up.",
    ),
    Panel(
        "Handler errors and dropped events",
        "ops",
        [
            Query(
                f"sum(rate(appsync_events_listener_handler_errors_total{{{A}}}[1m]))",
                "handler errors",
                rate("appsync_events_listener_handler_errors_total"),
            ),
            Query(
                f"sum(rate(appsync_events_listener_events_dropped_total{{{A}}}[1m]))",
                "dropped",
                rate("appsync_events_listener_events_dropped_total"),
            ),
        ],
    ),
    Panel(
        "Connection",
        "short",
        [
            Query(
                f'sum(appsync_events_listener_connection_state{{{A},state="connected"}})',
                "connected",
                gauge("appsync_events_listener_connection_state", state="connected"),
            ),
            Query(
                f"sum(increase(appsync_events_listener_reconnects_total{{{A}}}[5m]))",
                "reconnects (5m)",
                lambda series, i: _sum(
                    series[i][1], "appsync_events_listener_reconnects_total", {}
                ),
            ),
            Query(
                f'sum(appsync_events_listener_subscriptions{{{A},kind="configured"}})',
                "configured subscriptions",
                gauge("appsync_events_listener_subscriptions", kind="configured"),
            ),
        ],
    ),
    Panel(
        "Seconds since the last frame (event or keep-alive)",
        "s",
        [
            Query(
                f"max(appsync_events_listener_seconds_since_last_frame{{{A}}})",
                "since last frame",
                gauge("appsync_events_listener_seconds_since_last_frame"),
            ),
            Query(
                f"max(appsync_events_listener_seconds_since_last_event{{{A}}})",
                "since last event",
                gauge("appsync_events_listener_seconds_since_last_event"),
            ),
        ],
    ),
    Panel(
        "Publishing",
        "ops",
        [
            Query(
                f"sum by (backend) (rate(appsync_events_published_events_total{{{A}}}[1m]))",
                "published {{backend}}",
                rate("appsync_events_published_events_total"),
            ),
            Query(
                f"sum by (code) (rate(appsync_events_publish_failed_events_total{{{A}}}[1m]))",
                "failed {{code}}",
                rate("appsync_events_publish_failed_events_total"),
            ),
            Query(
                f"sum(rate(appsync_events_publish_retries_total{{{A}}}[1m]))",
                "outbox retries",
                rate("appsync_events_publish_retries_total"),
            ),
        ],
    ),
    Panel(
        "Publish latency (one request)",
        "s",
        [
            Query(
                "histogram_quantile(0.5, sum by (le) (rate("
                f"appsync_events_publish_duration_seconds_bucket{{{A}}}[1m])))",
                "p50",
                quantile(0.5, "appsync_events_publish_duration_seconds"),
            ),
            Query(
                "histogram_quantile(0.99, sum by (le) (rate("
                f"appsync_events_publish_duration_seconds_bucket{{{A}}}[1m])))",
                "p99",
                quantile(0.99, "appsync_events_publish_duration_seconds"),
            ),
        ],
    ),
    Panel(
        "Outbox backlog",
        "short",
        [
            Query(
                f"max(appsync_events_outbox_pending_events{{{A}}})",
                "pending rows",
                gauge("appsync_events_outbox_pending_events"),
            ),
            Query(
                f"max(appsync_events_outbox_oldest_pending_age_seconds{{{A}}})",
                "oldest pending (s)",
                gauge("appsync_events_outbox_oldest_pending_age_seconds"),
            ),
            Query(
                f"sum(rate(appsync_events_outbox_sent_events_total{{{A}}}[1m]))",
                "sent/s",
                rate("appsync_events_outbox_sent_events_total"),
            ),
        ],
    ),
    Panel(
        "Browsers",
        "short",
        [
            Query(
                f"sum(appsync_events_consumer_sockets{{{A}}})",
                "open sockets",
                gauge("appsync_events_consumer_sockets"),
            ),
            Query(
                f"sum(appsync_events_consumer_follows{{{A}}})",
                "follows",
                gauge("appsync_events_consumer_follows"),
            ),
            Query(
                f"sum by (reason) (rate(appsync_events_consumer_refusals_total{{{A}}}[1m]))",
                "refused {{reason}}",
                rate("appsync_events_consumer_refusals_total"),
            ),
        ],
        "Web processes: browser websockets, the channels they follow, refusals by reason.",
    ),
]


def dashboard() -> dict[str, Any]:
    """The Grafana dashboard (JSON model) of :data:`PANELS`, two panels per row."""
    panels = []
    for number, panel in enumerate(PANELS):
        panels.append(
            {
                "id": number + 1,
                "type": "timeseries",
                "title": panel.title,
                "description": panel.description,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": 8, "w": 12, "x": 12 * (number % 2), "y": 8 * (number // 2)},
                "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
                "targets": [
                    {
                        "refId": chr(ord("A") + index),
                        "expr": query.expr,
                        "legendFormat": query.legend,
                        "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    }
                    for index, query in enumerate(panel.queries)
                ],
            }
        )
    return {
        "title": "django-appsync-events",
        "uid": "appsync-events",
        "description": "Listener, publishing, outbox and browser metrics of django-appsync-events "
        "(docs/observability.md).",
        "tags": ["django", "appsync"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "label": "Prometheus",
                },
                {
                    "name": "api",
                    "type": "query",
                    "label": "API alias",
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "query": "label_values(appsync_events_listener_events_received_total, api)",
                    "includeAll": True,
                    "multi": True,
                    "current": {"text": "All", "value": "$__all"},
                    "refresh": 2,
                },
            ]
        },
        "panels": panels,
    }


# -- the run -------------------------------------------------------------------------------


def setup_django(db: Path, emulator: Any) -> None:
    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=["django.contrib.contenttypes", "appsync_events"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(db)}},
        USE_TZ=True,
        APPSYNC_EVENTS={
            "default": {
                "HTTP_URL": emulator.http_url,
                "REGION": "us-east-1",
                "AUTH": {"API_KEY": emulator.api_key},
                "NAMESPACES": ["chat"],
                "SUBSCRIPTIONS": ["/chat/*"],
                "FORWARDING": {"ENABLED": False},
                "LISTENER": {
                    "HTTP_PORT": 0,
                    "HTTP_HOST": "127.0.0.1",
                    "STATS_INTERVAL": 3600,
                    "BACKOFF_INITIAL": 1.0,
                },
                "OUTBOX": {"POLL_INTERVAL": 2.0},
            }
        },
    )
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def publisher(stop: threading.Event, started: float, seconds: float) -> None:
    """Publish over HTTP at a rate rising and falling over the run; durable bursts too."""
    from appsync_events import publish

    n = 0
    bursts: set[int] = set()
    while not stop.is_set():
        t = time.monotonic() - started
        per_second = 40 + 35 * math.sin(2 * math.pi * t / seconds)
        try:
            publish("/chat/rooms/7", *({"n": n + k} for k in range(5)))
            n += 5
            burst = int(t // 15)
            if burst not in bursts:  # every 15 s, 20 events through the durable outbox
                bursts.add(burst)
                publish("/chat/rooms/8", *({"durable": k} for k in range(20)), durable=True)
            if seconds * 0.3 < t < seconds * 0.35:
                publish("/nowhere/a", {"n": n})  # a namespace the API lacks: refused
        except Exception as exc:  # the refused publish, counted by the metrics
            print(f"{t:5.1f} s: {type(exc).__name__}: {exc}"[:120])
        stop.wait(5 / per_second)


async def run(seconds: float, interval: float) -> list[Scrape]:
    from prometheus_client.parser import text_string_to_metric_families

    from appsync_events.dispatch import Router
    from appsync_events.listener import Listener

    router = Router()
    rng = random.Random(7)
    began = time.monotonic()

    @router.on("/chat/*")
    async def handle(event: Any) -> None:
        # A few milliseconds of work, longer now and then, and ten times longer for a
        # tenth of the run (the queue grows); 2 % of events fail.
        slow = seconds * 0.45 < time.monotonic() - began < seconds * 0.55
        await asyncio.sleep(rng.expovariate(1 / (0.04 if slow else 0.004)))
        if rng.random() < 0.02:
            raise ValueError("a handler failure, for the picture")

    listener = Listener(router=router, sinks=[], drain_outbox=True)
    task = asyncio.create_task(listener.run(install_signal_handlers=False))
    while listener.http_port in (None, 0):  # noqa: ASYNC110 - set by run(), no event to await
        await asyncio.sleep(0.05)
    url = f"http://127.0.0.1:{listener.http_port}/metrics"
    stop = threading.Event()
    started = time.monotonic()
    thread = threading.Thread(target=publisher, args=(stop, started, seconds), daemon=True)
    thread.start()
    series: list[Scrape] = []
    dropped = False
    try:
        while time.monotonic() - started < seconds:
            text = await asyncio.to_thread(
                lambda: urllib.request.urlopen(url, timeout=5).read().decode()
            )
            samples = {
                (s.name, frozenset(s.labels.items())): s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples
            }
            series.append((time.monotonic() - started, samples))
            if not dropped and time.monotonic() - started > seconds * 0.6:
                dropped = True
                EMULATOR.close_connections(1001)  # the service drops the connection
            await asyncio.sleep(interval)
    finally:
        stop.set()
        thread.join(10)
        listener.request_stop("dashboard run over")
        await task
    return series


EMULATOR: Any = None


def draw(series: list[Scrape], path: Path, seconds: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = math.ceil(len(PANELS) / 2)
    fig, axes = plt.subplots(rows, 2, figsize=(15, 3.1 * rows), facecolor="#111217")
    palette = ["#73bf69", "#f2cc0c", "#5794f2", "#ff780a", "#b877d9"]
    times = [t for t, _ in series]
    for ax, panel in zip(axes.flat, PANELS, strict=False):
        ax.set_facecolor("#181b1f")
        ax.set_title(panel.title, color="#ccccdc", fontsize=10, loc="left")
        ax.tick_params(colors="#8e8e8e", labelsize=8)
        for spine in ax.spines.values():
            spine.set_color("#2c3235")
        ax.grid(color="#2c3235", linewidth=0.6)
        drawn = False
        for index, query in enumerate(panel.queries):
            values = [query.evaluate(series, i) for i in range(len(series))]
            points = [(t, v) for t, v in zip(times, values, strict=True) if v is not None]
            if not points:
                continue
            drawn = True
            legend = query.legend.replace("{{backend}}", "").replace("{{code}}", "")
            legend = legend.replace("{{reason}}", "").strip()
            ax.plot(
                [p[0] for p in points],
                [p[1] for p in points],
                color=palette[index % len(palette)],
                linewidth=1.4,
                label=legend,
            )
        if drawn:
            ax.legend(loc="upper left", fontsize=7, facecolor="#181b1f", labelcolor="#ccccdc")
        else:
            ax.text(
                0.5,
                0.5,
                "No data (no browsers in this run)",
                color="#8e8e8e",
                ha="center",
                va="center",
                transform=ax.transAxes,
            )
        ax.set_xlim(0, seconds)
        ax.set_ylabel(panel.unit, color="#8e8e8e", fontsize=8)
    for ax in list(axes.flat)[len(PANELS) :]:
        ax.set_visible(False)
    fig.suptitle(
        "django-appsync-events: the panels of docs/grafana-dashboard.json, drawn from a real "
        f"run's /metrics scraped every {series[1][0] - series[0][0]:.0f} s (x: seconds)",
        color="#ccccdc",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80, facecolor=fig.get_facecolor())


def main() -> None:
    global EMULATOR
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--json-only", action="store_true", help="write the JSON, draw nothing")
    args = parser.parse_args()
    JSON_PATH.write_text(json.dumps(dashboard(), indent=2) + "\n")
    print(f"wrote {JSON_PATH}")
    if args.json_only:
        return
    from appsync_events.emulator import AppSyncEventsEmulator

    EMULATOR = AppSyncEventsEmulator("127.0.0.1", 0, namespaces=["chat"]).start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            setup_django(Path(tmp) / "db.sqlite3", EMULATOR)
            series = asyncio.run(run(args.seconds, args.interval))
    finally:
        EMULATOR.stop()
    draw(series, PNG_PATH, args.seconds)
    print(f"drew {PNG_PATH} from {len(series)} scrapes")


if __name__ == "__main__":
    main()
