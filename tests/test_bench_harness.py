"""The benchmark harness (bench/) imports and assembles its report; no benchmark runs here."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from bench import _common, run


@pytest.mark.parametrize("name", sorted(run.BENCHMARKS))
def test_every_benchmark_module_imports_and_takes_the_output_options(name: str) -> None:
    """Each benchmark the runner starts exists, imports cleanly and has a main()."""
    module = importlib.import_module(run.BENCHMARKS[name][0])
    assert callable(module.main)
    assert "add_output_args" in module.main.__code__.co_names


def _document(section: str, goals: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "section": section,
        "markdown": f"{section}\n\nbody of {section}\n",
        "results": {},
        "goals": goals,
        "command": "python -m bench.bench_x --events 1",
        "date": "2026-01-01 00:00 UTC",
        "load": "load average 0.10",
        "wall_seconds": 3.0,
        "module": "bench.bench_x",
    }


def test_report_lists_every_goal_and_the_limit_of_each_unmet_one() -> None:
    """The report's goals table says met or not, and explains only the unmet goals."""
    met = _common.goal("fast enough", "at least 2x", "3.00x", True, limit="never shown")
    unmet = _common.goal("flat", "< 5 MB", "+9 MiB", False, limit="the allocator keeps pages")
    report = {
        "run": {
            "command": "make bench",
            "mode": "full",
            "date": "2026-01-01 00:00 UTC",
            "commit": "abc1234",
            "machine": "2 CPUs",
            "load_before": "load average 0.10",
            "load_after": "load average 0.20",
        },
        "benchmarks": {
            "emulator": _document("## Emulator fan-out", [met]),
            "soak": _document("## Listener soak", [unmet]),
            "tasks": {**_document("## tasks (failed)", []), "failed": "exited with status 1"},
        },
    }
    text = run.render(report, ["soak.png"], "bench/results/")
    assert "| emulator | fast enough | at least 2x | 3.00x | yes |" in text
    assert "| soak | flat | < 5 MB | +9 MiB | **no** |" in text
    assert "* soak, flat: the allocator keeps pages" in text
    assert "never shown" not in text
    assert "| tasks | (the benchmark failed: exited with status 1) | | | **no** |" in text
    assert "![Listener memory (RSS) over the soak](bench/results/soak.png)" in text
    assert text.index("## Emulator fan-out") < text.index("## Listener soak")
