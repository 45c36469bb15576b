"""The demo chat app."""

from __future__ import annotations

from django.apps import AppConfig


class ChatConfig(AppConfig):
    """Connects the status panel's signal receivers."""

    name = "demo_project.chat"
    label = "chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Connect the receivers that feed the status panel."""
        from appsync_events import signals

        from . import status

        # dispatch_uid: connecting twice (an app registry reloaded in tests) stays one receiver.
        signals.connection_state_changed.connect(
            status.on_connection_state_changed, dispatch_uid="demo-chat-status-state"
        )
        signals.subscription_established.connect(
            status.on_subscription_established, dispatch_uid="demo-chat-status-subscription"
        )
        signals.subscription_removed.connect(
            status.on_subscription_removed, dispatch_uid="demo-chat-status-subscription-removed"
        )
        signals.event_received.connect(
            status.on_event_received, dispatch_uid="demo-chat-status-event"
        )
