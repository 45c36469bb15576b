"""Database models of appsync_events: the durable outbox and the handled-events tables."""

from __future__ import annotations

import json
from typing import Any

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

__all__ = ["HandledEvent", "OutboxEvent"]


class OutboxEvent(models.Model):
    """One event waiting in (or sent from) the durable outbox.

    ``publish(..., durable=True)`` writes one row per event inside the caller's
    transaction; ``manage.py appsync_outbox`` claims due rows (``locked_by`` and
    ``locked_until`` form a lease, so a killed drainer's rows are claimed again once it
    expires), sends them, and marks them ``sent``, or schedules a retry with exponential
    backoff, or marks them ``failed`` after ``OUTBOX['MAX_ATTEMPTS']``.
    """

    class State(models.TextChoices):
        """Where a row is in its life."""

        PENDING = "pending", _("pending")
        SENT = "sent", _("sent")
        FAILED = "failed", _("failed")

    api = models.CharField(_("API alias"), max_length=100)
    channel = models.CharField(_("channel"), max_length=300)
    payload = models.TextField(_("event JSON"))
    batch = models.UUIDField(_("batch"), help_text=_("Events published by one call share it."))
    position = models.PositiveIntegerField(_("position in batch"), default=0)
    state = models.CharField(
        _("state"), max_length=10, choices=State.choices, default=State.PENDING
    )
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    next_attempt_at = models.DateTimeField(_("next attempt at"), default=timezone.now)
    locked_until = models.DateTimeField(_("locked until"), null=True, blank=True)
    locked_by = models.CharField(_("locked by"), max_length=64, blank=True, default="")
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    identifier = models.CharField(_("service identifier"), max_length=64, blank=True, default="")
    last_error = models.TextField(_("last error"), blank=True, default="")

    class Meta:
        verbose_name = _("outbox event")
        verbose_name_plural = _("outbox events")
        ordering = ("id",)
        indexes = (
            models.Index(fields=("state", "next_attempt_at"), name="appsync_outbox_due"),
            models.Index(fields=("state", "sent_at"), name="appsync_outbox_sent"),
        )

    def __str__(self) -> str:
        return f"{self.channel} #{self.pk} ({self.state})"

    @property
    def event(self) -> Any:
        """The event, decoded from JSON."""
        return json.loads(self.payload)


class HandledEvent(models.Model):
    """An event a handler has handled: what :mod:`appsync_events.idempotency` records.

    One row per handler and event key
    (:func:`~appsync_events.idempotency.event_key`); the unique constraint makes a second
    delivery of the same event to the same handler detectable, also when two workers
    run it at once. Rows are written inside the handler's transaction, so they exist
    exactly when the handler's database work was committed. Delete old rows when
    duplicates can no longer arrive (``handled_at`` is indexed).
    """

    handler = models.CharField(_("handler"), max_length=300)
    key = models.CharField(_("event key"), max_length=200)
    handled_at = models.DateTimeField(_("handled at"), default=timezone.now)

    class Meta:
        verbose_name = _("handled event")
        verbose_name_plural = _("handled events")
        constraints = (
            models.UniqueConstraint(fields=("handler", "key"), name="appsync_handled_once"),
        )
        indexes = (models.Index(fields=("handled_at",), name="appsync_handled_at"),)

    def __str__(self) -> str:
        return f"{self.handler}: {self.key}"
