"""Direct mode in Chromium: pages talk to the AppSync emulator themselves, with tokens.

Django runs under pytest-django's live server (the token view, the page, the session of a
signed-in user); the emulator runs the real Lambda authorizer module
(``appsync_events.lambda_authorizer.handler``) with the signing key in the environment, as
in AWS. The page loads ``appsync-events.js`` and calls ``AppSyncEvents.connectDirect``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.db import connections
from django.test import Client

from appsync_events.emulator import AppSyncEventsEmulator, NamespaceSpec
from appsync_events.lambda_authorizer import KEYS_ENV, authorize
from appsync_events.publishing import publish
from tests.browser.conftest import TIMEOUT_MS

pytestmark = [pytest.mark.browser]

KEY = "browser-direct-key-0123456789abcdef0123"
API_KEY = "da2-direct000000000000000000000"
HANDLER = "appsync_events.lambda_authorizer.handler"
BOTH = ("API_KEY", "AWS_LAMBDA")
GRANTS = [
    # Signed-in users: their own inbox and the rooms; they may post to the rooms.
    {"SUBSCRIBE": ["/users/{user.pk}/*", "/chat/rooms/*"], "PUBLISH": ["/chat/rooms/*"]},
]

# Connects in direct mode with short, observable backoff; every callback writes to log.
CONNECT = """(options) => {
  window.client = AppSyncEvents.connectDirect("/appsync/token/", Object.assign({
    minDelay: 100, maxDelay: 400, jitter: 0.5,
    onStateChange: (state, detail) => log.push({kind: "state", state, detail}),
    onError: (e) => log.push({kind: "error", code: e.code, channel: e.channel}),
    onToken: (t) => log.push({kind: "token", expiresAt: t.expiresAt,
                              subscribe: t.subscribe, publish: t.publish}),
  }, options || {}));
  return client.state;
}"""

SUBSCRIBE = """(channel) => {
  client.subscribe(channel,
    (payload, message) => log.push({kind: "event", channel: message.channel, payload}),
    {
      onSubscribed: (c) => log.push({kind: "subscribed", channel: c}),
      onError: (e) => log.push({kind: "sub-error", code: e.code, channel: e.channel}),
      onGap: (gap) => log.push(Object.assign({kind: "gap"}, gap)),
    });
}"""

PUBLISH = """([channel, payload]) => client.publish(channel, payload).then(
  (r) => ({ok: true, failed: r.failed, successful: r.successful.length, channel: r.channel}),
  (e) => ({ok: false, code: e.code, channel: e.channel}))"""


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[AppSyncEventsEmulator]:
    """The emulator running the real authorizer, its key in the environment."""
    monkeypatch.setenv(KEYS_ENV, json.dumps({"k1": KEY}))
    with AppSyncEventsEmulator(
        api_keys=[API_KEY],
        namespaces=[NamespaceSpec("users", BOTH, BOTH), NamespaceSpec("chat", BOTH, BOTH)],
        lambda_authorizer=HANDLER,
    ) as emu:
        yield emu


@pytest.fixture
def site(
    settings: Any,
    emulator: AppSyncEventsEmulator,
    live_server: Any,
    transactional_db: None,
    monkeypatch: pytest.MonkeyPatch,
) -> Any:
    """Django pointed at the emulator, with GRANTS and a token key; its live server."""
    # Playwright's sync API keeps an event loop in this thread, which Django takes for
    # async code; the test's own ORM calls (users, sessions) are plain sync code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    settings.ROOT_URLCONF = "tests.browser.direct_urls"
    modes = {"PUBLISH_AUTH_MODES": list(BOTH), "SUBSCRIBE_AUTH_MODES": list(BOTH)}
    settings.APPSYNC_EVENTS = {
        "default": {
            "HTTP_URL": emulator.http_url,
            "AUTH": {"API_KEY": API_KEY},
            "NAMESPACES": {"users": modes, "chat": modes},
            "GRANTS": GRANTS,
            "TOKENS": {"SIGNING_KEYS": {"k1": KEY}, "TTL": 300},
            "PUBLISH": {"ON_COMMIT": False},
        }
    }
    return live_server


@pytest.fixture
def user(site: Any) -> User:
    """A signed-in user's account."""
    return User.objects.create_user("ada", password="not-used")


def open_page(browser: Any, site: Any, user: User | None) -> tuple[Any, Any, list[str]]:
    """Open the page (signed in as ``user`` when given); return context, page, console."""
    context = browser.new_context()
    if user is not None:
        client = Client()
        client.force_login(user)
        cookie = client.cookies[django_settings.SESSION_COOKIE_NAME].value
        # The connection force_login opened is not closed by the test database's teardown
        # (seen with Playwright's event loop in this thread), and an open session keeps
        # PostgreSQL from dropping the test database: close it now.
        connections.close_all()
        context.add_cookies(
            [{"name": django_settings.SESSION_COOKIE_NAME, "value": cookie, "url": site.url}]
        )
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    page.goto(site.url + "/")
    page.evaluate("window.log = []")
    return context, page, console


def _log(page: Any, kind: str) -> list[dict[str, Any]]:
    return list(page.evaluate("(kind) => log.filter((e) => e.kind === kind)", kind))


def _wait_log(page: Any, kind: str, count: int = 1) -> list[dict[str, Any]]:
    page.wait_for_function(
        "([kind, count]) => log.filter((e) => e.kind === kind).length >= count", arg=[kind, count]
    )
    return _log(page, kind)


def _no_page_errors(console: list[str]) -> None:
    # Chromium's own line for a refused websocket handshake or a 401 fetch is expected.
    errors = [
        m
        for m in console
        if m.startswith(("error", "pageerror"))
        and "WebSocket connection to" not in m
        and "status of 40" not in m
    ]
    assert not errors, console


def test_signed_in_page_receives_events_published_from_django(
    browser: Any, site: Any, user: User, emulator: AppSyncEventsEmulator
) -> None:
    """A signed-in page connects straight to the emulator with its token, receives what
    Django publishes to its inbox, and publishes to a room it is granted."""
    context, page, console = open_page(browser, site, user)
    try:
        assert page.evaluate(CONNECT) == "connecting"
        inbox = f"/users/{user.pk}/inbox"
        page.evaluate(SUBSCRIBE, inbox)
        assert _wait_log(page, "subscribed") == [{"kind": "subscribed", "channel": inbox}]
        [token] = _log(page, "token")
        assert token["subscribe"] == [f"/users/{user.pk}/*", "/chat/rooms/*"]
        assert token["publish"] == ["/chat/rooms/*"]
        assert page.evaluate("client.url") == emulator.realtime_url
        [sub] = emulator.subscriptions
        assert (sub.channel, sub.auth_mode) == (inbox, "AWS_LAMBDA")

        publish(inbox, {"text": "from django"})
        assert _wait_log(page, "event") == [
            {"kind": "event", "channel": inbox, "payload": {"text": "from django"}}
        ]

        result = page.evaluate(PUBLISH, ["/chat/rooms/1", {"text": "from the page"}])
        assert result == {"ok": True, "failed": [], "successful": 1, "channel": "/chat/rooms/1"}
        record = emulator.published[-1]
        assert (record.channel, record.auth_mode) == ("/chat/rooms/1", "AWS_LAMBDA")
        assert record.payloads == [{"text": "from the page"}]
        assert [e["state"] for e in _log(page, "state")] == ["connecting", "open"]
        assert _log(page, "error") == []
        _no_page_errors(console)
    finally:
        context.close()


def test_a_channel_the_token_lacks_is_refused(
    browser: Any, site: Any, user: User, emulator: AppSyncEventsEmulator
) -> None:
    """Another user's inbox cannot be subscribed to, a subscribe-only channel cannot be
    published to, and an anonymous visitor (granted nothing) gets no token at all."""
    context, page, console = open_page(browser, site, user)
    try:
        page.evaluate(CONNECT)
        other = f"/users/{user.pk + 1}/inbox"
        page.evaluate(SUBSCRIBE, other)
        assert _wait_log(page, "sub-error") == [
            {"kind": "sub-error", "code": "forbidden", "channel": other}
        ]
        assert page.evaluate("(c) => client.status(c)", other) == "failed"
        assert emulator.subscriptions == []
        refused = page.evaluate(PUBLISH, [f"/users/{user.pk}/inbox", {"text": "no"}])
        assert refused == {"ok": False, "code": "forbidden", "channel": f"/users/{user.pk}/inbox"}
        assert emulator.published == []
        _no_page_errors(console)
    finally:
        context.close()

    context, page, console = open_page(browser, site, None)
    try:
        page.evaluate(CONNECT)
        errors = _wait_log(page, "error")
        assert errors[0] == {"kind": "error", "code": "not_authenticated", "channel": None}
        page.wait_for_function("() => log.some((e) => e.state === 'reconnecting')")
        assert _log(page, "token") == []
        assert emulator.connections == []
        page.evaluate("client.close()")
    finally:
        context.close()


def _token_refused(token: str, channel: str) -> bool:
    request = {
        "authorizationToken": token,
        "requestContext": {"operation": "EVENT_SUBSCRIBE", "channel": channel},
    }
    return not authorize(request, {"k1": KEY.encode()})["isAuthorized"]


def test_token_is_refreshed_in_the_background_and_no_subscription_is_lost(
    browser: Any, site: Any, settings: Any, user: User, emulator: AppSyncEventsEmulator
) -> None:
    """With 3-second tokens: the client fetches new ones before expiry; after the first
    expired, its subscription still delivers, new subscriptions go through, and a dropped
    socket comes back with a fresh token and every subscription."""
    settings.APPSYNC_EVENTS["default"]["TOKENS"]["TTL"] = 3
    context, page, console = open_page(browser, site, user)
    issued: list[str] = []
    page.on(
        "response",
        lambda r: issued.append(r.json()["token"]) if r.url.endswith("/appsync/token/") else None,
    )
    try:
        page.evaluate(CONNECT)
        page.evaluate(SUBSCRIBE, "/chat/rooms/1")
        _wait_log(page, "subscribed")
        first = _wait_log(page, "token", 2)[0]
        page.wait_for_function("(t) => Date.now() > t", arg=first["expiresAt"])
        assert _token_refused(issued[0], "/chat/rooms/2")  # the first token is dead now

        publish("/chat/rooms/1", {"n": 1})
        _wait_log(page, "event")
        page.evaluate(SUBSCRIBE, "/chat/rooms/2")
        _wait_log(page, "subscribed", 2)
        assert [e["state"] for e in _log(page, "state")] == ["connecting", "open"]

        emulator.close_connections(1001, "going away")
        subscribed = _wait_log(page, "subscribed", 4)
        assert sorted(e["channel"] for e in subscribed[2:]) == ["/chat/rooms/1", "/chat/rooms/2"]
        publish("/chat/rooms/2", {"n": 2})
        events = _wait_log(page, "event", 2)
        assert [e["payload"] for e in events] == [{"n": 1}, {"n": 2}]
        assert _log(page, "sub-error") == []
        _no_page_errors(console)
    finally:
        context.close()


def test_an_expired_token_is_replaced_on_reconnect(
    browser: Any, site: Any, settings: Any, user: User, emulator: AppSyncEventsEmulator
) -> None:
    """Without background refresh the token expires; the reconnect after a dropped socket
    fetches a new one first and subscribes again, and tells the page it may have missed
    events meanwhile (a "reconnect" gap)."""
    settings.APPSYNC_EVENTS["default"]["TOKENS"]["TTL"] = 2
    context, page, console = open_page(browser, site, user)
    try:
        page.evaluate(CONNECT, {"autoRefresh": False})
        page.evaluate(SUBSCRIBE, "/chat/rooms/9")
        _wait_log(page, "subscribed")
        [token] = _log(page, "token")
        page.wait_for_function("(t) => Date.now() > t", arg=token["expiresAt"])
        assert len(_log(page, "token")) == 1
        emulator.close_connections(1001, "going away")
        _wait_log(page, "subscribed", 2)
        assert len(_log(page, "token")) == 2
        assert _wait_log(page, "gap") == [
            {
                "kind": "gap",
                "channel": "/chat/rooms/9",
                "reason": "reconnect",
                "from": None,
                "to": None,
                "run": None,
            }
        ]
        publish("/chat/rooms/9", {"after": "reconnect"})
        assert _wait_log(page, "event")[0]["payload"] == {"after": "reconnect"}
        assert _log(page, "sub-error") == []
        _no_page_errors(console)
    finally:
        context.close()


def test_no_aws_credential_reaches_the_page(
    browser: Any, site: Any, user: User, emulator: AppSyncEventsEmulator
) -> None:
    """Nothing the page receives or sends (HTML, scripts, the token answer, websocket
    frames, cookies, storage) holds the API key, the signing key or an AWS signature;
    the emulator saw Lambda auth only."""
    seen: list[str] = []
    context, page, console = open_page(browser, site, user)

    def on_response(response: Any) -> None:
        try:
            seen.append(response.text())
        except Exception as exc:  # a body Playwright cannot read (a redirect...)
            seen.append(f"<unreadable: {exc}>")

    page.on("response", on_response)

    def on_websocket(ws: Any) -> None:
        seen.append(ws.url)
        ws.on("framesent", lambda payload: seen.append(str(payload)))
        ws.on("framereceived", lambda payload: seen.append(str(payload)))

    page.on("websocket", on_websocket)
    try:
        page.reload()
        page.evaluate("window.log = []")
        page.evaluate(CONNECT)
        page.evaluate(SUBSCRIBE, "/chat/rooms/1")
        _wait_log(page, "subscribed")
        publish("/chat/rooms/1", {"n": 1})
        _wait_log(page, "event")
        assert page.evaluate(PUBLISH, ["/chat/rooms/1", {"n": 2}])["ok"] is True
        _wait_log(page, "event", 2)
        seen.append(page.content())
        seen.append(json.dumps(context.cookies()))
        storage = "JSON.stringify(Object.assign({}, localStorage, sessionStorage))"
        seen.append(page.evaluate(storage))
        everything = "\n".join(seen)
        assert '"type":"subscribe"' in everything  # the frames were captured
        for secret in (API_KEY, KEY, "x-api-key", "AWS4-HMAC-SHA256", "X-Amz-Security-Token"):
            assert secret.lower() not in everything.lower(), secret
        assert {c.auth_mode for c in emulator.connections} == {"AWS_LAMBDA"}
        assert {s.auth_mode for s in emulator.subscriptions} == {"AWS_LAMBDA"}
        _no_page_errors(console)
    finally:
        context.close()


def test_keep_alive_watchdog_reconnects_a_silent_socket(
    browser: Any, site: Any, user: User, emulator: AppSyncEventsEmulator
) -> None:
    """When no ``ka`` arrives within the announced connectionTimeoutMs, the client drops
    the socket, reconnects and subscribes again."""
    emulator.configure(ka_interval=0.2, connection_timeout_ms=1500)
    context, page, console = open_page(browser, site, user)
    try:
        page.evaluate(CONNECT)
        page.evaluate(SUBSCRIBE, "/chat/rooms/3")
        _wait_log(page, "subscribed")
        emulator.faults.stop_keepalive()
        page.wait_for_function("() => log.some((e) => e.state === 'reconnecting')")
        lost = next(e for e in _log(page, "state") if e["state"] == "reconnecting")
        assert (lost["detail"]["code"], lost["detail"]["reason"]) == (4000, "no keep-alive")
        emulator.faults.resume_keepalive()
        _wait_log(page, "subscribed", 2)
        publish("/chat/rooms/3", {"alive": True})
        assert _wait_log(page, "event")[0]["payload"] == {"alive": True}
        _no_page_errors(console)
    finally:
        context.close()
