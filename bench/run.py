"""Run every benchmark and write the report: BENCHMARKS.md, JSON and PNG plots.

Run: ``python -m bench.run [--quick] [--only NAME,...] [--out DIR]`` (``make bench``,
``make bench-quick``, ``make bench-soak``).

Each benchmark runs in its own process (``python -m bench.bench_<name> --no-write --json
FILE`` with the sizes of the chosen mode) and writes its results, goals and Markdown
section to a JSON file. This script gathers them into:

* ``<out>/latest.json``: every benchmark's results, goals, command, commit and date;
* ``<out>/*.png``: throughput vs subscribers, the latency distribution, the soak's memory
  curve (matplotlib, from the ``bench`` dependency group);
* the report: ``BENCHMARKS.md`` at the repository root for a full run (``--out`` left
  at ``bench/results``), else ``<out>/BENCHMARKS.md``.

The full run (default) takes about 15-25 minutes on 2 cores; ``--quick`` runs every
benchmark with small sizes in about a minute and a half and writes to ``bench/results/quick`` so
it never overwrites the full results. ``--only`` runs some benchmarks and keeps the other
entries of an existing ``latest.json`` (each section still says its own commit and date).
A benchmark that fails is reported as failed; the others still run, and the exit status
is 1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

try:
    from bench import _common
except ImportError:  # run as bench/run.py
    import _common  # type: ignore[import-not-found,no-redef]

ROOT = _common.ROOT
RESULTS = ROOT / "bench" / "results"

#: name -> (module, full-run arguments, quick-run arguments), in report order.
BENCHMARKS: dict[str, tuple[str, list[str], list[str]]] = {
    "emulator": (
        "bench.bench_emulator",
        ["--sizes", "1,10,100,1000", "--seconds", "3", "--rounds", "2", "--memory", "1000"],
        ["--sizes", "1,10,100", "--seconds", "1", "--rounds", "1", "--memory", "100"],
    ),
    "publish": (
        "bench.bench_publish",
        ["--events", "2000", "--seconds", "10"],
        ["--events", "300", "--seconds", "2"],
    ),
    "forwarding": (
        "bench.bench_forwarding",
        ["--events", "3000", "--rounds", "3", "--seconds", "10", "--rate", "1000"],
        ["--events", "600", "--rounds", "1", "--seconds", "1.5", "--rate", "1000"],
    ),
    "listener": ("bench.bench_listener", ["--events", "30000"], ["--events", "5000"]),
    "metrics": (
        "bench.bench_metrics",
        ["--events", "30000", "--rounds", "9"],
        ["--events", "3000", "--rounds", "2"],
    ),
    "soak": (
        "bench.bench_soak",
        ["--events", "1000000", "--interval", "0.5"],
        ["--events", "20000", "--interval", "0.2"],
    ),
    "tasks": ("bench.bench_tasks", ["--events", "1500"], ["--events", "100"]),
    "direct": (
        "bench.bench_direct",
        ["--clients", "1000", "--per-task", "10", "--seconds", "5"],
        ["--clients", "100", "--per-task", "10", "--seconds", "1"],
    ),
}

#: The plots: file name -> (benchmark it is drawn from, caption).
PLOTS = {
    "fanout.png": ("emulator", "Fan-out throughput vs subscribers: the emulator and MiniStack"),
    "latency.png": ("forwarding", "Publish → browser latency distribution, per layer"),
    "soak.png": ("soak", "Listener memory (RSS) over the soak"),
}


def run_one(name: str, quick: bool, tmp: Path, timeout: float) -> dict[str, Any]:
    """Run benchmark ``name`` in its own process; return its JSON document."""
    module, full, small = BENCHMARKS[name]
    out = tmp / f"{name}.json"
    command = [sys.executable, "-m", module, *(small if quick else full), "--no-write"]
    print(f"\n=== {name}: {' '.join(command[1:])}", flush=True)
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [*command, "--json", str(out)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            timeout=timeout,
            check=False,
        )
        failure = None if proc.returncode == 0 else f"exited with status {proc.returncode}"
    except subprocess.TimeoutExpired:
        failure = f"did not finish within {timeout:g} s"
    if failure is None and out.exists():
        document: dict[str, Any] = json.loads(out.read_text())
    else:
        failure = failure or "wrote no results"
        print(f"=== {name} FAILED: {failure}", flush=True)
        document = {
            "section": f"## {name} (failed)",
            "markdown": f"## {name} (failed)\n\n`{' '.join(command[1:])}` {failure}; see "
            "the run's output.\n",
            "results": {},
            "goals": [],
            "failed": failure,
        }
    document["wall_seconds"] = time.monotonic() - started
    document["module"] = module
    return document


# -- plots --------------------------------------------------------------------------------


def plot_fanout(doc: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    rows = doc["results"]["sizes"]
    sizes = [r["subscribers"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, style in (("emulator", "o-"), ("MiniStack", "s--")):
        ax.plot(sizes, [r[name]["delivered_per_s"] for r in rows], style, label=name)
    for r in rows:
        ax.annotate(
            f"{r['ratio']:.1f}x",
            (r["subscribers"], r["emulator"]["delivered_per_s"]),
            textcoords="offset points",
            xytext=(0, 8),
            ha="center",
            fontsize=8,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(sizes, [f"{s:,}" for s in sizes])
    ax.set_xlabel("subscribers (one websocket each)")
    ax.set_ylabel("data frames delivered per second")
    ax.set_title("Fan-out: 5-event HTTP publishes, new connection each")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_latency(doc: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    pipelines = doc["results"]["pipeline"]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for number, (kind, result) in enumerate(pipelines.items()):
        for side, style in (("browser", "-"), ("direct", ":")):
            q = result[side]["quantiles"]
            label = f"{kind}: browser via the layer" if side == "browser" else f"{kind}: direct"
            ys = [100 * i / (len(q) - 1) for i in range(len(q))]
            ax.plot(q, ys, style, color=f"C{number}", label=label)
    ax.axvline(5, color="grey", lw=0.8, ls="--")
    ax.axvline(20, color="grey", lw=0.8, ls="--")
    ax.axhline(50, color="grey", lw=0.5)
    ax.axhline(99, color="grey", lw=0.5)
    ax.set_xscale("log")
    ax.set_xlabel("publish → arrival, ms (dashed: 5 and 20 ms)")
    ax.set_ylabel("percentile of events")
    rate = next(iter(pipelines.values()))["offered_rate"] if pipelines else 0
    ax.set_title(f"Publish → browser latency at {rate:,.0f} events/s")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_soak(doc: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    r = doc["results"]
    times = [t for t, _ in r["samples"]]
    rss = [kib / 1024 for _, kib in r["samples"]]
    mark = times[-1] * 0.2
    at20 = r["rss_at_20_kib"] / 1024
    fig, (whole, tail) = plt.subplots(2, 1, figsize=(7, 6), height_ratios=(1, 1.3))
    whole.plot(times, rss, lw=1)
    whole.set_ylim(bottom=0)
    whole.set_ylabel("RSS, MiB")
    whole.set_title(f"Listener memory over {r['events']:,} events ({r['layer']} layer)")
    # The last 80 %, zoomed: the goal is a growth under 5 MB from the 20 % mark.
    kept = [(t, m) for t, m in zip(times, rss, strict=True) if t >= mark]
    tail.plot([t for t, _ in kept], [m for _, m in kept], lw=1)
    tail.axhspan(at20 - 5, at20 + 5, color="green", alpha=0.08, label="±5 MB of the 20 % mark")
    tail.set_ylim(at20 - 6, at20 + 6)
    tail.set_ylabel("RSS, MiB (last 80 %)")
    tail.legend(loc="lower right")
    for ax in (whole, tail):
        ax.axvline(mark, color="grey", lw=0.8, ls="--")
        ax.set_xlabel("seconds")
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


PLOTTERS = {"fanout.png": plot_fanout, "latency.png": plot_latency, "soak.png": plot_soak}


def draw(report: dict[str, Any], out: Path) -> list[str]:
    """Draw the plots whose benchmark has results; return their file names."""
    import matplotlib

    matplotlib.use("Agg")
    drawn = []
    for name, (bench, _) in PLOTS.items():
        doc = report["benchmarks"].get(bench)
        if doc and not doc.get("failed"):
            PLOTTERS[name](doc, out / name)
            drawn.append(name)
    return drawn


# -- the report -----------------------------------------------------------------------


def render(report: dict[str, Any], plots: list[str], plot_dir: str) -> str:
    """BENCHMARKS.md from the gathered documents."""
    run = report["run"]
    lines = [
        "# Benchmarks",
        "",
        f"Written by `{run['command']}` ({run['mode']} run) on {run['date']}: commit "
        f"`{run['commit']}`, {run['machine']}. Load on the machine: {run['load_before']} "
        f"before, {run['load_after']} after. Machine-readable: "
        f"[{plot_dir}latest.json]({plot_dir}latest.json). Every figure is given with the "
        "baseline measured in the same run (a ratio) as well as its absolute value: on a "
        "shared machine the absolute numbers move with the load, the ratios much less.",
    ]
    for update in run.get("updates", []):
        lines[-1] += (
            f" Since then `{update['command']}` re-ran {', '.join(update['benchmarks_run'])} "
            f"on {update['date']} (commit `{update['commit']}`); each section names its own "
            "run."
        )
    lines += [
        "",
        "## Goals",
        "",
        "| benchmark | goal | target | measured | met |",
        "|---|---|---|---|---|",
    ]
    unmet = []
    for name, doc in report["benchmarks"].items():
        if doc.get("failed"):
            lines.append(f"| {name} | (the benchmark failed: {doc['failed']}) | | | **no** |")
            continue
        for goal in doc["goals"]:
            lines.append(
                f"| {name} | {goal['name']} | {goal['target']} | {goal['measured']} | "
                f"{'yes' if goal['met'] else '**no**'} |"
            )
            if not goal["met"]:
                unmet.append((name, goal))
    if unmet:
        lines += ["", "What limits the goals not met:", ""]
        for name, goal in unmet:
            lines.append(f"* {name}, {goal['name']}: {goal['limit']}")
    if plots:
        lines += ["", "Plots:", ""]
        for plot in plots:
            lines.append(f"* [{PLOTS[plot][1]}]({plot_dir}{plot})")
    for name, doc in report["benchmarks"].items():
        lines += ["", doc["markdown"].rstrip("\n")]
        extra = [p for p in plots if PLOTS[p][0] == name]
        for plot in extra:
            lines += ["", f"![{PLOTS[plot][1]}]({plot_dir}{plot})"]
        if doc.get("date"):
            lines += [
                "",
                f"<sub>`{doc['command']}`: {doc['date']}, {doc['load']} at its end, "
                f"{doc['wall_seconds']:.0f} s.</sub>",
            ]
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, separate output")
    parser.add_argument("--only", help=f"comma-separated subset of {', '.join(BENCHMARKS)}")
    parser.add_argument("--out", type=Path, help="output folder (default: bench/results)")
    parser.add_argument(
        "--timeout", type=float, default=3600, help="seconds one benchmark may take"
    )
    args = parser.parse_args()
    names = list(BENCHMARKS)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(names) - set(BENCHMARKS))
        if unknown:
            parser.exit(2, f"error: unknown benchmark(s) {', '.join(unknown)}; choose from "
                           f"{', '.join(BENCHMARKS)}\n")  # fmt: skip
    out = args.out or (RESULTS / "quick" if args.quick else RESULTS)
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    report_path = ROOT / "BENCHMARKS.md" if out == RESULTS.resolve() else out / "BENCHMARKS.md"
    plot_dir = os.path.relpath(out, report_path.parent).replace(os.sep, "/") + "/"
    plot_dir = "" if plot_dir == "./" else plot_dir
    latest = out / "latest.json"
    previous = json.loads(latest.read_text()) if args.only and latest.exists() else {}
    load_before = _common.load_average()
    documents: dict[str, Any] = dict(previous.get("benchmarks", {}))
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            documents[name] = run_one(name, args.quick, Path(tmp), args.timeout)
    command = "make bench-quick" if args.quick else "make bench"
    if args.only:
        command = f"python -m bench.run{' --quick' if args.quick else ''} --only {args.only}"
    this_run = {
        "command": command,
        "mode": "quick" if args.quick else "full",
        "date": f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        "commit": _common.commit(),
        "machine": _common.machine(memory=True),
        "load_before": load_before,
        "load_after": _common.load_average(),
        "benchmarks_run": names,
    }
    run_info = this_run
    if args.only and "run" in previous:
        # The report stays the earlier run's; this one is recorded as an update of it.
        run_info = dict(previous["run"])
        run_info["updates"] = [*previous["run"].get("updates", []), this_run]
    report = {
        "run": run_info,
        # Report order, whatever was run this time.
        "benchmarks": {n: documents[n] for n in BENCHMARKS if n in documents},
    }
    latest.write_text(json.dumps(report, indent=1) + "\n")
    plots = draw(report, out)
    if args.only and not previous:
        # No earlier results to rebuild the report from: replace only these sections of
        # the existing report and keep the others as they are.
        for name in names:
            doc = report["benchmarks"][name]
            _common.write_section(doc["section"], doc["markdown"], report_path)
    else:
        report_path.write_text(render(report, plots, plot_dir))
    failed = [n for n in names if report["benchmarks"][n].get("failed")]
    print(f"\nwrote {report_path}, {latest} and {len(plots)} plot(s) in {out}", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
