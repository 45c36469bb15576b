"""The error shapes the emulator answers with, in one table.

Each case the emulator can refuse is named here once, with the ``errorType``, the
``message``, the HTTP status (for ``POST /event``) and the ``errorCode`` it carries.
Where AWS documents an answer, or it was seen on a real Event API, the row copies the
service (``docs/emulator.md`` says where each comes from); elsewhere the row is our
choice, and every row can be overridden per emulator
(``AppSyncEventsEmulator(errors={...})``) so a test can mimic whatever a real API turns
out to send.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Final

from ..protocol import ErrorEntry

__all__ = ["DEFAULT_ERRORS", "EmulatorError", "ErrorSpec", "merge_errors"]


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    """One refusal: what goes on the wire.

    Attributes:
        error_type: the ``errorType``.
        message: the ``message`` (``None`` to omit it); ``{detail}`` is replaced by the
            case's detail text when the emulator has one.
        status: the HTTP status of an HTTP publish refused this way.
        error_code: the ``errorCode`` (``None`` to omit it).
    """

    error_type: str
    message: str | None = None
    status: int = 400
    error_code: int | None = None

    def entry(self, detail: str | None = None, *, with_code: bool = True) -> ErrorEntry:
        """Return the ``errors`` entry, with ``detail`` filled into the message."""
        message = self.message
        if message is not None:
            message = message.replace("{detail}", detail or "").strip()
        return ErrorEntry(self.error_type, message, self.error_code if with_code else None)


_NOT_AUTHORIZED: Final = "You are not authorized to make this call."

#: The default table. Keys are the case names used throughout the emulator.
DEFAULT_ERRORS: Final[Mapping[str, ErrorSpec]] = MappingProxyType(
    {
        # Credentials missing or wrong: connect (observed, with errorCode 401), publish (observed).
        "unauthorized": ErrorSpec("UnauthorizedException", _NOT_AUTHORIZED, 401, 401),
        # Credentials of a mode the namespace does not allow (observed: HTTP 403).
        "mode_not_allowed": ErrorSpec("UnauthorizedException", _NOT_AUTHORIZED, 403, 401),
        # A namespace the API does not declare (observed: Unauthorized, no message).
        "unknown_namespace": ErrorSpec("UnauthorizedException", None, 403, 401),
        # Token modes: an expired JWT. Amplify re-signs on "Token expired" (our choice).
        "token_expired": ErrorSpec("UnauthorizedException", "Token has expired.", 401, 401),
        # IAM: unknown access key id (our choice: AWS's usual wording).
        "unknown_access_key": ErrorSpec(
            "UnauthorizedException",
            "The security token included in the request is invalid.",
            401,
            401,
        ),
        # IAM: signature mismatch: BadRequestException + canonical string, as reported in
        # https://github.com/aws-amplify/amplify-js/issues/14001.
        "signature_mismatch": ErrorSpec(
            "BadRequestException",
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method. Consult the service "
            "documentation for details.{detail}",
            403,
            None,
        ),
        # IAM: malformed Authorization / date / scope, or a stale x-amz-date (our choice).
        "signature_invalid": ErrorSpec("BadRequestException", "{detail}", 403, None),
        # 6+ events: WS InvalidInputError, HTTP 400 BadRequestException (observed).
        "too_many_events_ws": ErrorSpec("InvalidInputError", "input exceeded 5 event limit"),
        "too_many_events_http": ErrorSpec("BadRequestException", "Input exceeded 5 event limit"),
        # No events at all (our choice: same types as too many).
        "no_events_ws": ErrorSpec("InvalidInputError", "input requires at least 1 event"),
        "no_events_http": ErrorSpec("BadRequestException", "Input requires at least 1 event"),
        # An event string that is not JSON (our choice).
        "invalid_event_ws": ErrorSpec("InvalidInputError", "{detail}"),
        "invalid_event_http": ErrorSpec("BadRequestException", "{detail}"),
        # Request body over 1.2 MB (our choice).
        "request_too_large": ErrorSpec("BadRequestException", "{detail}", 413),
        # Per-event failure: one event over 240 KB (observed; the code is a string).
        "event_too_large": ErrorSpec(
            "EventTooLargeException", "Transformed event is larger than 240KB"
        ),
        # Channel breaks the grammar, or a wildcard publish (our choice).
        "invalid_channel": ErrorSpec("BadRequestException", "{detail}"),
        # Operation id breaks the grammar (our choice).
        "invalid_id": ErrorSpec("BadRequestException", "{detail}"),
        # Subscription id already in use on the connection (our choice, as GraphQL real-time).
        "duplicate_subscription": ErrorSpec(
            "DuplicatedOperationError", "Subscription message is duplicated: {detail}"
        ),
        # 200 subscriptions per connection (AWS clients' error mapping; payload our choice).
        "max_subscriptions": ErrorSpec(
            "MaxSubscriptionsReachedError", "Max number of subscriptions reached: {detail}"
        ),
        # 25 publishes per second per connection (AWS clients' error mapping; payload ours).
        "rate_limited": ErrorSpec("LimitExceededError", "Rate limit exceeded: {detail}", 429),
        # Unsubscribe of an id that is not subscribed (the AWS guide's example).
        "unknown_operation": ErrorSpec("UnknownOperationError", "Unknown operation id {detail}"),
        # A message type the service does not handle (our choice; AWS clients' mapping).
        "unsupported_operation": ErrorSpec("UnsupportedOperation", "{detail}"),
        # A frame that is not a protocol message at all (our choice).
        "malformed_message": ErrorSpec("BadRequestException", "{detail}"),
        # An operation before connection_init, when the emulator requires it (switch).
        "not_initialized": ErrorSpec(
            "BadRequestException", "connection_init must be sent before {detail}"
        ),
        # The onPublish/onSubscribe stand-in called util.error (the AWS guide: 403 on HTTP).
        "handler_error": ErrorSpec("HandlerError", "{detail}", 403),
        # The stand-in called util.unauthorized (errorType our choice).
        "handler_unauthorized": ErrorSpec("UnauthorizedException", _NOT_AUTHORIZED, 403),
        # A handler marked one event in error: the failed[] code (our choice).
        "handler_event_error": ErrorSpec("HandlerError", "{detail}"),
        # Fault injection: reject_next_connects() (looks like a bad credential).
        "injected_connect_rejection": ErrorSpec("UnauthorizedException", _NOT_AUTHORIZED, 401, 401),
    }
)


def merge_errors(overrides: Mapping[str, Any] | None) -> Mapping[str, ErrorSpec]:
    """Return the default table with ``overrides`` applied.

    Args:
        overrides: case name → :class:`ErrorSpec`, or a dict of some of its fields
            (``error_type``, ``message``, ``status``, ``error_code``).

    Raises:
        ValueError: for an unknown case name or field.
    """
    table = dict(DEFAULT_ERRORS)
    for case, value in (overrides or {}).items():
        if case not in table:
            raise ValueError(
                f"unknown emulator error case {case!r}; valid cases: {', '.join(sorted(table))}"
            )
        if isinstance(value, ErrorSpec):
            table[case] = value
            continue
        if not isinstance(value, Mapping):
            raise ValueError(f"error case {case!r} must be an ErrorSpec or a dict of its fields")
        unknown = set(value) - {"error_type", "message", "status", "error_code"}
        if unknown:
            raise ValueError(f"error case {case!r}: unknown field(s) {', '.join(sorted(unknown))}")
        table[case] = replace(table[case], **dict(value))
    return MappingProxyType(table)


class EmulatorError(Exception):
    """Raised inside the emulator to refuse an operation with one case of the table.

    Args:
        case: the key in the error table.
        detail: text for the message's ``{detail}`` slot (never a secret).
    """

    def __init__(self, case: str, detail: str | None = None) -> None:
        self.case = case
        self.detail = detail
        super().__init__(f"{case}: {detail}" if detail else case)
