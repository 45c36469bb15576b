"""One-sentence hints appended to errors, naming the likely cause and the fix.

The library knows things the service does not say: which namespaces the settings declare,
whether an endpoint is this machine (the emulator). These helpers turn that into the
second half of an error message. No Django, no I/O.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from .config import APIConfig, is_loopback_host
from .exceptions import InvalidChannelError
from .paths import parse_channel

__all__ = ["namespace_hint", "undeclared_namespace", "unreachable_hint"]


def unreachable_hint(url: str) -> str:
    """For a connection refused by ``url``: ask whether the emulator runs, when local."""
    parts = urlsplit(url)
    if not is_loopback_host(parts.hostname or ""):
        return ""
    port = f" --port {parts.port}" if parts.port else ""
    return (
        f" Is the emulator running there? Start it with `python -m appsync_events.emulator"
        f"{port}` (or `manage.py appsync_emulator{port}`)."
    )


def undeclared_namespace(api: APIConfig, channel: str) -> str | None:
    """The namespace of ``channel`` when the settings declare namespaces but not this one."""
    try:
        namespace = parse_channel(channel, allow_wildcard=True).namespace
    except InvalidChannelError:
        return None
    if not api.namespaces or namespace in api.namespaces:
        return None
    return namespace


def namespace_hint(api: APIConfig, channel: str) -> str:
    """For a refusal on ``channel``: point at a namespace the settings do not declare."""
    namespace = undeclared_namespace(api, channel)
    if namespace is None:
        return ""
    return (
        f" Namespace {namespace!r} is not in APPSYNC_EVENTS[{api.alias!r}]['NAMESPACES'] "
        f"({', '.join(api.namespaces)}): the service refuses channels of a namespace the "
        "API does not have. Fix the channel, or create the namespace on the API and "
        "declare it."
    )
