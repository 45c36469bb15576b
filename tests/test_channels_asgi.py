"""The ASGI lifespan wrapper that runs listeners inside the ASGI process."""

from __future__ import annotations

from typing import Any

from channels.testing.application import ApplicationCommunicator

from appsync_events.asgi import AppSyncEventsLifespan, in_process_aliases


async def test_startup_fails_loudly_for_a_misconfigured_alias():
    """A listener that cannot start fails the lifespan startup with the reason."""
    app = AppSyncEventsLifespan(lambda *a: None, apis=["missing"])  # type: ignore[arg-type]
    lifespan = ApplicationCommunicator(app, {"type": "lifespan"})
    await lifespan.send_input({"type": "lifespan.startup"})
    reply = await lifespan.receive_output(5)
    assert reply["type"] == "lifespan.startup.failed"
    assert "'missing'" in reply["message"]


async def test_a_failed_startup_stops_the_listeners_already_started():
    """When one alias cannot start, the listeners started before it are stopped too."""
    import asyncio

    from appsync_events import asgi

    app = AppSyncEventsLifespan(lambda *a: None, apis=["default", "missing"])  # type: ignore[arg-type]
    lifespan = ApplicationCommunicator(app, {"type": "lifespan"})
    await lifespan.send_input({"type": "lifespan.startup"})
    assert (await lifespan.receive_output(5))["type"] == "lifespan.startup.failed"
    loop_id = id(asyncio.get_running_loop())
    assert [key for key in asgi._running if key[0] == loop_id] == []


async def test_other_scopes_reach_the_wrapped_app():
    """HTTP and websocket scopes pass through untouched."""
    seen: list[dict[str, Any]] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)
        await send({"type": "done"})

    app = AppSyncEventsLifespan(inner)
    communicator = ApplicationCommunicator(app, {"type": "http", "path": "/"})
    await communicator.send_input({"type": "http.request"})
    assert (await communicator.receive_output(5)) == {"type": "done"}
    assert seen == [{"type": "http", "path": "/"}]


async def test_no_in_process_aliases_starts_nothing(settings):
    """Without IN_PROCESS nothing runs, and the lifespan completes at once."""
    assert in_process_aliases() == ()
    lifespan = ApplicationCommunicator(AppSyncEventsLifespan(lambda *a: None), {"type": "lifespan"})  # type: ignore[arg-type]
    await lifespan.send_input({"type": "lifespan.startup"})
    assert (await lifespan.receive_output(5))["type"] == "lifespan.startup.complete"
    await lifespan.send_input({"type": "lifespan.shutdown"})
    assert (await lifespan.receive_output(5))["type"] == "lifespan.shutdown.complete"


def test_in_process_aliases_lists_enabled_in_process_ones(settings):
    """Only aliases with forwarding on and IN_PROCESS set run in-process."""
    base = settings.APPSYNC_EVENTS["default"]
    settings.APPSYNC_EVENTS = {
        "default": {**base, "FORWARDING": {"IN_PROCESS": True}},
        "off": {**base, "FORWARDING": {"IN_PROCESS": True, "ENABLED": False}},
        "remote": base,
    }
    assert in_process_aliases() == ("default",)
