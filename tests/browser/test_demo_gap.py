"""The demo in Chromium, when events never reach a page: it is told which, and re-syncs.

``manage.py appsync_demo`` runs on a channel layer that loses the chat messages whose text
starts with ``(lost)`` (:mod:`tests.browser.lossy_layer`): the channel layer drops them for
the page's consumer as it drops the messages of a consumer that lags past its capacity.
The consumer sees the next event's sequence number skip, sends the page a ``gap`` with the
missed range, and the page reloads the room's recent messages.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import TIMEOUT_MS
from tests.browser.demo_process import DemoProcess, screenshot_pages
from tests.browser.lossy_layer import LOST

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOM = "gamma"
GROUP = "appsync.chat.rooms.gamma"

# Post a message through the room's form endpoint, as another tab would: the page itself
# only learns of it through AppSync (its own submit handler is not involved).
POST = """async ([author, text]) => {
  const form = document.getElementById("post-form");
  const data = new FormData(form);
  data.set("author", author);
  data.set("text", text);
  const response = await fetch(form.action, {
    method: "POST", body: data, headers: {Accept: "application/json"}});
  return response.status;
}"""


@pytest.fixture
def lossy_demo(tmp_path: Path) -> Iterator[DemoProcess]:
    """The demo on the lossy channel layer, on free ports with a fresh database."""
    process = DemoProcess(
        tmp_path / "demo.sqlite3",
        env={"DJANGO_SETTINGS_MODULE": "tests.browser.gap_demo_settings"},
    )
    try:
        process.wait_ready()
        process.wait_for_line(r"Channel layer: LossyChannelLayer")
        yield process
    finally:
        process.kill()


def _texts(page: Any) -> list[str]:
    return [str(t) for t in page.locator("#messages .message .text").all_inner_texts()]


def test_a_page_that_missed_events_is_told_which_and_reloads_them(
    browser: Any, lossy_demo: DemoProcess, request: pytest.FixtureRequest
) -> None:
    """Two messages lost on the way: the page is told exactly which (events 2 to 3 of its
    room), the server logs the gap once, and the page reloads the room's messages so it
    shows all four, in order."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        page.goto(f"{lossy_demo.url}rooms/{ROOM}/")
        page.wait_for_selector('#page-follow[data-state="following"]')
        assert page.is_hidden("#sync-notice")

        assert page.evaluate(POST, ["ada", "one"]) == 201
        page.locator("#messages .message", has_text="one").wait_for()
        for text in (f"{LOST} two", f"{LOST} three"):
            assert page.evaluate(POST, ["ada", text]) == 201
        assert page.evaluate(POST, ["ada", "four"]) == 201

        # "four" reveals the gap; the page reloads and shows every message, in order.
        page.wait_for_selector('#sync-notice[data-state="synced"]')
        page.wait_for_function("() => document.querySelectorAll('#messages .message').length >= 4")
        assert _texts(page) == ["one", f"{LOST} two", f"{LOST} three", "four"]
        notice = page.locator("#sync-notice")
        assert (
            notice.get_attribute("data-reason"),
            notice.get_attribute("data-from"),
            notice.get_attribute("data-to"),
        ) == ("lagging", "2", "3")
        said = "This page fell behind and missed 2 events (#2 to #3)."
        assert notice.inner_text().startswith(said)
        ids = page.evaluate(
            "() => [...document.querySelectorAll('#messages .message')]"
            ".map((li) => Number(li.dataset.messageId))"
        )
        assert ids == sorted(ids)

        # Later messages arrive live as before; nothing else was missed.
        assert page.evaluate(POST, ["bob", "five"]) == 201
        page.locator("#messages .message", has_text="five").wait_for()
        assert _texts(page)[-1] == "five"
        assert lossy_demo.stop() == 0
        gaps = [line for line in lossy_demo.lines if "missed events" in line]
        assert len(gaps) == 1, lossy_demo.lines
        assert re.search(
            rf"missed events of /chat/rooms/{ROOM} on group {GROUP} \(lagging\): seq 2 to 3 ",
            gaps[0],
        ), gaps
    except BaseException:
        screenshot_pages(request.node.name, {"page": page})
        print("demo output:\n" + "\n".join(lossy_demo.lines))
        raise
    finally:
        context.close()
