"""A URL path converter for channel segments: ``<channel_segment:room>``.

Django's ``<slug:...>`` accepts ``_`` (and up to any length), which channel segments
refuse: a view building ``f"/chat/rooms/{room}"`` from a slug fails with
:class:`~appsync_events.exceptions.InvalidChannelError` (a 500) for ``/rooms/my_room/``.
``channel_segment`` matches exactly what a segment may be (1 to 50 letters, digits and
``-``, starting and ending with a letter or digit), so such a URL is a 404 instead::

    from django.urls import path

    urlpatterns = [path("rooms/<channel_segment:room>/", views.room)]

The app registers the converter when Django starts (and ``appsync_events.urls``, when
included, does too); :func:`register` is idempotent.
"""

from __future__ import annotations

from django.urls import register_converter
from django.urls.converters import get_converters

from .paths import SEGMENT_PATTERN

__all__ = ["NAME", "ChannelSegmentConverter", "register"]

#: The name to use in URL patterns.
NAME = "channel_segment"


class ChannelSegmentConverter:
    """Matches one channel segment in a URL path."""

    regex = SEGMENT_PATTERN

    def to_python(self, value: str) -> str:
        """Return the segment unchanged (the regex already validated it)."""
        return value

    def to_url(self, value: str) -> str:
        """Return ``value`` when it is a valid segment.

        Raises:
            ValueError: it is not (``reverse()`` then raises ``NoReverseMatch``).
        """
        from .paths import SEGMENT_RE

        text = str(value)
        if not SEGMENT_RE.match(text):
            raise ValueError(f"{text!r} is not a channel segment")
        return text


def register() -> None:
    """Register ``channel_segment`` with Django's URL resolver (once)."""
    if NAME not in get_converters():
        register_converter(ChannelSegmentConverter, NAME)
