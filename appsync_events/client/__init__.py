"""The asyncio websocket client for AppSync Events, with its supervisor. No Django.

Four modules, one job each:

:mod:`~appsync_events.client.connection`
    :class:`Connection`, one websocket: the handshake (two subprotocols, fresh connect
    auth, ``connection_init`` → ``connection_ack`` within the handshake timeout), a
    reader task that decodes every frame once, a keep-alive watchdog fed by **every**
    inbound frame, and operations (subscribe / unsubscribe / publish) correlated by ``id``.
:mod:`~appsync_events.client.retry`
    The retry policy: :func:`process_exception` (retry or stop), :func:`reconnect_delays`
    (jittered, capped exponential backoff), :func:`is_auth_error`.
:mod:`~appsync_events.client.supervisor`
    :class:`~appsync_events.client.supervisor.Supervisor`: keeps one connection up with
    its subscriptions: reconnect, resubscribe with fresh auth, rotate make-before-break
    before the service's 24 h limit.
:mod:`~appsync_events.client.client`
    :class:`AppSyncEventsClient`, what applications use, and :class:`Subscription`.

.. code-block:: python

    from appsync_events.client import AppSyncEventsClient
    from appsync_events.config import APIConfig

    config = APIConfig.from_mapping("default", {"HTTP_URL": ..., "AUTH": {...}})
    async with AppSyncEventsClient(config) as client:
        await client.subscribe("/chat/*")
        result = await client.publish("/chat/lobby", ['{"text": "hi"}'])
        async for event in client.events():
            print(event.subscription, event.payload)

Error classification (:func:`process_exception`): network failures, keep-alive and
handshake timeouts, protocol errors and 5xx/408/429 upgrades are retried with backoff; a
rejected connect (``connection_error``, HTTP 401/403) or credentials that cannot be
produced are retried at the *maximum* delay, logged at ERROR each time so a wrong key
never spins quietly; any other 4xx upgrade (a wrong URL), a
:class:`~appsync_events.exceptions.ConfigurationError` or an unexpected exception stops
the client (:meth:`AppSyncEventsClient.wait_closed` re-raises it).

Logging: logger ``appsync_events.client``. The ``websockets`` library logs to its own
``websockets.client`` logger through :func:`~appsync_events.redaction.redacting_logger`:
its DEBUG output (handshake headers, every frame) stays available, with the ``header-``
subprotocol value, API keys, tokens and signatures replaced by ``<redacted>``.
"""

from __future__ import annotations

from .client import AppSyncEventsClient, Subscription, SubscriptionState
from .connection import Connection
from .retry import RetryPolicy, is_auth_error, process_exception, reconnect_delays
from .supervisor import ConnectionState, StateChange, Supervisor

__all__ = [
    "AppSyncEventsClient",
    "Connection",
    "ConnectionState",
    "RetryPolicy",
    "StateChange",
    "Subscription",
    "SubscriptionState",
    "Supervisor",
    "is_auth_error",
    "process_exception",
    "reconnect_delays",
]
