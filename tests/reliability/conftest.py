"""The reliability suite: faults, hostile input and load, with figures of what it did.

Two variants of every scenario:

* **short** (the default, part of ``make test`` and CI): a few faults and a few hundred
  inputs per scenario, so the whole directory runs in well under two minutes;
* **soak** (``make soak``, ``APPSYNC_EVENTS_SOAK=1``): every scenario scaled up (more
  fault cycles, more events, 100,000 fuzzing inputs).

Each test records what it did in a :class:`Scenario` (the ``figures`` fixture): faults
tried and survived, inputs tried, events published and received, events lost,
duplicates, memory. At the end of the session the figures go to
``test-artifacts/reliability-<variant>.json`` (``APPSYNC_EVENTS_RELIABILITY_JSON``
overrides the path), which ``bench/reliability_report.py`` renders as ``RELIABILITY.md``.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import os
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

ROOT = Path(__file__).resolve().parents[2]

#: Whether this run is the soak variant (``make soak``).
SOAK = os.environ.get("APPSYNC_EVENTS_SOAK", "") not in ("", "0")
#: ``"soak"`` or ``"short"``.
VARIANT = "soak" if SOAK else "short"


def scale(short: int, soak: int) -> int:
    """Return the short or the soak figure of a scenario parameter, by variant."""
    return soak if SOAK else short


def _seed() -> int:
    given = os.environ.get("APPSYNC_EVENTS_FUZZ_SEED")
    if given:
        return int(given)
    # The short variant is reproducible run to run; the soak explores a new part of
    # the input space each time (its seed is printed and recorded, so it replays).
    return random.SystemRandom().randrange(2**32) if SOAK else 20_261_128


#: The seed of every hypothesis test in the suite (``APPSYNC_EVENTS_FUZZ_SEED`` sets it).
FUZZ_SEED = _seed()

# The soak's fuzz tests try 10 inputs an example: 10,000 examples are 100,000 inputs.
for _variant, _examples in (("short", 300), ("soak", 10_000)):
    hypothesis_settings.register_profile(
        f"appsync-reliability-{_variant}",
        max_examples=_examples,
        deadline=None,  # a loaded 2-core machine must not turn slowness into failures
        database=None,  # nothing written to .hypothesis/; the seed replays a run
        print_blob=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )

#: The hypothesis settings of this variant (a profile, applied per test, never loaded
#: globally: the rest of the suite keeps hypothesis' defaults).
FUZZ_SETTINGS = hypothesis_settings.get_profile(f"appsync-reliability-{VARIANT}")


# -- memory --------------------------------------------------------------------------------


def rss(pid: int | None = None) -> int:
    """Return the resident set size of process ``pid`` (this one by default), in bytes."""
    fields = Path(f"/proc/{pid or 'self'}/statm").read_text().split()
    return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclass
class MemoryFigures:
    """Resident memory of one process across a scenario.

    The first sample is the ``baseline``: scenarios take it once warmed up (after their
    first cycle, or once the listener holds its subscriptions), so imports and first-use
    caches do not count; ``end`` is the last sample; the check is
    ``end - baseline <= margin``.
    """

    process: str
    margin: int
    baseline: int = 0
    end: int = 0
    peak: int = 0
    samples: int = 0
    #: Every sample, in MiB (rounded to 0.1), to show the trend.
    trend: list[float] = field(default_factory=list)

    @property
    def growth(self) -> int:
        return self.end - self.baseline


class MemoryWatch:
    """Sample the RSS of a process (this one, or a child) and check it stays flat.

    Args:
        figures: where the samples are recorded.
        process: a label (``"test process"``, ``"listener subprocess"``...).
        margin: the growth allowed between the baseline and the end, in bytes.
        pid: the process; ``None`` for this one (garbage is collected first).
    """

    def __init__(
        self, figures: Scenario, process: str, margin: int, pid: int | None = None
    ) -> None:
        self.pid = pid
        self.memory = MemoryFigures(process, margin)
        figures.memory.append(self.memory)

    def sample(self) -> int:
        """Take one sample; return it."""
        if self.pid is None:
            gc.collect()
        value = rss(self.pid)
        memory = self.memory
        memory.samples += 1
        memory.trend.append(round(value / 2**20, 1))
        memory.peak = max(memory.peak, value)
        memory.end = value
        if memory.samples == 1:
            memory.baseline = value
        return value

    def check(self) -> None:
        """Assert the last sample is within ``margin`` of the baseline."""
        memory = self.memory
        assert memory.samples >= 2, "sample the memory at least twice"
        assert memory.growth <= memory.margin, (
            f"{memory.process}: RSS grew by {memory.growth / 2**20:.1f} MiB "
            f"({memory.baseline / 2**20:.1f} -> {memory.end / 2**20:.1f} MiB over "
            f"{memory.samples} samples); at most {memory.margin / 2**20:.1f} MiB allowed"
        )


# -- figures -------------------------------------------------------------------------------


@dataclass
class Scenario:
    """What one reliability test did; every count starts at 0 and only ever grows."""

    test: str
    title: str = ""
    family: str = ""
    description: str = ""
    faults_tried: int = 0
    faults_survived: int = 0
    inputs_tried: int = 0
    inputs_handled: int = 0
    events_published: int = 0
    events_received: int = 0
    events_lost: int = 0
    duplicates: int = 0
    memory: list[MemoryFigures] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    outcome: str = "not run"
    seconds: float = 0.0

    def fault(self, survived: bool = True) -> None:
        """Count one fault injected, and whether the system came back from it."""
        self.faults_tried += 1
        self.faults_survived += int(survived)


@dataclass
class _Run:
    scenarios: list[Scenario] = field(default_factory=list)
    started: float = field(default_factory=time.time)


#: The soak's cut-off per test (pytest-timeout; the suite's default is 60 s).
SOAK_TIMEOUT = 1800
HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """In the soak, give this directory's tests :data:`SOAK_TIMEOUT` seconds each (a
    test's own ``timeout`` marker still comes first)."""
    if not SOAK:
        return
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.timeout(SOAK_TIMEOUT))


_OUTCOME = pytest.StashKey[str]()
_RAN = False


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Remember each test's outcome, for its figures."""
    report = yield
    if report.when == "call" or (report.when == "setup" and not report.passed):
        item.stash[_OUTCOME] = "skipped" if report.skipped else report.outcome
    return report


@pytest.fixture(scope="session")
def reliability_run() -> Iterator[_Run]:
    """Collect every scenario's figures; write them as JSON at the end of the session."""
    run = _Run()
    yield run
    if not run.scenarios:
        return
    path = Path(
        os.environ.get("APPSYNC_EVENTS_RELIABILITY_JSON")
        or ROOT / "test-artifacts" / f"reliability-{VARIANT}.json"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT))
    from bench._common import commit, machine

    document = {
        "variant": VARIANT,
        "commit": commit(),
        "machine": machine(memory=True),
        "started": dt.datetime.fromtimestamp(run.started, dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": round(time.time() - run.started, 1),
        "fuzz_seed": FUZZ_SEED,
        "scenarios": [asdict(s) for s in run.scenarios],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


@pytest.fixture
def figures(request: pytest.FixtureRequest, reliability_run: _Run) -> Iterator[Scenario]:
    """This test's figures; recorded (with the test's outcome and time) when it ends."""
    global _RAN
    _RAN = True
    doc = getattr(request.node, "function", None).__doc__ or ""
    scenario = Scenario(test=request.node.nodeid, description=" ".join(doc.split()))
    started = time.monotonic()
    yield scenario
    scenario.seconds = round(time.monotonic() - started, 2)
    scenario.outcome = request.node.stash.get(_OUTCOME, "error")
    if not scenario.title:
        scenario.title = request.node.name
    reliability_run.scenarios.append(scenario)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say which variant ran and with which fuzzing seed (when a scenario ran)."""
    if _RAN:
        terminalreporter.write_line(
            f"reliability suite: {VARIANT} variant, fuzzing seed {FUZZ_SEED} "
            "(APPSYNC_EVENTS_FUZZ_SEED replays it)"
        )
