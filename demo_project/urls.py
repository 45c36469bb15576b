"""URLs of the demo project: the chat at the root, the direct-mode token view under /appsync/,
the admin under /admin/."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("demo_project.chat.urls")),
    # GET /appsync/token/: a direct-mode token of the visitor's GRANTS (DEMO_DIRECT=1).
    path("appsync/", include("appsync_events.urls")),
    path("admin/", admin.site.urls),
]
