"""GRANTS: parsing, placeholder binding, who a grant covers, containment (deny by default)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser, Group, User

from appsync_events.config import APIConfig
from appsync_events.exceptions import ConfigurationError
from appsync_events.grants import (
    Grant,
    applies_to,
    bind_pattern,
    granted_patterns,
    is_granted,
    parse_grant_pattern,
    parse_who,
)

BASE = {"HTTP_URL": "http://127.0.0.1:8765/event", "AUTH": {"API_KEY": "da2-grants0000000000"}}


def config(grants: Any) -> APIConfig:
    return APIConfig.from_mapping("default", {**BASE, "GRANTS": grants})


def user(**attrs: Any) -> Any:
    """A signed-in user-like object with the given attributes."""
    return SimpleNamespace(**{"is_authenticated": True, "is_active": True, **attrs})


@pytest.mark.parametrize(
    "value",
    [
        "authenticated",
        "anonymous",
        "everyone",
        "staff",
        "superuser",
        "perm:chat.add_message",
        "group:moderators",
        "check:tests.test_grants.is_even",
    ],
)
def test_who_values_accepted(value: str) -> None:
    """Every documented WHO form is accepted as is."""
    assert parse_who(value) == value


@pytest.mark.parametrize("value", ["users", "perm:nodot", "check:notdotted", "group: ", 3, None])
def test_bad_who_values_are_refused(value: Any) -> None:
    """Anything else is refused, naming the forms that work."""
    with pytest.raises(ValueError, match="'authenticated'"):
        parse_who(value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/chat/*", "/chat/*"),
        ("chat/rooms/", "/chat/rooms"),
        ("/users/{user.pk}/*", "/users/{user.pk}/*"),
        ("/teams/{user.profile.team_id}/news", "/teams/{user.profile.team_id}/news"),
    ],
)
def test_grant_patterns_normalised(text: str, expected: str) -> None:
    """Patterns are channel paths (wildcards allowed) with whole-segment placeholders."""
    assert parse_grant_pattern(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("/{user.pk}/x", "namespace"),
        ("/users/u{user.pk}", "not a placeholder"),
        ("/users/{request.ip}", "not a placeholder"),
        ("/users/{user.}", "not a placeholder"),
        ("/a/b/c/d/e/f", "segments"),
        ("/bad_ns/x", "letters, digits"),
        ("/chat/*/x", "whole last segment"),
        (7, "string"),
    ],
)
def test_bad_grant_patterns_refused(text: Any, reason: str) -> None:
    """A pattern breaking the grammar is refused with the reason."""
    with pytest.raises(ValueError, match=reason):
        parse_grant_pattern(text)


def test_bind_pattern_uses_the_users_values() -> None:
    """Placeholders take the user's values; missing, odd or invalid values bind nothing."""
    member = user(pk=42, username="ada", profile=SimpleNamespace(team_id=7))
    assert bind_pattern("/users/{user.pk}/*", member) == "/users/42/*"
    assert bind_pattern("/teams/{user.profile.team_id}/x", member) == "/teams/7/x"
    assert bind_pattern("/chat/*", member) == "/chat/*"
    assert bind_pattern("/users/{user.email}/*", member) is None  # missing
    assert bind_pattern("/users/{user.username}/*", user(username="a b")) is None  # bad segment
    assert bind_pattern("/users/{user.flag}/*", user(flag=True)) is None  # not str/int
    assert bind_pattern("/users/{user._secret}/*", user(_secret="x")) is None  # private
    assert bind_pattern("/users/{user.pk}/*", AnonymousUser()) is None  # pk None


def is_even(candidate: Any) -> bool:
    return candidate.pk % 2 == 0


@pytest.mark.django_db
def test_who_covers_the_right_users() -> None:
    """Each WHO form covers exactly its users; inactive users are never covered."""
    anon = AnonymousUser()
    staff = user(pk=1, is_staff=True, is_superuser=False)
    root = user(pk=2, is_staff=True, is_superuser=True)
    inactive = user(pk=4, is_active=False, is_staff=True)
    assert [applies_to("anonymous", u) for u in (anon, staff)] == [True, False]
    assert [applies_to("authenticated", u) for u in (anon, staff, inactive)] == [
        False,
        True,
        False,
    ]
    assert [applies_to("everyone", u) for u in (anon, staff)] == [True, True]
    assert [applies_to("staff", u) for u in (staff, inactive)] == [True, False]
    assert [applies_to("superuser", u) for u in (staff, root)] == [False, True]
    perms = user(pk=3, has_perm=lambda p: p == "chat.moderate")
    assert applies_to("perm:chat.moderate", perms)
    assert not applies_to("perm:chat.delete", perms)
    assert not applies_to("perm:chat.moderate", anon)
    assert [applies_to("check:tests.test_grants.is_even", u) for u in (staff, root)] == [
        False,
        True,
    ]
    member = User.objects.create(username="mod")
    outsider = User.objects.create(username="out")
    member.groups.add(Group.objects.create(name="moderators"))
    assert applies_to("group:moderators", member)
    assert not applies_to("group:moderators", outsider)


CONTAINMENT = [
    ("/chat/*", "/chat/rooms/7", True),
    ("/chat/*", "/chat/rooms/*", True),
    ("/chat/*", "/chat/*", True),
    ("/chat/*", "/chat", False),
    ("/chat/rooms/*", "/chat/*", False),
    ("/chat/rooms/7", "/chat/rooms/7", True),
    ("/chat/rooms/7", "/chat/rooms/7/x", False),
    ("/chat/rooms/7", "/chat/rooms/*", False),
    ("/chat/*", "/news/a", False),
]


@pytest.mark.parametrize(("granted", "requested", "expected"), CONTAINMENT)
def test_requests_are_checked_by_containment(granted: str, requested: str, expected: bool) -> None:
    """A request is allowed only when a granted pattern contains it."""
    grants = (Grant(subscribe=(granted,)),)
    assert is_granted(grants, user(pk=1), "subscribe", requested) is expected


def test_operations_are_separate_and_nothing_is_granted_by_default() -> None:
    """SUBSCRIBE grants never allow a publish (and the reverse); no grants allow nothing."""
    grants = (Grant(subscribe=("/chat/*",)), Grant(publish=("/chat/rooms/*",)))
    member = user(pk=1)
    assert is_granted(grants, member, "subscribe", "/chat/x")
    assert not is_granted(grants, member, "publish", "/chat/x")
    assert is_granted(grants, member, "publish", "/chat/rooms/1")
    assert not is_granted((), member, "subscribe", "/chat/x")
    assert granted_patterns(grants, member, "publish") == ["/chat/rooms/*"]
    assert granted_patterns(grants, AnonymousUser(), "subscribe") == []


def test_grants_setting_is_parsed() -> None:
    """GRANTS becomes Grant objects; WHO defaults to authenticated."""
    parsed = config(
        [
            {"SUBSCRIBE": ["/chat/*"], "PUBLISH": ["chat/rooms/*"]},
            {"WHO": "anonymous", "SUBSCRIBE": ["/chat/lobby"]},
        ]
    ).grants
    assert parsed == (
        Grant("authenticated", ("/chat/*",), ("/chat/rooms/*",)),
        Grant("anonymous", ("/chat/lobby",), ()),
    )
    assert config([]).grants == ()


@pytest.mark.parametrize(
    ("grants", "text"),
    [
        ({"SUBSCRIBE": []}, "must be a list of grants"),
        (["/chat/*"], "item 0 must be a dict"),
        ([{"WHO": "anonymous"}], "grants nothing"),
        ([{"SUBSCRIBE": ["/chat/*"], "EXTRA": 1}], "unknown key(s) EXTRA"),
        ([{"SUBSCRIBE": "/chat/*"}], "must be a list of channel patterns"),
        ([{"WHO": "nobody", "SUBSCRIBE": ["/chat/*"]}], "WHO must be one of"),
        ([{"SUBSCRIBE": ["/chat/**"]}], "not a valid channel pattern"),
    ],
)
def test_bad_grants_setting_is_e012(grants: Any, text: str) -> None:
    """A malformed GRANTS setting is one clear E012 error naming the item."""
    with pytest.raises(ConfigurationError) as info:
        config(grants)
    assert info.value.check_id == "appsync_events.E012"
    assert str(info.value).startswith("APPSYNC_EVENTS['default']['GRANTS']: ")
    assert text in str(info.value)
