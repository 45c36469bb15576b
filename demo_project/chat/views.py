"""Views of the demo chat: rooms, the "all rooms" page, posting, and the status panel."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from appsync_events.routing import DEFAULT_PATH as WS_PATH

from .events import MessagePosted, message_data
from .forms import MessageForm, RoomForm
from .models import Message
from .status import status

__all__ = ["all_rooms", "index", "post_message", "room", "status_json"]

#: Rooms the home page always offers.
DEFAULT_ROOMS = ("lobby", "random")
#: Messages shown when a page opens; later ones arrive live.
HISTORY = 50


def _page(
    request: HttpRequest, template: str, context: dict[str, Any], status: int = 200
) -> HttpResponse:
    # Relay mode: every page opens the websocket the ASGI app routes to ChatConsumer.
    # Direct mode (DEMO_DIRECT=1): pages fetch a token and connect to AppSync themselves.
    base = {
        "ws_path": "/" + WS_PATH,
        "mode": "direct" if getattr(settings, "DEMO_DIRECT", False) else "relay",
        "token_url": reverse("appsync_events:token"),
    }
    return render(request, template, {**base, **context}, status=status)


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _recent(queryset: Any) -> list[dict[str, Any]]:
    # The newest HISTORY messages, oldest first.
    newest = list(queryset.order_by("-created_at", "-id")[:HISTORY])
    return [message_data(m) for m in reversed(newest)]


@require_http_methods(["GET", "POST"])
def index(request: HttpRequest) -> HttpResponse:
    """List the rooms and let the visitor pick or create one."""
    form = RoomForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        return redirect("chat:room", room=form.cleaned_data["name"])
    active = Message.objects.order_by().values_list("room", flat=True).distinct()[:20]
    rooms = sorted({*DEFAULT_ROOMS, *active})
    return _page(request, "chat/index.html", {"form": form, "rooms": rooms})


@require_GET
def room(request: HttpRequest, room: str) -> HttpResponse:
    """Show one room: its recent messages, live updates from ``/chat/rooms/<room>``."""
    return _page(
        request,
        "chat/room.html",
        {
            "room": room,
            "channel": MessagePosted.channel_for(room=room),
            "messages_data": _recent(Message.objects.filter(room=room)),
            "form": MessageForm(),
        },
    )


@require_GET
def all_rooms(request: HttpRequest) -> HttpResponse:
    """Show every room at once, live, through one wildcard follow of ``/chat/rooms/*``."""
    return _page(
        request,
        "chat/all_rooms.html",
        {
            "channel": MessagePosted.wildcard(),
            "messages_data": _recent(Message.objects.all()),
        },
    )


@require_POST
def post_message(request: HttpRequest, room: str) -> HttpResponse:
    """Save a message and publish it to the room's channel once the transaction commits.

    Answers JSON (201 with the message, or 400 with the form errors) to ``fetch()``
    calls that accept JSON, and redirects back to the room otherwise (no JavaScript).
    """
    form = MessageForm(request.POST)
    if not form.is_valid():
        if _wants_json(request):
            return JsonResponse({"errors": form.errors.get_json_data()}, status=400)
        return _page(
            request,
            "chat/room.html",
            {
                "room": room,
                "channel": MessagePosted.channel_for(room=room),
                "messages_data": _recent(Message.objects.filter(room=room)),
                "form": form,
            },
            status=400,
        )
    with transaction.atomic():
        message = form.save(commit=False)
        message.room = room
        message.save()
        # Inside the atomic block, publish() waits for the commit (PUBLISH["ON_COMMIT"]):
        # no browser ever sees a message that was rolled back.
        MessagePosted.from_message(message).publish()
    if _wants_json(request):
        return JsonResponse(message_data(message), status=201)
    return redirect("chat:room", room=room)


@require_GET
def status_json(request: HttpRequest) -> JsonResponse:
    """Return the listener's status (what the status panel shows) as JSON."""
    return JsonResponse(status.snapshot())
