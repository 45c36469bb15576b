"""pytest plugin: a local AppSync Event API for your tests (nothing autouse).

Installed with the package (entry point ``appsync_events``); or enable it with
``-p appsync_events.testing.pytest_plugin`` or ``pytest_plugins = [...]``.

Fixtures:

``appsync_emulator`` (session)
    One :class:`~appsync_events.emulator.AppSyncEventsEmulator` for the run, on a free
    loopback port with the fault proxy on. It emulates the alias named by the ini option
    ``appsync_events_api`` (default ``default``) when Django settings declare it.
``appsync_events_emulator`` (function)
    The same emulator, reset for this test (records cleared, switches and faults off,
    leftover connections closed), with ``APPSYNC_EVENTS[alias]`` pointing at it for the
    duration of the test. Options from an ``appsync_emulator`` marker are applied:
    ``@pytest.mark.appsync_emulator(max_subscriptions=2, ka_interval=0.1)``.
``appsync_emulator_faults`` (function)
    The reset emulator's :class:`~appsync_events.emulator.Faults` switches.

Everything a test needs to inspect is on the emulator: ``published``,
``published_to(channel)``, ``subscriptions``, ``connections``,
``wait_for_subscriptions()``, ``wait_for_published()`` (and ``await_for_*`` twins),
``publish(channel, *events)`` to feed subscribers, and the fault actions.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..emulator import AppSyncEventsEmulator, Faults
from .helpers import start_emulator, use_emulator

__all__ = ["appsync_emulator", "appsync_emulator_faults", "appsync_events_emulator"]


def pytest_addoption(parser: pytest.Parser) -> None:
    """Declare the ``appsync_events_api`` ini option."""
    parser.addini(
        "appsync_events_api",
        "APPSYNC_EVENTS alias the appsync_events emulator fixtures emulate and point at it",
        default="default",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``appsync_emulator`` marker."""
    config.addinivalue_line(
        "markers",
        "appsync_emulator(**switches): behaviour switches for the appsync_events_emulator "
        "fixture in this test (e.g. max_subscriptions=2, ka_interval=0.1)",
    )


def _api(config: pytest.Config) -> str:
    try:
        return str(config.getini("appsync_events_api"))
    except ValueError:  # fixtures imported directly, without the plugin's ini option
        return "default"


@pytest.fixture(scope="session")
def appsync_emulator(pytestconfig: pytest.Config) -> Iterator[AppSyncEventsEmulator]:
    """Start one AppSync Events emulator for the test session (loopback, free port)."""
    emulator = start_emulator(_api(pytestconfig))
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def appsync_events_emulator(
    appsync_emulator: AppSyncEventsEmulator,
    request: pytest.FixtureRequest,
    pytestconfig: pytest.Config,
) -> Iterator[AppSyncEventsEmulator]:
    """Give this test the session emulator, reset, with the settings pointing at it."""
    with use_emulator(appsync_emulator, api=_api(pytestconfig)) as emulator:
        marker = request.node.get_closest_marker("appsync_emulator")
        if marker is not None:
            emulator.configure(**marker.kwargs)
        yield emulator


@pytest.fixture
def appsync_emulator_faults(appsync_events_emulator: AppSyncEventsEmulator) -> Faults:
    """Return the fault switches of this test's (reset) emulator."""
    return appsync_events_emulator.faults
