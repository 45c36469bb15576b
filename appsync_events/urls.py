"""URLs for web processes: ``path("appsync/", include("appsync_events.urls"))``."""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "appsync_events"

urlpatterns = [
    path("metrics", views.MetricsView.as_view(), name="metrics"),
    path("readyz", views.ReadinessView.as_view(), name="readyz"),
]
