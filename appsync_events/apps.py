"""Django app configuration for appsync_events."""

from __future__ import annotations

from django.apps import AppConfig


class AppSyncEventsConfig(AppConfig):
    """Registers the system checks and autodiscovers handler modules."""

    name = "appsync_events"
    verbose_name = "AppSync Events"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, converters

        checks.register()
        converters.register()  # <channel_segment:...> in URL patterns

        # Import every installed app's ``appsync_handlers`` module (like admin.py), so
        # @appsync_events.on handlers are registered before any listener starts.
        from .dispatch import autodiscover

        autodiscover()
