"""Prerequisites of the test suite: skip on a newcomer's machine, fail under CI.

A test that needs an outside service or tool calls one of the ``require_*`` helpers first::

    def test_forwarding_over_redis():
        require_redis()
        ...

Each helper returns normally when the prerequisite is there. When it is missing, the test is
skipped with a reason that says how to get it; but when the environment variable ``CI`` is
``"true"`` (as ``.ci/run`` sets it) the test *fails* instead, so a CI machine that lost a
service can never pass by skipping. Probes are quick (a socket connect with a short timeout, a
``PATH`` lookup), so calling a helper in every test is cheap.

Also mark such tests with the matching marker (``postgres``, ``redis``, ``node``, ``browser``)
so they can be selected with ``-m``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import sys
from pathlib import Path
from typing import NoReturn

import pytest

__all__ = [
    "JS_DIR",
    "is_ci",
    "missing",
    "require_chromium",
    "require_node",
    "require_playwright",
    "require_postgres",
    "require_postgres_database",
    "require_python312",
    "require_redis",
]

#: The Node interop harness (see its README.md); ``npm ci`` there installs node_modules.
JS_DIR = Path(__file__).resolve().parent / "interop" / "js"

# Debian's chromium package installs here; tests launch it through Playwright.
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")

# Long enough for a loaded 2-core machine to accept on loopback, short enough to skip fast.
PROBE_TIMEOUT = 0.5


def is_ci() -> bool:
    """Return whether missing prerequisites must fail rather than skip (``CI=true``)."""
    return os.environ.get("CI") == "true"


def missing(reason: str) -> NoReturn:
    """Skip the current test because of ``reason``, or fail it under ``CI=true``.

    Args:
        reason: what is missing and how to provide it.

    Raises:
        pytest.skip.Exception: on a developer machine.
        pytest.fail.Exception: when the environment variable ``CI`` is ``"true"``.
    """
    if is_ci():
        pytest.fail(f"CI=true and a prerequisite is missing: {reason}", pytrace=False)
    pytest.skip(reason)


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT):
            return True
    except OSError:
        return False


def _port(variable: str, default: int) -> int:
    value = os.environ.get(variable, "")
    try:
        return int(value) if value else default
    except ValueError:
        pytest.fail(f"{variable}={value!r} is not a port number", pytrace=False)


def require_postgres() -> None:
    """Require the PostgreSQL server (``PGHOST``:``PGPORT``, default 127.0.0.1:5432).

    Raises:
        pytest.skip.Exception: when nothing listens there (``pytest.fail`` under ``CI=true``).
    """
    host = os.environ.get("PGHOST") or "127.0.0.1"
    port = _port("PGPORT", 5432)
    if not _reachable(host, port):
        missing(
            f"needs PostgreSQL on {host}:{port} (database 'test', user 'postgres'); "
            "start the server or set PGHOST/PGPORT"
        )


def require_postgres_database() -> None:
    """Require that this run's Django database is PostgreSQL, and that the server is up.

    Such tests belong to the PostgreSQL leg (``make test-postgres``): on the default SQLite
    run they always skip, also under ``CI=true``, because CI runs them on that leg.

    Raises:
        pytest.skip.Exception: on a run whose database is not PostgreSQL, or (outside CI)
            when the server is unreachable.
    """
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip(
            "runs on the PostgreSQL database only: "
            "APPSYNC_EVENTS_TEST_DB=postgres (make test-postgres)"
        )
    require_postgres()


def require_redis() -> None:
    """Require the Redis server (``REDIS_HOST``:``REDIS_PORT``, default 127.0.0.1:6379).

    Raises:
        pytest.skip.Exception: when nothing listens there (``pytest.fail`` under ``CI=true``).
    """
    host = os.environ.get("REDIS_HOST") or "127.0.0.1"
    port = _port("REDIS_PORT", 6379)
    if not _reachable(host, port):
        missing(f"needs Redis on {host}:{port}; start redis-server or set REDIS_HOST/REDIS_PORT")


def require_node() -> str:
    """Require Node (20 or newer is assumed) and the interop harness's ``node_modules``.

    Returns:
        The path of the ``node`` executable.

    Raises:
        pytest.skip.Exception: when either is missing (``pytest.fail`` under ``CI=true``).
    """
    node = shutil.which("node")
    if node is None:
        missing("needs Node 20 ('node' is not on PATH)")
    if not (JS_DIR / "node_modules").is_dir():
        missing(f"needs the Node interop packages: run 'npm ci --prefix {JS_DIR}'")
    return node


def require_chromium() -> str:
    """Require the Chromium browser (Debian's ``chromium`` package) for Playwright tests.

    Returns:
        The path of the browser executable, for ``executable_path=``.

    Raises:
        pytest.skip.Exception: when it is missing (``pytest.fail`` under ``CI=true``).
    """
    for candidate in CHROMIUM_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("chromium")
    if found is None:
        missing("needs Chromium: 'apt-get install chromium' (never 'playwright install')")
    return found


def require_playwright() -> None:
    """Require Playwright for Python (the ``test`` dependency group installs it).

    Raises:
        pytest.skip.Exception: when it is not installed (``pytest.fail`` under ``CI=true``).
    """
    if importlib.util.find_spec("playwright") is None:
        missing(
            "needs Playwright for Python: pip install playwright (in the 'test' dependency "
            "group; never 'playwright install', the tests drive Debian's Chromium)"
        )


def require_python312() -> str:
    """Require a Python 3.12 interpreter (this one, a pyenv 3.12.x, or python3.12 on PATH).

    Returns:
        The path of the interpreter.

    Raises:
        pytest.skip.Exception: when none is found (``pytest.fail`` under ``CI=true``).
    """
    if sys.version_info[:2] == (3, 12):
        return sys.executable
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    for candidate in sorted(pyenv_root.glob("versions/3.12*/bin/python3.12"), reverse=True):
        if os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("python3.12")
    # A pyenv shim exists for every command of any installed version; it is no interpreter.
    if found is None or Path(found).parent.name == "shims":
        missing("needs Python 3.12 (pyenv install 3.12, or python3.12 on PATH)")
    return found
