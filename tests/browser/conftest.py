"""Fixtures of the browser tests: Debian's Chromium, driven by Playwright."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.prereqs import require_chromium, require_playwright

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
# Milliseconds Playwright waits for a condition on a page.
TIMEOUT_MS = 20_000


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium (Debian's, never ``playwright install``), driven by Playwright."""
    executable = require_chromium()
    require_playwright()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()
