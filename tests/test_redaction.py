"""Redaction of credentials from text, header objects and log records."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest
from websockets.frames import Frame, Opcode

from appsync_events.redaction import (
    REDACTED,
    RedactingFilter,
    redact,
    redact_headers,
    redacting_logger,
    register_secret,
)

SIG = "2988e9f5c01fb1a5a1b8eaa2972891b6e42b270eeb5147f9a84148301ea0353b"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (
            "Sec-WebSocket-Protocol: aws-appsync-event-ws, header-eyJob3N0IjoiZXhhbXBsZSJ9",
            "eyJob3N0",
        ),
        ('{"x-api-key":"da2-abc","host":"h"}', "da2-abc"),
        ("{'Authorization': 'Bearer tok.en.value'}", "tok.en.value"),
        ('{"authorization":"AWS4-HMAC-SHA256 Credential=A/x, Signature=' + SIG + '"}', SIG),
        ("> X-Amz-Security-Token: FQoGZXIvYXdzE//token", "FQoGZXIvYXdzE"),
        ("authorization: Bearer abc.def.ghi", "abc.def.ghi"),
        ("headers=[(b'authorization', b'AWS4 secretstuff'), (b'host', b'h')]", "secretstuff"),
        ("https://h/event?X-Amz-Signature=" + SIG, SIG),
        ("x-amz-security-token=tokentokentoken&a=b", "tokentokentoken"),
        ("key da2-abcdefghijklmnopqrstuvwxyz in text", "da2-abcdefghijklmnopqrstuvwxyz"),
        ('{"x-api-key":"da2-truncat', "da2-truncat"),
    ],
)
def test_redact_hides_recognisable_credentials(text, secret):
    """Every credential shape the library handles is replaced, in full."""
    out = redact(text)
    assert secret not in out
    assert REDACTED in out


def test_redact_keeps_ordinary_text():
    """Text without credentials is returned unchanged."""
    text = '> Host: 127.0.0.1:8765\n{"type":"subscribe","channel":"/default/a"} header-based'
    assert redact(text) == text


def test_registered_secrets_are_hidden_anywhere():
    """An opaque registered secret is hidden wherever it appears; tiny values are ignored."""
    register_secret("opaque-lambda-token-42")
    register_secret("short")
    assert redact("failed with opaque-lambda-token-42!") == f"failed with {REDACTED}!"
    assert redact("a short text") == "a short text"


def test_redact_headers_keeps_non_secret_values():
    """Header objects keep host and date but lose credential values."""
    headers = {
        "host": "h",
        "x-amz-date": "20250101T000000Z",
        "Authorization": "x",
        "x-api-key": "k",
    }
    assert redact_headers(headers) == {
        "host": "h",
        "x-amz-date": "20250101T000000Z",
        "Authorization": REDACTED,
        "x-api-key": REDACTED,
    }


class ListHandler(logging.Handler):
    """Collect formatted records."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def handler():
    """A DEBUG logger 'tests.redaction' with a collecting handler."""
    logger = logging.getLogger("tests.redaction")
    handler = ListHandler()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)


def test_adapter_redacts_frames_before_truncation(handler):
    """A long frame is redacted before websockets elides its middle, so no fragment survives."""
    token = "frame-token-" + "z" * 200
    data = (
        '{"type":"publish","id":"1","authorization":{"Authorization":"' + token + '"}}'
    ).encode()
    redacting_logger("tests.redaction").debug("> %s", Frame(Opcode.TEXT, data))
    assert "zzzz" not in handler.lines[0]
    assert handler.lines[0].startswith("> TEXT ")


def test_adapter_redacts_tracebacks_and_points_at_caller(handler):
    """exc_info tracebacks are redacted and the record names the real caller."""
    handler.setFormatter(logging.Formatter("%(funcName)s %(message)s"))
    adapter = redacting_logger(logging.getLogger("tests.redaction"))
    try:
        raise ValueError("bad header-eyJzZWNyZXQiOiJ0b2tlbiJ9xxxxxxxx")
    except ValueError:
        adapter.error("failed", exc_info=True)
    assert "eyJzZWNyZXQi" not in handler.lines[0]
    assert "ValueError" in handler.lines[0]
    assert handler.lines[0].startswith("test_adapter_redacts_tracebacks_and_points_at_caller ")


def test_adapter_skips_disabled_levels(handler):
    """Nothing is formatted or emitted below the logger's level."""
    logging.getLogger("tests.redaction").setLevel(logging.INFO)

    @dataclass
    class Boom:
        def __str__(self) -> str:
            raise AssertionError("formatted although disabled")

    redacting_logger("tests.redaction").debug("%s", Boom())
    assert handler.lines == []


def test_filter_redacts_foreign_records(handler):
    """RedactingFilter on a handler cleans records logged by other libraries."""
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("tests.redaction")
    logger.debug("Sending http request: %s", {"Authorization": "AWS4 Signature=" + SIG})
    try:
        raise RuntimeError("x-api-key: da2-inexception")
    except RuntimeError:
        logger.exception("boom")
    text = "\n".join(handler.lines)
    assert SIG not in text
    assert "da2-inexception" not in text
    assert "RuntimeError" in text


async def test_the_emulators_frame_log_keeps_no_fragment_of_a_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """At DEBUG, the emulator's server logs every received frame shortened in the middle:
    the whole frame is redacted first, so no part of the API key survives the cut."""
    import logging

    from appsync_events.client import AppSyncEventsClient
    from appsync_events.config import APIConfig
    from appsync_events.emulator import AppSyncEventsEmulator

    key = "da2-" + "k3yfragmentsmustneverleak0"
    emulator = AppSyncEventsEmulator(port=0, api_keys=[key], namespaces=["chat"])
    emulator.start()
    try:
        config = APIConfig.from_mapping(
            "default", {"HTTP_URL": emulator.http_url, "AUTH": {"API_KEY": key}}
        )
        with caplog.at_level(logging.DEBUG):
            async with AppSyncEventsClient(config) as client:
                await client.subscribe("/chat/" + "x" * 40)
                await client.publish("/chat/a", ['{"long": "' + "y" * 200 + '"}'])
    finally:
        emulator.stop()
    frames = [r for r in caplog.records if r.name == "uvicorn.error" and "TEXT" in r.getMessage()]
    assert frames, "the server's frame log was not captured"
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "..." in text  # frames really were shortened
    fragments = [key[i : i + 6] for i in range(len(key) - 6)]
    assert [f for f in fragments if f in text] == []
