"""The browser consumer's authorization against channels meant to escape the grants.

``GRANTS = [{"SUBSCRIBE": ["/chat/rooms/*", "/users/{user.pk}/*"]}]``: a signed-in user
tries to subscribe to, and publish on, channels wider than the grant, other users'
channels, and the same channels dressed up (``..``, ``//``, ``%2F``, case changes,
unicode look-alikes, NUL and control characters, spaces, overlong segments, six
segments, malformed wildcards, non-string channels). Every attempt is refused with
``forbidden`` or ``invalid_channel``; the listener is asked to follow only what the
grant contains (the controls), and nothing is ever published.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser, User

from appsync_events.backends import locmem
from appsync_events.paths import pattern_contains
from tests.test_consumers import api_settings, connect, grant, request, serving
from tests.test_forwarding_follows import FakeListener

from .conftest import Scenario, scale

GRANTS = {"SUBSCRIBE": ["/chat/rooms/*", "/users/{user.pk}/*"]}
REFUSALS = frozenset({"forbidden", "invalid_channel"})


def escapes(pk: int) -> list[Any]:
    """Channels the user ``pk`` must not reach, by subscribing or publishing."""
    other = pk + 1
    return [
        # Wider than the grant, or next to it.
        "/chat/*",
        "/chat/rooms",
        "/chat",
        "/chat/lobby",
        "/users/*",
        f"/users/{pk}",
        "/default/x",
        # Other users.
        f"/users/{other}/inbox",
        f"/users/{other}/*",
        f"/users/{pk}0/*",
        f"/users/0{pk}/inbox",
        f"/users/{pk}x/inbox",
        f"/users/-{pk}/inbox",
        "/users/{user.pk}/inbox",
        "/users/*/inbox",
        # Path tricks.
        "/chat/rooms/../admin",
        f"/users/{other}/../{pk}/x",
        "/chat/rooms/./1",
        "/chat//rooms/1",
        "//users/1/x",
        "/chat/rooms%2F1",
        f"/users/{pk}%2F..%2F{other}/x",
        "/chat\\rooms/1",
        "/chat/rooms/1?x=1",
        "/chat/rooms/1#x",
        # Case.
        "/Chat/rooms/1",
        "/CHAT/ROOMS/1",
        "/chat/Rooms/1",
        "/chat/ROOMS/*",
        f"/Users/{pk}/inbox",
        # Unicode look-alikes and invisible characters.
        "/chat/r\u043e\u043ems/1",
        "/\u0441hat/rooms/1",
        "/chat/rooms/1\u200b",
        "/chat/rooms/\uff11",
        f"/users/{pk}\u200b/inbox",
        f"/users/\uff10{pk}/inbox",
        # NUL, control characters and spaces.
        "/chat/rooms/1\x00",
        "/chat/rooms\x00/1",
        f"/users/{pk}\x00/inbox",
        "/chat/rooms/1\n",
        "/chat/rooms/1\t",
        "/chat/rooms/1 ",
        " /chat/rooms/1",
        "/chat/rooms /1",
        f"/users/{pk} /inbox",
        # Overlong segments, too many segments.
        "/chat/rooms/" + "a" * 51,
        f"/users/{pk}/" + "x" * 51,
        "/chat/rooms/" + "a" * 10_000,
        "/chat/rooms/1/2/3/4",
        f"/users/{pk}/a/b/c/d",
        # Malformed wildcards.
        "/chat/rooms/*/*",
        "/chat/rooms/**",
        "/chat/rooms/*x",
        "*",
        "/*",
        "/chat/rooms/%2A",
        # Not a channel at all.
        "",
        "/",
        ["/chat/rooms/1"],
        {"channel": "/chat/rooms/1"},
        7,
        None,
    ]


def allowed(pk: int) -> list[str]:
    """Controls: channels the grant contains (subscribing succeeds)."""
    return ["/chat/rooms/7", "/chat/rooms/*", f"/users/{pk}/inbox", f"/users/{pk}/*"]


async def test_no_channel_escapes_the_grants(settings: Any, figures: Scenario) -> None:
    """Every escape attempt, subscribe or publish, is refused (forbidden or
    invalid_channel); the controls are followed; the listener follows nothing outside
    the grant; an anonymous user gets nothing; nothing is published."""
    figures.title = "Consumer authorization battery"
    figures.family = "security"
    api_settings(settings)
    settings.APPSYNC_EVENTS = {
        "default": {
            **settings.APPSYNC_EVENTS["default"],
            "NAMESPACES": {"default": {}, "chat": {}, "users": {}},
        }
    }
    grant(settings, GRANTS)
    locmem.clear()
    users = scale(1, 10)
    refusals: dict[str, int] = {}
    fake = FakeListener()
    async with serving(fake):
        for pk in range(7, 7 + users):
            user = User(pk=pk, username=f"user{pk}")
            earlier = len(fake.follows)
            ws = await connect(user, rate_limit=100_000, max_subscriptions=1_000)
            anon = await connect(AnonymousUser(), rate_limit=100_000)
            try:
                for number, channel in enumerate(escapes(pk)):
                    for action, extra in (("subscribe", {}), ("publish", {"events": [{"x": 1}]})):
                        figures.inputs_tried += 1
                        reply = await request(
                            ws, action=action, channel=channel, id=f"{action}{number}", **extra
                        )
                        assert reply["type"] == "error", (action, channel, reply)
                        assert reply["code"] in REFUSALS, (action, channel, reply)
                        assert reply["id"] == f"{action}{number}"
                        refusals[reply["code"]] = refusals.get(reply["code"], 0) + 1
                        figures.inputs_handled += 1
                for channel in allowed(pk):
                    reply = await request(anon, action="subscribe", channel=channel)
                    assert reply["code"] == "forbidden", (channel, reply)
                    figures.inputs_tried += 1
                    figures.inputs_handled += 1
                    reply = await request(ws, action="subscribe", channel=channel)
                    assert reply["type"] == "subscribed", (channel, reply)
            finally:
                await ws.disconnect()
                await anon.disconnect()
            granted = ["/chat/rooms/*", f"/users/{pk}/*"]
            outside = [
                p
                for p in fake.follows[earlier:]
                if not any(pattern_contains(g, p) for g in granted)
            ]
            assert not outside, outside
            await fake.wait_for(lambda pk=pk: f"/users/{pk}/*" in fake.unfollows)
    followed = set(fake.follows)
    assert followed == {c for pk in range(7, 7 + users) for c in allowed(pk)}
    locmem.assert_nothing_published()
    figures.details["escape channels"] = len(escapes(7))
    figures.details["users"] = users
    figures.details["refusals by code"] = refusals
    figures.details["followed (the controls)"] = len(followed)
