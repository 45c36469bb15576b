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

import datetime as dt
import os
import platform
import subprocess
import sys
from pathlib import Path

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
    args: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], int]:
    """Start a child process that prints its port as its first line; return it and the port.

    The child is expected to run until its stdin closes (see :func:`stop_child`).
    """
    proc = subprocess.Popen(
        args,
        cwd=cwd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
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
