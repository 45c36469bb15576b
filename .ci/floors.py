"""Pin every dependency of django-appsync-events to its declared lower bound.

Usage (standard library only, so any Python 3.11+ runs it)::

    python .ci/floors.py [--pyproject PATH] > floors.txt
    python .ci/floors.py --report floors.txt

The first form reads ``[project] dependencies`` and every list of
``[project.optional-dependencies]`` from ``pyproject.toml`` and prints a pip constraints
file with one ``name==X.Y`` line per dependency, ``X.Y`` being its ``>=`` lower bound
(extras such as ``[crypto]`` are left out of the line; environment markers are kept).
A dependency without a ``>=`` lower bound is an error: the script names it and exits 2.

The second form, run by the interpreter of the virtualenv that was installed under those
constraints, prints the installed version of each pinned package and exits 1, naming the pin,
when one is missing or differs: the floors leg cannot pass on versions it did not mean to test.

``make test-floors`` uses both (see docs/development.md).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# name, optional [extras], the version specifiers, an optional "; marker" (PEP 508, without
# URL requirements, which a published package cannot carry anyway).
_REQUIREMENT = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*"
    r"(?:\[(?P<extras>[^\]]*)\])?\s*"
    r"(?P<specifiers>[^;]*?)\s*"
    r"(?:;\s*(?P<marker>.+?))?\s*$"
)
_SPECIFIER = re.compile(r"^(?P<op>~=|===|==|!=|<=|>=|<|>)\s*(?P<version>[A-Za-z0-9.*+!_-]+)$")


class FloorError(ValueError):
    """Raised when a dependency cannot be pinned to a lower bound (none, or unreadable)."""


def canonical_name(name: str) -> str:
    """Return ``name`` normalised as package indexes compare names (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def floor_line(requirement: str, where: str) -> str:
    """Return the constraint line ``name==X.Y`` pinning ``requirement`` to its ``>=`` bound.

    Args:
        requirement: a PEP 508 requirement string such as ``"pyjwt[crypto]>=2.8.0"``.
        where: the table it came from, for the error message.

    Returns:
        The constraint line, with the requirement's environment marker when it has one.

    Raises:
        FloorError: when the requirement cannot be read or has no single ``>=`` bound.
    """
    match = _REQUIREMENT.match(requirement)
    if match is None:
        raise FloorError(f"{where}: cannot read the requirement {requirement!r}")
    name = canonical_name(match["name"])
    floors = []
    for part in filter(None, (p.strip() for p in match["specifiers"].split(","))):
        spec = _SPECIFIER.match(part)
        if spec is None:
            raise FloorError(f"{where}: cannot read the version specifier {part!r} of {name}")
        if spec["op"] == ">=":
            floors.append(spec["version"])
    if len(floors) != 1:
        found = "no '>=' lower bound" if not floors else "more than one '>=' lower bound"
        raise FloorError(
            f"{where}: {requirement!r} has {found}; declare exactly one, the oldest release "
            f"the code works with (e.g. '{name}>=1.2'), so the floors leg can install it"
        )
    line = f"{name}=={floors[0]}"
    if match["marker"]:
        line += f"; {match['marker']}"
    return line


def constraints(pyproject: dict[str, object]) -> list[str]:
    """Return one constraint line per runtime and optional dependency of ``pyproject``.

    Args:
        pyproject: the parsed ``pyproject.toml``.

    Returns:
        The lines, runtime dependencies first, then each extra's, each package once.

    Raises:
        FloorError: when a dependency has no ``>=`` lower bound, or two differ for a package.
    """
    project = pyproject.get("project")
    if not isinstance(project, dict):
        raise FloorError("pyproject.toml has no [project] table")
    tables = [("[project] dependencies", project.get("dependencies", []))]
    for extra, requirements in project.get("optional-dependencies", {}).items():
        tables.append((f"[project.optional-dependencies] {extra}", requirements))
    lines: dict[str, str] = {}
    for where, requirements in tables:
        for requirement in requirements:
            line = floor_line(requirement, where)
            name = line.split("==", 1)[0]
            if lines.setdefault(name, line) != line:
                raise FloorError(
                    f"{where}: {name} is pinned to two lower bounds ({lines[name]!r} and "
                    f"{line!r}); declare one"
                )
    return list(lines.values())


def _release(version: str) -> tuple[int, ...] | str:
    """Return ``version`` as a comparable release tuple without trailing zeros (2.8 == 2.8.0)."""
    if not re.fullmatch(r"\d+(\.\d+)*", version):
        return version
    parts = [int(p) for p in version.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def report(constraints_file: Path) -> int:
    """Print the installed version of each pinned package (and the pin when they differ).

    Returns:
        The exit status: 0 when every package is installed at its pin, else 1.
    """
    problems = 0
    for raw in constraints_file.read_text().splitlines():
        line = raw.split(";", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        name, pinned = line.split("==", 1)
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = "(not installed)"
        ok = _release(installed) == _release(pinned)
        problems += not ok
        print(f"  {name:<20} {installed}" + ("" if ok else f"  MISMATCH: pinned {pinned}"))
    if problems:
        print(f"error: {problems} package(s) not at their floor", file=sys.stderr)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pyproject",
        type=Path,
        default=ROOT / "pyproject.toml",
        help="the file to read (default: this checkout's)",
    )
    parser.add_argument(
        "--report",
        type=Path,
        metavar="CONSTRAINTS",
        help="print the installed version of each package pinned in CONSTRAINTS; exit 1 when "
        "one differs from its pin",
    )
    args = parser.parse_args(argv)
    if args.report is not None:
        return report(args.report)
    try:
        with args.pyproject.open("rb") as file:
            lines = constraints(tomllib.load(file))
    except (OSError, tomllib.TOMLDecodeError, FloorError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"# generated by .ci/floors.py from {args.pyproject.name}: every dependency at its floor")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
