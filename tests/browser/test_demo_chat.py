"""The demo chat in a real browser: rooms are isolated, the wildcard page sees every room.

Python Playwright drives Debian's Chromium (never ``playwright install``). The test skips
when Chromium is missing, and fails instead under ``CI=true``. On failure, a screenshot of
every page is written to ``test-artifacts/``.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import TIMEOUT_MS
from tests.browser.demo_process import REPO, DemoProcess, demo_env, screenshot_pages

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[DemoProcess]:
    """A running demo on free ports with a fresh database."""
    process = DemoProcess(tmp_path / "demo.sqlite3")
    try:
        process.wait_ready()
        yield process
    finally:
        process.kill()


def _open(context: Any, url: str) -> Any:
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    # The page's socket is open and the server confirmed the follow (through the listener).
    page.wait_for_selector('#page-follow[data-state="following"]')
    return page


def _post(page: Any, author: str, text: str) -> None:
    page.fill("input[name=author]", author)
    page.fill("input[name=text]", text)
    page.click("#post-form button[type=submit]")


def _texts(page: Any) -> list[str]:
    return [str(t) for t in page.locator("#messages .message .text").all_inner_texts()]


def _message(page: Any, text: str) -> Any:
    return page.locator("#messages .message", has_text=text)


def test_two_tabs_chat_live_and_rooms_stay_apart(
    browser: Any, demo: DemoProcess, request: pytest.FixtureRequest
) -> None:
    """A message reaches the other tab of its room and the all-rooms page, never another room."""
    context = browser.new_context()
    pages: dict[str, Any] = {}
    try:
        pages["alpha-1"] = _open(context, demo.url + "rooms/alpha/")
        pages["alpha-2"] = _open(context, demo.url + "rooms/alpha/")
        pages["beta-1"] = _open(context, demo.url + "rooms/beta/")
        pages["beta-2"] = _open(context, demo.url + "rooms/beta/")
        pages["all"] = _open(context, demo.url + "rooms/")

        _post(pages["alpha-1"], "ada", "hello alpha")
        # The other tab gets it live, only through AppSync (it never posted anything).
        _message(pages["alpha-2"], "hello alpha").wait_for()
        # The wildcard page gets it too, and tells the room from the payload.
        all_alpha = _message(pages["all"], "hello alpha")
        all_alpha.wait_for()
        assert all_alpha.get_attribute("data-room") == "alpha"
        assert all_alpha.locator(".room-tag").inner_text() == "alpha"

        _post(pages["beta-1"], "bob", "hello beta")
        _message(pages["beta-2"], "hello beta").wait_for()
        all_beta = _message(pages["all"], "hello beta")
        all_beta.wait_for()
        assert all_beta.get_attribute("data-room") == "beta"

        # By now the alpha message went everywhere it was going to go.
        assert "hello alpha" not in _texts(pages["beta-1"])
        assert "hello alpha" not in _texts(pages["beta-2"])
        assert "hello beta" not in _texts(pages["alpha-1"])
        assert "hello beta" not in _texts(pages["alpha-2"])
        assert _texts(pages["all"]) == ["hello alpha", "hello beta"]
        # The sender's own tab shows its message once (POST answer and echo de-duplicated).
        assert _texts(pages["alpha-1"]) == ["hello alpha"]

        # User text is shown as text, never parsed as HTML, on every page it reaches.
        hostile = '<img src="x" onerror="document.body.dataset.pwned=1"><b>bold</b> & co'
        _post(pages["alpha-1"], "eve", hostile)
        _message(pages["alpha-2"], "bold").wait_for()
        _message(pages["all"], "bold").wait_for()
        for name in ("alpha-1", "alpha-2", "all"):
            assert _texts(pages[name])[-1] == hostile, name
            assert pages[name].locator("#messages img, #messages b").count() == 0, name
            assert pages[name].evaluate("document.body.dataset.pwned") is None, name

        # The status panel is fed by the listener's signals.
        panel = pages["alpha-2"]
        assert panel.inner_text("#status-state") == "connected"
        panel.wait_for_function(
            "() => Number(document.getElementById('status-events').textContent) >= 3"
        )
        assert panel.inner_text("#status-last-event") != "none yet"
    except BaseException:
        screenshot_pages(request.node.name, pages)
        print("demo output:\n" + "\n".join(demo.lines))
        raise
    finally:
        context.close()


# The time a message shows, computed from its datetime attribute as the page should: HH:MM:SS
# on this browser's clock.
TIMES = """() => [...document.querySelectorAll('#messages .message time')].map((el) => {
  const d = new Date(el.getAttribute('datetime'));
  const two = (n) => String(n).padStart(2, '0');
  return {shown: el.textContent,
          expected: two(d.getHours()) + ':' + two(d.getMinutes()) + ':' + two(d.getSeconds())};
})"""


def _publish_from_shell(demo: DemoProcess, command: str) -> None:
    """Run the room hint's command as a user would, with this interpreter as ``python``."""
    words = shlex.split(command)
    env = demo_env(demo.database)
    while "=" in words[0]:
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    assert words[:2] == ["python", "manage.py"], words
    result = subprocess.run(
        [sys.executable, *words[1:]],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_pages_guide_the_visitor_and_keep_one_time_format(
    browser: Any, demo: DemoProcess, request: pytest.FixtureRequest
) -> None:
    """The home page follows nothing and says so; the icon loads; a room's hint command
    publishes into the room; server-rendered and live messages show one time format; the
    status panel's subscriptions shrink when the room's last page leaves."""
    context = browser.new_context()
    pages: dict[str, Any] = {}
    try:
        home = pages["home"] = context.new_page()
        home.set_default_timeout(TIMEOUT_MS)
        home.goto(demo.url)
        home.wait_for_selector('#page-socket[data-state="open"]')
        assert home.inner_text("#page-follow") == "no channel on this page"
        assert home.get_attribute("#page-follow", "data-state") == "none"
        icon = home.evaluate(
            """async () => {
              const link = await fetch(document.querySelector("link[rel=icon]").href);
              const ico = await fetch("/favicon.ico");
              return [link.status, link.headers.get("content-type"), ico.status, ico.url];
            }"""
        )
        assert icon[:3] == [200, "image/svg+xml", 200]
        assert icon[3].endswith("/static/chat/favicon.svg")

        room = pages["room"] = _open(context, demo.url + "rooms/delta/")
        _post(room, "ada", "saved earlier")
        _message(room, "saved earlier").wait_for()
        room.reload()  # now server-rendered
        room.wait_for_selector('#page-follow[data-state="following"]')
        _post(room, "bob", "live now")
        _message(room, "live now").wait_for()
        times = room.evaluate(TIMES)
        assert len(times) == 2
        for time in times:
            assert time["shown"] == time["expected"], times

        command = room.inner_text("#publish-command")
        assert "appsync_publish /chat/rooms/delta " in command
        _publish_from_shell(demo, command)
        _message(room, "Hello from a shell").wait_for()

        watcher = pages["all"] = _open(context, demo.url + "rooms/")
        listed = "(path) => [...document.querySelectorAll('#status-subscriptions code')]"
        watcher.wait_for_function(
            listed + ".some((c) => c.textContent === path)", arg="/chat/rooms/delta"
        )
        room.close()
        del pages["room"]
        # After UNFOLLOW_GRACE the listener drops the follow: subscription_removed.
        watcher.wait_for_function(
            listed + ".every((c) => c.textContent !== path)", arg="/chat/rooms/delta"
        )
        assert "/chat/rooms/*" in watcher.inner_text("#status-subscriptions")
    except BaseException:
        screenshot_pages(request.node.name, pages)
        print("demo output:\n" + "\n".join(demo.lines))
        raise
    finally:
        context.close()
