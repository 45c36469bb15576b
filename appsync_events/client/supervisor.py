"""The supervisor: keep one connection up, with its subscriptions, for as long as needed.

A :class:`Supervisor` owns one slot of the client: a connection and the subscriptions
assigned to it. It opens the connection, subscribes everything, holds it, reconnects with
the :class:`~appsync_events.client.retry.RetryPolicy`'s backoff when it is lost
(resubscribing with fresh credentials), and rotates it make-before-break before the
service's 24-hour limit. It knows the client only through :class:`SupervisorHooks`: a
few callables for opening a connection, subscribing, retiring, reporting and stopping.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from ..exceptions import AuthError, ConnectionRejected
from .connection import Connection
from .retry import RetryPolicy

if TYPE_CHECKING:
    from .client import Subscription

__all__ = ["ConnectionState", "StateChange", "Supervisor", "SupervisorHooks"]

logger = logging.getLogger("appsync_events.client")

ConnectionState: TypeAlias = Literal["connecting", "connected", "reconnecting", "closed"]


@dataclass(frozen=True, slots=True)
class StateChange:
    """A connection of the client changed state.

    Attributes:
        state: ``"connecting"``, ``"connected"``, ``"reconnecting"`` or ``"closed"``.
        reason: why (the error for ``"reconnecting"``), or ``None``.
        retry_in: seconds until the next attempt, for ``"reconnecting"``.
        connection: the index of the connection slot (0 for the first).
        rejected: whether the service refused the connect (credentials).
    """

    state: ConnectionState
    reason: str | None = None
    retry_in: float | None = None
    connection: int = 0
    rejected: bool = False


@dataclass(frozen=True, slots=True)
class SupervisorHooks:
    """What a supervisor may ask of the client that owns it.

    Attributes:
        open: open and hand-shake a new connection, labelled for logs.
        establish: subscribe one subscription on a connection (never raises for a
            refusal: the client records it).
        retire: unsubscribe what a connection holds and close it.
        report: publish a state change (callbacks, signals).
        stop: stop the whole client with a fatal error.
    """

    open: Callable[[str], Awaitable[Connection]]
    establish: Callable[[Subscription, Connection], Awaitable[None]]
    retire: Callable[[Connection, str], Awaitable[None]]
    report: Callable[[StateChange], Awaitable[None]]
    stop: Callable[[BaseException], Awaitable[None]]


class Supervisor:
    """One supervised connection and the subscriptions assigned to it.

    Attributes:
        index: the slot number (0 for the first connection).
        label: ``", connection=N"``, appended to log lines.
        subscriptions: the subscriptions this slot holds, by ``id()``.
        capacity: subscriptions this slot may hold; lowered when the service refuses one
            with ``MaxSubscriptionsReachedError`` (its quota is lower than configured).
        connection: the open connection, or ``None``.
        connected: set while a connection is up.
        stopping: set when the slot must stop.
        reconnects: how many times the connection was re-established after a loss.
    """

    def __init__(
        self,
        index: int,
        *,
        alias: str,
        hooks: SupervisorHooks,
        policy: RetryPolicy,
        rotate_after: float,
        capacity: int,
    ) -> None:
        self.index = index
        self.alias = alias
        self.label = f", connection={index}"
        self.hooks = hooks
        self.policy = policy
        self.rotate_after = rotate_after
        self.subscriptions: dict[int, Subscription] = {}
        self.capacity = capacity
        self.connection: Connection | None = None
        self.connected = asyncio.Event()
        self.stopping = asyncio.Event()
        self.reconnects = 0
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start supervising (a task on the running loop)."""
        self.task = asyncio.create_task(self._run(), name=f"appsync-supervisor-{self.index}")

    async def stop(self) -> None:
        """Stop supervising and wait for the task (the connection stays for the caller)."""
        self.stopping.set()
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)

    async def _sleep(self, delay: float) -> bool:
        """Sleep ``delay`` seconds; return False when stopping interrupted it."""
        try:
            await asyncio.wait_for(self.stopping.wait(), delay)
        except TimeoutError:
            return True
        return False

    async def _run(self) -> None:
        hooks, policy = self.hooks, self.policy
        delays = policy.delays()
        attempt = 0
        ever_connected = False
        while not self.stopping.is_set():
            await hooks.report(StateChange("connecting", connection=self.index))
            try:
                connection = await hooks.open(self.label)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                fatal = policy.classify(exc)
                if fatal is not None:
                    await hooks.stop(fatal)
                    return
                attempt += 1
                rejected = isinstance(exc, ConnectionRejected | AuthError)
                delay = policy.maximum if rejected else next(delays)
                await self._reconnecting(exc, delay, rejected, attempt)
                if not await self._sleep(delay):
                    break
                continue
            attempt = 0
            self.connection = connection
            self.connected.set()
            if ever_connected:
                self.reconnects += 1
            ever_connected = True
            await hooks.report(StateChange("connected", connection=self.index))
            await self._subscribe_all(connection)
            reason = await self._hold(connection)
            if reason is not None:
                self.connected.clear()
                for sub in self.subscriptions.values():
                    if sub.state == "active":
                        sub.state = "pending"  # resubscribed once reconnected
            if reason is None or self.stopping.is_set():
                break
            if asyncio.get_running_loop().time() - connection.opened_at >= policy.stable_after:
                delays = policy.delays()  # it was stable: start the backoff afresh
            fatal = policy.classify(reason)
            if fatal is not None:
                await hooks.stop(fatal)
                return
            delay = next(delays)
            await self._reconnecting(reason, delay, False, 1)
            if not await self._sleep(delay):
                break

    async def _reconnecting(
        self, exc: BaseException, delay: float, rejected: bool, attempt: int
    ) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        if rejected:
            logger.error(
                "The service REJECTED the connection (api=%s, connection=%d, attempt %d): %s. "
                "Check the credentials in APPSYNC_EVENTS[%r]['AUTH']; retrying in %.1f s "
                "(the maximum backoff).",
                self.alias,
                self.index,
                attempt,
                reason,
                self.alias,
                delay,
            )
        else:
            logger.info(
                "Connection %d lost or not opened (api=%s): %s; reconnecting in %.1f s",
                self.index,
                self.alias,
                reason,
                delay,
            )
        await self.hooks.report(
            StateChange("reconnecting", reason, delay, connection=self.index, rejected=rejected)
        )

    async def _hold(self, connection: Connection) -> BaseException | None:
        """Hold the slot's connection, rotating it when due, until it fails (return why)
        or the slot stops (return ``None``)."""
        loop = asyncio.get_running_loop()
        while True:
            remaining = connection.opened_at + self.rotate_after - loop.time()
            stop: asyncio.Future[Any] = asyncio.ensure_future(self.stopping.wait())
            closed: asyncio.Future[Any] = connection.closed
            try:
                await asyncio.wait(
                    {closed, stop},
                    timeout=max(remaining, 0),
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                stop.cancel()
            if connection.closed.done():
                self.connection = None
                return connection.closed.result()
            if self.stopping.is_set():
                return None
            replacement = await self._rotate(connection)
            if replacement is not None:
                connection = replacement  # hold the new one from now on

    async def _rotate(self, old: Connection) -> Connection | None:
        """Open a new connection, subscribe it, then retire ``old`` (make-before-break)."""
        hooks = self.hooks
        logger.info(
            "Rotating the connection after %.0f s (api=%s%s)",
            asyncio.get_running_loop().time() - old.opened_at,
            self.alias,
            self.label,
        )
        try:
            new = await hooks.open(self.label)
        except Exception as exc:
            fatal = self.policy.classify(exc)
            if fatal is not None:  # e.g. a ConfigurationError: retrying cannot help
                await hooks.stop(fatal)
                return None
            # The old connection still works: keep it, try again after a delay.
            delay = min(self.policy.maximum, max(self.policy.initial, 1.0))
            logger.warning(
                "Could not open the replacement connection (api=%s%s): %s; retrying in %.1f s",
                self.alias,
                self.label,
                exc,
                delay,
            )
            await self._sleep(delay)
            return None
        await self._subscribe_all(new)
        self.connection = new
        # Both connections now deliver: events published in this short window may
        # arrive twice (documented in docs/listener.md). Close the old one now.
        await hooks.retire(old, self.label)
        await hooks.report(StateChange("connected", reason="rotated", connection=self.index))
        return new

    async def _subscribe_all(self, connection: Connection) -> None:
        subscriptions = [s for s in self.subscriptions.values() if s.state != "closed"]
        if subscriptions:
            await asyncio.gather(*(self.hooks.establish(s, connection) for s in subscriptions))
