"""The README's getting-started steps, read from README.md for the tests that follow them.

In README.md a step is an HTML comment (invisible once rendered) ``<!-- step: KIND
[ARGUMENT] -->`` on a line of its own; the steps are taken in reading order:

* ``shell``: the next fenced block holds commands, run one after the other to completion;
* ``serve``: the next fenced block holds one command that keeps running (a server);
* ``append PATH`` / ``write PATH``: the next fenced block is appended to, or becomes, the
  file ``PATH`` (relative to the project directory, where ``manage.py`` is);
* ``open URL``: the page to open in a browser;
* ``expect TEXT``: text that page shows from then on.

A ``<!-- snippet: NAME -->`` marker may stand between a step marker and its block: a
python block is also a snippet, executed by ``tests/test_demo_readme.py``.
``tests/browser/test_readme_quickstart.py`` runs the steps on a fresh ``startproject``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BLOCK_KINDS", "KINDS", "README", "Step", "read_steps"]

README = Path(__file__).resolve().parents[1] / "README.md"

#: Kinds whose marker is followed by a fenced block.
BLOCK_KINDS = frozenset({"shell", "serve", "append", "write"})
#: Every kind of step, and whether it takes an argument.
KINDS = {
    "shell": False,
    "serve": False,
    "append": True,
    "write": True,
    "open": True,
    "expect": True,
}

_MARKER = re.compile(r"^<!-- step: (?P<kind>[a-z]+)(?: (?P<argument>.+?))? -->$", re.MULTILINE)
_BLOCK = re.compile(
    r"\n(?:[ \t]*\n)*"  # the rest of the marker's line, blank lines
    r"(?:<!-- snippet: [a-z0-9-]+ -->\n)?"  # a snippet marker
    r"```(?P<language>[a-z]*)\n(?P<body>.*?)^```$",
    re.MULTILINE | re.DOTALL,
)


@dataclass(frozen=True)
class Step:
    """One step of the README.

    Attributes:
        kind: one of :data:`KINDS`.
        argument: the marker's argument (a path, a URL, a text), or ``""``.
        language: the fenced block's language (``sh``, ``python``, ``html``), or ``""``.
        body: the fenced block's text, or ``""``.
        line: the marker's line number in README.md.
    """

    kind: str
    argument: str
    language: str
    body: str
    line: int

    def commands(self) -> list[str]:
        """Return the commands of a ``shell`` or ``serve`` block, one per non-blank line."""
        return [line.strip() for line in self.body.splitlines() if line.strip()]


def read_steps(text: str | None = None) -> list[Step]:
    """Return the steps marked in ``text`` (default: README.md), in order.

    Raises:
        ValueError: a marker of an unknown kind, with a missing or extra argument, or
            without the fenced block its kind needs (naming the line).
    """
    text = README.read_text(encoding="utf-8") if text is None else text
    steps: list[Step] = []
    for marker in _MARKER.finditer(text):
        kind, argument = marker["kind"], marker["argument"] or ""
        line = text.count("\n", 0, marker.start()) + 1
        if kind not in KINDS:
            raise ValueError(f"README.md line {line}: unknown step kind {kind!r}")
        if KINDS[kind] != bool(argument):
            raise ValueError(
                f"README.md line {line}: step {kind!r} "
                + ("needs an argument" if KINDS[kind] else "takes no argument")
            )
        language = body = ""
        if kind in BLOCK_KINDS:
            block = _BLOCK.match(text, marker.end())
            if block is None:
                raise ValueError(f"README.md line {line}: step {kind!r} needs a fenced block next")
            language, body = block["language"], block["body"]
        steps.append(Step(kind, argument, language, body, line))
    return steps
