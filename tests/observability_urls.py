"""URLs for the observability view tests: appsync_events.urls under /appsync/."""

from __future__ import annotations

from django.urls import include, path

urlpatterns = [path("appsync/", include("appsync_events.urls"))]
