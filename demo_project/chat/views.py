"""Views of the demo chat: rooms, the "all rooms" page, posting, recent messages as JSON
(what a page reloads after a gap), and the status panel."""

from __future__ import annotations

import json
import shlex
from typing import Any
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from appsync_events import conf
from appsync_events.routing import DEFAULT_PATH as WS_PATH

from .events import MessagePosted, message_data
from .forms import MessageForm, RoomForm
from .models import Message, validate_room
from .status import status

__all__ = [
    "all_rooms",
    "favicon",
    "index",
    "messages_json",
    "post_message",
    "publish_command",
    "room",
    "status_json",
]

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


def _messages_url(room: str | None = None) -> str:
    # Where a page reloads its recent messages after a gap (messages_json).
    url = reverse("chat:messages")
    return f"{url}?{urlencode({'room': room})}" if room else url


def publish_command(channel: str) -> str:
    """Return the shell command that publishes a message to ``channel`` (the room's hint).

    With the embedded emulator on another port than the settings' default (``appsync_demo
    --emulator-port``), the command names that port, so it reaches this emulator.
    """
    event = json.dumps({"author": "shell", "text": "Hello from a shell"})
    command = f"python manage.py appsync_publish {channel} {shlex.quote(event)}"
    if getattr(settings, "USE_EMULATOR", False):
        port = urlsplit(conf.get_api_config().http_url).port
        if port is not None and port != getattr(settings, "EMULATOR_PORT", None):
            command = f"APPSYNC_EVENTS_EMULATOR_PORT={port} {command}"
    return command


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
    return _room_page(request, room, MessageForm())


def _room_page(
    request: HttpRequest, room: str, form: MessageForm, status: int = 200
) -> HttpResponse:
    channel = MessagePosted.channel_for(room=room)
    return _page(
        request,
        "chat/room.html",
        {
            "room": room,
            "channel": channel,
            "messages_data": _recent(Message.objects.filter(room=room)),
            "messages_url": _messages_url(room),
            "publish_command": publish_command(channel),
            "form": form,
        },
        status=status,
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
            "messages_url": _messages_url(),
        },
    )


@require_GET
def messages_json(request: HttpRequest) -> JsonResponse:
    """Return the newest messages, oldest first: of one room with ``?room=``, else of all.

    What a page fetches to re-sync after a gap (events that never reached it). Answers
    ``{"messages": [...]}``, or 400 with ``{"errors": {"room": [...]}}`` for a room name
    that is not a channel segment.
    """
    room = request.GET.get("room")
    queryset = Message.objects.all()
    if room is not None:
        try:
            validate_room(room)
        except ValidationError as exc:
            return JsonResponse({"errors": {"room": exc.messages}}, status=400)
        queryset = queryset.filter(room=room)
    return JsonResponse({"messages": _recent(queryset)})


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
        return _room_page(request, room, form, status=400)
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


@require_GET
def favicon(request: HttpRequest) -> HttpResponse:
    """Redirect ``/favicon.ico`` to the demo's icon.

    The chat's pages name the icon themselves; browsers still ask for ``/favicon.ico`` on
    pages that do not (the admin, a JSON answer opened in a tab).
    """
    return redirect(static("chat/favicon.svg"))
