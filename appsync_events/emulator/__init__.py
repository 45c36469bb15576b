"""A local AppSync Events service: HTTP publish and the websocket, on one port.

What the service holds (:mod:`.registry`), what it does (:mod:`.operations`), the
credential checks (:mod:`.authz`), the error table (:mod:`.errors`), the handler
stand-ins (:mod:`.hooks`) and the fault switches (:mod:`.faults`) are kept apart from
the wire (:mod:`.asgi`, served by uvicorn from :mod:`.server`; :mod:`.proxy` breaks TCP
connections on demand). :mod:`.cli` runs it from the command line
(``python -m appsync_events.emulator``). See ``docs/emulator.md``.
"""

from __future__ import annotations

from .authz import AuthContext, Authorizer, AuthResult
from .errors import DEFAULT_ERRORS, EmulatorError, ErrorSpec
from .faults import Faults
from .hooks import (
    HandlerContext,
    HandlerError,
    HandlerUnauthorized,
    IncomingEvent,
    NamespaceHandlers,
)
from .operations import EmulatorState
from .registry import (
    ConnectionInfo,
    NamespaceSpec,
    PublishedRecord,
    ServiceSettings,
    SubscriptionInfo,
)
from .server import SERVICE_OPTIONS, AppSyncEventsEmulator

__all__ = [
    "DEFAULT_ERRORS",
    "SERVICE_OPTIONS",
    "AppSyncEventsEmulator",
    "AuthContext",
    "AuthResult",
    "Authorizer",
    "ConnectionInfo",
    "EmulatorError",
    "EmulatorState",
    "ErrorSpec",
    "Faults",
    "HandlerContext",
    "HandlerError",
    "HandlerUnauthorized",
    "IncomingEvent",
    "NamespaceHandlers",
    "NamespaceSpec",
    "PublishedRecord",
    "ServiceSettings",
    "SubscriptionInfo",
]
