"""Auth backends and the helpers that build authorization header objects.

Which mode an operation uses: the connect uses the alias's ``CONNECTION_AUTH_MODE``;
a subscribe or publish uses the first mode its namespace allows for which the alias
holds credentials (see :meth:`appsync_events.conf.APIConfig.auth_mode_for`), unless the
caller passes ``mode=`` explicitly.

The service is known to reject websocket publishes signed with IAM when an event holds
``<`` or ``>`` ("signature mismatch"; the same publish over HTTP works). Transports ask
:func:`websocket_publish_safe` before an IAM websocket publish and send such events over
HTTP instead.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Final

from .._loading import import_class
from ..config import APIConfig, Operation
from ..exceptions import ConfigurationError
from ..paths import parse_channel
from ..protocol import decode_header_subprotocol, encode_header_subprotocol, signing_body
from ..redaction import redact
from .base import AuthBackend, AuthRequest, Transport

__all__ = [
    "BUILTIN_BACKENDS",
    "IAM_WEBSOCKET_UNSAFE_CHARACTERS",
    "AuthBackend",
    "AuthRequest",
    "Transport",
    "aconnect_headers",
    "ahttp_headers",
    "aoperation_headers",
    "connect_headers",
    "decode_header_subprotocol",
    "encode_header_subprotocol",
    "get_auth_backend",
    "http_headers",
    "operation_headers",
    "websocket_publish_safe",
]

#: The backend class used for each mode when settings name none.
BUILTIN_BACKENDS: Final = {
    "API_KEY": "appsync_events.auth.api_key.APIKeyAuth",
    "AWS_IAM": "appsync_events.auth.iam.IAMAuth",
    "AMAZON_COGNITO_USER_POOLS": "appsync_events.auth.token.CognitoAuth",
    "OPENID_CONNECT": "appsync_events.auth.token.OIDCAuth",
    "AWS_LAMBDA": "appsync_events.auth.token.LambdaAuth",
}

_CONNECT_BODY: Final = b"{}"

#: Characters that make the service reject an IAM-signed websocket publish. ``<`` and
#: ``>`` are observed (the service seems to HTML-escape them before checking the
#: signature); ``&`` is escaped by the same HTML-safe JSON encoders, so it is avoided too.
IAM_WEBSOCKET_UNSAFE_CHARACTERS: Final = frozenset("<>&")

_lock = threading.Lock()


def get_auth_backend(api: APIConfig, mode: str) -> AuthBackend:
    """Return the auth backend of ``api`` for ``mode``, built once per config object.

    A changed setting gives a new config object, hence new backends.

    Raises:
        ConfigurationError: when the alias holds no credentials for ``mode``, or its
            backend cannot be imported or refuses its options.
    """
    backend: AuthBackend | None = api.auth_backends.get(mode)
    if backend is not None:
        return backend
    config = api.auth.get(mode)
    if config is None:
        raise ConfigurationError(
            f"APPSYNC_EVENTS[{api.alias!r}]['AUTH'] holds no credentials for {mode}; "
            f"it holds {', '.join(api.auth) or 'nothing'}.",
            api=api.alias,
            key="AUTH",
            check_id="appsync_events.E005",
        )
    path = config.backend or BUILTIN_BACKENDS[mode]
    cls = import_class(
        path,
        AuthBackend,
        base_name="appsync_events.auth.AuthBackend",
        setting=f"APPSYNC_EVENTS[{api.alias!r}]['AUTH'][{mode!r}]['BACKEND']",
        api=api.alias,
        key="AUTH",
        check_id="appsync_events.E008",
    )
    try:
        backend = cls(api, **dict(config.options))
    except ConfigurationError:
        raise
    except (TypeError, ValueError) as exc:
        # A custom backend refusing its options its own way: report it like ours do.
        raise ConfigurationError(
            f"APPSYNC_EVENTS[{api.alias!r}]['AUTH'][{mode!r}]: {path} refused its options: "
            f"{type(exc).__name__}: {redact(str(exc))}",
            api=api.alias,
            key="AUTH",
            check_id="appsync_events.E008",
        ) from exc
    with _lock:
        # Two threads may build one concurrently: keep the first, so every caller
        # shares one backend (and its cached credentials or token).
        backend = api.auth_backends.setdefault(mode, backend)
    return backend


def _mode(api: APIConfig, operation: Operation, channel: str | None, mode: str | None) -> str:
    if mode is not None:
        return mode
    namespace = parse_channel(channel, allow_wildcard=True).namespace if channel else None
    return api.auth_mode_for(operation, namespace)


def _ws_request(
    operation: Operation, channel: str | None, events: Sequence[str] | None
) -> AuthRequest:
    if operation == "connect":
        return AuthRequest("connect", "websocket", _CONNECT_BODY)
    if channel is None:
        raise ValueError(f"a channel is needed to authorize a {operation}")
    body = signing_body(channel, events if operation == "publish" else None)
    return AuthRequest(operation, "websocket", body.encode(), channel)


def connect_headers(api: APIConfig, *, mode: str | None = None) -> dict[str, str]:
    """Return the header object for opening the websocket.

    Encode it with :func:`encode_header_subprotocol` for the ``header-`` subprotocol.
    ``mode`` overrides the alias's ``CONNECTION_AUTH_MODE``.
    """
    backend = get_auth_backend(api, mode or api.connection_auth_mode)
    return backend.get_headers(_ws_request("connect", None, None))


async def aconnect_headers(api: APIConfig, *, mode: str | None = None) -> dict[str, str]:
    """Async twin of :func:`connect_headers`."""
    backend = get_auth_backend(api, mode or api.connection_auth_mode)
    return await backend.aget_headers(_ws_request("connect", None, None))


def operation_headers(
    api: APIConfig,
    operation: Operation,
    channel: str,
    events: Sequence[str] | None = None,
    *,
    mode: str | None = None,
) -> dict[str, str]:
    """Return the ``authorization`` object for a websocket subscribe or publish.

    ``channel`` and ``events`` must be exactly what the message carries: an IAM
    signature covers them.
    """
    backend = get_auth_backend(api, _mode(api, operation, channel, mode))
    return backend.get_headers(_ws_request(operation, channel, events))


async def aoperation_headers(
    api: APIConfig,
    operation: Operation,
    channel: str,
    events: Sequence[str] | None = None,
    *,
    mode: str | None = None,
) -> dict[str, str]:
    """Async twin of :func:`operation_headers`."""
    backend = get_auth_backend(api, _mode(api, operation, channel, mode))
    return await backend.aget_headers(_ws_request(operation, channel, events))


def http_headers(
    api: APIConfig, channel: str, body: bytes, *, mode: str | None = None
) -> dict[str, str]:
    """Return the auth headers for an HTTP publish of ``body`` to ``channel``."""
    backend = get_auth_backend(api, _mode(api, "publish", channel, mode))
    return backend.get_headers(AuthRequest("publish", "http", body, channel))


async def ahttp_headers(
    api: APIConfig, channel: str, body: bytes, *, mode: str | None = None
) -> dict[str, str]:
    """Async twin of :func:`http_headers`."""
    backend = get_auth_backend(api, _mode(api, "publish", channel, mode))
    return await backend.aget_headers(AuthRequest("publish", "http", body, channel))


def websocket_publish_safe(
    api: APIConfig, channel: str, events: Sequence[str], *, mode: str | None = None
) -> bool:
    """Return whether ``events`` can be published to ``channel`` over the websocket.

    ``False`` only when the publish would be IAM-signed (``mode``, else the mode the
    namespace picks) and an event contains one of
    :data:`IAM_WEBSOCKET_UNSAFE_CHARACTERS`: the service rejects such websocket publishes
    with "signature mismatch" although the same publish over HTTP succeeds. Callers then
    publish over HTTP. Every other mode is always safe.

    Args:
        api: the alias's configuration.
        channel: the channel, as it will be sent.
        events: the encoded event strings, as they will be sent.
        mode: the auth mode the publish will use, when the caller overrides it.
    """
    if _mode(api, "publish", channel, mode) != "AWS_IAM":
        return True
    return not any(not IAM_WEBSOCKET_UNSAFE_CHARACTERS.isdisjoint(event) for event in events)
