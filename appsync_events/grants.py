"""Grants: which browser users may subscribe or publish to which channels.

Deny by default: a browser (through :class:`~appsync_events.consumers.AppSyncEventsConsumer`,
or a direct-mode token) may do only what ``APPSYNC_EVENTS[alias]["GRANTS"]`` grants:

.. code-block:: python

    "GRANTS": [
        # signed-in users (WHO defaults to "authenticated")
        {"SUBSCRIBE": ["/chat/*", "/users/{user.pk}/*"], "PUBLISH": ["/chat/rooms/*"]},
        {"WHO": "anonymous", "SUBSCRIBE": ["/news/*"]},
        {"WHO": "perm:chat.moderate_room", "PUBLISH": ["/chat/*"]},
    ]

``WHO`` is one of:

========================  ============================================================
``"authenticated"``       signed-in users (the default)
``"anonymous"``           users who are not signed in
``"everyone"``            both
``"staff"``               users with ``is_staff``
``"superuser"``           users with ``is_superuser``
``"perm:app.codename"``   users with that permission (``user.has_perm``)
``"group:name"``          members of that group
``"check:dotted.path"``   users for whom that function (``check(user) -> bool``) is true
========================  ============================================================

Patterns are channel paths, a trailing ``/*`` covering everything below (as AppSync
wildcards do). A segment may be a placeholder bound to the user: ``{user.pk}``,
``{user.username}``, ``{user.profile.team_id}``; a value that is missing or is not a valid
channel segment makes that pattern grant nothing to that user.

A request is allowed when a granted pattern **contains** it
(:func:`~appsync_events.paths.pattern_contains`): ``/chat/*`` allows subscribing to
``/chat/rooms/7`` and to ``/chat/rooms/*``; a request for ``/chat/*`` needs a grant of
``/chat/*`` itself. No Django import here: users are read through the attributes every
Django user has (``is_authenticated``, ``is_staff``, ``has_perm()``, ``groups``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final, Literal, TypeAlias

from ._loading import import_string
from .exceptions import InvalidChannelError
from .paths import SEGMENT_RE, parse_channel, pattern_contains

__all__ = [
    "WHO_KINDS",
    "Grant",
    "GrantOperation",
    "applies_to",
    "bind_pattern",
    "granted_patterns",
    "is_granted",
    "parse_grant_pattern",
    "parse_who",
]

GrantOperation: TypeAlias = Literal["subscribe", "publish"]

#: The plain ``WHO`` values; the others are ``perm:``, ``group:`` and ``check:`` prefixed.
WHO_KINDS: Final = ("authenticated", "anonymous", "everyone", "staff", "superuser")
_PREFIXES: Final = ("perm:", "group:", "check:")
_PLACEHOLDER_RE: Final = re.compile(r"^\{user(?:\.[A-Za-z_][A-Za-z0-9_]*)+\}\Z")
_PERM_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z0-9_]+\Z")
_DOTTED_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+\Z")
#: What a placeholder is replaced by to check a pattern's grammar.
_SAMPLE: Final = "x0"


@dataclass(frozen=True, slots=True)
class Grant:
    """One entry of ``GRANTS``: who, and the patterns they may subscribe and publish to.

    Attributes:
        who: see the module documentation.
        subscribe: channel patterns, possibly with ``{user.<attr>}`` segments.
        publish: likewise, for publishing.
    """

    who: str = "authenticated"
    subscribe: tuple[str, ...] = ()
    publish: tuple[str, ...] = ()

    def patterns(self, operation: GrantOperation) -> tuple[str, ...]:
        """The patterns of this grant for ``operation``."""
        return self.subscribe if operation == "subscribe" else self.publish


def parse_who(value: Any) -> str:
    """Validate a ``WHO`` value and return it.

    Raises:
        ValueError: naming the accepted forms.
    """
    if isinstance(value, str):
        if value in WHO_KINDS:
            return value
        kind, _, rest = value.partition(":")
        if kind == "perm" and _PERM_RE.match(rest):
            return value
        if kind == "group" and rest.strip():
            return value
        if kind == "check" and _DOTTED_RE.match(rest):
            return value
    raise ValueError(
        f"WHO must be one of {', '.join(repr(k) for k in WHO_KINDS)}, 'perm:app_label.codename', "
        f"'group:<name>' or 'check:<dotted.path.to.function>', not {value!r}"
    )


def parse_grant_pattern(text: Any) -> str:
    """Validate a grant pattern (placeholders as whole segments) and return it normalised.

    Raises:
        ValueError: the pattern breaks the channel grammar, a placeholder is malformed,
            or the namespace (first segment) is a placeholder.
    """
    if not isinstance(text, str):
        raise ValueError(f"a grant pattern must be a string, not {type(text).__name__}")
    parts = text.strip("/").split("/")
    sample = []
    for index, part in enumerate(parts):
        if "{" in part or "}" in part:
            if not _PLACEHOLDER_RE.match(part):
                raise ValueError(
                    f"{text!r}: {part!r} is not a placeholder; write a whole segment such "
                    "as {user.pk} or {user.username}"
                )
            if index == 0:
                raise ValueError(f"{text!r}: the namespace (first segment) cannot be a placeholder")
            sample.append(_SAMPLE)
        else:
            sample.append(part)
    try:
        parse_channel("/".join(sample), allow_wildcard=True)
    except InvalidChannelError as exc:
        raise ValueError(f"{text!r} is not a valid channel pattern: {exc.message}") from None
    return "/" + "/".join(parts)


def _attribute(user: Any, placeholder: str) -> Any:
    value = user
    for name in placeholder[1:-1].split(".")[1:]:
        if name.startswith("_"):
            return None  # never bind a private attribute
        value = getattr(value, name, None)
        if value is None:
            return None
    return value


def bind_pattern(pattern: str, user: Any) -> str | None:
    """Return ``pattern`` with its placeholders replaced by ``user``'s values.

    ``None`` when a value is missing, is not a string or an integer, or is not a valid
    channel segment: the pattern then grants nothing to this user.
    """
    if "{" not in pattern:
        return pattern
    out = []
    for part in pattern.split("/"):
        if part.startswith("{"):
            value = _attribute(user, part)
            if isinstance(value, bool) or not isinstance(value, str | int):
                return None
            text = str(value)
            if not SEGMENT_RE.match(text):
                return None
            out.append(text)
        else:
            out.append(part)
    return "/".join(out)


@lru_cache(maxsize=64)
def _check_function(path: str) -> Callable[[Any], Any]:
    func = import_string(path)
    if not callable(func):
        raise TypeError(f"GRANTS WHO 'check:{path}' is not callable")
    return func  # type: ignore[no-any-return]


def applies_to(who: str, user: Any) -> bool:
    """Tell whether a grant's ``WHO`` covers ``user`` (``None`` counts as anonymous).

    ``perm:``, ``group:`` and ``check:`` may query the database: call this from sync
    code (or through ``sync_to_async``).
    """
    authenticated = bool(getattr(user, "is_authenticated", False))
    if who == "everyone":
        return True
    if who == "anonymous":
        return not authenticated
    if not authenticated or not getattr(user, "is_active", True):
        return False
    if who == "authenticated":
        return True
    if who == "staff":
        return bool(getattr(user, "is_staff", False))
    if who == "superuser":
        return bool(getattr(user, "is_superuser", False))
    kind, _, rest = who.partition(":")
    if kind == "perm":
        has_perm = getattr(user, "has_perm", None)
        return bool(has_perm(rest)) if callable(has_perm) else False
    if kind == "group":
        groups = getattr(user, "groups", None)
        return bool(groups is not None and groups.filter(name=rest).exists())
    if kind == "check":
        return bool(_check_function(rest)(user))
    return False


def granted_patterns(grants: Iterable[Grant], user: Any, operation: GrantOperation) -> list[str]:
    """Return the patterns ``user`` may ``operation`` on, placeholders bound, in order.

    Duplicates are dropped; patterns whose placeholders cannot be bound are left out.
    """
    out: dict[str, None] = {}
    for grant in grants:
        patterns = grant.patterns(operation)
        if not patterns or not applies_to(grant.who, user):
            continue
        for pattern in patterns:
            bound = bind_pattern(pattern, user)
            if bound is not None:
                out.setdefault(bound, None)
    return list(out)


def is_granted(grants: Sequence[Grant], user: Any, operation: GrantOperation, channel: str) -> bool:
    """Tell whether ``user`` may ``operation`` on ``channel`` (a path or a pattern).

    True when a granted pattern contains ``channel``; always False without grants.
    """
    return any(
        pattern_contains(pattern, channel) for pattern in granted_patterns(grants, user, operation)
    )
