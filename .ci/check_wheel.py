"""Check an installed django-appsync-events wheel: run by the clean venv's Python.

Run from a directory outside the source tree so ``import appsync_events`` can only find the
installed copy. Exits non-zero, naming each problem, when the wheel is incomplete.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from pathlib import Path

# (path inside the package, what it is for); directories must hold at least one real file.
REQUIRED = [
    ("py.typed", "the PEP 561 marker that makes type checkers read our annotations"),
    ("migrations/__init__.py", "the migrations package"),
    ("templates/appsync_events", "the app's templates"),
    ("static/appsync_events", "the app's static files"),
]
# Nothing from the development tree may leak into the wheel.
FORBIDDEN_TOP_LEVEL = ("tests", "demo_project", "bench")


def main() -> int:
    """Import the installed package and check its files; return the exit status."""
    problems: list[str] = []
    package = importlib.import_module("appsync_events")
    root = Path(package.__file__ or "").resolve().parent
    if "site-packages" not in root.parts:
        problems.append(f"appsync_events was imported from {root}, not from the installed wheel")
    version = importlib.metadata.version("django-appsync-events")
    if getattr(package, "__version__", None) != version:
        problems.append(
            f"appsync_events.__version__ is {getattr(package, '__version__', None)!r} "
            f"but the distribution says {version!r}"
        )
    for relative, purpose in REQUIRED:
        path = root / relative
        if not path.exists():
            problems.append(f"missing {relative} ({purpose})")
        elif path.is_dir() and not any(p.is_file() for p in path.rglob("*")):
            problems.append(f"{relative} holds no files ({purpose})")
    files = importlib.metadata.files("django-appsync-events") or []
    leaked = sorted(
        {str(f).split("/", 1)[0] for f in files if str(f).split("/", 1)[0] in FORBIDDEN_TOP_LEVEL}
    )
    if leaked:
        problems.append(f"the wheel contains development folders: {', '.join(leaked)}")
    # The public submodules must import without Django settings configured.
    for module in ("appsync_events.protocol", "appsync_events.paths", "appsync_events.limits"):
        try:
            importlib.import_module(module)
        except Exception as error:  # report every broken module, not just the first
            problems.append(f"import {module} failed: {error!r}")
    if problems:
        for problem in problems:
            print(f"wheel check: {problem}", file=sys.stderr)
        return 1
    print(f"wheel check: django-appsync-events {version} installed at {root} is complete")
    return 0


if __name__ == "__main__":
    sys.exit(main())
