"""``python -m appsync_events.emulator``: the emulator without a Django project.

The flags, the ready line and the exit statuses are those of
``manage.py appsync_emulator`` (see :mod:`appsync_events.emulator.cli`).
"""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
