"""URLs of the demo chat."""

from __future__ import annotations

from django.urls import path, register_converter

from . import views
from .models import ROOM_PATTERN

app_name = "chat"


class RoomConverter:
    """A room in a URL: exactly the names that are valid channel segments."""

    regex = ROOM_PATTERN

    def to_python(self, value: str) -> str:
        """Return the room name unchanged."""
        return value

    def to_url(self, value: str) -> str:
        """Return the room name unchanged."""
        return value


register_converter(RoomConverter, "room")

urlpatterns = [
    path("", views.index, name="index"),
    path("rooms/", views.all_rooms, name="all_rooms"),
    path("rooms/<room:room>/", views.room, name="room"),
    path("rooms/<room:room>/messages/", views.post_message, name="post"),
    path("status/", views.status_json, name="status"),
]
