"""Keep credentials out of log records, ``repr()`` and error messages.

Three tools, all built on :func:`redact`:

* :func:`redact` rewrites a string, hiding every credential it can recognise: the
  ``header-…`` connect subprotocol, the values of ``x-api-key``, ``Authorization`` and
  ``X-Amz-Security-Token`` (as HTTP header lines, JSON members or Python dict reprs),
  SigV4 ``Signature=…`` values, and every secret registered with :func:`register_secret`
  (the auth backends register each API key, token and session token they hand out, so
  opaque values are caught wherever they show up).
* :func:`redacting_logger` wraps a logger in a :class:`RedactingLoggerAdapter`. Give it to
  ``websockets`` (``connect(..., logger=redacting_logger("websockets.client"))``): that
  library logs every handshake header, ``Sec-WebSocket-Protocol`` included, and every
  frame at DEBUG.
* :class:`RedactingFilter` is a :class:`logging.Filter` for *handlers*, for records we do
  not create ourselves (botocore's own AWS calls, e.g. STS ``AssumeRole``, log their
  signed requests at DEBUG)::

      LOGGING = {
          "version": 1,
          "filters": {"redact": {"()": "appsync_events.redaction.RedactingFilter"}},
          "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["redact"]}},
          ...
      }

Redaction replaces a value with :data:`REDACTED`; it never shortens a value to a prefix,
so no part of a secret survives.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import traceback
from collections import OrderedDict
from collections.abc import Mapping, MutableMapping
from typing import Any, Final

__all__ = [
    "REDACTED",
    "SECRET_HEADER_NAMES",
    "RedactingFilter",
    "RedactingLoggerAdapter",
    "redact",
    "redact_headers",
    "redacting_logger",
    "register_secret",
]

#: What a secret is replaced with.
REDACTED: Final = "<redacted>"

#: Header names (lowercase) whose values are credentials.
SECRET_HEADER_NAMES: Final = frozenset({"x-api-key", "authorization", "x-amz-security-token"})

# Secrets shorter than this are not registered: replacing every occurrence of a very short
# string would mangle unrelated text, and no real key or token is that short.
_MIN_SECRET_LENGTH: Final = 8
# Bounded so a long-running listener that rotates tokens every few minutes for weeks does
# not grow without limit; the newest secrets are the ones still in use.
_MAX_SECRETS: Final = 512

_NAMES = r"x-api-key|authorization|x-amz-security-token"
_PATTERNS: Final = (
    # The connect subprotocol: base64url of the whole header object.
    (re.compile(r"header-[A-Za-z0-9_\-]{16,}={0,2}"), "header-" + REDACTED),
    # JSON members, dict reprs and header tuples, str or bytes: "authorization": "…",
    # 'x-api-key': '…', (b'authorization', b'…'). A value cut short by a truncating
    # logger runs to the end of the text.
    (
        re.compile(
            rf"""(?P<key>b?(?P<q>["'])(?:{_NAMES})(?P=q)\s*[:,]\s*)(?P<b>b?)(?P<v>["'])"""
            r"""(?:\\.|(?!(?P=v)).)*(?:(?P=v)|$)""",
            re.IGNORECASE | re.DOTALL,
        ),
        rf"\g<key>\g<b>\g<v>{REDACTED}\g<v>",
    ),
    # HTTP header lines ("> Authorization: …" from websockets) and "name: value" in prose
    # such as exception messages: everything after the colon, to the end of the line.
    (
        re.compile(rf"(?P<key>(?<![\w-])(?:{_NAMES})[ \t]*:[ \t]*)(?=\S).+$", re.IGNORECASE | re.M),
        rf"\g<key>{REDACTED}",
    ),
    # Key=value renderings such as "x-amz-security-token=…" in query strings or kwargs.
    (
        re.compile(rf"(?P<key>(?<![\w-])(?:{_NAMES})=)[^\s&,;'\"]+", re.IGNORECASE),
        rf"\g<key>{REDACTED}",
    ),
    # SigV4 signatures wherever they appear (authorization headers, presigned URLs).
    (re.compile(r"(?P<key>Signature=|X-Amz-Signature=)[0-9a-fA-F]+"), rf"\g<key>{REDACTED}"),
    # The password in a URL's user information (a proxy URL from the environment, say).
    (
        re.compile(r"(?P<key>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:)[^\s/@]+@"),
        rf"\g<key>{REDACTED}@",
    ),
    # AppSync API keys have a recognisable shape even before anyone registers them.
    (re.compile(r"\bda2-[a-z0-9]{26}\b"), REDACTED),
)

_secrets_lock = threading.Lock()
_secrets: OrderedDict[str, None] = OrderedDict()
_secrets_re: re.Pattern[str] | None = None


def register_secret(value: str | None) -> None:
    """Remember ``value`` as a secret, so :func:`redact` hides it wherever it appears.

    Auth backends call this for every API key, token and session token they use. Values
    shorter than 8 characters are ignored (no real credential is that short, and hiding
    every occurrence of a tiny string would garble unrelated text).
    """
    global _secrets_re
    if not value or len(value) < _MIN_SECRET_LENGTH:
        return
    with _secrets_lock:
        if value in _secrets:
            _secrets.move_to_end(value)
            return
        _secrets[value] = None
        while len(_secrets) > _MAX_SECRETS:
            _secrets.popitem(last=False)
        # Longest first, so a secret that contains another is hidden whole.
        ordered = sorted(_secrets, key=len, reverse=True)
        _secrets_re = re.compile("|".join(re.escape(s) for s in ordered))


def redact(text: str) -> str:
    """Return ``text`` with every credential it holds replaced by :data:`REDACTED`."""
    if not text:
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    secrets_re = _secrets_re
    if secrets_re is not None:
        text = secrets_re.sub(REDACTED, text)
    return text


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Return a copy of a header object with credential values replaced by :data:`REDACTED`.

    Non-secret headers (``host``, ``x-amz-date``…) are kept, so the result is safe to log
    and still useful for debugging.
    """
    return {
        name: REDACTED if name.lower() in SECRET_HEADER_NAMES else redact(value)
        for name, value in headers.items()
    }


def _redact_arg(arg: Any) -> Any:
    # websockets logs frames as objects whose __str__ keeps only the start and the end of
    # the payload; redacting that truncated text could miss a secret cut in half, so the
    # payload is redacted *before* websockets shortens it.
    data = getattr(arg, "data", None)
    if (
        isinstance(data, bytes | bytearray | memoryview)
        and dataclasses.is_dataclass(arg)
        and not isinstance(arg, type)
    ):
        try:
            text = bytes(data).decode()
        except UnicodeDecodeError:
            return arg
        return dataclasses.replace(arg, data=redact(text).encode())
    return arg


def _render(msg: object, args: Any) -> str:
    if isinstance(args, tuple):
        args = tuple(_redact_arg(a) for a in args)
    try:
        return str(msg) % args if args else str(msg)
    except (TypeError, ValueError, KeyError):
        # A broken format string must not hide the message; show its parts instead.
        return f"{msg} {args!r}"


class RedactingLoggerAdapter(logging.LoggerAdapter[logging.Logger]):
    """A logger adapter that redacts every message (and traceback) before logging it.

    Arguments are formatted eagerly, but only when the level is enabled, so disabled
    DEBUG logging costs nothing. A record's ``exc_info`` is rendered, redacted and
    appended to the message (exception messages can quote credentials).
    """

    def __init__(self, logger: logging.Logger, extra: Mapping[str, object] | None = None) -> None:
        super().__init__(logger, extra or {})

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        """Pass ``extra`` through unchanged (the message is handled in :meth:`log`)."""
        if self.extra:
            kwargs["extra"] = {**self.extra, **(kwargs.get("extra") or {})}
        return msg, kwargs

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        """Log ``msg % args`` at ``level`` with every credential redacted."""
        if not self.isEnabledFor(level):
            return
        text = _render(msg, args)
        exc_info = kwargs.pop("exc_info", None)
        if exc_info:
            if exc_info is True or not isinstance(exc_info, (tuple, BaseException)):
                lines = traceback.format_exc()
            elif isinstance(exc_info, BaseException):
                lines = "".join(traceback.format_exception(exc_info))
            else:
                lines = "".join(traceback.format_exception(*exc_info))
            text = f"{text}\n{lines.rstrip()}"
        kwargs.pop("stack_info", None)
        msg, processed = self.process(redact(text), kwargs)
        # stacklevel=2 points the record at the caller of debug()/info() (logging skips
        # its own frames), not at this method.
        processed.setdefault("stacklevel", 2)
        self.logger.log(level, "%s", msg, **processed)


def redacting_logger(logger: str | logging.Logger) -> RedactingLoggerAdapter:
    """Return ``logger`` (a name or a logger) wrapped so it never emits a credential.

    Pass the result as ``logger=`` to ``websockets.asyncio.client.connect()`` or
    ``websockets.asyncio.server.serve()``.
    """
    if isinstance(logger, str):
        logger = logging.getLogger(logger)
    return RedactingLoggerAdapter(logger)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts credentials from every record it sees.

    Attach it to handlers (see the module docstring): a filter on a *logger* only sees
    records logged to that very logger, not those propagated from its children.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``record`` in place with its message redacted; always keep it."""
        if isinstance(record.args, tuple):
            # A websockets frame argument shortens its payload when formatted: redact the
            # whole payload first, so a credential cut in half is still recognised.
            record.args = tuple(_redact_arg(arg) for arg in record.args)
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError):
            message = f"{record.msg} {record.args!r}"
        redacted = redact(message)
        if redacted != message:
            record.msg = redacted
            record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip())
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
