"""The codec's path for ``data`` frames behaves exactly as the generic reader.

Each frame is decoded by :func:`decode` and :func:`decode_data` and compared with the
generic reader the ``data`` path skips (``_DECODERS``), so any difference in value,
message or error shows up.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from appsync_events.protocol import (
    _DECODERS,
    CLIENT_TYPES,
    SERVER_TYPES,
    Data,
    DecodeError,
    _Reader,
    decode,
    decode_data,
)


def outcome(func: Any, *args: Any, **kwargs: Any) -> tuple[str, Any]:
    """Return ("ok", value) or ("error", (type, message)) for a call."""
    try:
        return ("ok", func(*args, **kwargs))
    except (ValueError, RecursionError) as exc:
        return ("error", (type(exc), str(exc)))


def reference_decode(frame: Any, accept: frozenset[str] | None) -> tuple[str, Any]:
    """Decode through the generic reader only (what decode() did before the fast path)."""
    try:
        if not isinstance(frame, str):
            return outcome(decode, frame, accept=accept)
        try:
            obj = json.loads(frame)
        except (ValueError, RecursionError):
            return ("error", ("invalid_json", None, None))
        if not isinstance(obj, dict) or obj.get("type") != "data":
            return outcome(decode, frame, accept=accept)
        if accept is not None and "data" not in accept:
            return outcome(decode, frame, accept=accept)
        return ("ok", _DECODERS["data"](_Reader(obj, frame, "data")))
    except DecodeError as exc:
        return ("error", (exc.reason, exc.message_type, exc.message_id))


def ours(frame: Any, accept: frozenset[str] | None) -> tuple[str, Any]:
    """Decode with decode() itself, errors reduced to what a caller can see."""
    try:
        return ("ok", decode(frame, accept=accept))
    except DecodeError as exc:
        return ("error", (exc.reason, exc.message_type, exc.message_id))


FRAMES = [
    '{"type":"data","id":"s1","event":"{\\"n\\":1}"}',
    ' {"type":"data","id":"s1","event":"{}"}',
    '{"type":"data","id":"s1","event":"{}"}\n',
    '{"type":"data","id":"s1","event":"{}","extra":[1,2]}',
    '{"type":"data","id":"s1"}',
    '{"type":"data","event":"{}"}',
    '{"type":"data","id":1,"event":"{}"}',
    '{"type":"data","id":"s1","event":{"n":1}}',
    '{"type":"data","id":"s1","event":null}',
    '{"type":"data","id":null,"event":"x"}',
    '{"type":"data","id":"s1","event":"{}"}{"type":"ka"}',
    '["data"]',
    '{"type":"DATA","id":"s1","event":"{}"}',
    '{"type":"ka"}',
    "\ufeff" + '{"type":"data","id":"s1","event":"{}"}',
    '{"type":"data","id":"s1","event":"' + "[" * 50_000 + '"}',
    "[" * 100_000,
    b'{"type":"data","id":"s1","event":"{}"}',
]


@pytest.mark.parametrize("accept", [None, SERVER_TYPES, CLIENT_TYPES], ids=["any", "srv", "cli"])
@pytest.mark.parametrize("frame", FRAMES, ids=range(len(FRAMES)))
def test_decode_fast_path_matches_the_generic_reader(
    frame: Any, accept: frozenset[str] | None
) -> None:
    """A data frame decodes (or fails) exactly as through the generic reader."""
    assert ours(frame, accept) == reference_decode(frame, accept)


def test_data_fast_path_result() -> None:
    """A plain data frame becomes Data with the event text unchanged."""
    frame = json.dumps({"type": "data", "id": "sub-1", "event": json.dumps({"text": "é"})})
    message = decode(frame, accept=SERVER_TYPES)
    assert message == Data("sub-1", '{"text": "\\u00e9"}')
    assert type(message) is Data


@pytest.mark.parametrize("frame", FRAMES, ids=range(len(FRAMES)))
def test_decode_data_agrees_with_decode(frame: Any) -> None:
    """decode_data returns a pair exactly when decode returns Data, with the same fields."""
    pair = decode_data(frame)
    result = ours(frame, SERVER_TYPES)
    if pair is None:
        assert result[0] == "error" or type(result[1]) is not Data
    else:
        assert result == ("ok", Data(*pair))
