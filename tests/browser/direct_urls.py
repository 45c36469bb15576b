"""URLs of the direct-mode browser tests: a bare page loading the client, and the token view."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.template import Context, Template
from django.urls import include, path

PAGE = Template(
    "{% load appsync_events %}<!doctype html><html><head><meta charset='utf-8'>"
    "<title>direct</title><link rel='icon' href='data:,'>{% appsync_events_script %}"
    "</head><body></body></html>"
)


def page(request: HttpRequest) -> HttpResponse:
    """The page the browser opens: the client script and nothing else."""
    return HttpResponse(PAGE.render(Context({})))


urlpatterns = [
    path("", page),
    path("appsync/", include("appsync_events.urls")),
]
