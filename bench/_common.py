"""Helpers shared by the benchmark scripts in ``bench/``.

Each script describes the machine it ran on, replaces its own ``## …`` section of
``BENCHMARKS.md`` and (most of them) runs the emulator in a child process; those pieces
live here once. Importing this module also puts the repository root on ``sys.path``, so
the scripts run from a checkout without installing the package.

The scripts import it both ways::

    try:
        from bench import _common  # python -m bench.bench_x, or imported from the root
    except ImportError:
        import _common  # python bench/bench_x.py: bench/ is sys.path[0]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing the package

#: The file every benchmark writes its section into.
BENCHMARKS = ROOT / "BENCHMARKS.md"

# The emulator as a child process: it prints its port, then serves until stdin closes.
_EMULATOR_SCRIPT = """
import sys
from appsync_events.emulator import AppSyncEventsEmulator
emulator = AppSyncEventsEmulator(api_keys=[{api_key!r}], ka_interval=3600.0,
                                 publishes_per_second=1_000_000)
emulator.start()
print(emulator.port, flush=True)
sys.stdin.read()
emulator.stop()
"""


def commit() -> str:
    """Return the short hash of the checked-out commit (``"unknown"`` outside git)."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine(*, memory: bool = False) -> str:
    """Describe the machine: CPUs, (with ``memory``) total RAM, Python, kernel."""
    ram = ""
    if memory:
        mem_kib = 0
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
        ram = f"{mem_kib / 1024 / 1024:.1f} GiB RAM, "
    return (
        f"{os.cpu_count()} CPUs, {ram}Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def provenance(*, memory: bool = False) -> str:
    """Return the line under a section's heading: commit, machine and UTC date."""
    return (
        f"Commit `{commit()}`, {machine(memory=memory)}, "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC."
    )


def write_section(section: str, text: str, path: Path = BENCHMARKS) -> None:
    """Replace the section headed ``section`` in ``path`` with ``text`` (or append it).

    The section runs from its heading line to the next ``## `` heading or the end of
    the file; the other sections are left as they are.
    """
    current = path.read_text() if path.exists() else "# Benchmarks\n"
    start = current.find(section + "\n")
    if start < 0:
        updated = current.rstrip("\n") + "\n\n" + text
    else:
        end = current.find("\n## ", start + len(section))
        updated = current[:start] + text + ("" if end < 0 else current[end + 1 :])
    path.write_text(updated.rstrip("\n") + "\n")


def start_child(
    args: list[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    stderr: Any = None,
) -> tuple[subprocess.Popen[str], int]:
    """Start a child process that prints its port as its first line; return it and the port.

    The child is expected to run until its stdin closes (see :func:`stop_child`); its
    standard error goes to ``stderr`` (a file, or this process's when ``None``).
    """
    proc = subprocess.Popen(
        args,
        cwd=cwd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def stop_child(proc: subprocess.Popen[str], timeout: float = 30) -> None:
    """Close the child's stdin (its signal to stop) and wait for it to exit."""
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout)


def start_emulator(api_key: str) -> tuple[subprocess.Popen[str], int]:
    """Start the emulator (accepting ``api_key``) in its own process; return it and its port.

    Keep-alives are effectively off and the publish rate limit out of reach, so the
    emulator never throttles a benchmark. Stop it with :func:`stop_child`.
    """
    return start_child(
        [sys.executable, "-c", _EMULATOR_SCRIPT.format(api_key=api_key)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


# -- results for the report (bench/run.py) --------------------------------------------


def add_output_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--no-write`` and ``--json`` (both used by ``bench/run.py``) to ``parser``."""
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    parser.add_argument(
        "--json", metavar="PATH", help="also write the results, goals and section here"
    )


def goal(
    name: str,
    target: str,
    measured: str,
    met: bool,
    *,
    limit: str = "",
    value: float | None = None,
) -> dict[str, Any]:
    """Describe one goal of a benchmark for the report.

    Args:
        name: what is measured ("fan-out to 10 groups, forwarder vs sequential loop").
        target: the goal as text ("at least 1.5x").
        measured: the figure as text ("1.83x (2,950 vs 1,610 events/s)").
        met: whether the figure meets the goal.
        limit: what limits the figure (shown when the goal is not met).
        value: the figure as a number, for machine readers.
    """
    return {
        "name": name,
        "target": target,
        "measured": measured,
        "met": bool(met),
        "limit": limit,
        "value": value,
    }


def load_average() -> str:
    """The machine's load average, said in a sentence fragment."""
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"


def command_line() -> str:
    """This benchmark's command line, without the output options."""
    module = Path(sys.argv[0]).with_suffix("").name
    argv: list[str] = []
    skip = False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg == "--json":
            skip = True
        elif arg != "--no-write" and not arg.startswith("--json="):
            argv.append(arg)
    return " ".join(["python", "-m", f"bench.{module}", *argv])


def emit(
    args: argparse.Namespace,
    section: str,
    text: str,
    results: dict[str, Any],
    goals: Sequence[dict[str, Any]] = (),
) -> None:
    """Print a benchmark's section, write it to BENCHMARKS.md and (``--json``) a JSON file.

    The JSON file holds what ``bench/run.py`` assembles the report from: the section's
    Markdown, the raw results, the goals, the command line, the commit and the date.
    """
    print(text)
    if not getattr(args, "no_write", False):
        write_section(section, text)
    path = getattr(args, "json", None)
    if path:
        document = {
            "section": section,
            "markdown": text,
            "results": results,
            "goals": list(goals),
            "command": command_line(),
            "commit": commit(),
            "machine": machine(memory=True),
            "date": f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
            "load": load_average(),
        }
        Path(path).write_text(json.dumps(document, indent=1) + "\n")


def rss_kib(pid: int) -> int:
    """Resident set size of process ``pid`` in KiB (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) used so far by process ``pid`` (default: this one)."""
    if pid is None:
        usage = os.times()
        return usage.user + usage.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def quantiles(samples: Sequence[float], points: int = 1001) -> list[float]:
    """``points`` evenly spaced quantiles (min to max) of ``samples``, for plots."""
    ordered = sorted(samples)
    if not ordered:
        return []
    last = len(ordered) - 1
    return [ordered[round(i * last / (points - 1))] for i in range(points)]


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank) of the already sorted ``ordered``."""
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]
