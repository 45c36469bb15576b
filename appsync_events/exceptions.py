"""Exceptions raised by appsync_events.

The tree::

    AppSyncEventsError                       root of every operational error
    ├── ValidationError (+ ValueError)       bad input caught before any network call
    │   ├── InvalidChannelError              channel path breaks the grammar
    │   ├── EventValidationError             a declarative event's fields are wrong
    │   ├── EventTooLargeError               one event over the per-event limit
    │   └── EventEncodingError (+ TypeError) an event is not JSON-serialisable
    ├── ProtocolError                        a frame we cannot decode or did not expect
    ├── AuthError                            credentials could not be produced or were refused
    │   └── TokenSourceError                 a token source raised or returned nothing
    ├── ConnectionFailed                     the websocket could not be opened or was lost
    │   ├── HandshakeTimeout                 no ``connection_ack`` in time
    │   ├── ConnectionRejected               ``connection_error`` / 401 / 403 on connect
    │   ├── UpgradeRefused                   another 4xx on the upgrade (a wrong URL)
    │   └── KeepAliveTimeout                 no inbound frame within ``connectionTimeoutMs``
    ├── OperationError                       a subscribe / unsubscribe / publish failed
    │   ├── SubscriptionError
    │   ├── PublishError                     whole publish refused
    │   │   └── PartialPublishError          failed part-way; says what was accepted
    │   └── OperationTimeout
    ├── PublishCancelled                     a ``pre_publish`` receiver vetoed
    └── ControlPlaneError                    an AppSync management call failed

    ImproperlyConfigured (Django's; Exception where Django is not installed)
    └── ConfigurationError                   deliberately *outside* the root, so a retry
        └── ImproperlyInstalled (+ImportError) loop catching AppSyncEventsError never
                                               hides a configuration mistake.

Every error carries its context as attributes (``api``, ``channel``, ``errors``...) and
renders it in ``str()``. No error ever renders a credential.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .redaction import redact

# Configuration errors reach Django users as what Django code catches for them,
# ``ImproperlyConfigured``. The core (protocol, config, auth, client, emulator) must also
# work where Django is not installed: there the base is a plain Exception. Only this one
# exception class is imported, which needs no settings.
try:
    from django.core.exceptions import ImproperlyConfigured as _ConfigurationBase
except ImportError:  # pragma: no cover - exercised by the Django-free subprocess test

    class _ConfigurationBase(Exception):  # type: ignore[no-redef]
        """Base of configuration errors where Django is not installed."""


__all__ = [
    "AppSyncEventsError",
    "AuthError",
    "ConfigurationError",
    "ConnectionFailed",
    "ConnectionRejected",
    "ControlPlaneError",
    "EventEncodingError",
    "EventTooLargeError",
    "EventValidationError",
    "HandshakeTimeout",
    "ImproperlyInstalled",
    "InvalidChannelError",
    "KeepAliveTimeout",
    "OperationError",
    "OperationTimeout",
    "PartialPublishError",
    "ProtocolError",
    "PublishCancelled",
    "PublishError",
    "SubscriptionError",
    "TokenSourceError",
    "UpgradeRefused",
    "ValidationError",
]


def _restore(cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    """Rebuild a pickled error without calling ``__init__`` (see ``__reduce__``)."""
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


def _describe_errors(errors: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for error in errors:
        kind = error.get("errorType") or error.get("code") or "Error"
        message = error.get("message")
        parts.append(f"{kind}: {message}" if message else str(kind))
    return "; ".join(parts)


class AppSyncEventsError(Exception):
    """Root of every operational error raised by appsync_events.

    Args:
        message: what went wrong, in one sentence.
        api: the settings alias involved, when known.
        channel: the channel path involved, when known.
        errors: the AWS ``errors`` entries (``errorType``, ``message``...), when any.
        hint: what probably caused it and what to change, when the library can tell;
            rendered last.
    """

    def __init__(
        self,
        message: str = "",
        *,
        api: str | None = None,
        channel: str | None = None,
        errors: Sequence[Mapping[str, Any]] = (),
        hint: str = "",
    ) -> None:
        self.message = message
        self.api = api
        self.channel = channel
        self.errors: tuple[Mapping[str, Any], ...] = tuple(errors)
        self.hint = hint.strip()
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        # The default pickles only ``args`` and calls ``cls(*args)`` on load, which fails
        # for subclasses with required keyword-only context (Django's parallel test
        # runner and multiprocessing pickle exceptions); restore the state directly.
        return (_restore, (type(self), self.args, self.__dict__))

    @property
    def error_types(self) -> tuple[str, ...]:
        """The ``errorType`` of each AWS error entry, in order."""
        return tuple(str(e.get("errorType", "")) for e in self.errors)

    def __str__(self) -> str:
        text = self.message
        context = []
        if self.api is not None:
            context.append(f"api={self.api!r}")
        if self.channel is not None:
            context.append(f"channel={short_repr(self.channel)}")
        if context:
            text = f"{text} ({', '.join(context)})"
        if self.errors:
            text = f"{text}: {_describe_errors(self.errors)}"
        if self.hint:
            text = f"{text}. {self.hint}"
        return text


def short_repr(value: object, limit: int = 120) -> str:
    """``repr(value)``, cut to about ``limit`` characters with the full length noted.

    Channels and other inputs in messages come from callers and browsers; a megabyte of
    path must not become a megabyte of exception text and log line.
    """
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f"{len(value)} characters" if isinstance(value, str | bytes) else "cut"
    return f"{text[:limit]}… ({size})"


class ValidationError(AppSyncEventsError, ValueError):
    """Raised when input is rejected before any network call."""


class InvalidChannelError(ValidationError):
    """Raised when a channel path breaks the AppSync channel grammar."""


class EventTooLargeError(ValidationError):
    """Raised when one encoded event is larger than the per-event limit.

    Attributes:
        index: position of the event in the caller's sequence.
        size: its encoded size in bytes.
        limit: the limit it broke.
    """

    def __init__(self, message: str, *, index: int, size: int, limit: int, **kwargs: Any) -> None:
        self.index = index
        self.size = size
        self.limit = limit
        super().__init__(message, **kwargs)


class EventEncodingError(ValidationError, TypeError):
    """Raised when an event cannot be encoded as JSON.

    Attributes:
        index: position of the event in the caller's sequence.
    """

    def __init__(self, message: str, *, index: int, **kwargs: Any) -> None:
        self.index = index
        super().__init__(message, **kwargs)


class EventValidationError(ValidationError):
    """Raised when a declarative event's fields are missing, unknown or mistyped.

    Attributes:
        event_class: the name of the :class:`~appsync_events.declarative.Event` subclass.
        problems: what is wrong, by field name.
    """

    def __init__(
        self, message: str, *, event_class: str, problems: Mapping[str, str], **kwargs: Any
    ) -> None:
        self.event_class = event_class
        self.problems = dict(problems)
        super().__init__(message, **kwargs)


#: How much of a frame :class:`ProtocolError` scans for credentials before keeping 80
#: characters of it (a session token in an ``authorization`` object is about 1 KB).
_FRAME_SCAN = 4096


class ProtocolError(AppSyncEventsError):
    """Raised when a frame cannot be decoded or breaks the protocol.

    Attributes:
        frame: a short, truncated excerpt of the offending frame, credentials redacted
            (a client's ``subscribe`` or ``publish`` frame, as the emulator decodes it,
            carries an ``authorization`` object).
    """

    def __init__(self, message: str, *, frame: str | bytes | None = None, **kwargs: Any) -> None:
        if isinstance(frame, bytes | bytearray | memoryview):
            frame = redact(repr(bytes(frame[:80])))
        elif isinstance(frame, str):
            # Redact before truncating, so a credential cut in half is still recognised;
            # only the start is kept, so a bounded prefix is enough to scan.
            frame = redact(frame[:_FRAME_SCAN])
            if len(frame) > 80:
                frame = frame[:77] + "..."
        self.frame = frame
        super().__init__(message, **kwargs)


class AuthError(AppSyncEventsError):
    """Raised when authorization headers cannot be produced or are refused.

    Attributes:
        operation: ``"connect"``, ``"subscribe"`` or ``"publish"``, when known.
        mode: the auth mode involved, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        operation: str | None = None,
        mode: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.operation = operation
        self.mode = mode
        super().__init__(message, **kwargs)

    def __str__(self) -> str:
        text = super().__str__()
        extra = []
        if self.mode:
            extra.append(f"mode={self.mode}")
        if self.operation:
            extra.append(f"operation={self.operation}")
        return f"{text} [{', '.join(extra)}]" if extra else text


class TokenSourceError(AuthError):
    """Raised when a token source (setting, environment variable, callable) fails."""


class ConnectionFailed(AppSyncEventsError):
    """Raised when the websocket connection cannot be opened or is lost."""


class HandshakeTimeout(ConnectionFailed):
    """Raised when no ``connection_ack`` arrives within the handshake timeout."""


class ConnectionRejected(ConnectionFailed):
    """Raised when the service refuses the connection (``connection_error``, 401, 403).

    Attributes:
        status: the HTTP status of a refused upgrade, when that is how it was refused.
    """

    def __init__(self, message: str, *, status: int | None = None, **kwargs: Any) -> None:
        self.status = status
        super().__init__(message, **kwargs)


class UpgradeRefused(ConnectionFailed):
    """Raised when the websocket upgrade is answered with an HTTP 4xx no retry can fix.

    401 and 403 are :class:`ConnectionRejected` (credentials); 408 and 429 are retried.
    Any other 4xx (404 for a wrong ``REALTIME_URL`` or ``HTTP_URL``) stops the client.

    Attributes:
        status: the HTTP status of the refused upgrade.
        url: the websocket URL that refused it.
    """

    def __init__(self, message: str, *, status: int, url: str, **kwargs: Any) -> None:
        self.status = status
        self.url = url
        super().__init__(message, **kwargs)


class KeepAliveTimeout(ConnectionFailed):
    """Raised when no frame arrived within the ``connectionTimeoutMs`` window."""


class OperationError(AppSyncEventsError):
    """Raised when a subscribe, unsubscribe or publish fails.

    Attributes:
        operation_id: the protocol ``id`` of the failed operation.
    """

    def __init__(self, message: str, *, operation_id: str | None = None, **kwargs: Any) -> None:
        self.operation_id = operation_id
        super().__init__(message, **kwargs)


class SubscriptionError(OperationError):
    """Raised when the service answers ``subscribe_error`` (or refuses an unsubscribe)."""


class PublishError(OperationError):
    """Raised when a whole publish is refused (``publish_error``, HTTP 4xx/5xx, network)."""

    def __init__(self, message: str, *, status: int | None = None, **kwargs: Any) -> None:
        self.status = status
        super().__init__(message, **kwargs)


class PartialPublishError(PublishError):
    """Raised when a multi-chunk publish fails part-way.

    Attributes:
        accepted: the caller's indices of events the service already accepted.
        not_sent: the caller's indices of events that were never accepted.
        result: the partial ``PublishResult`` covering the accepted chunks.
    """

    def __init__(
        self,
        message: str,
        *,
        accepted: Sequence[int],
        not_sent: Sequence[int],
        result: Any = None,
        **kwargs: Any,
    ) -> None:
        self.accepted = tuple(accepted)
        self.not_sent = tuple(not_sent)
        self.result = result
        super().__init__(message, **kwargs)

    def __str__(self) -> str:
        return (
            f"{super().__str__()} [accepted indices: {list(self.accepted)}; "
            f"not sent: {list(self.not_sent)}]"
        )


class OperationTimeout(OperationError):
    """Raised when the service does not answer an operation in time."""


class PublishCancelled(AppSyncEventsError):
    """Raise from a ``pre_publish`` receiver to veto a publish."""


class ControlPlaneError(AppSyncEventsError):
    """Raised when an AppSync management call fails, or the Event API cannot be found.

    Attributes:
        operation: the AppSync operation that failed (``"GetApi"``...), when one did.
        code: the AWS error code (``"AccessDeniedException"``...), when AWS sent one.
        configuration: ``True`` when the fix is in the settings or the IAM policy (an
            unknown API id, a missing permission, no credentials), ``False`` for a
            failure that may pass (throttling, the network, a service error).
    """

    def __init__(
        self,
        message: str,
        *,
        operation: str | None = None,
        code: str | None = None,
        configuration: bool = False,
        **kwargs: Any,
    ) -> None:
        self.operation = operation
        self.code = code
        self.configuration = configuration
        super().__init__(message, **kwargs)


class ConfigurationError(_ConfigurationBase):
    """Raised for a mistake in the ``APPSYNC_EVENTS`` setting.

    Deliberately not an :class:`AppSyncEventsError`: code that retries operational
    errors must never swallow a configuration mistake.

    Attributes:
        api: the alias the mistake is in, when known.
        key: the setting key involved, when known.
        check_id: the system check this mistake is reported under.
    """

    def __init__(
        self,
        message: str,
        *,
        api: str | None = None,
        key: str | None = None,
        check_id: str = "appsync_events.E001",
    ) -> None:
        self.api = api
        self.key = key
        self.check_id = check_id
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        # As AppSyncEventsError.__reduce__: ImproperlyInstalled has keyword-only arguments.
        return (_restore, (type(self), self.args, self.__dict__))


class ImproperlyInstalled(ConfigurationError, ImportError):
    """Raised when an optional dependency is missing; says what to install."""

    def __init__(self, *, missing_package: str, install_extra: str) -> None:
        self.missing_package = missing_package
        super().__init__(
            f"{missing_package} is not installed. Install it with "
            f'`pip install "django-appsync-events[{install_extra}]"`.',
            check_id="appsync_events.E011",
        )
