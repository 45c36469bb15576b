"""Admin for the durable outbox: state, attempts, last error, and a retry action."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .models import OutboxEvent

__all__ = ["OutboxEventAdmin"]

# ModelAdmin is generic for the type checker only (django-stubs); not at runtime.
if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[OutboxEvent]
else:
    _ModelAdmin = admin.ModelAdmin


@admin.register(OutboxEvent)
class OutboxEventAdmin(_ModelAdmin):
    """Failures stay visible here; "Retry" puts rows back in the drainer's queue."""

    list_display = (
        "id",
        "api",
        "channel",
        "state",
        "attempts",
        "created_at",
        "next_attempt_at",
        "sent_at",
        "short_error",
    )
    list_filter = ("state", "api")
    search_fields = ("channel", "identifier", "last_error")
    date_hierarchy = "created_at"
    ordering = ("-id",)
    actions = ("retry",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        """Every field: rows are written by publishing and the drainer, never by hand."""
        return tuple(f.name for f in self.opts.get_fields())

    @admin.display(description=_("last error"))
    def short_error(self, obj: OutboxEvent) -> str:
        """The last error, cut to one line of the change list."""
        return Truncator(obj.last_error).chars(80)

    def has_retry_permission(self, request: HttpRequest) -> bool:
        """Retrying changes rows: it needs the model's change permission (the change
        form itself stays read-only for everyone)."""
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    @admin.action(description=_("Retry selected events now"), permissions=["retry"])
    def retry(self, request: HttpRequest, queryset: QuerySet[OutboxEvent]) -> None:
        """Make the selected unsent rows due now, with a fresh attempt budget.

        Rows a drainer holds right now (an unexpired lease) are left alone: clearing
        their lease would let a second drainer send them while the first still is.
        """
        now = timezone.now()
        count = (
            queryset.exclude(state=OutboxEvent.State.SENT)
            .exclude(locked_until__gt=now)
            .update(
                state=OutboxEvent.State.PENDING,
                attempts=0,
                next_attempt_at=now,
                locked_by="",
                locked_until=None,
            )
        )
        self.message_user(
            request,
            ngettext(
                "%(count)d event queued for retry.",
                "%(count)d events queued for retry.",
                count,
            )
            % {"count": count},
            messages.SUCCESS,
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Rows come from ``publish(durable=True)`` only."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Rows are read-only; use the retry action."""
        return False
