"""URLs of the demo chat."""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "chat"


urlpatterns = [
    path("", views.index, name="index"),
    path("rooms/", views.all_rooms, name="all_rooms"),
    path("rooms/<channel_segment:room>/", views.room, name="room"),
    path("rooms/<channel_segment:room>/messages/", views.post_message, name="post"),
    path("messages/", views.messages_json, name="messages"),
    path("status/", views.status_json, name="status"),
    path("favicon.ico", views.favicon, name="favicon"),
]
