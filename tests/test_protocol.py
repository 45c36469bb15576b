"""Tests for appsync_events.protocol: the sans-I/O codec of the AppSync Events websocket."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appsync_events.exceptions import ProtocolError
from appsync_events.protocol import (
    CLIENT_TYPES,
    HEADER_SUBPROTOCOL_PREFIX,
    SERVER_TYPES,
    SUBPROTOCOL,
    BroadcastError,
    ConnectionAck,
    ConnectionErrorMessage,
    ConnectionInit,
    Data,
    DecodeError,
    ErrorEntry,
    ErrorMessage,
    FailedEvent,
    KeepAlive,
    Message,
    Publish,
    PublishErrorMessage,
    PublishSuccess,
    Subscribe,
    SubscribeErrorMessage,
    SubscribeSuccess,
    SuccessfulEvent,
    Unsubscribe,
    UnsubscribeErrorMessage,
    UnsubscribeSuccess,
    decode,
    decode_data,
    dumps,
    encode,
    signing_body,
)

SECRET = "da2-supersecretkey0000000000"
AUTH = {"x-api-key": SECRET, "host": "example.appsync-api.us-east-1.amazonaws.com"}
ERRORS = (
    ErrorEntry("UnauthorizedException", "You are not authorized.", 401),
    ErrorEntry("BadRequestException"),
)

# One instance of every message type, with every optional part filled in somewhere.
MESSAGES: list[Message] = [
    ConnectionInit(),
    Subscribe("sub-1", "/default/*", AUTH),
    Subscribe("sub-2", "/default/x"),
    Unsubscribe("sub-1"),
    Publish("pub-1", "/default/x", ('{"a":1}', '"text"', "[1,2]"), AUTH),
    Publish("pub-2", "/default/x", ("null",)),
    ConnectionAck(),
    ConnectionAck(123_000),
    ConnectionErrorMessage(ERRORS),
    ConnectionErrorMessage(),
    KeepAlive(),
    SubscribeSuccess("sub-1"),
    SubscribeErrorMessage("sub-1", ERRORS),
    Data("sub-1", '{"msg":"héllo ✓"}'),
    BroadcastError("sub-1", ERRORS),
    UnsubscribeSuccess("sub-1"),
    UnsubscribeErrorMessage("sub-1", ERRORS),
    PublishSuccess(
        "pub-1",
        (SuccessfulEvent("id-0", 0), SuccessfulEvent("id-2", 2)),
        (FailedEvent("id-1", 1, "InvalidEvent", "too big"), FailedEvent(None, 3)),
    ),
    PublishSuccess("pub-2"),
    PublishErrorMessage("pub-1", ERRORS),
    ErrorMessage("op-1", ERRORS),
    ErrorMessage(),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip(message: Message) -> None:
    """Encoding then decoding any message gives an equal message."""
    assert decode(encode(message)) == message


def test_every_type_is_covered_and_classified() -> None:
    """The round-trip table covers every type; client and server types split the set."""
    assert {m.type for m in MESSAGES} == CLIENT_TYPES | SERVER_TYPES
    assert not CLIENT_TYPES & SERVER_TYPES
    assert CLIENT_TYPES == {"connection_init", "subscribe", "unsubscribe", "publish"}


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_accept_filters_by_direction(message: Message) -> None:
    """A client refuses client-only types and a server refuses server-only types."""
    frame = encode(message)
    own, other = (
        (CLIENT_TYPES, SERVER_TYPES)
        if message.type in CLIENT_TYPES
        else (SERVER_TYPES, CLIENT_TYPES)
    )
    assert decode(frame, accept=own) == message
    with pytest.raises(DecodeError) as info:
        decode(frame, accept=other)
    assert info.value.reason == "unknown_type"
    assert info.value.message_type == message.type


WIRE = [
    (ConnectionInit(), {"type": "connection_init"}),
    (KeepAlive(), {"type": "ka"}),
    (ConnectionAck(), {"type": "connection_ack", "connectionTimeoutMs": 300000}),
    (Unsubscribe("u"), {"type": "unsubscribe", "id": "u"}),
    (
        Subscribe("s", "/a/*", {"x-api-key": "k"}),
        {"type": "subscribe", "id": "s", "channel": "/a/*", "authorization": {"x-api-key": "k"}},
    ),
    (
        Publish("p", "/a/b", ('{"a":1}',)),
        {
            "type": "publish",
            "id": "p",
            "channel": "/a/b",
            "events": ['{"a":1}'],
            "authorization": {},
        },
    ),
    (
        ErrorMessage(None, (ErrorEntry("E", None, 7),)),
        {"type": "error", "errors": [{"errorType": "E", "errorCode": 7}]},
    ),
    (
        PublishSuccess("p", (SuccessfulEvent("i", 0),), (FailedEvent(None, 1, "C"),)),
        {
            "type": "publish_success",
            "id": "p",
            "successful": [{"identifier": "i", "index": 0}],
            "failed": [{"index": 1, "code": "C"}],
        },
    ),
]


@pytest.mark.parametrize(("message", "wire"), WIRE, ids=lambda v: getattr(v, "type", ""))
def test_wire_form(message: Message, wire: dict[str, Any]) -> None:
    """encode() writes the documented member names as compact JSON."""
    frame = encode(message)
    assert json.loads(frame) == wire
    assert ", " not in frame
    assert ": " not in frame


def test_keep_alive_frame_is_exact() -> None:
    """The keep-alive frame is the exact constant text."""
    assert encode(KeepAlive()) == '{"type":"ka"}'


def test_dumps_is_compact_and_keeps_unicode() -> None:
    """dumps() uses no spaces and writes non-ASCII characters as themselves."""
    assert dumps({"a": [1, "é✓"]}) == '{"a":[1,"é✓"]}'


def test_subprotocol_constants() -> None:
    """The subprotocol names match the service's."""
    assert SUBPROTOCOL == "aws-appsync-event-ws"
    assert HEADER_SUBPROTOCOL_PREFIX == "header-"


@given(
    st.text(min_size=1, max_size=30),
    st.text(max_size=60),
    st.lists(st.text(max_size=200), min_size=1, max_size=5),
    st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=4),
)
def test_publish_round_trip_property(
    op_id: str, channel: str, events: list[str], authorization: dict[str, str]
) -> None:
    """Publish round-trips for arbitrary unicode ids, channels, events and headers."""
    message = Publish(op_id, channel, tuple(events), authorization)
    assert decode(encode(message), accept=CLIENT_TYPES) == message


REASONS = {"binary", "invalid_json", "not_object", "unknown_type", "missing_field", "wrong_type"}


def _outcome(frame: str | bytes) -> Message | DecodeError:
    """Return what decode() returns, or the DecodeError it raises."""
    try:
        return decode(frame)
    except DecodeError as exc:
        return exc


# Any code point, lone surrogates included (the default alphabet leaves them out).
any_text = st.text(
    st.one_of(
        st.characters(),
        st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, exclude_categories=()),
    ),
    max_size=500,
)


@given(any_text, any_text)
def test_data_round_trip_property(sub_id: str, event: str) -> None:
    """Data round-trips for arbitrary unicode, including surrogates and control characters."""
    message = Data(sub_id, event)
    assert decode(encode(message), accept=SERVER_TYPES) == message


@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_decode_never_raises_anything_else(frame: str | bytes) -> None:
    """decode() on arbitrary text or bytes returns a message or raises DecodeError only."""
    result = _outcome(frame)
    if isinstance(result, DecodeError):
        assert result.reason in REASONS
    else:
        assert result.type in CLIENT_TYPES | SERVER_TYPES


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


@given(
    st.sampled_from(sorted(CLIENT_TYPES | SERVER_TYPES)),
    st.dictionaries(
        st.sampled_from(
            [
                "id",
                "channel",
                "events",
                "event",
                "authorization",
                "errors",
                "successful",
                "failed",
                "connectionTimeoutMs",
            ]
        ),
        json_values,
    ),
)
def test_decode_well_typed_frames_with_arbitrary_members(
    type_: str, members: dict[str, Any]
) -> None:
    """Frames of every known type with arbitrary members decode or raise DecodeError only."""
    frame = dumps({**members, "type": type_})
    result = _outcome(frame)
    if isinstance(result, DecodeError):
        assert result.message_type == type_
        assert result.reason in {"missing_field", "wrong_type"}
    else:
        assert result.type == type_
    assert_decode_data_agrees(frame)


def assert_decode_data_agrees(frame: str | bytes) -> None:
    """decode_data() returns a pair exactly for the frames decode() makes Data of."""
    pair = decode_data(frame)
    result = _outcome(frame)
    if isinstance(result, Data) and isinstance(frame, str) and frame == frame.strip():
        assert pair == (result.id, result.event)
    else:
        assert pair is None or result == Data(*pair)


@given(any_text, any_text)
def test_decode_data_reads_every_data_frame(sub_id: str, event: str) -> None:
    frame = encode(Data(sub_id, event))
    assert decode_data(frame) == (sub_id, event)


@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_decode_data_agrees_with_decode_on_anything(frame: str | bytes) -> None:
    assert_decode_data_agrees(frame)


@pytest.mark.parametrize(
    "frame",
    [
        '{"type":"data","id":"s","event":"{}"}',
        ' {"type":"data","id":"s","event":"{}"}',  # whitespace: decode() path, same Data
        '{"type":"data","id":"s","event":"{}"} x',
        '{"type":"data","id":1,"event":"{}"}',
        '{"type":"data","id":"s"}',
        '{"type":"ka"}',
        b'{"type":"data","id":"s","event":"{}"}',
        "[]",
        "",
    ],
)
def test_decode_data_examples(frame: str | bytes) -> None:
    assert_decode_data_agrees(frame)


# -- hostile input -------------------------------------------------------------------

HOSTILE = [
    (b'{"type":"ka"}', "binary"),
    (bytearray(b"\x00\xff"), "binary"),
    ("", "invalid_json"),
    ("{", "invalid_json"),
    ("{'type': 'ka'}", "invalid_json"),
    ('{"type":"ka"} trailing', "invalid_json"),
    ("[" * 100_000 + "]" * 100_000, "invalid_json"),
    ('{"a":' * 100_000 + "1" + "}" * 100_000, "invalid_json"),
    ('{"n":' + "9" * 5000 + "}", "invalid_json"),
    ("[]", "not_object"),
    ('[{"type":"ka"}]', "not_object"),
    ("42", "not_object"),
    ("null", "not_object"),
    ('"ka"', "not_object"),
    ("{}", "missing_field"),
    ('{"type":null}', "missing_field"),
    ('{"type":1}', "wrong_type"),
    ('{"type":["ka"]}', "wrong_type"),
    ('{"type":"KA"}', "unknown_type"),
    ('{"type":"start"}', "unknown_type"),
]


@pytest.mark.parametrize(("frame", "reason"), HOSTILE, ids=lambda v: repr(v)[:30])
def test_hostile_frames(frame: str | bytes, reason: str) -> None:
    """Malformed frames raise DecodeError with the documented reason."""
    with pytest.raises(DecodeError) as info:
        decode(frame)
    assert info.value.reason == reason
    assert isinstance(info.value, ProtocolError)
    assert info.value.frame is None or len(info.value.frame) <= 90


def test_unknown_type_keeps_type_and_id() -> None:
    """An unknown type's error keeps the (truncated) type and the id, for the answer."""
    with pytest.raises(DecodeError, match="unknown message type") as info:
        decode(json.dumps({"type": "x" * 100, "id": "op-7"}))
    assert info.value.reason == "unknown_type"
    assert info.value.message_type == "x" * 40
    assert info.value.message_id == "op-7"


def test_missing_type_keeps_id() -> None:
    """A frame without a type still reports its string id, and ignores a non-string one."""
    with pytest.raises(DecodeError) as info:
        decode('{"id":"op-1"}')
    assert info.value.message_id == "op-1"
    with pytest.raises(DecodeError) as info:
        decode('{"id":5}')
    assert info.value.message_id is None


FIELD_ERRORS = [
    ({"type": "subscribe", "channel": "/a"}, "missing_field", "'id'"),
    ({"type": "subscribe", "id": 1, "channel": "/a"}, "wrong_type", "'id'"),
    ({"type": "subscribe", "id": "s"}, "missing_field", "'channel'"),
    ({"type": "subscribe", "id": "s", "channel": ["/a"]}, "wrong_type", "'channel'"),
    ({"type": "subscribe", "id": "s", "channel": "/a", "authorization": "k"}, "wrong_type", ""),
    (
        {"type": "subscribe", "id": "s", "channel": "/a", "authorization": {"k": 1}},
        "wrong_type",
        "authorization",
    ),
    ({"type": "unsubscribe"}, "missing_field", "'id'"),
    ({"type": "publish", "id": "p", "channel": "/a"}, "missing_field", "'events'"),
    ({"type": "publish", "id": "p", "channel": "/a", "events": "x"}, "wrong_type", "events"),
    ({"type": "publish", "id": "p", "channel": "/a", "events": [{"a": 1}]}, "wrong_type", ""),
    ({"type": "publish", "id": "p", "events": ["1"]}, "missing_field", "'channel'"),
    ({"type": "connection_ack", "connectionTimeoutMs": "300000"}, "wrong_type", "positive"),
    ({"type": "connection_ack", "connectionTimeoutMs": 0}, "wrong_type", "positive"),
    ({"type": "connection_ack", "connectionTimeoutMs": True}, "wrong_type", "positive"),
    ({"type": "connection_ack", "connectionTimeoutMs": 1.5}, "wrong_type", "positive"),
    ({"type": "connection_error", "errors": {"errorType": "E"}}, "wrong_type", "'errors'"),
    ({"type": "subscribe_success"}, "missing_field", "'id'"),
    ({"type": "subscribe_error", "id": None}, "missing_field", "'id'"),
    ({"type": "subscribe_error", "id": "s", "errors": "E"}, "wrong_type", "'errors'"),
    ({"type": "data", "id": "s"}, "missing_field", "'event'"),
    ({"type": "data", "id": "s", "event": {"a": 1}}, "wrong_type", "'event'"),
    ({"type": "data", "event": "{}"}, "missing_field", "'id'"),
    ({"type": "broadcast_error"}, "missing_field", "'id'"),
    ({"type": "unsubscribe_success", "id": 3}, "wrong_type", "'id'"),
    ({"type": "unsubscribe_error"}, "missing_field", "'id'"),
    ({"type": "publish_success"}, "missing_field", "'id'"),
    ({"type": "publish_success", "id": "p", "successful": {}}, "wrong_type", "'successful'"),
    ({"type": "publish_success", "id": "p", "failed": [1]}, "wrong_type", "'failed'"),
    (
        {"type": "publish_success", "id": "p", "successful": [{"identifier": "i"}]},
        "wrong_type",
        "'index'",
    ),
    (
        {"type": "publish_success", "id": "p", "failed": [{"index": False}]},
        "wrong_type",
        "'index'",
    ),
    ({"type": "publish_error", "id": "p", "errors": 3}, "wrong_type", "'errors'"),
    ({"type": "error", "errors": "boom"}, "wrong_type", "'errors'"),
]


@pytest.mark.parametrize(("obj", "reason", "text"), FIELD_ERRORS, ids=lambda v: str(v)[:50])
def test_missing_or_mistyped_members(obj: dict[str, Any], reason: str, text: str) -> None:
    """Each message refuses a missing or mistyped member, naming it and keeping the type."""
    with pytest.raises(DecodeError, match=f"^{obj['type']} message") as info:
        decode(json.dumps(obj))
    assert info.value.reason == reason
    assert text in info.value.message
    assert info.value.message_type == obj["type"]
    expected_id = obj.get("id") if isinstance(obj.get("id"), str) else None
    assert info.value.message_id == expected_id


def test_unknown_members_are_ignored() -> None:
    """Members the codec does not know are ignored, as the service does."""
    frame = '{"type":"data","id":"s","event":"{}","extra":[1,2],"channel":"/x"}'
    assert decode(frame) == Data("s", "{}")


def test_lenient_members() -> None:
    """Odd error entries and identifiers are read rather than refused."""
    frame = json.dumps(
        {
            "type": "publish_success",
            "id": "p",
            "successful": [{"index": 0}],
            "failed": [{"index": 1, "identifier": 5, "code": 400, "message": None}],
        }
    )
    assert decode(frame) == PublishSuccess(
        "p", (SuccessfulEvent("", 0),), (FailedEvent("5", 1, "400", None),)
    )
    errors = json.dumps(
        {
            "type": "error",
            "id": 9,
            "errors": ["plain", {"message": 1, "errorCode": "7"}, {"errorCode": True}],
        }
    )
    assert decode(errors) == ErrorMessage(
        None,
        (
            ErrorEntry("UnknownError", "plain"),
            ErrorEntry("UnknownError", "1"),
            ErrorEntry("UnknownError"),
        ),
    )


def test_defaults_for_absent_optional_members() -> None:
    """Absent optional members take their documented defaults."""
    assert decode('{"type":"connection_ack"}') == ConnectionAck(300_000)
    assert decode('{"type":"subscribe","id":"s","channel":"/a"}') == Subscribe("s", "/a", {})
    assert decode('{"type":"publish_success","id":"p"}') == PublishSuccess("p")
    assert decode('{"type":"connection_error"}') == ConnectionErrorMessage()


# -- signing and secrets -----------------------------------------------------------------


def test_signing_body_vectors() -> None:
    """signing_body() gives the exact strings the SigV4 reference vectors sign."""
    assert signing_body("/default/foo") == '{"channel":"/default/foo"}'
    assert signing_body("/default/foo", ['{"a":1}']) == (
        '{"channel":"/default/foo","events":["{\\"a\\":1}"]}'
    )
    assert signing_body("/default/foo", ('{"a":1}',)) == signing_body("/default/foo", ['{"a":1}'])


def test_signing_body_matches_the_publish_frame() -> None:
    """The signed body holds the channel and events exactly as the publish frame does."""
    events = ('{"msg":"héllo"}', "2")
    body = json.loads(signing_body("/ns/é", events))
    frame = json.loads(encode(Publish("p", "/ns/é", events)))
    assert body == {"channel": frame["channel"], "events": frame["events"]}
    assert "é" in signing_body("/ns/é")


@pytest.mark.parametrize(
    "message",
    [Subscribe("s", "/a", AUTH), Publish("p", "/a", ('{"big":"event"}',), AUTH)],
    ids=lambda m: type(m).__name__,
)
def test_repr_never_shows_authorization(message: Message) -> None:
    """Messages that carry credentials redact them in repr() and str()."""
    for text in (repr(message), str(message)):
        assert SECRET not in text
        assert "redacted" in text
        assert "x-api-key" not in text
    assert "big" not in repr(message)


def test_decode_error_for_frames_never_echoes_whole_frame() -> None:
    """A rejected frame is kept only as a short excerpt."""
    frame = json.dumps({"type": "subscribe", "id": "s", "channel": 5, "pad": "x" * 1000})
    with pytest.raises(DecodeError) as info:
        decode(frame)
    assert info.value.frame is not None
    assert len(info.value.frame) == 80
    assert info.value.frame.endswith("...")


@pytest.mark.parametrize(
    "authorization",
    [
        {"x-api-key": "da2-abcdefghijklmnopqrstuvwxyz"},
        {"Authorization": "opaque-lambda-token-1234567890"},
        {"x-amz-security-token": "FwoGZXIvYXdzEJr" + "A" * 900},
    ],
    ids=["api-key", "token", "session-token"],
)
def test_decode_error_excerpt_never_holds_credentials(authorization: dict[str, str]) -> None:
    """A refused client frame (as the emulator decodes it) keeps no credential in its excerpt."""
    secret = next(iter(authorization.values()))
    frame = json.dumps({"authorization": authorization, "type": "subscribe", "id": "s"})
    with pytest.raises(DecodeError) as info:
        decode(frame, accept=CLIENT_TYPES)
    assert info.value.frame is not None
    assert secret[:12] not in info.value.frame
    assert len(info.value.frame) <= 80


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_encode_writes_to_json(message: Message) -> None:
    """encode() is the compact JSON text of to_json(), with the message's type."""
    assert json.loads(encode(message)) == message.to_json()
    assert message.to_json()["type"] == message.type
