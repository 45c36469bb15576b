"""Tests for appsync_events.paths: channel grammar, wildcards, containment and group names."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from appsync_events.exceptions import InvalidChannelError, ValidationError
from appsync_events.paths import (
    WILDCARD,
    Channel,
    channel_matches,
    group_name,
    normalize_channel,
    parse_channel,
    pattern_contains,
    specificity,
)

SEG50 = "a" * 50
SEG51 = "a" * 51
GROUP_RE = re.compile(r"^[A-Za-z0-9._-]+\Z")

# -- grammar ---------------------------------------------------------------------------

VALID = [
    ("default", "/default"),
    ("/default", "/default"),
    ("default/x", "/default/x"),
    ("/default/x", "/default/x"),
    ("/default/x/", "/default/x"),
    ("default/x/", "/default/x"),
    ("/a/b/c/d/e", "/a/b/c/d/e"),
    (f"/{SEG50}", f"/{SEG50}"),
    (f"/ns/{SEG50}/{SEG50}", f"/ns/{SEG50}/{SEG50}"),
    ("/a-b/c-d-e", "/a-b/c-d-e"),
    ("/A1/b2/C3", "/A1/b2/C3"),
    ("/0/9", "/0/9"),
    ("/x", "/x"),
]


@pytest.mark.parametrize(("path", "expected"), VALID)
def test_valid_paths_normalise(path: str, expected: str) -> None:
    """Valid paths are accepted and normalised to one leading slash and no trailing one."""
    assert normalize_channel(path) == expected
    assert parse_channel(path).path == expected


INVALID = [
    ("", "empty"),
    ("/", "empty"),
    ("//", "empty"),
    ("/default//x", "segment 2 is empty"),
    ("//default/x", "segment 1 is empty"),
    ("/default/x//", "segment 3 is empty"),
    ("/a/b/c/d/e/f", "6 segments"),
    (f"/ns/{SEG51}", "51 characters"),
    (f"/{SEG51}", "51 characters"),
    ("/default/a_b", "may only use letters"),
    ("/default/a.b", "may only use letters"),
    ("/default/-ab", "must start and end"),
    ("/default/ab-", "must start and end"),
    ("/default/-", "must start and end"),
    ("/default/a b", "may only use letters"),
    ("/default/é", "may only use letters"),
    ("/default/abc\n", "may only use letters"),
    ("/default/\n", "may only use letters"),
    (" /default/x", "may only use letters"),
]


@pytest.mark.parametrize(("path", "reason"), INVALID)
def test_invalid_paths_are_refused_with_the_rule(path: str, reason: str) -> None:
    """Each grammar violation raises InvalidChannelError naming the broken rule."""
    with pytest.raises(InvalidChannelError, match=re.escape(reason)) as info:
        parse_channel(path, allow_wildcard=True)
    assert info.value.channel == path


WILDCARD_CASES = [
    ("/chat/*", "/chat/*", True),
    ("chat/*", "/chat/*", True),
    ("/chat/*/", "/chat/*", True),
    ("/a/b/c/d/*", "/a/b/c/d/*", True),
    ("/a/b/c/d/e/*", "6 segments", False),
    ("/*", "needs a namespace", False),
    ("*", "needs a namespace", False),
    ("/chat/*/x", "whole last segment", False),
    ("/chat/ab*", "whole last segment", False),
    ("/chat/*ab", "whole last segment", False),
    ("/chat/*/*", "whole last segment", False),
    ("/*/x", "whole last segment", False),
]


@pytest.mark.parametrize(("path", "expected", "ok"), WILDCARD_CASES)
def test_wildcards_when_subscribing(path: str, expected: str, ok: bool) -> None:
    """A trailing ``*`` counts as a segment and is only valid whole, last, after a namespace."""
    if ok:
        assert normalize_channel(path, allow_wildcard=True) == expected
    else:
        with pytest.raises(InvalidChannelError, match=re.escape(expected)):
            parse_channel(path, allow_wildcard=True)


@pytest.mark.parametrize("path", ["/chat/*", "/a/b/c/d/*", "chat/*/"])
def test_wildcard_refused_when_publishing(path: str) -> None:
    """Publishing (the default) refuses a wildcard channel with a clear reason."""
    with pytest.raises(InvalidChannelError, match="only be used to subscribe"):
        parse_channel(path)


@pytest.mark.parametrize("value", [None, 3, b"/default/x", ["/default"], Channel(("a",))])
def test_non_str_input_is_refused(value: object) -> None:
    """parse_channel accepts only str and names the wrong type."""
    with pytest.raises(InvalidChannelError, match=type(value).__name__):
        parse_channel(value)  # type: ignore[arg-type]


def test_long_segment_message_is_truncated() -> None:
    """A too-long segment is quoted by its first 20 characters, not in full."""
    with pytest.raises(InvalidChannelError) as info:
        parse_channel("/ns/" + "b" * 200)
    assert "'" + "b" * 20 + "'..." in info.value.message


def test_invalid_channel_error_is_a_value_error() -> None:
    """InvalidChannelError can be caught as ValidationError and ValueError."""
    with pytest.raises(ValueError, match="Invalid channel"):
        parse_channel("/a//b")
    assert issubclass(InvalidChannelError, ValidationError)


def test_channel_object() -> None:
    """Channel exposes namespace, path, str() and matches()."""
    chan = parse_channel("/chat/rooms/*", allow_wildcard=True)
    assert chan == Channel(("chat", "rooms"), wildcard=True)
    assert chan.namespace == "chat"
    assert chan.path == str(chan) == "/chat/rooms/*"
    assert chan.matches("/chat/rooms/7")
    assert not chan.matches("/chat/rooms")
    assert chan.matches("/chat/rooms", include_parent=True)
    assert WILDCARD == "*"
    with pytest.raises(AttributeError):
        chan.wildcard = False  # type: ignore[misc]


def test_same_channel_in_every_spelling() -> None:
    """``default/x``, ``/default/x`` and ``/default/x/`` parse to one equal Channel."""
    assert parse_channel("default/x") == parse_channel("/default/x") == parse_channel("/default/x/")


# -- matching --------------------------------------------------------------------------

MATCHES = [
    ("/a/*", "/a/b", False, True),
    ("/a/*", "/a/b/c/d/e", False, True),
    ("/a/*", "/a", False, False),
    ("/a/*", "/a", True, True),
    ("/a/*", "/ab/c", False, False),
    ("/a/*", "/b/a", False, False),
    ("/a/b/*", "/a/b/c", False, True),
    ("/a/b/*", "/a/c/b", False, False),
    ("/a/b", "/a/b", False, True),
    ("a/b/", "/a/b", False, True),
    ("/a/b", "/a/b/c", False, False),
    ("/a/b", "/a", True, False),
    ("/A/b", "/a/b", False, False),
    ("/a/*", "/A/b", False, False),
]


@pytest.mark.parametrize(("pattern", "channel", "parent", "expected"), MATCHES)
def test_channel_matches(pattern: str, channel: str, parent: bool, expected: bool) -> None:
    """Wildcards match any depth below their prefix; exact patterns match only themselves."""
    assert channel_matches(pattern, channel, include_parent=parent) is expected


def test_channel_matches_accepts_channel_objects() -> None:
    """channel_matches takes parsed Channel objects as well as strings."""
    pattern = parse_channel("/a/*", allow_wildcard=True)
    assert channel_matches(pattern, parse_channel("/a/b"))


def test_channel_matches_refuses_wildcard_channel() -> None:
    """The published-to channel may not itself be a wildcard."""
    with pytest.raises(InvalidChannelError):
        channel_matches("/a/*", "/a/*")


CONTAINS = [
    ("/chat/*", "/chat/rooms/*", True),
    ("/chat/rooms/*", "/chat/*", False),
    ("/chat/*", "/chat/rooms/7", True),
    ("/chat/*", "/chat/*", True),
    ("/chat/*", "/chat", False),
    ("/chat/*", "/chats/x", False),
    ("/chat/*", "/other/*", False),
    ("/chat/rooms/7", "/chat/rooms/7", True),
    ("/chat/rooms/7", "chat/rooms/7/", True),
    ("/chat/rooms/7", "/chat/rooms/*", False),
    ("/chat/rooms/7", "/chat/rooms/8", False),
    ("/chat/rooms", "/chat/rooms/7", False),
]


@pytest.mark.parametrize(("outer", "inner", "expected"), CONTAINS)
def test_pattern_contains(outer: str, inner: str, expected: bool) -> None:
    """Containment holds exactly when every channel inner matches is matched by outer."""
    assert pattern_contains(outer, inner) is expected


def test_specificity_orders_patterns() -> None:
    """Deeper patterns sort above shallower ones, and exact above wildcard at equal depth."""
    patterns = ["/a/*", "/a/b/c", "/a", "/a/b/*", "/a/b"]
    ordered = sorted(patterns, key=specificity, reverse=True)
    assert ordered == ["/a/b/c", "/a/b", "/a/b/*", "/a", "/a/*"]
    assert specificity("/a/b") > specificity("/a/b/*")
    assert specificity(parse_channel("/x/y/z")) == (3, 1)


# -- group names -----------------------------------------------------------------------

GROUPS = [
    ("/chat/a", "appsync.chat.a"),
    ("chat/a/", "appsync.chat.a"),
    ("/chat/a/*", "appsync.chat.a._"),
    ("/Chat/a", "appsync.Chat.a"),
    ("/default", "appsync.default"),
]


@pytest.mark.parametrize(("path", "expected"), GROUPS)
def test_short_group_names_spell_the_path(path: str, expected: str) -> None:
    """A short path's group name spells it with dots, the wildcard as ``_``."""
    assert group_name(path) == expected


def test_group_name_custom_prefix() -> None:
    """The prefix is the first part of the group name."""
    assert group_name("/chat/a", prefix="my-app.v1_x") == "my-app.v1_x.chat.a"


@pytest.mark.parametrize("prefix", ["", "a b", "a/b", "x" * 41, "é", "ok\n"])
def test_group_name_refuses_bad_prefix(prefix: str) -> None:
    """An invalid prefix raises ValueError saying what characters are allowed."""
    with pytest.raises(ValueError, match="Invalid group prefix"):
        group_name("/chat/a", prefix=prefix)


def test_group_name_refuses_invalid_path() -> None:
    """Group names are only made for valid paths."""
    with pytest.raises(InvalidChannelError):
        group_name("/chat//a")


def test_case_variants_get_distinct_groups() -> None:
    """Channels are case-sensitive, so /Chat/a and /chat/a map to different groups."""
    assert group_name("/Chat/a") != group_name("/chat/a")
    long_upper = "/" + "/".join(["A" * 50] * 5)
    long_lower = "/" + "/".join(["a" * 50] * 5)
    assert group_name(long_upper) != group_name(long_lower)


def test_long_paths_sharing_a_head_get_distinct_groups() -> None:
    """Two long paths that share their first 100 characters still map to different groups."""
    head = "/" + "/".join(["x" * 50, "y" * 49])  # 101 characters
    first, second = f"{head}/a", f"{head}/b"
    assert first[:100] == second[:100]
    names = {group_name(first), group_name(second), group_name(f"{head}/*")}
    assert len(names) == 3
    for name in names:
        assert len(name) < 100
        assert GROUP_RE.match(name)


def test_longest_paths_stay_under_the_limit() -> None:
    """A 5x50 path and a 4x50 wildcard give names under 100 characters with the hash form."""
    exact = "/" + "/".join(["a" * 50] * 5)
    wild = "/" + "/".join(["a" * 50] * 4) + "/*"
    for path in (exact, wild):
        name = group_name(path, prefix="p" * 40)
        assert len(name) == 99
        assert GROUP_RE.match(name)
        assert re.search(r"\._[0-9a-f]{40}\Z", name)
    assert group_name(exact) != group_name(wild)


def test_group_name_at_the_length_boundary() -> None:
    """A spelled name of exactly 99 characters is kept; one more character switches to a hash."""
    # "appsync." is 8 characters; 99 - 8 = 91 = 50 + 1 + 40.
    spelled = "/" + "a" * 50 + "/" + "b" * 40
    assert group_name(spelled) == "appsync." + "a" * 50 + "." + "b" * 40
    hashed = group_name(spelled + "b")
    assert len(hashed) == 99
    assert hashed.startswith("appsync." + "a" * 49)
    assert "._" in hashed


# Strategies: valid segments, and paths or patterns built from them.
_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
segments = st.one_of(
    st.text(_ALNUM, min_size=1, max_size=1),
    st.builds(
        lambda a, mid, b: a + mid + b,
        st.text(_ALNUM, min_size=1, max_size=1),
        st.text(_ALNUM + "-", max_size=48),
        st.text(_ALNUM, min_size=1, max_size=1),
    ),
)


@st.composite
def patterns(draw: st.DrawFn) -> str:
    """Draw a valid channel path or subscription pattern, in any slash spelling."""
    wildcard = draw(st.booleans())
    count = draw(st.integers(1, 4 if wildcard else 5))
    parts = draw(st.lists(segments, min_size=count, max_size=count))
    if wildcard:
        parts.append("*")
    lead = draw(st.sampled_from(["", "/"]))
    trail = draw(st.sampled_from(["", "/"]))
    return lead + "/".join(parts) + trail


@given(st.lists(patterns(), min_size=2, max_size=6))
def test_group_names_property(paths: list[str]) -> None:
    """Group names are valid Channels names under 100 characters and injective."""
    by_name: dict[str, str] = {}
    for path in paths:
        name = group_name(path)
        assert GROUP_RE.match(name)
        assert len(name) < 100
        normalised = normalize_channel(path, allow_wildcard=True)
        assert by_name.setdefault(name, normalised) == normalised


@given(patterns())
def test_normalisation_is_idempotent(path: str) -> None:
    """Normalising a normalised path changes nothing, and slash variants agree."""
    once = normalize_channel(path, allow_wildcard=True)
    assert normalize_channel(once, allow_wildcard=True) == once
    assert normalize_channel(once.strip("/"), allow_wildcard=True) == once
    assert group_name(once) == group_name(path) == group_name(once + "/")


@given(
    st.lists(st.text(_ALNUM, min_size=45, max_size=50), min_size=3, max_size=3),
    segments,
    segments,
    st.booleans(),
)
def test_group_names_distinct_past_a_shared_head(
    head: list[str], tail_a: str, tail_b: str, wildcard: bool
) -> None:
    """Long paths that differ only after a 140+ character head still get distinct names."""
    first = "/" + "/".join([*head, tail_a])
    second = "/" + "/".join([*head, tail_b]) + ("/*" if wildcard else "")
    assume(first != second)
    assert group_name(first) != group_name(second)


def test_a_huge_invalid_path_is_quoted_short() -> None:
    """A megabyte of path must not become a megabyte of message and log line."""
    path = "/chat/" + "x!" * 500_000
    with pytest.raises(InvalidChannelError) as info:
        parse_channel(path)
    text = str(info.value)
    assert len(text) < 600
    assert f"({len(path)} characters)" in text
    assert info.value.channel == path  # the full value stays available to code
