"""The signals appsync_events sends.

Connect receivers as usual (``@receiver(event_received)``). Every signal is sent with
``sender`` = the alias (a ``str``) and the keyword arguments listed for it. The
listener sends its signals from async code with ``Signal.asend()``, so sync and async
receivers both work; a sync receiver runs in a thread, where the ORM is safe.
"""

from __future__ import annotations

from django.dispatch import Signal

__all__ = [
    "connection_state_changed",
    "event_dropped",
    "event_received",
    "gap_detected",
    "pre_publish",
    "publish_failed",
    "published",
    "subscription_established",
    "subscription_failed",
    "subscription_removed",
]

# -- receiving (the listener) ---------------------------------------------------------

#: An event arrived on a subscription, decoded once. Not sent for events on
#: subscriptions that exist only through ``Listener.follow()`` (browser follows): those
#: are forward-only, so an event is not signalled twice when a static wildcard covers it.
#: Provides: ``event`` (:class:`appsync_events.events.ReceivedEvent`: ``api``,
#: ``subscription`` path, ``payload``, ``raw``, ``received_at``), ``api``.
event_received = Signal()

#: The service accepted a subscription; sent again after every reconnect.
#: Provides: ``api``, ``channel`` (the subscription path), ``subscription_id``.
subscription_established = Signal()

#: The listener dropped a subscription it held at run time (the last browser following the
#: path left, see ``Listener.unfollow()``). Not sent for the configured subscriptions at
#: shutdown nor for a lost connection (``connection_state_changed`` says that).
#: Provides: ``api``, ``channel`` (the subscription path), ``subscription_id``.
subscription_removed = Signal()

#: The service refused a subscription (or its retries ran out).
#: Provides: ``api``, ``channel``, ``error`` (an
#: :class:`~appsync_events.exceptions.AppSyncEventsError`), ``will_retry`` (bool).
subscription_failed = Signal()

#: The listener's connection changed state.
#: Provides: ``api``, ``state`` (``"connecting"``, ``"connected"``, ``"reconnecting"``,
#: ``"closed"``), ``reason`` (``str`` or ``None``), ``retry_in`` (seconds or ``None``).
connection_state_changed = Signal()

#: The listener dropped an event because its queue was full and ``LISTENER['OVERFLOW']``
#: is ``"drop_newest"`` or ``"drop_oldest"`` (never with the default ``"block"``).
#: Provides: ``api``, ``event`` (the dropped
#: :class:`~appsync_events.events.ReceivedEvent`), ``policy`` (the overflow policy),
#: ``dropped`` (the listener's running count of dropped events).
event_dropped = Signal()

# -- browsers (the consumer) ----------------------------------------------------------

#: A browser socket missed events of a subscription (the channel layer dropped them for a
#: socket that lagged, or the listener restarted); sent once per gap by
#: ``AppSyncEventsConsumer.report_gap()``, just before the page gets its ``gap`` message.
#: The place to count gaps (a metrics counter) or alert on them.
#: Provides: ``api``, ``channel`` (the subscription path), ``group`` (its channel-layer
#: group), ``reason`` (``"lagging"`` or ``"listener_restart"``), ``missed`` (the first and
#: last ``seq`` missed, inclusive, as a tuple; ``None`` when unknown), ``run`` (the
#: forwarder run of the event that revealed the gap).
gap_detected = Signal()

# -- publishing -----------------------------------------------------------------------

#: About to publish; raise :class:`~appsync_events.exceptions.PublishCancelled` to veto.
#: Provides: ``api``, ``channel``, ``events`` (the encoded JSON texts, a tuple).
pre_publish = Signal()

#: The service answered a publish.
#: Provides: ``api``, ``channel``, ``result`` (a ``PublishResult``).
published = Signal()

#: A publish failed where no caller can see the exception (after commit, in the
#: outbox drainer), or failed for the caller too.
#: Provides: ``api``, ``channel``, ``events``, ``error``, ``deferred`` (bool); from the
#: outbox drainer also ``will_retry`` (bool) and ``outbox_ids`` (the rows' keys).
publish_failed = Signal()
