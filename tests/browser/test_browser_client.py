"""The browser client (appsync-events.js) in Chromium against the real consumer.

A tiny ASGI app runs under uvicorn in a thread, on a free loopback port: over HTTP it serves
a page that loads the client through ``{% appsync_events_script %}`` (the script itself is
found by Django's staticfiles finders), over websockets it runs
:class:`~appsync_events.consumers.AppSyncEventsConsumer` on the in-memory channel layer.
Events are delivered as the listener would deliver them: through the forwarder, on the
server's loop (or, to lose some on purpose, as numbered forwarded messages sent to the
group straight away). Channels the config holds statically are confirmed at once, so no listener
is needed. The test can close a page's socket from the server side to watch the client
reconnect and subscribe again.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
import uvicorn
from channels.layers import get_channel_layer
from django.contrib.staticfiles import finders
from django.template import Context, Template

from appsync_events.backends import locmem
from appsync_events.consumers import AppSyncEventsConsumer
from appsync_events.events import ReceivedEvent
from appsync_events.forwarding import ChannelLayerForwarder, forward_message
from appsync_events.paths import group_name
from tests.browser.conftest import TIMEOUT_MS

pytestmark = [pytest.mark.browser]

T = TypeVar("T")
# Seconds the test thread waits for something it asked the server loop to do.
SERVER_TIMEOUT = 10.0
WS_PATH = "/ws/"
FORBIDDEN = "/chat/forbidden"

PAGE = Template(
    "{% load appsync_events %}<!doctype html><html><head><meta charset='utf-8'>"
    "<title>client</title><link rel='icon' href='data:,'>{% appsync_events_script %}"
    "</head><body></body></html>"
)
MODULE_PAGE = (
    "<!doctype html><html><head><meta charset='utf-8'><title>module</title>"
    "<link rel='icon' href='data:,'>"
    "<script type='module'>"
    "import AppSyncEvents, { connect, backoffDelay } from "
    "'/static/appsync_events/appsync-events.mjs';"
    "window.moduleResult = {default: AppSyncEvents === window.AppSyncEvents,"
    " connect: connect === window.AppSyncEvents.connect, backoff: typeof backoffDelay};"
    "</script></head><body></body></html>"
)
CONTENT_TYPES = {".js": b"text/javascript", ".mjs": b"text/javascript"}

# Sockets the consumer accepted and has not closed yet, in order (server loop only).
SOCKETS: list[PageConsumer] = []


class PageConsumer(AppSyncEventsConsumer):
    """The library's consumer, open to anonymous pages, refusing one channel (its hooks
    replace the settings' GRANTS)."""

    async def can_subscribe(self, user: Any, channel: str) -> bool:
        """Refuse :data:`FORBIDDEN`, allow the rest."""
        return channel != FORBIDDEN

    async def can_publish(self, user: Any, channel: str) -> bool:
        """Refuse :data:`FORBIDDEN`, allow the rest."""
        return channel != FORBIDDEN

    async def connect(self) -> None:
        """Accept and remember the socket."""
        await super().connect()
        SOCKETS.append(self)

    async def disconnect(self, code: int) -> None:
        """Forget the socket."""
        if self in SOCKETS:
            SOCKETS.remove(self)
        await super().disconnect(code)


async def _http(scope: dict[str, Any], receive: Any, send: Any) -> None:
    path = scope["path"]
    status, content_type, body = 404, b"text/plain", b"not found"
    if path == "/":
        status, content_type = 200, b"text/html; charset=utf-8"
        body = PAGE.render(Context({})).encode()
    elif path == "/module":
        status, content_type, body = 200, b"text/html; charset=utf-8", MODULE_PAGE.encode()
    elif path.startswith("/static/"):
        found = finders.find(path.removeprefix("/static/"))
        if isinstance(found, str):
            suffix = found[found.rfind(".") :]
            status, content_type = 200, CONTENT_TYPES.get(suffix, b"application/octet-stream")
            with open(found, "rb") as file:  # noqa: ASYNC230 (a small local file, test only)
                body = file.read()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"cache-control", b"no-store")],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _Server(uvicorn.Server):
    """uvicorn, setting an event once it listens (it has no such event of its own)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: Any = None) -> None:
        """Start listening, then say so."""
        await super().startup(sockets)
        self.ready.set()


class PageServer:
    """The ASGI app under uvicorn on its own loop in a thread, on 127.0.0.1 port 0."""

    def __init__(self) -> None:
        self._consumer = PageConsumer.as_asgi()
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=0,
            lifespan="off",
            interface="asgi3",
            ws="websockets-sansio",
            log_config=None,  # leave the process's logging alone
        )
        self.server = _Server(config)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="page-server", daemon=True)
        self.port = 0

    async def app(self, scope: Any, receive: Any, send: Any) -> None:
        """Route HTTP to the pages and static files, websockets on WS_PATH to the consumer."""
        if scope["type"] == "http":
            await _http(scope, receive, send)
        elif scope["type"] == "websocket" and scope["path"] == WS_PATH:
            await self._consumer(scope, receive, send)
        else:
            await send({"type": "websocket.close", "code": 4404})

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.serve())
        finally:
            self.loop.close()

    def start(self) -> None:
        """Start serving and learn the port."""
        SOCKETS.clear()
        self._thread.start()
        assert self.server.ready.wait(SERVER_TIMEOUT), "the page server did not start"
        assert self.server.started, "the page server failed to start"
        self.port = self.server.servers[0].sockets[0].getsockname()[1]

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        self.server.should_exit = True
        self._thread.join(SERVER_TIMEOUT)
        assert not self._thread.is_alive(), "the page server did not stop"

    @property
    def url(self) -> str:
        """The page's address."""
        return f"http://127.0.0.1:{self.port}/"

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(SERVER_TIMEOUT)

    def sockets(self) -> list[PageConsumer]:
        """Return the open consumer sockets (read on the server's loop)."""

        async def read() -> list[PageConsumer]:
            return list(SOCKETS)

        return self.call(read())

    def subscriptions(self) -> list[list[str]]:
        """Return the channels each open socket holds, in socket order."""

        async def read() -> list[list[str]]:
            return [sorted(s.subscriptions) for s in SOCKETS]

        return self.call(read())

    def deliver(self, subscription: str, payload: Any) -> None:
        """Forward one event to the subscribers of ``subscription``, as the listener would."""

        async def dispatch() -> None:
            forwarder = ChannelLayerForwarder.from_settings("default", in_process=True)
            event = ReceivedEvent("default", subscription, payload, json.dumps(payload))
            await forwarder.dispatch(event)

        self.call(dispatch())

    def send_numbered(self, subscription: str, payload: Any, seq: int, run: str) -> None:
        """Send the group of ``subscription`` the forwarder's message number ``seq`` of
        ``run`` (numbers left out never reach the page: lost on the way)."""

        async def send() -> None:
            layer = get_channel_layer()
            event = ReceivedEvent("default", subscription, payload, json.dumps(payload))
            message = forward_message(event, seq=seq, run=run)
            await layer.group_send(group_name(subscription, prefix="appsync"), message)

        self.call(send())

    def drop_socket(self, index: int = 0, code: int = 4000) -> None:
        """Close one page socket from the server side."""

        async def close() -> None:
            await SOCKETS[index].close(code=code)

        self.call(close())


@pytest.fixture
def server(settings: Any) -> Iterator[PageServer]:
    """The page server, with two static channels and the locmem publish backend."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.APPSYNC_EVENTS = {
        "default": {
            **settings.APPSYNC_EVENTS["default"],
            "SUBSCRIPTIONS": ["/chat/lobby", "/chat/news"],
            "PUBLISH": {"BACKEND": "locmem"},
        }
    }
    locmem.clear()
    instance = PageServer()
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()
        locmem.clear()


@pytest.fixture
def page(browser: Any, server: PageServer) -> Iterator[Any]:
    """The client's page, with a ``log`` of what the client reported."""
    context = browser.new_context()
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    messages: list[str] = []
    tab.on("console", lambda m: messages.append(f"{m.type}: {m.text}"))
    tab.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
    try:
        tab.goto(server.url)
        tab.evaluate("window.log = []")
        yield tab
        # Chromium's own log line for a refused handshake is expected where a test wants one.
        errors = [
            m
            for m in messages
            if m.startswith(("error", "pageerror")) and "WebSocket connection to" not in m
        ]
        assert not errors, messages
    finally:
        context.close()


# Connects with short, observable backoff; every callback writes to window.log.
CONNECT = """(options) => {
  window.client = AppSyncEvents.connect("/ws/", Object.assign({
    minDelay: 100, maxDelay: 400, jitter: 0.5,
    onStateChange: (state, detail) => log.push({kind: "state", state, detail}),
    onError: (e) => log.push({kind: "error", code: e.code, channel: e.channel}),
    onGap: (gap) => log.push(Object.assign({kind: "gap"}, gap)),
  }, options || {}));
  return client.state;
}"""

SUBSCRIBE = """(channel) => {
  window.stops = window.stops || {};
  window.stops[channel] = client.subscribe(channel,
    (payload, message) => log.push({kind: "event", channel: message.channel, payload}),
    {
      onSubscribed: (c) => log.push({kind: "subscribed", channel: c}),
      onError: (e) => log.push({kind: "sub-error", code: e.code, channel: e.channel}),
      onGap: (gap) => log.push(Object.assign({kind: "sub-gap"}, gap)),
    });
}"""


def _log(page: Any, kind: str) -> list[dict[str, Any]]:
    entries = page.evaluate("(kind) => log.filter((e) => e.kind === kind)", kind)
    return list(entries)


def _wait_log(page: Any, kind: str, count: int = 1) -> list[dict[str, Any]]:
    page.wait_for_function(
        "([kind, count]) => log.filter((e) => e.kind === kind).length >= count", arg=[kind, count]
    )
    return _log(page, kind)


def test_subscribe_before_open_receive_events_and_unsubscribe(page: Any, server: PageServer):
    """A subscription made while connecting is sent on open; its events arrive; it can end."""
    assert page.evaluate(CONNECT) == "connecting"
    page.evaluate(SUBSCRIBE, "chat/lobby/")  # normalised to /chat/lobby, as the server does
    assert _wait_log(page, "subscribed") == [{"kind": "subscribed", "channel": "/chat/lobby"}]
    assert page.evaluate("client.status('/chat/lobby')") == "subscribed"
    assert page.evaluate("client.url") == f"ws://127.0.0.1:{server.port}/ws/"
    assert server.subscriptions() == [["/chat/lobby"]]

    server.deliver("/chat/lobby", {"text": "hi", "n": 1})
    assert _wait_log(page, "event") == [
        {"kind": "event", "channel": "/chat/lobby", "payload": {"text": "hi", "n": 1}}
    ]

    assert page.evaluate("window.stops['chat/lobby/']()") is True
    assert page.evaluate("window.stops['chat/lobby/']()") is False  # only once
    page.wait_for_function("() => client.status('/chat/lobby') === undefined")
    # The consumer handles one message at a time: once a later request is answered, the
    # unsubscribe before it has been handled too.
    page.evaluate(SUBSCRIBE, "/chat/news")
    _wait_log(page, "subscribed", 2)
    assert server.subscriptions() == [["/chat/news"]]
    assert _log(page, "error") == []


def test_reconnect_resubscribes_every_active_channel(page: Any, server: PageServer):
    """After the server drops the socket, the client reconnects and subscribes again."""
    page.evaluate(CONNECT)
    page.evaluate(SUBSCRIBE, "/chat/lobby")
    page.evaluate(SUBSCRIBE, "/chat/news")
    _wait_log(page, "subscribed", 2)
    first = server.sockets()
    assert len(first) == 1

    server.drop_socket(code=4000)
    page.wait_for_function("() => log.some((e) => e.state === 'reconnecting')")
    reconnecting = next(e for e in _log(page, "state") if e["state"] == "reconnecting")
    assert reconnecting["detail"]["code"] == 4000
    assert reconnecting["detail"]["attempt"] == 1
    # The first attempt waits minDelay (100 ms), less up to jitter (50%) of it.
    assert 50 <= reconnecting["detail"]["delay"] <= 100

    subscribed = _wait_log(page, "subscribed", 4)
    assert sorted(e["channel"] for e in subscribed[2:]) == ["/chat/lobby", "/chat/news"]
    states = [e["state"] for e in _log(page, "state")]
    assert states == ["connecting", "open", "reconnecting", "connecting", "open"]
    second = server.sockets()
    assert len(second) == 1
    assert second[0] is not first[0]
    assert server.subscriptions() == [["/chat/lobby", "/chat/news"]]

    server.deliver("/chat/news", {"after": "reconnect"})
    events = _wait_log(page, "event")
    assert events == [{"kind": "event", "channel": "/chat/news", "payload": {"after": "reconnect"}}]


def test_gaps_reach_the_subscription_and_the_client_before_the_next_event(
    page: Any, server: PageServer
):
    """The consumer's gap message (events 3 to 5 lost, then a listener restart) calls the
    subscription's onGap, then the client's, with the range, before the event after it."""
    page.evaluate(CONNECT)
    page.evaluate(SUBSCRIBE, "/chat/lobby")
    _wait_log(page, "subscribed")
    for seq in (1, 2, 6):  # 3, 4 and 5 never reach the socket
        server.send_numbered("/chat/lobby", {"n": seq}, seq, "run-a")
    server.send_numbered("/chat/lobby", {"n": "restarted"}, 1, "run-b")
    _wait_log(page, "event", 4)
    order = page.evaluate(
        "() => log.filter((e) => ['event', 'gap', 'sub-gap'].includes(e.kind))"
        ".map((e) => e.kind === 'event' ? e.payload.n : e.kind)"
    )
    assert order == [1, 2, "sub-gap", "gap", 6, "sub-gap", "gap", "restarted"]
    lagging = {"channel": "/chat/lobby", "reason": "lagging", "from": 3, "to": 5, "run": "run-a"}
    restart = {
        "channel": "/chat/lobby",
        "reason": "listener_restart",
        "from": None,
        "to": None,
        "run": "run-b",
    }
    assert _log(page, "sub-gap") == [{"kind": "sub-gap", **lagging}, {"kind": "sub-gap", **restart}]
    assert _log(page, "gap") == [{"kind": "gap", **lagging}, {"kind": "gap", **restart}]
    assert _log(page, "error") == []


def test_a_reconnect_is_a_gap_once_the_subscription_is_held_again(page: Any, server: PageServer):
    """The first confirmation is no gap; after the socket was lost, the subscription's
    confirmation on the new socket is followed by a "reconnect" gap."""
    page.evaluate(CONNECT)
    page.evaluate(SUBSCRIBE, "/chat/lobby")
    _wait_log(page, "subscribed")
    server.deliver("/chat/lobby", {"n": 1})
    _wait_log(page, "event")
    assert _log(page, "gap") == []

    server.drop_socket(code=4000)
    _wait_log(page, "gap")
    kinds = page.evaluate(
        "() => log.filter((e) => e.kind !== 'state' && e.kind !== 'event').map((e) => e.kind)"
    )
    assert kinds == ["subscribed", "subscribed", "sub-gap", "gap"]
    gap = {"channel": "/chat/lobby", "reason": "reconnect", "from": None, "to": None, "run": None}
    assert _log(page, "sub-gap") == [{"kind": "sub-gap", **gap}]
    assert _log(page, "gap") == [{"kind": "gap", **gap}]


def test_publish_is_queued_while_connecting_and_resolves_on_the_answer(
    page: Any, server: PageServer
):
    """A publish made before the socket opens is sent on open and resolves with the result."""
    result = page.evaluate(
        """async () => {
          const state = ${connect}();
          const result = await client.publish("/chat/lobby", {text: "hello"});
          return {state, result};
        }""".replace("${connect}", f"({CONNECT})")
    )
    assert result["state"] == "connecting"
    assert result["result"]["channel"] == "/chat/lobby"
    assert result["result"]["failed"] == []
    assert result["result"]["queued"] is False
    assert [e["index"] for e in result["result"]["successful"]] == [0]
    locmem.assert_published("/chat/lobby", {"text": "hello"})


def test_refused_publish_rejects_and_refused_subscription_reports(page: Any, server: PageServer):
    """The server's errors reject the publish Promise and reach the subscription's onError."""
    page.evaluate(CONNECT)
    rejected = page.evaluate(
        """() => client.publishBatch("/chat/forbidden", [{a: 1}, {b: 2}]).then(
          () => null,
          (e) => ({name: e.name, code: e.code, channel: e.channel, isError: e instanceof Error}))"""
    )
    assert rejected == {
        "name": "AppSyncEventsError",
        "code": "forbidden",
        "channel": "/chat/forbidden",
        "isError": True,
    }
    locmem.assert_nothing_published()

    page.evaluate(SUBSCRIBE, "/chat/forbidden")
    assert _wait_log(page, "sub-error") == [
        {"kind": "sub-error", "code": "forbidden", "channel": "/chat/forbidden"}
    ]
    assert page.evaluate("client.status('/chat/forbidden')") == "failed"
    # The subscription's error reaches onError too; the publish's rejection did not.
    assert _log(page, "error") == [
        {"kind": "error", "code": "forbidden", "channel": "/chat/forbidden"}
    ]
    # A refused subscription was never held: unsubscribing sends nothing, raises nothing.
    assert page.evaluate("window.stops['/chat/forbidden']()") is True
    assert server.subscriptions() == [[]]


def test_close_stops_reconnecting_and_rejects_what_waits(page: Any, server: PageServer):
    """close() ends the socket for good: no reconnect, queued publishes reject as closed."""
    outcome = page.evaluate(
        """async () => {
          ${connect}();
          const waiting = client.publish("/chat/lobby", {never: "sent"}).catch((e) => e.code);
          client.close();
          let thrown = null;
          try { client.subscribe("/chat/lobby", () => {}); } catch (e) { thrown = e.code; }
          return {waiting: await waiting, thrown, state: client.state};
        }""".replace("${connect}", f"({CONNECT})")
    )
    assert outcome == {"waiting": "closed", "thrown": "closed", "state": "closed"}
    states = [e["state"] for e in _log(page, "state")]
    assert states == ["connecting", "closed"]
    locmem.assert_nothing_published()


def test_publish_times_out_while_the_server_is_unreachable(page: Any, server: PageServer):
    """A publish queued while nothing answers rejects with "timeout" after requestTimeout."""
    outcome = page.evaluate(
        """async () => {
          const c = AppSyncEvents.connect("/nowhere/", {
            requestTimeout: 300, minDelay: 50, maxDelay: 100,
            onStateChange: (s) => log.push({kind: "state", state: s}),
          });
          const code = await c.publish("/chat/lobby", {x: 1}).catch((e) => e.code);
          const state = c.state;
          c.close();
          return {code, state};
        }"""
    )
    assert outcome["code"] == "timeout"
    assert outcome["state"] in {"connecting", "reconnecting"}
    # It kept trying meanwhile.
    assert [e["state"] for e in _log(page, "state")].count("reconnecting") >= 1
    locmem.assert_nothing_published()


# Six publishes at once; each outcome is "ok" or the rejection's code.
SIX_PUBLISHES = """async (options) => {
  ${connect}(options);
  const sends = [0, 1, 2, 3, 4, 5].map((n) => client.publish("/chat/lobby", {n}));
  const outcomes = await Promise.allSettled(sends);
  return outcomes.map((o) => (o.status === "fulfilled" ? "ok" : o.reason.code));
}""".replace("${connect}", f"({CONNECT})")


def test_the_client_paces_its_sends_under_the_consumers_rate_limit(
    page: Any, server: PageServer, monkeypatch: pytest.MonkeyPatch
):
    """With the consumer allowing 3 messages a second, six publishes at once all go
    through at the client's pace; unpaced, the excess is refused at once (not at the
    request timeout), each with its own id."""
    monkeypatch.setattr(PageConsumer, "rate_limit", 3)
    outcomes = page.evaluate(SIX_PUBLISHES, {"rateLimit": 2, "ratePeriod": 1000})
    assert outcomes == ["ok"] * 6
    assert [e["n"] for e in locmem.published_events("/chat/lobby")] == list(range(6))

    page.evaluate("client.close()")
    locmem.clear()
    outcomes = page.evaluate(SIX_PUBLISHES, {"rateLimit": 0, "requestTimeout": 60000})
    assert outcomes == ["ok"] * 3 + ["rate_limited"] * 3
    assert [e["n"] for e in locmem.published_events("/chat/lobby")] == [0, 1, 2]


def test_publishes_held_by_the_rate_limit_go_out_on_the_next_socket(page: Any, server: PageServer):
    """A publish the client held back (never sent) when the socket closed is sent after
    the reconnect: it resolves, and nothing is published twice."""
    page.evaluate(
        """async () => {
          ${connect}({rateLimit: 1, ratePeriod: 2000});
          window.first = await client.publish("/chat/lobby", {n: 0});
          window.held = client.publish("/chat/lobby", {n: 1}).then(
            () => "ok", (e) => e.code);
        }""".replace("${connect}", f"({CONNECT})")
    )
    assert [e["n"] for e in locmem.published_events("/chat/lobby")] == [0]
    server.drop_socket(code=4000)
    assert page.evaluate("window.held") == "ok"
    assert [e["n"] for e in locmem.published_events("/chat/lobby")] == [0, 1]
    states = [e["state"] for e in _log(page, "state")]
    assert states.count("open") == 2


def test_backoff_is_exponential_capped_and_jittered(page: Any):
    """backoffDelay grows by factor from minDelay, stops at maxDelay, and jitter only lowers it."""
    delays = page.evaluate(
        """() => {
          const o = {minDelay: 500, maxDelay: 30000, factor: 2, jitter: 0.5};
          const at = (n, r) => AppSyncEvents.backoffDelay(n, o, () => r);
          return {
            top: [0, 1, 2, 3, 6, 7, 20].map((n) => at(n, 0)),
            bottom: [0, 1, 7, 20].map((n) => at(n, 0.999999)),
          };
        }"""
    )
    assert delays["top"] == [500, 1000, 2000, 4000, 30000, 30000, 30000]
    assert delays["bottom"] == [250, 500, 15000, 15000]


def test_urls_follow_the_page_scheme_and_bad_input_is_refused(page: Any):
    """Relative URLs resolve against the page, https means wss, and bad arguments throw."""
    checks = page.evaluate(
        """() => {
          const threw = (f) => { try { f(); return null; } catch (e) { return e.name; } };
          return {
            relative: AppSyncEvents.resolveUrl("/ws/appsync/"),
            https: AppSyncEvents.resolveUrl("/ws/", "https://example.test/a/b"),
            pathRelative: AppSyncEvents.resolveUrl("sock/", "http://example.test/a/b"),
            explicit: AppSyncEvents.resolveUrl("wss://other.test/ws/#x"),
            ftp: threw(() => AppSyncEvents.connect("ftp://example.test/")),
            option: threw(() => AppSyncEvents.connect("/ws/", {jitter: 2})),
            handler: threw(() => AppSyncEvents.normalizeChannel("")),
          };
        }"""
    )
    host = page.evaluate("location.host")
    assert checks == {
        "relative": f"ws://{host}/ws/appsync/",
        "https": "wss://example.test/ws/",
        "pathRelative": "ws://example.test/a/sock/",
        "explicit": "wss://other.test/ws/",
        "ftp": "TypeError",
        "option": "TypeError",
        "handler": "TypeError",
    }


def test_es_module_exports_the_same_client(browser: Any, server: PageServer):
    """appsync-events.mjs imports as an ES module and exports the global's functions."""
    context = browser.new_context()
    try:
        tab = context.new_page()
        tab.set_default_timeout(TIMEOUT_MS)
        tab.goto(server.url + "module")
        tab.wait_for_function("() => window.moduleResult !== undefined")
        assert tab.evaluate("window.moduleResult") == {
            "default": True,
            "connect": True,
            "backoff": "function",
        }
    finally:
        context.close()
