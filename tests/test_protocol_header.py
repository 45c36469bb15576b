"""The ``header-`` subprotocol codec lives in ``appsync_events.protocol``; auth re-exports it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from appsync_events import auth, protocol
from appsync_events.exceptions import ProtocolError

ROOT = Path(__file__).resolve().parent.parent


def test_protocol_exports_the_codec_and_auth_re_exports_the_same_functions():
    """Both names are public in protocol and auth hands out the very same objects."""
    assert {"encode_header_subprotocol", "decode_header_subprotocol"} <= set(protocol.__all__)
    assert auth.encode_header_subprotocol is protocol.encode_header_subprotocol
    assert auth.decode_header_subprotocol is protocol.decode_header_subprotocol


def test_protocol_codec_round_trips_and_refuses_characters_outside_base64url():
    """A header object survives the round trip; a lenient-decodable value is refused."""
    headers = {"host": "h:1", "x-api-key": "da2-é<>"}
    value = protocol.encode_header_subprotocol(headers)
    assert value.startswith(protocol.HEADER_SUBPROTOCOL_PREFIX)
    assert protocol.decode_header_subprotocol(value) == headers
    with pytest.raises(ProtocolError, match="unpadded base64url"):
        protocol.decode_header_subprotocol(value[:12] + "." + value[12:])


def test_emulator_does_not_import_the_auth_package():
    """Importing the emulator (its wire layer included) leaves appsync_events.auth unloaded."""
    code = (
        "import sys, appsync_events.emulator\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('appsync_events.auth'))\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
