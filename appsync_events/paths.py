"""Channel paths: grammar, normalisation, wildcard matching and group names.

The grammar (AppSync Events): a path is 1 to 5 segments separated by ``/``; each
segment is 1 to 50 characters of ``[A-Za-z0-9-]`` that starts and ends with a letter or
digit. A leading and a trailing ``/`` are optional and do not change the channel:
``default/x``, ``/default/x`` and ``/default/x/`` are one channel, written ``/default/x``
once normalised. The first segment is the namespace.

Subscriptions (never publishes) may end in a ``*`` segment: ``/chat/*`` matches every
channel *below* ``/chat`` at any depth (``/chat/a`` and ``/chat/a/b/c``). The wildcard
counts as one of the five segments. Choices where the service's behaviour is not
documented (all configurable in the emulator):

* ``/chat/*`` does not match ``/chat`` itself (``include_parent=False``);
* ``*`` is accepted only as a whole, final segment, and never alone (``/*``).

No I/O and no Django here: the client, the emulator and the Django layer share it. The
splitting of a path and pattern containment live in :mod:`appsync_events.lambda_authorizer`
(standard library only, deployed alone to AWS Lambda) and are used from there, so the
authorizer and Django apply one rule.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from .exceptions import InvalidChannelError, short_repr
from .lambda_authorizer import segments_contain, split_path
from .limits import CHANNEL_MAX_SEGMENTS, SEGMENT_MAX_LENGTH

__all__ = [
    "SEGMENT_PATTERN",
    "SEGMENT_RE",
    "WILDCARD",
    "Channel",
    "channel_matches",
    "group_name",
    "normalize_channel",
    "parse_channel",
    "pattern_contains",
    "specificity",
]

WILDCARD: Final = "*"
#: One concrete segment, unanchored: 1-50 of ``[A-Za-z0-9-]``, starting and ending with
#: a letter or digit (the URL converter of :mod:`appsync_events.converters` uses it).
SEGMENT_PATTERN: Final = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,48}[A-Za-z0-9])?"
# ``\Z``, not ``$``: ``$`` also matches before a trailing newline.
SEGMENT_RE: Final = re.compile(rf"^{SEGMENT_PATTERN}\Z")
_GROUP_PREFIX_RE: Final = re.compile(r"^[A-Za-z0-9._-]{1,40}\Z")
#: Channels rejects group names of 100 characters or more.
_MAX_GROUP_NAME: Final = 99
_DIGEST_HEX: Final = 40


@dataclass(frozen=True, slots=True)
class Channel:
    """A validated channel path or subscription pattern.

    Attributes:
        segments: the concrete segments, namespace first (no ``*``).
        wildcard: whether the pattern ends in ``/*``.
    """

    segments: tuple[str, ...]
    wildcard: bool = False

    @property
    def namespace(self) -> str:
        """The first segment: the channel namespace."""
        return self.segments[0]

    @property
    def path(self) -> str:
        """The normalised path: a leading ``/``, no trailing ``/``."""
        text = "/" + "/".join(self.segments)
        return text + "/*" if self.wildcard else text

    def __str__(self) -> str:
        return self.path

    def matches(self, channel: Channel | str, *, include_parent: bool = False) -> bool:
        """Tell whether an event published to ``channel`` reaches this pattern."""
        return channel_matches(self, channel, include_parent=include_parent)


def _fail(path: object, reason: str) -> InvalidChannelError:
    return InvalidChannelError(f"Invalid channel {short_repr(path)}: {reason}", channel=str(path))


def parse_channel(path: str, *, allow_wildcard: bool = False) -> Channel:
    """Validate ``path`` and return it as a :class:`Channel`.

    Args:
        path: the channel, with or without the leading and trailing ``/``.
        allow_wildcard: accept a trailing ``/*`` (subscriptions only).

    Raises:
        InvalidChannelError: naming the rule the path breaks.
    """
    if not isinstance(path, str):
        raise _fail(path, f"a channel must be a str, not {type(path).__name__}")
    return _parse(path, allow_wildcard)


@lru_cache(maxsize=4096)
def _parse(path: str, allow_wildcard: bool) -> Channel:
    parts, wildcard = split_path(path)
    if not parts and not wildcard:
        raise _fail(path, "it is empty; write at least a namespace, e.g. '/default/room'")
    if wildcard:
        if not allow_wildcard:
            raise _fail(path, "a wildcard '*' may only be used to subscribe, not to publish")
        if not parts:
            raise _fail(path, "a wildcard needs a namespace before it, e.g. '/default/*'")
    total = len(parts) + (1 if wildcard else 0)
    if total > CHANNEL_MAX_SEGMENTS:
        raise _fail(path, f"it has {total} segments; at most {CHANNEL_MAX_SEGMENTS} are allowed")
    for index, segment in enumerate(parts):
        if segment == "":
            raise _fail(path, f"segment {index + 1} is empty ('//')")
        if WILDCARD in segment:
            raise _fail(path, "'*' is only allowed as the whole last segment, e.g. '/chat/*'")
        if len(segment) > SEGMENT_MAX_LENGTH:
            raise _fail(
                path,
                f"segment {segment[:20]!r}... has {len(segment)} characters; "
                f"at most {SEGMENT_MAX_LENGTH} are allowed",
            )
        if not SEGMENT_RE.match(segment):
            raise _fail(
                path,
                f"segment {segment!r} may only use letters, digits and '-', "
                "and must start and end with a letter or digit",
            )
    return Channel(tuple(parts), wildcard)


def normalize_channel(path: str, *, allow_wildcard: bool = False) -> str:
    """Validate ``path`` and return its normalised text (``default/x`` → ``/default/x``)."""
    return parse_channel(path, allow_wildcard=allow_wildcard).path


def _as_channel(value: Channel | str, *, allow_wildcard: bool) -> Channel:
    if isinstance(value, Channel):
        return value
    return parse_channel(value, allow_wildcard=allow_wildcard)


def channel_matches(
    pattern: Channel | str, channel: Channel | str, *, include_parent: bool = False
) -> bool:
    """Tell whether an event published to ``channel`` reaches subscription ``pattern``.

    An exact pattern matches only itself. ``/a/*`` matches every channel below ``/a``
    at any depth; with ``include_parent=True`` it matches ``/a`` too.
    """
    pat = _as_channel(pattern, allow_wildcard=True)
    chan = _as_channel(channel, allow_wildcard=False)
    if not pat.wildcard:
        return pat.segments == chan.segments
    prefix = pat.segments
    if chan.segments[: len(prefix)] != prefix:
        return False
    return len(chan.segments) > len(prefix) or include_parent


def pattern_contains(outer: Channel | str, inner: Channel | str) -> bool:
    """Tell whether every channel ``inner`` matches is also matched by ``outer``.

    ``/chat/*`` contains ``/chat/rooms/*`` and ``/chat/rooms/7``; ``/chat/rooms/7``
    contains only itself; ``/chat/rooms/*`` does not contain ``/chat/*``.
    """
    out = _as_channel(outer, allow_wildcard=True)
    inn = _as_channel(inner, allow_wildcard=True)
    # The one implementation, shared with the stdlib-only Lambda authorizer, so Django
    # and the authorizer decide alike.
    return segments_contain(out.segments, out.wildcard, inn.segments, inn.wildcard)


def specificity(pattern: Channel | str) -> tuple[int, int]:
    """A sort key: larger is more specific (exact beats wildcard, deeper beats shallower)."""
    pat = _as_channel(pattern, allow_wildcard=True)
    return (len(pat.segments), 0 if pat.wildcard else 1)


def group_name(path: Channel | str, *, prefix: str = "appsync") -> str:
    """Map a channel path or pattern to a valid Channels group name.

    The name uses only ``[A-Za-z0-9._-]`` and is shorter than 100 characters. Distinct
    normalised paths never share a name: short names spell the path (``/chat/a/*`` →
    ``appsync.chat.a._``); a name that would be too long keeps a readable head and
    ends in ``._`` plus 160 bits of SHA-256 of the path, a form no spelled name takes
    (``_`` appears in a spelled name only as the whole, last, wildcard segment).

    Raises:
        ValueError: when ``prefix`` is not 1 to 40 characters of ``[A-Za-z0-9._-]``.
    """
    if not _GROUP_PREFIX_RE.match(prefix):
        raise ValueError(
            f"Invalid group prefix {prefix!r}: use 1 to 40 characters of letters, "
            "digits, '.', '_' and '-'."
        )
    chan = _as_channel(path, allow_wildcard=True)
    parts = [prefix, *chan.segments]
    if chan.wildcard:
        parts.append("_")
    name = ".".join(parts)
    if len(name) <= _MAX_GROUP_NAME:
        return name
    digest = hashlib.sha256(chan.path.encode()).hexdigest()[:_DIGEST_HEX]
    head = ".".join([prefix, *chan.segments])[: _MAX_GROUP_NAME - _DIGEST_HEX - 2]
    return f"{head}._{digest}"
