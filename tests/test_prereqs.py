"""Tests of the suite's own plumbing: prerequisite helpers, the database marker, AWS isolation."""

from __future__ import annotations

import os
import socket
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.db import connection

from tests import prereqs
from tests.conftest import AWS_VARIABLES, isolate_aws_environment

Skipped = pytest.skip.Exception
Failed = pytest.fail.Exception


@pytest.fixture
def refused_port() -> Iterator[int]:
    """Yield a loopback port that is bound (so nobody else takes it) but refuses connections."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def listening_port() -> Iterator[int]:
    """Yield a loopback port with a listening socket behind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def not_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the test as on a newcomer's machine (no CI variable)."""
    monkeypatch.delenv("CI", raising=False)


@pytest.fixture
def ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the test as under .ci/run (CI=true)."""
    monkeypatch.setenv("CI", "true")


@pytest.fixture
def empty_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Point PATH at an empty directory and return it, so no tool is found unless put there."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


def make_executable(path: Path) -> Path:
    """Create an executable stub file at ``path`` and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _point_postgres(monkeypatch: pytest.MonkeyPatch, port: int) -> None:
    monkeypatch.setenv("PGHOST", "127.0.0.1")
    monkeypatch.setenv("PGPORT", str(port))


def _point_redis(monkeypatch: pytest.MonkeyPatch, port: int) -> None:
    monkeypatch.setenv("REDIS_HOST", "127.0.0.1")
    monkeypatch.setenv("REDIS_PORT", str(port))


SERVICES: list[tuple[Callable[[], object], Callable[[pytest.MonkeyPatch, int], None], str]] = [
    (prereqs.require_postgres, _point_postgres, "PostgreSQL"),
    (prereqs.require_redis, _point_redis, "Redis"),
]


# -- services reached over a socket ---------------------------------------------------------


@pytest.mark.parametrize(("require", "point", "name"), SERVICES)
@pytest.mark.usefixtures("not_ci")
def test_unreachable_service_skips_off_ci(require, point, name, monkeypatch, refused_port):
    """A service that refuses connections skips the test, naming the address, without CI."""
    point(monkeypatch, refused_port)
    with pytest.raises(Skipped, match=rf"{name} on 127\.0\.0\.1:{refused_port}"):
        require()


@pytest.mark.parametrize(("require", "point", "name"), SERVICES)
@pytest.mark.usefixtures("ci")
def test_unreachable_service_fails_under_ci(require, point, name, monkeypatch, refused_port):
    """Under CI=true an unreachable service fails the test instead of skipping it."""
    point(monkeypatch, refused_port)
    with pytest.raises(Failed, match=rf"CI=true .*{name} on 127\.0\.0\.1:{refused_port}"):
        require()


@pytest.mark.parametrize(("require", "point", "name"), SERVICES)
@pytest.mark.usefixtures("ci")
def test_reachable_service_passes(require, point, name, monkeypatch, listening_port):
    """A service that accepts connections lets the test go on, even under CI=true."""
    point(monkeypatch, listening_port)
    assert require() is None


@pytest.mark.parametrize("ci_value", ["1", "false", "TRUE", ""])
def test_only_ci_true_turns_skips_into_failures(monkeypatch, refused_port, ci_value):
    """Only the exact value CI=true makes a missing prerequisite fail; others skip."""
    monkeypatch.setenv("CI", ci_value)
    _point_redis(monkeypatch, refused_port)
    with pytest.raises(Skipped):
        prereqs.require_redis()


def test_bad_port_variable_is_reported(monkeypatch):
    """A PGPORT that is not a number fails with a message naming the variable."""
    monkeypatch.setenv("PGPORT", "five-four-three-two")
    with pytest.raises(Failed, match="PGPORT='five-four-three-two' is not a port number"):
        prereqs.require_postgres()


# -- tools found on disk -----------------------------------------------------------------


@pytest.mark.usefixtures("not_ci", "empty_path")
def test_missing_node_skips_off_ci():
    """Without node on PATH the Node tests skip with a reason naming Node 20."""
    with pytest.raises(Skipped, match="needs Node 20"):
        prereqs.require_node()


@pytest.mark.usefixtures("ci", "empty_path")
def test_missing_node_fails_under_ci():
    """Under CI=true a missing node fails the test."""
    with pytest.raises(Failed, match="needs Node 20"):
        prereqs.require_node()


@pytest.mark.usefixtures("ci")
def test_missing_node_modules_fails_under_ci(monkeypatch, tmp_path, empty_path):
    """With node present but no node_modules, the failure says which npm command to run."""
    make_executable(empty_path / "node")
    monkeypatch.setattr(prereqs, "JS_DIR", tmp_path / "js")
    with pytest.raises(Failed, match="npm ci --prefix"):
        prereqs.require_node()


@pytest.mark.usefixtures("ci")
def test_node_with_modules_returns_node_path(monkeypatch, tmp_path, empty_path):
    """With node on PATH and node_modules installed, the helper returns node's path."""
    node = make_executable(empty_path / "node")
    (tmp_path / "js" / "node_modules").mkdir(parents=True)
    monkeypatch.setattr(prereqs, "JS_DIR", tmp_path / "js")
    assert prereqs.require_node() == str(node)


@pytest.mark.usefixtures("empty_path")
@pytest.mark.parametrize(("ci_value", "outcome"), [(None, Skipped), ("true", Failed)])
def test_missing_chromium(monkeypatch, tmp_path, ci_value, outcome):
    """Without a chromium binary the browser tests skip, or fail under CI=true."""
    if ci_value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci_value)
    monkeypatch.setattr(prereqs, "CHROMIUM_CANDIDATES", (str(tmp_path / "absent"),))
    with pytest.raises(outcome, match="apt-get install chromium"):
        prereqs.require_chromium()


@pytest.mark.usefixtures("ci")
def test_chromium_found_at_debian_path(monkeypatch, tmp_path, empty_path):
    """An executable at one of the known install paths is returned for Playwright."""
    browser = make_executable(tmp_path / "usr-bin" / "chromium")
    monkeypatch.setattr(prereqs, "CHROMIUM_CANDIDATES", (str(tmp_path / "no"), str(browser)))
    assert prereqs.require_chromium() == str(browser)


@pytest.mark.usefixtures("ci")
def test_chromium_found_on_path(monkeypatch, tmp_path, empty_path):
    """Failing the known paths, a chromium on PATH is used."""
    browser = make_executable(empty_path / "chromium")
    monkeypatch.setattr(prereqs, "CHROMIUM_CANDIDATES", (str(tmp_path / "no"),))
    assert prereqs.require_chromium() == str(browser)


@pytest.mark.parametrize(("ci_value", "outcome"), [(None, Skipped), ("true", Failed)])
def test_missing_playwright(monkeypatch, ci_value, outcome):
    """Without Playwright for Python the browser tests skip, or fail under CI=true."""
    if ci_value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci_value)
    monkeypatch.setitem(sys.modules, "playwright", None)  # find_spec() answers None
    with pytest.raises(outcome, match="pip install playwright"):
        prereqs.require_playwright()


@pytest.mark.usefixtures("ci")
def test_installed_playwright_passes():
    """With Playwright installed (the test group), the helper returns normally."""
    prereqs.require_playwright()


# -- Python 3.12 -----------------------------------------------------------------------------


@pytest.fixture
def on_python311(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Pretend to run on Python 3.11 with an empty pyenv root; return that root."""
    monkeypatch.setattr(
        prereqs, "sys", SimpleNamespace(version_info=(3, 11, 7), executable="/py311")
    )
    root = tmp_path / "pyenv"
    root.mkdir()
    monkeypatch.setenv("PYENV_ROOT", str(root))
    return root


@pytest.mark.usefixtures("empty_path")
def test_python312_found_in_pyenv(ci, on_python311):
    """A pyenv-installed 3.12 interpreter is found when the running one is older."""
    python = make_executable(on_python311 / "versions" / "3.12.1" / "bin" / "python3.12")
    assert prereqs.require_python312() == str(python)


def test_python312_pyenv_shim_is_not_an_interpreter(ci, on_python311, tmp_path, monkeypatch):
    """A pyenv shim named python3.12 does not count: without a 3.12 install CI fails."""
    make_executable(tmp_path / "shims" / "python3.12")
    monkeypatch.setenv("PATH", str(tmp_path / "shims"))
    with pytest.raises(Failed, match=r"needs Python 3\.12"):
        prereqs.require_python312()


@pytest.mark.usefixtures("not_ci", "empty_path")
def test_python312_missing_skips_off_ci(on_python311):
    """With no Python 3.12 anywhere the test skips on a developer machine."""
    with pytest.raises(Skipped, match=r"needs Python 3\.12"):
        prereqs.require_python312()


def test_python312_running_interpreter_counts(monkeypatch):
    """When the suite itself runs on 3.12, that interpreter is the answer."""
    monkeypatch.setattr(
        prereqs, "sys", SimpleNamespace(version_info=(3, 12, 1), executable="/py312")
    )
    assert prereqs.require_python312() == "/py312"


# -- the database leg ------------------------------------------------------------------------


@pytest.mark.usefixtures("ci")
@pytest.mark.skipif(connection.vendor == "postgresql", reason="this leg runs on PostgreSQL")
def test_postgres_database_tests_skip_on_sqlite_even_under_ci():
    """PostgreSQL-only database tests skip on the SQLite run, also under CI=true."""
    with pytest.raises(Skipped, match="APPSYNC_EVENTS_TEST_DB=postgres"):
        prereqs.require_postgres_database()


def test_database_follows_the_test_db_switch(db):
    """The Django database is PostgreSQL exactly when APPSYNC_EVENTS_TEST_DB=postgres."""
    expected = "postgresql" if os.environ.get("APPSYNC_EVENTS_TEST_DB") == "postgres" else "sqlite"
    assert connection.vendor == expected
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


def test_database_tests_get_the_database_marker(db, request):
    """A test that asks for the database is marked ``database`` for the PostgreSQL leg."""
    assert request.node.get_closest_marker("database") is not None


def test_other_tests_do_not_get_the_database_marker(request):
    """A test without the database is left out of the PostgreSQL leg."""
    assert request.node.get_closest_marker("database") is None


# -- AWS isolation ---------------------------------------------------------------------------


def test_aws_environment_is_isolated(monkeypatch):
    """Credentials and profiles from the shell are removed and the metadata service is off."""
    for name in AWS_VARIABLES:
        monkeypatch.setenv(name, "from-the-developer-shell")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(Path.home() / ".aws" / "config"))
    isolate_aws_environment(monkeypatch)
    assert [name for name in AWS_VARIABLES if name in os.environ] == []
    assert os.environ["AWS_CONFIG_FILE"] == "/nonexistent/aws-config"
    assert os.environ["AWS_SHARED_CREDENTIALS_FILE"] == "/nonexistent/aws-credentials"
    assert os.environ["AWS_EC2_METADATA_DISABLED"] == "true"
