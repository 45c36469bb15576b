"""URLs of the app: the direct-mode token endpoint.

.. code-block:: python

    # urls.py
    path("appsync/", include("appsync_events.urls")),   # GET /appsync/token/

Its name is ``appsync_events:token``.
"""

from __future__ import annotations

from django.urls import path

from .views import TokenView

app_name = "appsync_events"

urlpatterns = [
    path("token/", TokenView.as_view(), name="token"),
]
