"""onPublish / onSubscribe stand-ins and the outcomes the AWS handler guide describes."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from appsync_events.emulator import (
    HandlerContext,
    HandlerError,
    HandlerUnauthorized,
    NamespaceHandlers,
)
from appsync_events.testing.pytest_plugin import (  # noqa: F401 - fixtures
    appsync_emulator,
    appsync_events_emulator,
)
from tests.test_emulator_helpers import api_key_auth, connected, http_publish

pytestmark = pytest.mark.django_db(databases=[])


@pytest.fixture
def emu(appsync_events_emulator):  # noqa: F811
    """The session emulator, reset."""
    return appsync_events_emulator


def with_publish(emu, handler) -> None:
    """Install ``handler`` as onPublish for the default namespace."""
    emu.configure(handlers={"default": NamespaceHandlers(on_publish=handler)})


async def test_publish_handler_sees_ctx(emu):
    """onPublish receives the service-generated ids, parsed payloads, channel and identity."""
    seen: list[HandlerContext] = []

    def handler(ctx: HandlerContext) -> None:
        seen.append(ctx)

    with_publish(emu, handler)
    response = await http_publish(emu, "default/a/b", ['{"n":1}', '"two"'])
    [ctx] = seen
    assert ctx.operation == "PUBLISH"
    assert (ctx.channel, ctx.segments, ctx.namespace) == (
        "/default/a/b",
        ("default", "a", "b"),
        "default",
    )
    assert [e.payload for e in ctx.events] == [{"n": 1}, "two"]
    assert [e.id for e in ctx.events] == [s["identifier"] for s in response.json()["successful"]]
    assert ctx.auth_mode == "API_KEY"
    assert ctx.identity is None
    assert ctx.transport == "http"


async def test_publish_handler_transforms_filters_and_fails(emu):
    """Transformed payloads are broadcast, dropped ids are not, error entries go to failed."""

    def handler(ctx: HandlerContext) -> list[dict[str, Any] | None]:
        first, second, third, _fourth = ctx.events
        return [
            {"id": first.id, "payload": {"wrapped": first.payload}},
            {"id": second.id, "error": "not allowed"},
            None,
            {"id": third.id, "payload": third.payload},
        ]

    with_publish(emu, handler)
    auth = api_key_auth(emu)
    async with await connected(emu) as client:
        await client.subscribe("s", "/default/a", auth)
        events = ["1", "2", ' "three" ', "4"]
        answer = await client.publish("p", "/default/a", events, auth)
        assert [e["index"] for e in answer["successful"]] == [0, 2, 3]
        [failed] = answer["failed"]
        assert (failed["index"], failed["code"], failed["message"]) == (
            1,
            "HandlerError",
            "not allowed",
        )
        data = [d["event"] for d in await client.data(2)]
        assert data == ['{"wrapped":1}', ' "three" ']  # untouched payload keeps its exact string
        await client.no_frame()
    assert emu.published[-1].events == ('{"wrapped":1}', ' "three" ')


async def test_publish_handler_error_rejects_whole_publish(emu):
    """HandlerError (util.error) refuses the publish: HTTP 403, WS publish_error."""

    def handler(ctx: HandlerContext) -> None:
        raise HandlerError("rooms are closed")

    with_publish(emu, handler)
    response = await http_publish(emu, "/default/a", ["1"])
    assert response.status_code == 403
    assert response.json() == {
        "errors": [{"errorType": "HandlerError", "message": "rooms are closed"}]
    }
    async with await connected(emu) as client:
        answer = await client.publish("p", "/default/a", ["1"], api_key_auth(emu))
        assert answer["type"] == "publish_error"
        assert answer["errors"][0]["message"] == "rooms are closed"
    assert emu.published == []


async def test_publish_handler_unauthorized(emu):
    """HandlerUnauthorized (util.unauthorized) refuses with UnauthorizedException 403."""

    def handler(ctx: HandlerContext) -> None:
        raise HandlerUnauthorized

    with_publish(emu, handler)
    response = await http_publish(emu, "/default/a", ["1"])
    assert response.status_code == 403
    assert response.json()["errors"][0]["errorType"] == "UnauthorizedException"


@pytest.mark.parametrize("bad", [[{"id": "unknown", "payload": 1}], "dup"])
async def test_publish_handler_bad_ids(emu, bad):
    """Unknown or duplicate ids returned by a handler are handler errors."""

    def handler(ctx: HandlerContext):
        if bad == "dup":
            return [{"id": ctx.events[0].id}, {"id": ctx.events[0].id}]
        return bad

    with_publish(emu, handler)
    response = await http_publish(emu, "/default/a", ["1"])
    assert response.status_code == 403
    assert "unknown or duplicate event id" in response.json()["errors"][0]["message"]


async def test_publish_handler_crash_is_reported_and_logged(emu, caplog):
    """A handler raising any other exception refuses the publish and is logged."""

    def handler(ctx: HandlerContext) -> None:
        raise ValueError("bug")

    with_publish(emu, handler)
    response = await http_publish(emu, "/default/a", ["1"])
    assert response.status_code == 403
    assert "ValueError: bug" in response.json()["errors"][0]["message"]
    assert "onPublish stand-in" in caplog.text


async def test_transformed_event_too_large(emu):
    """The 240 KB limit applies after transformation ('Transformed event is larger')."""

    def handler(ctx: HandlerContext):
        return [{"id": e.id, "payload": "x" * 250_000} for e in ctx.events]

    with_publish(emu, handler)
    response = await http_publish(emu, "/default/a", ["1"])
    assert response.json()["failed"][0]["code"] == "EventTooLargeException"


async def test_subscribe_handler_allows_and_rejects(emu):
    """onSubscribe sees the pattern and identity; raising refuses with subscribe_error."""
    seen: list[HandlerContext] = []
    lock = threading.Lock()

    def on_subscribe(ctx: HandlerContext) -> None:
        with lock:
            seen.append(ctx)
        if ctx.segments[-1] == "private":
            raise HandlerUnauthorized
        if ctx.segments[-1] == "closed":
            raise HandlerError("closed for maintenance")

    emu.configure(handlers={"default": NamespaceHandlers(on_subscribe=on_subscribe)})
    auth = api_key_auth(emu)
    async with await connected(emu) as client:
        assert (await client.subscribe("a", "/default/*", auth))["type"] == "subscribe_success"
        denied = await client.subscribe("b", "/default/private", auth)
        assert denied["errors"][0]["errorType"] == "UnauthorizedException"
        closed = await client.subscribe("c", "/default/closed", auth)
        assert closed["errors"][0] == {
            "errorType": "HandlerError",
            "message": "closed for maintenance",
        }
    assert seen[0].operation == "SUBSCRIBE"
    assert seen[0].segments == ("default", "*")
    assert [s.id for s in emu.subscriptions] == []


async def test_handlers_only_for_their_namespace(emu):
    """A handler installed for one namespace does not run for another."""

    def handler(ctx: HandlerContext) -> None:
        raise HandlerError("chat only")

    emu.configure(handlers={"chat": NamespaceHandlers(on_publish=handler)})
    assert (await http_publish(emu, "/default/a", ["1"])).status_code == 200
    assert (await http_publish(emu, "/chat/a", ["1"])).status_code == 403


async def test_handlers_cleared_by_reset(emu):
    """reset() removes handlers installed with configure()."""
    import asyncio

    with_publish(emu, lambda ctx: [])
    await asyncio.to_thread(emu.reset)
    response = await http_publish(emu, "/default/a", [json.dumps(1)])
    assert emu.published[-1].events == ("1",)
    assert response.status_code == 200
