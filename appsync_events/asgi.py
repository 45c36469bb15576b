"""Run the listener inside the ASGI process: one process, no Redis needed to start.

Channels' ``InMemoryChannelLayer`` only reaches consumers of its own process, so the
listener that forwards into it must run inside the web server. Set
``FORWARDING['IN_PROCESS'] = True`` for the alias and wrap your ASGI application:

.. code-block:: python

    # asgi.py
    from appsync_events.asgi import AppSyncEventsLifespan
    from appsync_events.routing import websocket_application

    application = AppSyncEventsLifespan(
        ProtocolTypeRouter({"http": django_asgi_app, "websocket": websocket_application()})
    )

With a server that speaks the ASGI lifespan protocol (uvicorn, hypercorn), the listener
of every alias with ``IN_PROCESS`` starts at server startup and stops at shutdown.
Servers without lifespan support (Daphne) never send those messages: there the first
browser socket starts the listener (:func:`ensure_in_process_listener`, called by
:class:`~appsync_events.consumers.AppSyncEventsConsumer`), and it stops with the process.

With ``channels_redis``, run ``manage.py appsync_listen`` as its own process instead and
leave ``IN_PROCESS`` off (several web workers would otherwise each run a listener and
each forward every event). Check ``appsync_events.W005`` flags an in-memory layer
without ``IN_PROCESS``; ``appsync_listen`` warns at startup when it forwards into one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import conf

if TYPE_CHECKING:
    from .listener import Listener

__all__ = [
    "AppSyncEventsLifespan",
    "astart_in_process_listeners",
    "astop_in_process_listeners",
    "ensure_in_process_listener",
    "in_process_aliases",
    "in_process_listener",
]

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
# Any ASGI 3 application: typed loosely on purpose, because each framework types its
# scope and messages its own way (Channels' routers take asgiref's TypedDicts) and a
# precise Callable type would refuse them all under mypy --strict.
ASGIApp = Callable[..., Awaitable[None]]


@dataclass(slots=True)
class _Running:
    listener: Listener
    task: asyncio.Task[int]


# One listener per (event loop, alias): a listener belongs to the loop it runs on.
_running: dict[tuple[int, str], _Running] = {}
_locks: dict[int, asyncio.Lock] = {}


def in_process_aliases() -> tuple[str, ...]:
    """Return the aliases whose forwarding runs the listener inside the ASGI process."""
    out = []
    for alias in conf.api_aliases():
        forwarding = conf.get_api_config(alias).forwarding
        if forwarding.enabled and forwarding.in_process:
            out.append(alias)
    return tuple(out)


def in_process_listener(api: str = conf.DEFAULT_API) -> Listener | None:
    """Return the listener of ``api`` running in this event loop, if any."""
    running = _running.get((id(asyncio.get_running_loop()), api))
    return running.listener if running is not None and not running.task.done() else None


def _lock() -> asyncio.Lock:
    key = id(asyncio.get_running_loop())
    lock = _locks.get(key)
    if lock is None:
        lock = _locks[key] = asyncio.Lock()
    return lock


async def ensure_in_process_listener(api: str = conf.DEFAULT_API) -> Listener:
    """Start the listener of ``api`` in this event loop unless it already runs.

    Returns:
        the running listener.

    Raises:
        ConfigurationError: the alias is misconfigured.
    """
    loop = asyncio.get_running_loop()
    key = (id(loop), api)
    async with _lock():
        running = _running.get(key)
        if running is not None and not running.task.done():
            return running.listener
        from .listener import Listener

        listener = Listener(api, in_process=True)
        task = loop.create_task(
            listener.run(install_signal_handlers=False), name=f"appsync-listener {api}"
        )
        task.add_done_callback(lambda t: _finished(key, t))
        _running[key] = _Running(listener, task)
        logger.info("started the in-process listener of %r", api)
        return listener


def _finished(key: tuple[int, str], task: asyncio.Task[int]) -> None:
    running = _running.get(key)
    if running is not None and running.task is task:
        del _running[key]
    if task.cancelled():
        logger.warning("the in-process listener of %r was cancelled", key[1])
    elif task.exception() is not None:
        logger.error(
            "the in-process listener of %r stopped with an error; the next browser "
            "socket starts it again",
            key[1],
            exc_info=task.exception(),
        )
    else:
        logger.info("the in-process listener of %r stopped (exit %s)", key[1], task.result())


async def astart_in_process_listeners(apis: Iterable[str] | None = None) -> list[Listener]:
    """Start the listeners of ``apis`` (default: :func:`in_process_aliases`) in this loop."""
    aliases = in_process_aliases() if apis is None else tuple(apis)
    return [await ensure_in_process_listener(alias) for alias in aliases]


async def astop_in_process_listeners(timeout: float | None = None) -> None:  # noqa: ASYNC109
    """Stop every in-process listener of this event loop and wait for them.

    Args:
        timeout: seconds to wait for each (default: its ``LISTENER['SHUTDOWN_TIMEOUT']``
            plus 5); a listener still running then is cancelled.
    """
    loop_id = id(asyncio.get_running_loop())
    for key, running in list(_running.items()):
        if key[0] != loop_id:
            continue
        running.listener.request_stop("the ASGI server is shutting down")
        wait = timeout
        if wait is None:
            wait = running.listener.config.listener.shutdown_timeout + 5.0
        try:
            await asyncio.wait_for(asyncio.shield(running.task), wait)
        except TimeoutError:
            logger.warning("the in-process listener of %r did not stop in time", key[1])
            running.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await running.task
        except Exception:
            logger.debug("the in-process listener of %r ended with an error", key[1])
    _locks.pop(loop_id, None)


class AppSyncEventsLifespan:
    """Wrap an ASGI app: start in-process listeners at lifespan startup, stop them at
    shutdown; every other scope goes to the wrapped app unchanged.

    Args:
        app: the ASGI application (usually a ``ProtocolTypeRouter``).
        apis: the aliases to run (default: those with ``FORWARDING['IN_PROCESS']``).
    """

    def __init__(self, app: ASGIApp, *, apis: Iterable[str] | None = None) -> None:
        self.app = app
        self.apis = tuple(apis) if apis is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection (a lifespan one ourselves)."""
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await astart_in_process_listeners(self.apis)
                except Exception as exc:
                    logger.exception("starting the in-process listeners failed")
                    # The server will not start: stop the listeners that did.
                    await astop_in_process_listeners()
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await astop_in_process_listeners()
                await send({"type": "lifespan.shutdown.complete"})
                return
