"""Render the reliability suite's figures as ``RELIABILITY.md``.

``tests/reliability`` records what each scenario did (faults, inputs, events, memory) in
``test-artifacts/reliability-<variant>.json``; this script turns those files into the
tables of ``RELIABILITY.md``, one section per variant, leaving the rest of the file as it
is::

    python -m bench.reliability_report                       # both variants, when present
    python -m bench.reliability_report test-artifacts/reliability-soak.json

``make soak`` runs the soak variant and then this script.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

try:
    from bench import _common  # python -m bench.reliability_report, or imported
except ImportError:
    import _common  # type: ignore[import-not-found, no-redef]  # python bench/...py

RELIABILITY = _common.ROOT / "RELIABILITY.md"
ARTIFACTS = _common.ROOT / "test-artifacts"
SECTIONS = {"soak": "## Soak variant", "short": "## Short variant (CI)"}
#: The order of the families in the tables.
FAMILIES = (
    "service faults",
    "network faults",
    "handlers",
    "process",
    "durability",
    "hostile input",
    "security",
)
HOW = {
    "soak": "`make soak` (`APPSYNC_EVENTS_SOAK=1 pytest tests/reliability`)",
    "short": "`pytest tests/reliability`, as `make test` and CI run it",
}
MiB = 2**20


def _count(done: int, tried: int) -> str:
    return "—" if not tried else f"{done:,} / {tried:,}"


def _number(value: int, applies: bool) -> str:
    return f"{value:,}" if applies else "—"


def _memory(entries: list[dict[str, Any]]) -> str:
    if not entries:
        return "—"
    worst = max(entries, key=lambda m: m["end"] - m["baseline"])
    growth = (worst["end"] - worst["baseline"]) / MiB
    return f"{growth:+.1f} MiB ({worst['margin'] / MiB:.0f} allowed; {len(entries)} watched)"


def _row(s: dict[str, Any]) -> str:
    events = bool(s["events_published"] or s["events_received"])
    return (
        f"| {s['title']} "
        f"| {_count(s['faults_survived'], s['faults_tried'])} "
        f"| {_count(s['inputs_handled'], s['inputs_tried'])} "
        f"| {_number(s['events_published'], events)} "
        f"| {_number(s['events_received'], events)} "
        f"| {_number(s['events_lost'], events)} "
        f"| {_number(s['duplicates'], events)} "
        f"| {_memory(s['memory'])} "
        f"| {s['outcome']} "
        f"| {s['seconds']:.1f} s |"
    )


def _details(s: dict[str, Any]) -> str:
    parts = [f"{key}: {value}" for key, value in s["details"].items()]
    for m in s["memory"]:
        trend = m["trend"]
        shown = (
            ", ".join(f"{v:g}" for v in trend)
            if len(trend) <= 8
            else (
                ", ".join(f"{v:g}" for v in trend[:4])
                + ", …, "
                + ", ".join(f"{v:g}" for v in trend[-3:])
            )
        )
        parts.append(
            f"{m['process']} RSS {m['baseline'] / MiB:.1f} → {m['end'] / MiB:.1f} MiB "
            f"(peak {m['peak'] / MiB:.1f}; samples {shown})"
        )
    return f"- **{s['title']}** ({s['family']}). {s['description']}" + (
        f" — {'; '.join(parts)}." if parts else ""
    )


def render(document: dict[str, Any]) -> str:
    """The section of ``RELIABILITY.md`` for one run's figures."""
    variant = document["variant"]
    scenarios = sorted(
        document["scenarios"],
        key=lambda s: FAMILIES.index(s["family"]) if s["family"] in FAMILIES else len(FAMILIES),
    )
    passed = sum(1 for s in scenarios if s["outcome"] == "passed")
    lines = [
        SECTIONS[variant],
        "",
        f"Commit `{document['commit']}`, {document['machine']}, {document['started']}.",
        f"{HOW[variant]}; fuzzing seed {document['fuzz_seed']}; "
        f"{len(scenarios)} scenarios, {passed} passed, in {document['seconds']:,.0f} s.",
        "",
        "| scenario | faults survived / tried | inputs handled / tried | events published "
        "| events received | lost | duplicates | memory growth | result | time |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|---:|",
        *(_row(s) for s in scenarios),
        "",
        *(_details(s) for s in scenarios),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Render the given figure files (default: both variants' files, when present)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("files", nargs="*", type=Path, help="figure files (JSON)")
    parser.add_argument("--output", type=Path, default=RELIABILITY)
    args = parser.parse_args(argv)
    files = args.files or [
        path
        for path in (ARTIFACTS / "reliability-soak.json", ARTIFACTS / "reliability-short.json")
        if path.exists()
    ]
    if not files:
        print("no figures: run `make soak` or `pytest tests/reliability` first", file=sys.stderr)
        return 1
    for path in files:
        document = json.loads(path.read_text())
        _common.write_section(SECTIONS[document["variant"]], render(document), args.output)
        print(f"{args.output.name}: {SECTIONS[document['variant']]} from {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
