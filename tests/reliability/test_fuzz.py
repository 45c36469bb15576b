"""Hypothesis fuzzing of the protocol decoder and of the emulator's message handling.

* :func:`appsync_events.protocol.decode` and :func:`~appsync_events.protocol.decode_data`
  never raise anything but ``DecodeError``, whatever the frame (text, binary, JSON of any
  shape, message-like objects with wrong members); what ``decode`` returns encodes and
  decodes back to itself, and agrees with ``decode_data``.
* :meth:`EmulatorState.handle_frame` on a connection never raises, and answers every
  frame with exactly one protocol message (plus the data frames of its own
  subscriptions): text that is UTF-8 encodable, that ``decode`` reads as a service
  message, and whose errors have the service's shape.

A few hundred inputs each in the short variant; 100,000 each in the soak. The seed is
fixed in the short variant and printed (and recorded) in the soak.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from appsync_events.emulator import EmulatorState, Faults, NamespaceSpec, ServiceSettings
from appsync_events.emulator.authz import Authorizer
from appsync_events.emulator.registry import Connection
from appsync_events.protocol import (
    CLIENT_TYPES,
    SERVER_TYPES,
    Data,
    DecodeError,
    decode,
    decode_data,
    encode,
)

from .conftest import FUZZ_SEED, FUZZ_SETTINGS, SOAK, Scenario, scale

KEY = "da2-reliabilityfuzz00000000000000"
#: hypothesis settings for tests that count their examples in a function-scoped fixture
#: (the fixture is meant to outlive the examples).
FUZZ = settings(
    FUZZ_SETTINGS,
    suppress_health_check=[
        *FUZZ_SETTINGS.suppress_health_check,
        HealthCheck.function_scoped_fixture,
    ],
)

# Text with every code point, lone surrogates included (JSON can carry them). The
# strategies stay small: they cost hypothesis time on every example.
TEXT = st.text(st.characters(exclude_categories=()), max_size=16)
MEMBERS = st.sampled_from(
    [
        "type", "id", "channel", "events", "authorization", "event", "errors", "successful",
        "failed", "connectionTimeoutMs", "index", "identifier", "errorType", "message",
        "errorCode", "code",
    ]
)  # fmt: skip
TYPES = st.sampled_from(sorted(CLIENT_TYPES | SERVER_TYPES))
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | TEXT
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(MEMBERS | TEXT, inner, max_size=3),
    max_leaves=6,
)
IDS = st.sampled_from(["s1", "p1", "sub-2", "x" * 128, "x" * 129]) | SCALARS
CHANNELS = (
    st.sampled_from(
        [
            "/default/a",
            "/default/*",
            "/chat/rooms/1",
            "/chat/*",
            "/nosuch/a",
            "",
            "/",
            "/default/a/",
        ]
    )
    | SCALARS
)
EVENT = st.sampled_from(['{"a":1}', "1", '"x"', "null", "[1,2]", "[" * 2000]) | SCALARS
AUTH = {"x-api-key": KEY, "host": "127.0.0.1:1"}
AUTHORIZATION = (
    st.just(AUTH)
    | st.dictionaries(st.sampled_from(["x-api-key", "authorization"]) | TEXT, SCALARS, max_size=2)
    | SCALARS
)
#: Client and service messages, their members present or not, of the right type or not.
MESSAGES = st.fixed_dictionaries(
    {"type": TYPES | SCALARS},
    optional={
        "id": IDS,
        "channel": CHANNELS,
        "events": st.lists(EVENT, max_size=7) | JSON,
        "event": EVENT,
        "authorization": AUTHORIZATION,
        "errors": JSON,
        "successful": JSON,
        "failed": JSON,
        "connectionTimeoutMs": SCALARS,
    },
)


def dumps(value: Any) -> str:
    """JSON text as a client may write it (non-ASCII as is, NaN allowed)."""
    return json.dumps(value, ensure_ascii=False)


#: Frames drawn by hypothesis' own strategies (shrinkable): message-shaped objects,
#: messages with text spliced in, any JSON, any text, any bytes.
NATIVE_FRAMES = (
    MESSAGES.map(dumps)
    | st.tuples(MESSAGES.map(dumps), st.integers(0, 200), TEXT).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1] :]
    )
    | JSON.map(dumps)
    | TEXT
    | st.binary(max_size=60)
)

_TYPE_POOL = sorted(CLIENT_TYPES | SERVER_TYPES)
_MEMBER_POOL = ["id", "channel", "events", "event", "authorization", "errors", "successful",
                "failed", "connectionTimeoutMs", "index", "identifier"]  # fmt: skip
_STRING_POOL = ["s1", "p1", "x" * 129, "/default/a", "/default/*", "/chat/rooms/1", "/chat/*",
                "/nosuch/a", "", "/", '{"a":1}', "1", "null", "[" * 3000, KEY, "\ud800",
                "\x00", "é", "\u2028", " "]  # fmt: skip
_ALPHABET = 'abcXYZ019_-+/*.{}[]":, \x00\x1f\x7fé€\u2028\ufeff\U0001f600\ud800\udfff'


def _text(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return rng.choice(_STRING_POOL)
    return "".join(rng.choice(_ALPHABET) for _ in range(rng.randrange(0, 24)))


def _value(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.randrange(9 if depth < 3 else 7)
    if pick == 0:
        return None
    if pick == 1:
        return rng.random() < 0.5
    if pick == 2:
        return rng.choice([0, -1, 1, 2**31, 2**64, 10**30])
    if pick == 3:
        return rng.choice([0.5, float("nan"), float("inf"), -0.0, 1e308])
    if pick in (4, 5, 6):
        return _text(rng)
    if pick == 7:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(0, 6))]
    return {_text(rng): _value(rng, depth + 1) for _ in range(rng.randrange(0, 4))}


def _message(rng: random.Random) -> dict[str, Any]:
    message: dict[str, Any] = {}
    if rng.random() < 0.9:
        message["type"] = rng.choice(_TYPE_POOL) if rng.random() < 0.9 else _value(rng)
    for member in _MEMBER_POOL:
        if rng.random() < 0.5:
            if member == "events" and rng.random() < 0.7:
                message[member] = [_text(rng) for _ in range(rng.randrange(0, 8))]
            elif member == "authorization" and rng.random() < 0.5:
                message[member] = dict(AUTH) if rng.random() < 0.7 else {"x-api-key": _text(rng)}
            else:
                message[member] = _value(rng)
    return message


def random_frame(rng: random.Random) -> str | bytes:
    """A frame from a seeded generator (cheap, so the soak can try 100,000): mostly
    message-shaped objects, sometimes cut or spliced, any JSON, text or bytes."""
    kind = rng.random()
    if kind < 0.65:
        text = dumps(_message(rng))
        if rng.random() < 0.2:
            at = rng.randrange(len(text) + 1)
            text = text[:at] + _text(rng) + text[at + rng.randrange(0, 3) :]
        return text
    if kind < 0.8:
        return dumps(_value(rng))
    if kind < 0.92:
        return _text(rng)
    return rng.randbytes(rng.randrange(0, 40))


def random_frames(seed_value: int) -> list[str | bytes]:
    """``BATCH`` frames from the seeded generator."""
    rng = random.Random(seed_value)
    return [random_frame(rng) for _ in range(BATCH)]


#: Frames per example: the soak tries 10 frames in each of its 10,000 examples per test
#: (100,000 inputs), because hypothesis' own work costs about 1 ms an example on the
#: 2-core machine, and its strategies about 3 ms.
BATCH = scale(1, 10)
#: What the fuzz tests draw. The short variant mixes hypothesis' own (shrinkable)
#: strategies with the seeded generator, one to three frames an example; the soak draws
#: batches from the generator alone, the seed drawn by hypothesis.
FRAMES = (
    st.integers(0, 2**64 - 1).map(random_frames)
    if SOAK
    else st.lists(
        NATIVE_FRAMES | st.integers(0, 2**64 - 1).map(lambda s: random_frame(random.Random(s))),
        min_size=1,
        max_size=3,
    )
)


@pytest.fixture
def fuzz_figures(figures: Scenario) -> Scenario:
    figures.family = "hostile input"
    return figures


@seed(FUZZ_SEED)
@FUZZ
@given(frames=FRAMES)
def test_decode_raises_only_decode_error(frames: list[str | bytes], fuzz_figures: Scenario) -> None:
    """decode() and decode_data() never raise anything but DecodeError; a decoded message
    encodes and decodes back to itself; decode_data() agrees with decode()."""
    figures = fuzz_figures
    figures.title = "Fuzzing: protocol decoder"
    for frame in frames:
        figures.inputs_tried += 1
        for accept in (None, CLIENT_TYPES, SERVER_TYPES):
            try:
                message = decode(frame, accept=accept)
            except DecodeError:
                continue
            assert decode(encode(message), accept=accept) == message, frame
        pair = decode_data(frame)
        if pair is not None:
            assert decode(frame) == Data(*pair), frame
        figures.inputs_handled += 1


class FakeWire:
    """A connection of the emulator whose frames are kept, not sent."""

    def __init__(self) -> None:
        self.sent: list[str | bytes] = []
        self.closed: list[tuple[int, str]] = []
        self.connection = Connection(
            send=self.sent.append,
            close=lambda code, reason: self.closed.append((code, reason)),
            headers={"x-api-key": KEY, "host": "127.0.0.1:1"},
            request_host="127.0.0.1:1",
            remote="127.0.0.1",
        )


@pytest.fixture
def service() -> Iterator[tuple[asyncio.AbstractEventLoop, EmulatorState, FakeWire]]:
    """An emulated service (two namespaces, no publish rate limit) with one connection
    open, and the event loop its operations run on."""
    loop = asyncio.new_event_loop()
    settings_ = ServiceSettings(
        namespaces={"default": NamespaceSpec("default"), "chat": NamespaceSpec("chat")},
        publishes_per_second=10**9,
        history_size=1000,
    )
    state = EmulatorState(settings_, Authorizer(region="us-east-1", api_keys=[KEY]), Faults())
    wire = FakeWire()
    loop.run_until_complete(state.open_connection(wire.connection))
    try:
        yield loop, state, wire
    finally:
        loop.close()


ANSWERS = frozenset(SERVER_TYPES - {"data", "ka", "broadcast_error"})


@seed(FUZZ_SEED)
@FUZZ
@given(frames=FRAMES)
def test_the_emulator_answers_every_frame(
    frames: list[str | bytes],
    service: tuple[asyncio.AbstractEventLoop, EmulatorState, FakeWire],
    fuzz_figures: Scenario,
) -> None:
    """handle_frame() never raises, and each frame gets exactly one protocol answer
    (besides data frames for the connection's own subscriptions), UTF-8 encodable, in the
    service's shape, on a connection that is never closed (the service and connection
    live through all the examples, so earlier frames shape later answers)."""
    loop, state, wire = service
    figures = fuzz_figures
    figures.title = "Fuzzing: emulator message handling"
    for frame in frames:
        figures.inputs_tried += 1
        wire.sent.clear()
        loop.run_until_complete(state.handle_frame(wire.connection, frame))
        answers = []
        for item in wire.sent:
            assert isinstance(item, str), (frame, item)
            item.encode()  # raises for text that cannot go on the wire
            message = decode(item, accept=SERVER_TYPES)
            if message.type != "data":
                answers.append(message)
        assert len(answers) == 1, (frame, answers)
        answer = answers[0]
        assert answer.type in ANSWERS, (frame, answer)
        if answer.type.endswith("error"):
            errors = getattr(answer, "errors", ())
            assert errors, (frame, answer)
            assert all(e.error_type for e in errors), (frame, answer)
        assert not wire.closed, frame
        assert len(wire.connection.subscriptions) <= state.settings.max_subscriptions
        figures.inputs_handled += 1
