"""The outbox drainer: claim due rows under a lease, send them, record the outcome.

Several drainers may run at once (processes, threads, hosts) without sending a row twice:

* On databases with ``SELECT … FOR UPDATE SKIP LOCKED`` (PostgreSQL, Oracle, MySQL 8)
  a drainer selects due rows with ``skip_locked`` inside a short transaction and stamps
  them with its lease (``locked_by``, ``locked_until``): concurrent drainers skip the
  locked rows and, after the commit, see the lease.
* Elsewhere (SQLite) it stamps rows with **one** ``UPDATE … WHERE id IN (SELECT … LIMIT n)
  AND <still claimable>``: a single statement is atomic and SQLite serialises writers,
  so two drainers can never stamp the same row; a ``database is locked`` answer is
  retried.

A drainer then reads back only the rows carrying its own token, sends them (grouped by
alias and channel, in insertion order, chunked by the backend), and marks them ``sent``
or schedules a retry. It stops sending before its lease could run out and releases what
is left, so a row is never owned by two live drainers. A drainer killed mid-batch leaves
its rows leased; they become claimable when the lease expires and are sent again
(events the service had already accepted are then delivered twice: at-least-once).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, OperationalError, connections, transaction
from django.db.models import Case, CharField, F, Q, Subquery, Value, When
from django.utils import timezone

from .. import instrumentation
from ..backends import get_backend
from ..batching import chunk_indices
from ..conf import DEFAULT_API, OutboxConfig, get_api_config
from ..exceptions import PartialPublishError
from ..models import OutboxEvent
from ..redaction import redact
from ..results import PublishResult
from ..signals import publish_failed, published

__all__ = ["DrainReport", "DrainerHealth", "OutboxDrainer"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_MAX_ERROR = 2000
# Seconds kept in reserve before the lease ends, on top of the requests' HTTP timeouts.
_LEASE_MARGIN = 1.0
# Events sent between two lease checks (five requests of small events).
_SLICE = 25
# The longest error text health() reports.
_MAX_HEALTH_ERROR = 300


@dataclass(slots=True)
class DrainReport:
    """What one batch (or one ``drain()``) did.

    Attributes:
        claimed: rows this drainer claimed.
        sent: rows marked sent.
        retried: rows scheduled for another attempt.
        failed: rows that ran out of attempts (state ``failed``).
        released: rows given back unsent because the lease was running out.
    """

    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    released: int = 0

    def add(self, other: DrainReport) -> None:
        """Accumulate ``other`` into this report."""
        self.claimed += other.claimed
        self.sent += other.sent
        self.retried += other.retried
        self.failed += other.failed
        self.released += other.released

    def __str__(self) -> str:
        return (
            f"claimed {self.claimed}, sent {self.sent}, retried {self.retried}, "
            f"failed {self.failed}, released {self.released}"
        )


@dataclass(frozen=True, slots=True)
class DrainerHealth:
    """A snapshot of a drainer's state, for probes (:meth:`OutboxDrainer.health`).

    A :class:`~appsync_events.health.HealthReport`.

    Attributes:
        phase: ``"starting"`` (before :meth:`~OutboxDrainer.run`), ``"running"``,
            ``"stopping"`` (asked to stop, finishing its batch) or ``"stopped"``.
        worker: the drainer's name (the prefix of ``locked_by``).
        api: the alias drained; ``None``: every alias.
        error: why the last poll failed (a database error, first line, redacted);
            ``None`` once a poll succeeds again.
        seconds_since_last_poll: since the last poll (an idle one or a batch) that
            reached the database; ``None`` before the first.
        seconds_since_last_batch: since the last batch that claimed rows; ``None``
            before the first.
        seconds_in_batch: how long the batch in progress has run; ``None`` between
            batches.
        stalled_after: seconds a batch may run before the drainer counts as stuck
            (twice its lease: a batch stops sending before its lease ends).
    """

    phase: str
    worker: str
    api: str | None
    error: str | None
    seconds_since_last_poll: float | None
    seconds_since_last_batch: float | None
    seconds_in_batch: float | None
    stalled_after: float

    @property
    def stalled(self) -> bool:
        """Whether the batch in progress has run longer than :attr:`stalled_after`."""
        return self.seconds_in_batch is not None and self.seconds_in_batch > self.stalled_after

    @property
    def alive(self) -> tuple[bool, str]:
        """Whether the drainer makes progress: not when one batch has run for longer
        than twice its lease (a hung database connection, say)."""
        if self.stalled:
            return False, (
                f"a batch has run for {self.seconds_in_batch:.1f} s, more than twice the "
                f"lease ({self.stalled_after:g} s): the drainer is stuck"
            )
        return True, "the drainer makes progress"

    @property
    def ready(self) -> tuple[bool, str]:
        """Whether the drainer is ready, and why not: running, with its last poll having
        reached the database, and not stuck in a batch."""
        if self.phase != "running":
            return False, f"the drainer is {self.phase}"
        if self.error is not None:
            return False, f"the last poll of the outbox failed: {self.error}"
        alive, reason = self.alive
        if not alive:
            return False, reason
        if self.seconds_since_last_poll is None:
            return False, "no poll has reached the database yet"
        return True, "polling the outbox table"

    def details(self) -> dict[str, Any]:
        """Return the worker, the alias and the age of the last poll and batch, for
        ``/readyz``."""
        return {
            "worker": self.worker,
            "api": self.api,
            "seconds_since_last_poll": _rounded(self.seconds_since_last_poll),
            "seconds_since_last_batch": _rounded(self.seconds_since_last_batch),
            "seconds_in_batch": _rounded(self.seconds_in_batch),
        }


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


def backoff_delay(attempts: int, config: OutboxConfig) -> float:
    """Seconds before attempt ``attempts + 1``: exponential, capped, with ±20 % jitter."""
    base = min(config.backoff_max, config.backoff_initial * (2.0 ** max(0, attempts - 1)))
    return float(base * random.uniform(0.8, 1.2))  # noqa: S311 - jitter, not security


class OutboxDrainer:
    """Send the durable outbox's due rows.

    Args:
        api: drain only this alias's rows; ``None`` drains every alias.
        batch_size: rows claimed at a time (default ``OUTBOX['BATCH_SIZE']``).
        lease: seconds a claim lasts (default ``OUTBOX['LEASE']``).
        using: the database alias holding the outbox table.
        worker: a name for this drainer in ``locked_by`` (default: a random token).

    Settings of ``api`` (or of ``"default"`` when draining every alias) give the batch
    size and lease; each row's own alias gives its backend, attempts and backoff.
    """

    def __init__(
        self,
        *,
        api: str | None = None,
        batch_size: int | None = None,
        lease: float | None = None,
        using: str = DEFAULT_DB_ALIAS,
        worker: str | None = None,
    ) -> None:
        config = get_api_config(api or DEFAULT_API).outbox
        self.api = api
        self.batch_size = batch_size or config.batch_size
        self.lease = lease or config.lease
        self.poll_interval = config.poll_interval
        self.retention = config.retention
        self.using = using
        self.worker = (worker or uuid.uuid4().hex)[:40]
        self._token = ""
        # What health() reports; written by the thread that runs the drainer, read from
        # any other (each a single attribute, so a read sees an old or a new value).
        self._phase = "starting"
        self._stop_event: threading.Event | asyncio.Event | None = None
        self._error: str | None = None
        self._last_poll: float | None = None
        self._last_batch: float | None = None
        self._batch_started: float | None = None
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {self.batch_size!r}")

    def __repr__(self) -> str:
        return f"<OutboxDrainer api={self.api!r} worker={self.worker!r}>"

    # -- health -----------------------------------------------------------------------

    def health(self) -> DrainerHealth:
        """Return a snapshot of the drainer's state (safe to call from another thread).

        :meth:`run` and :meth:`arun` keep it current; ``appsync_outbox --http-port``
        serves it as ``/healthz`` and ``/readyz``.
        """
        now = time.monotonic()
        phase = self._phase
        stop = self._stop_event
        if phase == "running" and stop is not None and stop.is_set():
            phase = "stopping"
        last_poll, last_batch, started = self._last_poll, self._last_batch, self._batch_started
        return DrainerHealth(
            phase=phase,
            worker=self.worker,
            api=self.api,
            error=self._error,
            seconds_since_last_poll=None if last_poll is None else now - last_poll,
            seconds_since_last_batch=None if last_batch is None else now - last_batch,
            seconds_in_batch=None if started is None else now - started,
            stalled_after=2 * self.lease,
        )

    def _timed_batch(self) -> DrainReport:
        """:meth:`drain_batch`, for :meth:`run` and :meth:`arun`: timed for health()."""
        self._batch_started = time.monotonic()
        try:
            report = self.drain_batch()
        finally:
            self._batch_started = None
        self._error = None
        self._last_poll = time.monotonic()
        if report.claimed:
            self._last_batch = self._last_poll
        return report

    def _failed(self, exc: BaseException) -> None:
        """Log a failed poll and keep its reason for health()."""
        logger.error("Outbox drainer %s failed; retrying", self.worker, exc_info=exc)
        text = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
        self._error = redact(text)[:_MAX_HEALTH_ERROR]

    # -- database steps ---------------------------------------------------------------

    def _retry_locked(self, func: Callable[[], _T]) -> _T:
        """Run ``func``, retrying SQLite's ``database is locked`` for up to 30 seconds."""
        deadline = time.monotonic() + 30.0
        delay = 0.01
        while True:
            try:
                return func()
            except OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                logger.debug("Outbox table locked, retrying in %.2fs", delay)
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    def _claimable(self, now: Any, due_before: Any = None) -> Q:
        due = now if due_before is None else min(now, due_before)
        q = Q(state=OutboxEvent.State.PENDING, next_attempt_at__lte=due) & (
            Q(locked_until__isnull=True) | Q(locked_until__lt=now)
        )
        if self.api is not None:
            q &= Q(api=self.api)
        return q

    def claim(self, *, due_before: Any = None) -> list[OutboxEvent]:
        """Claim up to ``batch_size`` due rows for this drainer and return them, oldest first.

        Args:
            due_before: only rows due at this time (``drain()`` passes its start time, so
                rows it retries are left for a later pass).
        """
        token = f"{self.worker}:{uuid.uuid4().hex[:16]}"
        rows = OutboxEvent.objects.using(self.using)

        def stamp() -> None:
            now = timezone.now()
            until = now + timedelta(seconds=self.lease)
            due = self._claimable(now, due_before)
            if connections[self.using].features.has_select_for_update_skip_locked:
                with transaction.atomic(using=self.using):
                    ids = list(
                        rows.filter(due)
                        .order_by("id")
                        .select_for_update(skip_locked=True)
                        .values_list("id", flat=True)[: self.batch_size]
                    )
                    if ids:
                        rows.filter(id__in=ids).update(locked_by=token, locked_until=until)
            else:
                # The outer filter repeats the conditions so that a row stamped by another
                # drainer between the subquery and the write is left alone.
                subquery = rows.filter(due).order_by("id").values("id")[: self.batch_size]
                rows.filter(due, id__in=Subquery(subquery)).update(
                    locked_by=token, locked_until=until
                )

        self._retry_locked(stamp)
        self._token = token
        return list(rows.filter(locked_by=token, state=OutboxEvent.State.PENDING).order_by("id"))

    def _release(self, objs: list[OutboxEvent]) -> None:
        ids = [o.pk for o in objs]
        self._retry_locked(
            lambda: (
                OutboxEvent.objects.using(self.using)
                .filter(id__in=ids, locked_by=self._token)
                .update(locked_by="", locked_until=None)
            )
        )

    # -- sending ---------------------------------------------------------------------

    def _update(self, ids: list[int], **values: Any) -> None:
        """One UPDATE for rows sharing their new values (cheaper than ``bulk_update``)."""
        self._retry_locked(
            lambda: OutboxEvent.objects.using(self.using).filter(id__in=ids).update(**values)
        )

    def _mark_sent(self, objs: Iterable[OutboxEvent], identifiers: dict[int, str]) -> int:
        done = [(obj, identifiers[i]) for i, obj in enumerate(objs) if i in identifiers]
        if not done:
            return 0
        now = timezone.now()
        for obj, identifier in done:
            obj.state, obj.sent_at, obj.identifier = OutboxEvent.State.SENT, now, identifier[:64]
            obj.locked_by, obj.locked_until = "", None
            obj.attempts += 1
        self._update(
            [obj.pk for obj, _ in done],
            state=OutboxEvent.State.SENT,
            sent_at=now,
            locked_by="",
            locked_until=None,
            attempts=F("attempts") + 1,
            identifier=Case(
                *[When(pk=obj.pk, then=Value(obj.identifier)) for obj, _ in done],
                default=Value(""),
                output_field=CharField(),
            ),
        )
        return len(done)

    def _mark_failed(
        self, objs: list[OutboxEvent], errors: dict[int, str], report: DrainReport
    ) -> list[OutboxEvent]:
        now = timezone.now()
        gave_up = []
        # Rows with the same alias, attempt count and error get one UPDATE (and one jittered
        # delay): a failed request fails all its events alike.
        same: dict[tuple[str, int, str], list[OutboxEvent]] = {}
        for obj in objs:
            obj.attempts += 1
            obj.last_error = errors.get(obj.pk, "")[:_MAX_ERROR]
            obj.locked_by, obj.locked_until = "", None
            same.setdefault((obj.api, obj.attempts, obj.last_error), []).append(obj)
        for (api, attempts, error), rows in same.items():
            config = get_api_config(api).outbox
            values: dict[str, Any] = {
                "attempts": attempts,
                "last_error": error,
                "locked_by": "",
                "locked_until": None,
            }
            if attempts >= config.max_attempts:
                values["state"] = OutboxEvent.State.FAILED
                gave_up.extend(rows)
                report.failed += len(rows)
            else:
                retry_at = now + timedelta(seconds=backoff_delay(attempts, config))
                values["next_attempt_at"] = retry_at
                report.retried += len(rows)
            for obj in rows:
                obj.state = values.get("state", obj.state)
                obj.next_attempt_at = values.get("next_attempt_at", obj.next_attempt_at)
            self._update([obj.pk for obj in rows], **values)
        return gave_up

    def _send_group(
        self, api: str, channel: str, objs: list[OutboxEvent], report: DrainReport
    ) -> None:
        texts = tuple(o.payload for o in objs)
        error: BaseException | None = None
        result: PublishResult | None = None
        try:
            result = get_backend(api).send(channel, texts)
        except PartialPublishError as exc:
            error = exc
            result = exc.result if isinstance(exc.result, PublishResult) else None
        except Exception as exc:
            # Whatever went wrong (network, auth, a misconfigured alias), keep the rows: they
            # are retried with backoff and the error stays visible in the admin.
            error = exc
            logger.warning(
                "Outbox send of %d events to %s on %r failed: %s", len(objs), channel, api, exc
            )
        identifiers = result.identifiers if result is not None else {}
        report.sent += self._mark_sent(objs, identifiers)
        if result is not None and result.successful:
            self._report_published(api, channel, result)
        refused = {e.index: f"{e.code}: {e.message}" for e in result.failed} if result else {}
        left = [(i, o) for i, o in enumerate(objs) if i not in identifiers]
        if not left:
            return
        messages = {o.pk: refused.get(i) or f"{type(error).__name__}: {error}" for i, o in left}
        gave_up = self._mark_failed([o for _, o in left], messages, report)
        reason = error or RuntimeError("; ".join(sorted(set(refused.values()))))
        for_retry = len(left) - len(gave_up)
        for receiver, response in publish_failed.send_robust(
            sender=api,
            api=api,
            channel=channel,
            events=tuple(o.payload for _, o in left),
            error=reason,
            deferred=True,
            will_retry=for_retry > 0,
            outbox_ids=tuple(o.pk for _, o in left),
        ):
            if isinstance(response, Exception):
                logger.error("publish_failed receiver %r raised: %s", receiver, response)
        if gave_up:
            logger.error(
                "Outbox gave up on %d events to %s on %r after their last attempt: %s",
                len(gave_up),
                channel,
                api,
                reason,
            )

    def _report_published(self, api: str, channel: str, result: PublishResult) -> None:
        for receiver, response in published.send_robust(
            sender=api, api=api, channel=channel, result=result
        ):
            if isinstance(response, Exception):
                logger.error("published receiver %r raised: %s", receiver, response)

    def drain_batch(self, *, due_before: Any = None) -> DrainReport:
        """Claim one batch and send it. Returns what happened (``claimed == 0``: nothing due).

        Rows go out per alias and channel, in slices of 25 events. Before each slice the
        drainer counts the requests it takes (the same chunking the backend applies) and
        sends only as many of them as could all time out before its lease ends; the rest
        of the batch is released for the next claim. So no row is still being sent when
        its lease expires and another drainer may claim it.
        """
        started = time.monotonic()
        objs = self.claim(due_before=due_before)
        report = DrainReport(claimed=len(objs))
        if not objs:
            return report  # an idle poll: no span
        with instrumentation.outbox_drain(self.worker) as span:
            self._send_claimed(objs, started, report)
            if span is not None:
                span.set_attributes({f"appsync_events.{k}": v for k, v in asdict(report).items()})
        return report

    def _send_claimed(self, objs: list[OutboxEvent], started: float, report: DrainReport) -> None:
        groups: dict[tuple[str, str], list[OutboxEvent]] = {}
        for obj in objs:
            groups.setdefault((obj.api, obj.channel), []).append(obj)
        slices = [
            (api, channel, group[i : i + _SLICE])
            for (api, channel), group in groups.items()
            for i in range(0, len(group), _SLICE)
        ]
        for number, (api, channel, part) in enumerate(slices):
            chunks = chunk_indices(channel, [o.payload for o in part])
            left = self.lease - (time.monotonic() - started) - _LEASE_MARGIN
            fit = min(len(chunks), max(0, int(left // get_api_config(api).timeouts.http)))
            sendable = part[: sum(len(chunk) for chunk in chunks[:fit])]
            if sendable:
                before = (report.sent, report.retried, report.failed)
                self._send_group(api, channel, sendable, report)
                instrumentation.outbox_counts(
                    api,
                    report.sent - before[0],
                    report.retried - before[1],
                    report.failed - before[2],
                )
            if fit < len(chunks):
                rest = part[len(sendable) :] + [o for _, _, p in slices[number + 1 :] for o in p]
                self._release(rest)
                report.released += len(rest)
                logger.info("Outbox lease running out; released %d rows unsent", len(rest))
                break

    def drain(self, *, on_batch: Callable[[DrainReport], None] | None = None) -> DrainReport:
        """Send the rows due now, batch after batch; return the total (``--once``).

        Rows that fail during this pass are scheduled for later and not retried by it, so
        the pass ends even while the service is down.
        """
        total = DrainReport()
        started = timezone.now()
        while True:
            report = self.drain_batch(due_before=started)
            if not report.claimed:
                return total
            total.add(report)
            if on_batch is not None:
                on_batch(report)

    def purge_sent(self) -> int:
        """Delete rows sent longer ago than ``OUTBOX['RETENTION']``; return how many."""
        cutoff = timezone.now() - timedelta(seconds=self.retention)
        rows = OutboxEvent.objects.using(self.using).filter(
            state=OutboxEvent.State.SENT, sent_at__lt=cutoff
        )
        if self.api is not None:
            rows = rows.filter(api=self.api)
        deleted, _ = self._retry_locked(rows.delete)
        if deleted:
            logger.info("Outbox purged %d sent rows older than %ss", deleted, self.retention)
        return deleted

    def run(
        self,
        stop: threading.Event,
        *,
        on_batch: Callable[[DrainReport], None] | None = None,
        purge_every: float = 300.0,
    ) -> None:
        """Drain until ``stop`` is set: batches while rows are due, else wait ``POLL_INTERVAL``.

        A database error is logged and retried after the poll interval, so a database
        restart does not end the drainer; :meth:`health` reports it until a poll
        succeeds again.
        """
        last_purge = 0.0
        self._stop_event, self._phase = stop, "running"
        try:
            while not stop.is_set():
                try:
                    if time.monotonic() - last_purge >= purge_every:
                        self.purge_sent()
                        last_purge = time.monotonic()
                    report = self._timed_batch()
                except Exception as exc:
                    self._failed(exc)
                    connections[self.using].close()
                    stop.wait(self.poll_interval)
                    continue
                if report.claimed:
                    if on_batch is not None:
                        on_batch(report)
                else:
                    stop.wait(self.poll_interval)
        finally:
            self._phase = "stopped"

    async def arun(
        self,
        stop: asyncio.Event,
        *,
        on_batch: Callable[[DrainReport], None] | None = None,
        purge_every: float = 300.0,
    ) -> None:
        """Async twin of :meth:`run`, for a long-running async process (the listener).

        The ORM work runs in one dedicated thread (its database connection is closed when
        this returns); the event loop is never blocked.
        """
        worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="appsync-outbox")
        loop = asyncio.get_running_loop()
        last_purge = 0.0
        self._stop_event, self._phase = stop, "running"
        try:
            while not stop.is_set():
                try:
                    if time.monotonic() - last_purge >= purge_every:
                        await loop.run_in_executor(worker, self.purge_sent)
                        last_purge = time.monotonic()
                    report = await loop.run_in_executor(worker, self._timed_batch)
                except Exception as exc:
                    self._failed(exc)
                    await loop.run_in_executor(worker, connections[self.using].close)
                    report = DrainReport()
                if report.claimed:
                    if on_batch is not None:
                        on_batch(report)
                    continue
                try:
                    await asyncio.wait_for(stop.wait(), self.poll_interval)
                except TimeoutError:
                    pass
        finally:
            self._phase = "stopped"
            await loop.run_in_executor(worker, connections.close_all)
            worker.shutdown(wait=False)
