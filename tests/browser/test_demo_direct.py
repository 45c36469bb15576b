"""The demo chat in direct mode (``DEMO_DIRECT=1``) in a real browser.

The pages fetch a token from ``/appsync/token/`` and connect to the emulator themselves;
the emulator runs ``appsync_events.lambda_authorizer`` as its Lambda authorizer. Python
Playwright drives Debian's Chromium; on failure, screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import TIMEOUT_MS
from tests.browser.demo_process import DemoProcess, screenshot_pages

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[DemoProcess]:
    """The demo in direct mode, on free ports with a fresh database."""
    process = DemoProcess(tmp_path / "demo.sqlite3", env={"DEMO_DIRECT": "1"})
    try:
        process.wait_ready()
        yield process
    finally:
        process.kill()


def _open(context: Any, url: str, sockets: list[str]) -> Any:
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.goto(url)
    page.wait_for_selector('#page-follow[data-state="following"]')
    return page


def test_pages_talk_to_the_emulator_directly_with_tokens(
    browser: Any, demo: DemoProcess, request: pytest.FixtureRequest
) -> None:
    """In direct mode the panel says so, every page socket goes to the emulator (none to
    Django), and a message posted in one tab reaches the other tab and the all-rooms page."""
    assert any(line.startswith("Mode: direct") for line in demo.lines)
    context = browser.new_context()
    sockets: list[str] = []
    pages: dict[str, Any] = {}
    try:
        pages["one"] = _open(context, demo.url + "rooms/alpha/", sockets)
        pages["two"] = _open(context, demo.url + "rooms/alpha/", sockets)
        pages["all"] = _open(context, demo.url + "rooms/", sockets)
        for page in pages.values():
            assert page.inner_text("#page-mode") == "direct"
            assert page.inner_text("#page-socket") == "open"
        emulator = f"ws://127.0.0.1:{demo.emulator_port}/event/realtime"
        assert sockets == [emulator] * 3

        one = pages["one"]
        one.fill("input[name=author]", "ada")
        one.fill("input[name=text]", "straight from AppSync")
        one.click("#post-form button[type=submit]")
        pages["two"].locator("#messages .message", has_text="straight from AppSync").wait_for()
        tagged = pages["all"].locator("#messages .message", has_text="straight from AppSync")
        tagged.wait_for()
        assert tagged.get_attribute("data-room") == "alpha"
        # The listener (in Django) still runs; the panel polls its status.
        pages["two"].wait_for_function(
            "() => document.getElementById('status-state').textContent === 'connected'"
        )
    except BaseException:
        screenshot_pages(request.node.name, pages)
        print("demo output:\n" + "\n".join(demo.lines))
        raise
    finally:
        context.close()
