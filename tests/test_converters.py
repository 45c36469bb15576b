"""The channel_segment URL converter: exactly the valid channel segments."""

from __future__ import annotations

import pytest
from django.urls import NoReverseMatch, resolve, reverse
from django.urls.exceptions import Resolver404


@pytest.mark.parametrize("room", ["lobby", "room-7", "A1", "x" * 50])
def test_valid_segments_resolve_and_reverse(room: str) -> None:
    """A room that is a valid segment resolves to the view, and reverse() builds its URL."""
    match = resolve(f"/rooms/{room}/")
    assert match.kwargs == {"room": room}
    assert reverse("chat:room", kwargs={"room": room}) == f"/rooms/{room}/"


@pytest.mark.parametrize("room", ["my_room", "-lead", "trail-", "x" * 51, "a.b", "%C3%A9"])
def test_invalid_segments_are_404_not_500(room: str) -> None:
    """What <slug:...> would accept but a channel refuses is no URL at all (a 404)."""
    with pytest.raises(Resolver404):
        resolve(f"/rooms/{room}/")
    with pytest.raises(NoReverseMatch):
        reverse("chat:room", kwargs={"room": room})


def test_the_demo_answers_404_for_an_underscore_room(client) -> None:
    """The demo's room page with an '_' is a 404, not a server error."""
    assert client.get("/rooms/my_room/").status_code == 404
