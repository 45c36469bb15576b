"""The AppSync Events websocket protocol as pure data: messages, ``encode()``, ``decode()``.

No sockets and no Django: the client and the emulator share this one codec, so what
one sends the other reads with the same rules. Every message of the protocol has a
frozen dataclass here, in both directions:

client → service
    :class:`ConnectionInit`, :class:`Subscribe`, :class:`Unsubscribe`, :class:`Publish`
service → client
    :class:`ConnectionAck`, :class:`ConnectionErrorMessage`, :class:`KeepAlive`,
    :class:`SubscribeSuccess`, :class:`SubscribeErrorMessage`, :class:`Data`,
    :class:`BroadcastError`, :class:`UnsubscribeSuccess`,
    :class:`UnsubscribeErrorMessage`, :class:`PublishSuccess`,
    :class:`PublishErrorMessage`, :class:`ErrorMessage`

:func:`decode` never raises anything but :class:`DecodeError` (a
:class:`~appsync_events.exceptions.ProtocolError`), whatever the frame holds: invalid
JSON, binary data, a non-object, an unknown ``type``, a missing or mistyped member.
Unknown *members* are ignored, as the service and the official clients do.

:func:`signing_body` builds the exact compact JSON an IAM signature covers for a
websocket subscribe or publish.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, TypeAlias

from .exceptions import ProtocolError

__all__ = [
    "SUBPROTOCOL",
    "BroadcastError",
    "ClientMessage",
    "ConnectionAck",
    "ConnectionErrorMessage",
    "ConnectionInit",
    "Data",
    "DecodeError",
    "ErrorEntry",
    "ErrorMessage",
    "FailedEvent",
    "KeepAlive",
    "Message",
    "Publish",
    "PublishErrorMessage",
    "PublishSuccess",
    "ServerMessage",
    "Subscribe",
    "SubscribeErrorMessage",
    "SubscribeSuccess",
    "SuccessfulEvent",
    "Unsubscribe",
    "UnsubscribeErrorMessage",
    "UnsubscribeSuccess",
    "decode",
    "decode_data",
    "dumps",
    "encode",
    "loads",
    "signing_body",
]

#: The subprotocol every client offers and the service selects.
SUBPROTOCOL: Final = "aws-appsync-event-ws"

#: The prefix of the subprotocol that carries the connect authorization.
HEADER_SUBPROTOCOL_PREFIX: Final = "header-"


def loads(text: str | bytes) -> Any:
    """Parse a JSON text (``json.loads``): the one JSON parser of the client and emulator.

    Raises ``ValueError`` (``json.JSONDecodeError``) for invalid JSON and
    ``RecursionError`` for absurd nesting, as ``json.loads`` does.
    """
    return json.loads(text)


def dumps(value: Any) -> str:
    """Serialise ``value`` as compact JSON, non-ASCII kept as is (as JS clients do)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class DecodeError(ProtocolError):
    """Raised by :func:`decode` for a frame that is not a valid protocol message.

    Attributes:
        reason: ``"binary"``, ``"invalid_json"``, ``"not_object"``, ``"unknown_type"``,
            ``"missing_field"`` or ``"wrong_type"``.
        message_type: the frame's ``type`` when it had a string one.
        message_id: the frame's ``id`` when it had a string one, so a server can
            answer the operation that failed.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        frame: str | bytes | None = None,
        message_type: str | None = None,
        message_id: str | None = None,
    ) -> None:
        self.reason = reason
        self.message_type = message_type
        self.message_id = message_id
        super().__init__(message, frame=frame)


# -- shared pieces -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ErrorEntry:
    """One entry of an ``errors`` array: ``errorType``, ``message``, ``errorCode``."""

    error_type: str
    message: str | None = None
    error_code: int | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the wire form."""
        out: dict[str, Any] = {"errorType": self.error_type}
        if self.message is not None:
            out["message"] = self.message
        if self.error_code is not None:
            out["errorCode"] = self.error_code
        return out

    @classmethod
    def from_json(cls, value: Any) -> ErrorEntry:
        """Read the wire form; tolerate missing or odd members rather than fail."""
        if not isinstance(value, Mapping):
            return cls("UnknownError", str(value))
        code = value.get("errorCode")
        message = value.get("message")
        return cls(
            str(value.get("errorType") or "UnknownError"),
            None if message is None else str(message),
            code if isinstance(code, int) and not isinstance(code, bool) else None,
        )


@dataclass(frozen=True, slots=True)
class SuccessfulEvent:
    """An event the service accepted: its position in the request and its UUID."""

    identifier: str
    index: int

    def to_json(self) -> dict[str, Any]:
        """Return the wire form."""
        return {"identifier": self.identifier, "index": self.index}


@dataclass(frozen=True, slots=True)
class FailedEvent:
    """An event the service refused inside an otherwise accepted publish."""

    identifier: str | None
    index: int
    code: str | None = None
    message: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the wire form."""
        out: dict[str, Any] = {"index": self.index}
        if self.identifier is not None:
            out["identifier"] = self.identifier
        if self.code is not None:
            out["code"] = self.code
        if self.message is not None:
            out["message"] = self.message
        return out


# -- messages ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Message:
    type: ClassVar[str]

    def to_json(self) -> dict[str, Any]:
        """Return the wire form as a dict."""
        raise NotImplementedError


def _errors_json(errors: Sequence[ErrorEntry]) -> list[dict[str, Any]]:
    return [e.to_json() for e in errors]


@dataclass(frozen=True, slots=True)
class ConnectionInit(_Message):
    """Client → service: start the session (optional for the service, sent by all clients)."""

    type: ClassVar[str] = "connection_init"

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type}


@dataclass(frozen=True, slots=True)
class Subscribe(_Message):
    """Client → service: subscribe ``id`` to ``channel`` (may end in ``/*``)."""

    type: ClassVar[str] = "subscribe"
    id: str
    channel: str
    authorization: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "id": self.id,
            "channel": self.channel,
            "authorization": dict(self.authorization),
        }

    def __repr__(self) -> str:  # never show the authorization
        return f"Subscribe(id={self.id!r}, channel={self.channel!r}, authorization=<redacted>)"


@dataclass(frozen=True, slots=True)
class Unsubscribe(_Message):
    """Client → service: end subscription ``id``."""

    type: ClassVar[str] = "unsubscribe"
    id: str

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "id": self.id}


@dataclass(frozen=True, slots=True)
class Publish(_Message):
    """Client → service: publish 1 to 5 ``events`` (JSON texts) to ``channel``."""

    type: ClassVar[str] = "publish"
    id: str
    channel: str
    events: tuple[str, ...]
    authorization: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "id": self.id,
            "channel": self.channel,
            "events": list(self.events),
            "authorization": dict(self.authorization),
        }

    def __repr__(self) -> str:  # never show the authorization
        return (
            f"Publish(id={self.id!r}, channel={self.channel!r}, "
            f"events=<{len(self.events)} events>, authorization=<redacted>)"
        )


@dataclass(frozen=True, slots=True)
class ConnectionAck(_Message):
    """Service → client: session accepted; silence longer than the timeout means dead."""

    type: ClassVar[str] = "connection_ack"
    connection_timeout_ms: int = 300_000

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "connectionTimeoutMs": self.connection_timeout_ms}


@dataclass(frozen=True, slots=True)
class ConnectionErrorMessage(_Message):
    """Service → client: the connection was refused (bad credentials, mostly)."""

    type: ClassVar[str] = "connection_error"
    errors: tuple[ErrorEntry, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "errors": _errors_json(self.errors)}


@dataclass(frozen=True, slots=True)
class KeepAlive(_Message):
    """Service → client: keep-alive, sent every minute by the service."""

    type: ClassVar[str] = "ka"

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type}


@dataclass(frozen=True, slots=True)
class SubscribeSuccess(_Message):
    """Service → client: subscription ``id`` is active."""

    type: ClassVar[str] = "subscribe_success"
    id: str

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "id": self.id}


@dataclass(frozen=True, slots=True)
class SubscribeErrorMessage(_Message):
    """Service → client: subscription ``id`` was refused."""

    type: ClassVar[str] = "subscribe_error"
    id: str
    errors: tuple[ErrorEntry, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "id": self.id, "errors": _errors_json(self.errors)}


@dataclass(frozen=True, slots=True)
class Data(_Message):
    """Service → client: one event (a JSON text, unchanged) for subscription ``id``."""

    type: ClassVar[str] = "data"
    id: str
    event: str

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "id": self.id, "event": self.event}


@dataclass(frozen=True, slots=True)
class BroadcastError(_Message):
    """Service → client: an event for subscription ``id`` could not be delivered."""

    type: ClassVar[str] = "broadcast_error"
    id: str
    errors: tuple[ErrorEntry, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "id": self.id, "errors": _errors_json(self.errors)}


@dataclass(frozen=True, slots=True)
class UnsubscribeSuccess(_Message):
    """Service → client: subscription ``id`` ended."""

    type: ClassVar[str] = "unsubscribe_success"
    id: str

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "id": self.id}


@dataclass(frozen=True, slots=True)
class UnsubscribeErrorMessage(_Message):
    """Service → client: unsubscribe ``id`` failed (unknown id, mostly)."""

    type: ClassVar[str] = "unsubscribe_error"
    id: str
    errors: tuple[ErrorEntry, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "id": self.id, "errors": _errors_json(self.errors)}


@dataclass(frozen=True, slots=True)
class PublishSuccess(_Message):
    """Service → client: publish ``id`` processed; each event is in one of the lists."""

    type: ClassVar[str] = "publish_success"
    id: str
    successful: tuple[SuccessfulEvent, ...] = ()
    failed: tuple[FailedEvent, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "id": self.id,
            "successful": [e.to_json() for e in self.successful],
            "failed": [e.to_json() for e in self.failed],
        }


@dataclass(frozen=True, slots=True)
class PublishErrorMessage(_Message):
    """Service → client: the whole publish ``id`` was refused."""

    type: ClassVar[str] = "publish_error"
    id: str
    errors: tuple[ErrorEntry, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "id": self.id, "errors": _errors_json(self.errors)}


@dataclass(frozen=True, slots=True)
class ErrorMessage(_Message):
    """Service → client: a generic error, for a message the service could not handle."""

    type: ClassVar[str] = "error"
    id: str | None = None
    errors: tuple[ErrorEntry, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.id is not None:
            out["id"] = self.id
        out["errors"] = _errors_json(self.errors)
        return out


ClientMessage: TypeAlias = ConnectionInit | Subscribe | Unsubscribe | Publish
ServerMessage: TypeAlias = (
    ConnectionAck
    | ConnectionErrorMessage
    | KeepAlive
    | SubscribeSuccess
    | SubscribeErrorMessage
    | Data
    | BroadcastError
    | UnsubscribeSuccess
    | UnsubscribeErrorMessage
    | PublishSuccess
    | PublishErrorMessage
    | ErrorMessage
)
Message: TypeAlias = ClientMessage | ServerMessage

_KEEP_ALIVE_FRAME: Final = '{"type":"ka"}'


def encode(message: Message) -> str:
    """Return the text frame for ``message`` (compact JSON)."""
    if isinstance(message, KeepAlive):
        return _KEEP_ALIVE_FRAME
    return dumps(message.to_json())


# -- decoding ------------------------------------------------------------------------


class _Reader:
    """Typed member access that raises :class:`DecodeError` with context."""

    __slots__ = ("frame", "id", "obj", "type")

    def __init__(self, obj: Mapping[str, Any], frame: str, type_: str) -> None:
        self.obj = obj
        self.frame = frame
        self.type = type_
        raw_id = obj.get("id")
        self.id = raw_id if isinstance(raw_id, str) else None

    def fail(self, reason: str, text: str) -> DecodeError:
        return DecodeError(
            f"{self.type} message {text}",
            reason=reason,
            frame=self.frame,
            message_type=self.type,
            message_id=self.id,
        )

    def text(self, name: str) -> str:
        value = self.obj.get(name)
        if value is None:
            raise self.fail("missing_field", f"has no {name!r}")
        if not isinstance(value, str):
            raise self.fail("wrong_type", f"has a non-string {name!r}")
        return value

    def errors(self) -> tuple[ErrorEntry, ...]:
        value = self.obj.get("errors")
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail("wrong_type", "has a non-list 'errors'")
        return tuple(ErrorEntry.from_json(e) for e in value)

    def authorization(self) -> dict[str, str]:
        value = self.obj.get("authorization")
        if value is None:
            return {}
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise self.fail("wrong_type", "has an 'authorization' that is not an object of strings")
        return dict(value)

    def events(self) -> tuple[str, ...]:
        value = self.obj.get("events")
        if value is None:
            raise self.fail("missing_field", "has no 'events'")
        if not isinstance(value, list) or not all(isinstance(e, str) for e in value):
            raise self.fail("wrong_type", "has 'events' that is not a list of JSON strings")
        return tuple(value)

    def positive_int(self, name: str, default: int) -> int:
        value = self.obj.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise self.fail("wrong_type", f"has a {name!r} that is not a positive integer")
        return value

    def entries(self, name: str) -> list[Mapping[str, Any]]:
        value = self.obj.get(name, [])
        if not isinstance(value, list) or not all(isinstance(e, Mapping) for e in value):
            raise self.fail("wrong_type", f"has a {name!r} that is not a list of objects")
        return value

    def index(self, entry: Mapping[str, Any]) -> int:
        value = entry.get("index")
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail("wrong_type", "has an entry without an integer 'index'")
        return value


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _publish_success(r: _Reader) -> PublishSuccess:
    return PublishSuccess(
        r.text("id"),
        tuple(
            SuccessfulEvent(str(e.get("identifier", "")), r.index(e))
            for e in r.entries("successful")
        ),
        tuple(
            FailedEvent(
                _opt_str(e.get("identifier")),
                r.index(e),
                _opt_str(e.get("code")),
                _opt_str(e.get("message")),
            )
            for e in r.entries("failed")
        ),
    )


def _error_message(r: _Reader) -> ErrorMessage:
    return ErrorMessage(r.id, r.errors())


_DECODERS: Final[dict[str, Any]] = {
    "connection_init": lambda r: ConnectionInit(),
    "subscribe": lambda r: Subscribe(r.text("id"), r.text("channel"), r.authorization()),
    "unsubscribe": lambda r: Unsubscribe(r.text("id")),
    "publish": lambda r: Publish(r.text("id"), r.text("channel"), r.events(), r.authorization()),
    "connection_ack": lambda r: ConnectionAck(r.positive_int("connectionTimeoutMs", 300_000)),
    "connection_error": lambda r: ConnectionErrorMessage(r.errors()),
    "ka": lambda r: KeepAlive(),
    "subscribe_success": lambda r: SubscribeSuccess(r.text("id")),
    "subscribe_error": lambda r: SubscribeErrorMessage(r.text("id"), r.errors()),
    "data": lambda r: Data(r.text("id"), r.text("event")),
    "broadcast_error": lambda r: BroadcastError(r.text("id"), r.errors()),
    "unsubscribe_success": lambda r: UnsubscribeSuccess(r.text("id")),
    "unsubscribe_error": lambda r: UnsubscribeErrorMessage(r.text("id"), r.errors()),
    "publish_success": _publish_success,
    "publish_error": lambda r: PublishErrorMessage(r.text("id"), r.errors()),
    "error": _error_message,
}

CLIENT_TYPES: Final = frozenset({"connection_init", "subscribe", "unsubscribe", "publish"})
SERVER_TYPES: Final = frozenset(_DECODERS) - CLIENT_TYPES


def _data_fields(obj: dict[str, Any]) -> tuple[str, str] | None:
    data_id = obj.get("id")
    event = obj.get("event")
    if isinstance(data_id, str) and isinstance(event, str):
        return data_id, event
    return None


def decode_data(frame: str | bytes) -> tuple[str, str] | None:
    """Return ``(id, event)`` when ``frame`` is a well-formed ``data`` message.

    The receive path of every subscriber: no message object is built. ``None`` means
    "anything else": call :func:`decode`, which returns that message or raises the
    exact :class:`DecodeError`. For a frame where this returns a pair,
    ``decode(frame)`` returns ``Data(*pair)``.
    """
    if not isinstance(frame, str):
        return None
    try:
        obj = json.loads(frame)
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict) or obj.get("type") != "data":
        return None
    return _data_fields(obj)


def decode(frame: str | bytes, *, accept: frozenset[str] | None = None) -> Message:
    """Parse one websocket frame into a message.

    Args:
        frame: the frame as received. Binary frames are refused: the protocol is text.
        accept: the message types this side may receive (``CLIENT_TYPES`` on a
            server, ``SERVER_TYPES`` on a client); ``None`` accepts any.

    Raises:
        DecodeError: for anything that is not a valid message; never anything else.
    """
    if not isinstance(frame, str):
        raise DecodeError(
            "binary frames are not part of the protocol", reason="binary", frame=frame
        )
    try:
        obj = loads(frame)
    except (ValueError, RecursionError):
        raise DecodeError("frame is not valid JSON", reason="invalid_json", frame=frame) from None
    if not isinstance(obj, dict):
        raise DecodeError("frame is not a JSON object", reason="not_object", frame=frame)
    type_ = obj.get("type")
    if type_ == "data" and (accept is None or "data" in accept):
        # A well-formed data frame becomes Data without the generic reader. Anything
        # else about it (a missing or non-string member) takes the generic path below,
        # which raises the same errors as always.
        fields = _data_fields(obj)
        if fields is not None:
            return Data(*fields)
    raw_id = obj.get("id")
    message_id = raw_id if isinstance(raw_id, str) else None
    if not isinstance(type_, str):
        raise DecodeError(
            "frame has no 'type'" if type_ is None else "frame has a non-string 'type'",
            reason="missing_field" if type_ is None else "wrong_type",
            frame=frame,
            message_id=message_id,
        )
    decoder = _DECODERS.get(type_)
    if decoder is None or (accept is not None and type_ not in accept):
        raise DecodeError(
            f"unknown message type {type_[:40]!r}",
            reason="unknown_type",
            frame=frame,
            message_type=type_[:40],
            message_id=message_id,
        )
    message: Message = decoder(_Reader(obj, frame, type_))
    return message


def signing_body(channel: str, events: Sequence[str] | None = None) -> str:
    """Return the compact JSON an IAM signature covers for a websocket operation.

    ``{"channel":"/ns/a"}`` for a subscribe; ``{"channel":"/ns/a","events":[...]}``
    for a publish, ``events`` being the very strings sent in the message. ``channel``
    must be written exactly as in the message.
    """
    if events is None:
        return dumps({"channel": channel})
    return dumps({"channel": channel, "events": list(events)})


# -- the header- subprotocol ---------------------------------------------------------------

__all__ += ["decode_header_subprotocol", "encode_header_subprotocol"]

_BASE64URL_ALPHABET: Final = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
)


def encode_header_subprotocol(headers: Mapping[str, str]) -> str:
    """Return the ``header-<base64url(JSON)>`` subprotocol (no padding) for ``headers``.

    A websocket connect carries its authorization header object this way; see
    https://docs.aws.amazon.com/appsync/latest/eventapi/event-api-websocket-protocol.html
    """
    raw = json.dumps(dict(headers), separators=(",", ":")).encode()
    return HEADER_SUBPROTOCOL_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_header_subprotocol(value: str) -> dict[str, str]:
    """Decode a ``header-…`` subprotocol back into its header object.

    Raises:
        ProtocolError: when the value is not unpadded base64url JSON of an object of
            strings.
    """
    if not value.startswith(HEADER_SUBPROTOCOL_PREFIX):
        raise ProtocolError("not a header- subprotocol")
    data = value[len(HEADER_SUBPROTOCOL_PREFIX) :]
    if not _BASE64URL_ALPHABET.issuperset(data) or len(data) % 4 == 1:
        # The decoder would silently skip characters outside the alphabet.
        raise ProtocolError(
            "the header- subprotocol is not unpadded base64url (A-Z, a-z, 0-9, '-', '_')"
        )
    try:
        obj = json.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
    except ValueError:  # binascii.Error and json.JSONDecodeError are ValueErrors
        raise ProtocolError("the header- subprotocol is not base64url-encoded JSON") from None
    if not isinstance(obj, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in obj.items()
    ):
        raise ProtocolError("the header- subprotocol does not hold an object of strings")
    return obj
