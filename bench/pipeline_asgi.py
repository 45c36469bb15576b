"""The ASGI server of ``bench/bench_forwarding.py``: the browser consumer under uvicorn.

Run by the benchmark as ``python -m bench.pipeline_asgi`` with
``DJANGO_SETTINGS_MODULE=bench.pipeline_settings``: it binds a free loopback port,
prints it, and serves ``appsync_events.routing.websocket_application()`` (the
``AppSyncEventsConsumer`` at ``/ws/appsync/``, behind the origin check and the auth
middleware, as a project routes it) until its standard input closes.
"""

from __future__ import annotations

import asyncio
import socket
import sys


async def serve() -> None:
    """Serve the consumer until stdin closes; print the port first."""
    import django

    django.setup()
    import uvicorn
    from channels.routing import ProtocolTypeRouter

    from appsync_events.routing import websocket_application

    application = ProtocolTypeRouter({"websocket": websocket_application()})
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(application, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()  # raises what stopped it
            raise SystemExit("uvicorn did not start")
        await asyncio.sleep(0.01)
    print(sock.getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    server.should_exit = True
    await task


if __name__ == "__main__":
    asyncio.run(serve())
