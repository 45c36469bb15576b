"""The demo's one model: a chat message posted in a room."""

from __future__ import annotations

from django.core.validators import RegexValidator
from django.db import models
from django.utils.deconstruct import deconstructible

from appsync_events.paths import SEGMENT_PATTERN

__all__ = ["ROOM_PATTERN", "Message", "RoomValidator", "validate_room"]

#: A room is one channel segment: 1-50 letters, digits and '-', starting and ending with a
#: letter or digit (AppSync's grammar), so ``/chat/rooms/<room>`` is always a valid channel.
ROOM_PATTERN = SEGMENT_PATTERN


@deconstructible
class RoomValidator(RegexValidator):
    """Accept exactly the room names that are valid channel segments."""

    regex = rf"^{ROOM_PATTERN}\Z"
    message = "Use 1-50 letters, digits and '-'; start and end with a letter or digit."


validate_room = RoomValidator()


class Message(models.Model):
    """A message someone posted in a room; creating one publishes it to the room's channel."""

    room = models.CharField(max_length=50, validators=[validate_room], db_index=True)
    author = models.CharField(max_length=40)
    text = models.TextField(max_length=2000)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("created_at", "id")

    def __str__(self) -> str:
        return f"{self.author} in {self.room}: {self.text[:40]}"
