"""URLs of the app for web processes.

.. code-block:: python

    # urls.py
    path("appsync/", include("appsync_events.urls")),

serves ``GET /appsync/token/`` (``appsync_events:token``, the direct-mode token of the
current user), ``GET /appsync/readyz`` (``appsync_events:readyz``) and
``GET /appsync/metrics`` (``appsync_events:metrics``, Prometheus); the last two only to
the addresses and users ``METRICS`` allows.
"""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "appsync_events"

urlpatterns = [
    path("token/", views.TokenView.as_view(), name="token"),
    path("metrics", views.MetricsView.as_view(), name="metrics"),
    path("readyz", views.ReadinessView.as_view(), name="readyz"),
]
