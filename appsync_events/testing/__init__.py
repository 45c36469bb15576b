"""Test tools for projects using appsync_events: a local AppSync Event API and helpers.

pytest users get fixtures from :mod:`appsync_events.testing.pytest_plugin` (installed
with the package, nothing autouse). ``unittest`` / Django ``TestCase`` users mix in
:class:`EmulatorTestMixin` or use :func:`use_emulator`.
"""

from __future__ import annotations

from ..emulator import (
    AppSyncEventsEmulator,
    Faults,
    HandlerContext,
    HandlerError,
    HandlerUnauthorized,
    NamespaceHandlers,
    PublishedRecord,
    SubscriptionInfo,
)
from .helpers import EmulatorTestMixin, emulator_settings, start_emulator, use_emulator

__all__ = [
    "AppSyncEventsEmulator",
    "EmulatorTestMixin",
    "Faults",
    "HandlerContext",
    "HandlerError",
    "HandlerUnauthorized",
    "NamespaceHandlers",
    "PublishedRecord",
    "SubscriptionInfo",
    "emulator_settings",
    "start_emulator",
    "use_emulator",
]
