"""Tests for the declared dependencies: each is imported, each floor is pinned by .ci/floors.py."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FLOORS = ROOT / ".ci" / "floors.py"

# Imported by the package but not a dependency: the pytest plugin runs only inside pytest.
NOT_DEPENDENCIES = {"pytest"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> dict[str, str]:
    """Map each runtime and optional dependency of pyproject.toml to its ``>=`` bound."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements.extend(extra)
    declared = {}
    for requirement in requirements:
        name = re.match(r"[A-Za-z0-9._-]+", requirement)
        bound = re.search(r">=\s*([^,;\s]+)", requirement)
        assert name is not None
        assert bound is not None, f"{requirement!r} has no '>=' lower bound"
        declared[_canonical(name[0])] = bound[1]
    return declared


def _floors(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(FLOORS), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_floors_pin_every_declared_dependency() -> None:
    """The generator prints one ``name==floor`` line per dependency and extra of pyproject."""
    result = _floors()
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if not line.startswith("#")]
    assert sorted(lines) == sorted(f"{name}=={bound}" for name, bound in _declared().items())
    assert "pyjwt==" in result.stdout  # declared as pyjwt[crypto]: the extra is left out
    assert "[" not in "".join(lines)


@pytest.mark.parametrize(
    ("requirement", "complaint"),
    [
        ("django", "has no '>=' lower bound"),
        ("django<6", "has no '>=' lower bound"),
        ("django>=5.2,>=5.1", "more than one '>=' lower bound"),
        ("django>=5.2,<<6", "cannot read the version specifier"),
    ],
)
def test_dependency_without_one_lower_bound_is_refused(
    tmp_path: Path, requirement: str, complaint: str
) -> None:
    """A dependency without exactly one ``>=`` bound stops the generator with exit 2 naming it."""
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        f'[project]\nname = "x"\ndependencies = ["httpx>=0.25"]\n'
        f'[project.optional-dependencies]\nweb = ["{requirement}"]\n'
    )
    result = _floors("--pyproject", pyproject)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "[project.optional-dependencies] web" in result.stderr
    assert complaint in result.stderr
    assert "django" in result.stderr


def test_markers_are_kept_and_extras_dropped(tmp_path: Path) -> None:
    """An environment marker stays on the constraint line; extras and spacing do not."""
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "x"\n'
        "dependencies = [\"Foo_Bar[fast,small] >= 1.2, <2 ; python_version < '3.13'\"]\n"
    )
    result = _floors("--pyproject", pyproject)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1:] == ["foo-bar==1.2; python_version < '3.13'"]


def test_report_fails_on_a_package_not_at_its_floor(tmp_path: Path) -> None:
    """``--report`` passes when the installed versions are the pins and fails otherwise."""
    installed = importlib.metadata.version("pytest")
    constraints = tmp_path / "floors.txt"
    constraints.write_text(f"# header\npytest=={installed}\n")
    ok = _floors("--report", constraints)
    assert ok.returncode == 0, ok.stderr
    assert re.search(rf"^\s+pytest\s+{re.escape(installed)}\s*$", ok.stdout, re.MULTILINE)

    constraints.write_text("pytest==0.1\nno-such-distribution-here==1.0\n")
    bad = _floors("--report", constraints)
    assert bad.returncode == 1
    assert "MISMATCH: pinned 0.1" in bad.stdout
    assert "(not installed)" in bad.stdout
    assert "2 package(s) not at their floor" in bad.stderr


def test_every_imported_distribution_is_declared() -> None:
    """Each third-party package that appsync_events imports is a declared dependency."""
    modules = set()
    for path in (ROOT / "appsync_events").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    modules -= set(sys.stdlib_module_names) | {"appsync_events"} | NOT_DEPENDENCIES
    providers = importlib.metadata.packages_distributions()
    declared = _declared()
    undeclared = {
        module: providers.get(module, ["(not installed)"])
        for module in sorted(modules)
        if not any(_canonical(dist) in declared for dist in providers.get(module, []))
    }
    assert undeclared == {}
