"""URLs of the demo project: the chat at the root, the admin under /admin/."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("demo_project.chat.urls")),
    path("admin/", admin.site.urls),
]
