"""The core works where Django cannot be imported: config, auth, client, HTTP, emulator.

Each test runs Python in a subprocess with ``sys.modules["django"] = None`` set before
anything is imported, so any ``import django...`` anywhere in the core fails loudly.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: The modules that make up the core: they import nothing from Django.
CORE = (
    "appsync_events.auth",
    "appsync_events.auth.api_key",
    "appsync_events.auth.iam",
    "appsync_events.auth.token",
    "appsync_events.batching",
    "appsync_events.client",
    "appsync_events.config",
    "appsync_events.control",
    "appsync_events.emulator",
    "appsync_events.events",
    "appsync_events.exceptions",
    "appsync_events.http",
    "appsync_events.limits",
    "appsync_events.paths",
    "appsync_events.protocol",
    "appsync_events.proxies",
    "appsync_events.redaction",
    "appsync_events.results",
)


def run_without_django(code: str) -> str:
    """Run ``code`` with Django unimportable; return its stdout (fail with its stderr)."""
    prelude = "import sys\nsys.modules['django'] = None  # any django import now fails\n"
    result = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_core_modules_import_without_django() -> None:
    """Every core module imports with Django unimportable, and pulls in no django module."""
    out = run_without_django(
        f"""
        import importlib, json
        for name in {CORE!r}:
            importlib.import_module(name)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] == "django" and sys.modules[m])
        print(json.dumps(loaded))
        """
    )
    assert json.loads(out) == []


def test_connect_subscribe_publish_receive_without_django() -> None:
    """From a plain mapping: the emulator runs, the client subscribes and publishes over
    the websocket, the HTTP publisher publishes, and both events are received."""
    out = run_without_django(
        """
        import asyncio, json
        from appsync_events.client import AppSyncEventsClient
        from appsync_events.config import APIConfig
        from appsync_events.emulator import AppSyncEventsEmulator
        from appsync_events.exceptions import ConfigurationError
        from appsync_events.http import AsyncHTTPPublisher

        KEY = "da2-nodjango0000000000000000000"
        emulator = AppSyncEventsEmulator(port=0, api_keys=[KEY], namespaces=["chat"])
        emulator.start()
        try:
            config = APIConfig.from_mapping(
                "default",
                {"HTTP_URL": emulator.http_url, "AUTH": {"API_KEY": KEY}, "NAMESPACES": ["chat"]},
            )

            async def main():
                async with AppSyncEventsClient(config) as client:
                    await client.subscribe("/chat/*")
                    ws_result = await client.publish("/chat/a", ['{"via": "ws"}'])
                    async with AsyncHTTPPublisher(config) as publisher:
                        http_result = await publisher.publish("/chat/b", ['{"via": "http"}'])
                    payloads = []
                    async for event in client.events():
                        payloads.append(event.payload)
                        if len(payloads) == 2:
                            break
                    return ws_result.ok, len(http_result.successful), payloads

            ok, http_ok, payloads = asyncio.run(asyncio.wait_for(main(), 30))
        finally:
            emulator.stop()
        try:
            APIConfig.from_mapping("default", {"HTTP_URL": 5})
        except ConfigurationError as exc:  # a plain Exception subclass here
            error = [exc.check_id, str(exc)]
        print(json.dumps({"ok": ok, "http": http_ok, "payloads": payloads, "error": error}))
        """
    )
    result = json.loads(out)
    assert result["ok"] is True
    assert result["http"] == 1
    assert sorted(p["via"] for p in result["payloads"]) == ["http", "ws"]
    assert result["error"][0] == "appsync_events.E002"
    assert "HTTP_URL" in result["error"][1]


def test_configuration_error_is_improperly_configured_with_django() -> None:
    """With Django installed, a configuration error is also Django's ImproperlyConfigured."""
    from django.core.exceptions import ImproperlyConfigured

    from appsync_events.config import APIConfig
    from appsync_events.exceptions import ConfigurationError

    with pytest.raises(ImproperlyConfigured) as info:
        APIConfig.from_mapping("default", {"HTTP_URL": 5})
    assert isinstance(info.value, ConfigurationError)
