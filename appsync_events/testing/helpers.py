"""Test helpers shared by the pytest plugin and ``unittest`` users.

* :func:`emulator_settings` — an ``APPSYNC_EVENTS`` value whose alias points at an
  emulator;
* :func:`use_emulator` — a context manager that starts (or reuses) an emulator, resets
  it and overrides the settings while the block runs;
* :class:`EmulatorTestMixin` — the same for ``unittest.TestCase`` / Django ``TestCase``
  classes: one emulator per class, reset and settings override per test.
"""

from __future__ import annotations

import copy
import unittest
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar

from ..conf import DEFAULT_API
from ..emulator import AppSyncEventsEmulator

__all__ = ["EmulatorTestMixin", "emulator_settings", "start_emulator", "use_emulator"]


def _settings_configured() -> bool:
    from django.conf import settings

    return bool(settings.configured)


def _current_setting() -> dict[str, Any]:
    from django.conf import settings

    if not settings.configured:
        return {}
    value = getattr(settings, "APPSYNC_EVENTS", {})
    return copy.deepcopy(dict(value)) if isinstance(value, Mapping) else {}


def emulator_settings(
    emulator: AppSyncEventsEmulator,
    api: str = DEFAULT_API,
    base: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return ``APPSYNC_EVENTS`` with alias ``api`` pointed at ``emulator``.

    The alias keeps everything it declares (namespaces, subscriptions, publishing...)
    except: ``HTTP_URL`` becomes the emulator's, ``REALTIME_URL`` is dropped (derived),
    ``REGION`` becomes the emulator's, and an API key the emulator does not accept is
    replaced by one it does.

    Args:
        emulator: a started emulator.
        api: the alias to point at it (created when missing).
        base: the ``APPSYNC_EVENTS`` value to start from (default: the current setting).
    """
    value = copy.deepcopy(dict(base)) if base is not None else _current_setting()
    alias = dict(value.get(api) or {})
    alias["HTTP_URL"] = emulator.http_url
    alias.pop("REALTIME_URL", None)
    alias["REGION"] = emulator.region
    auth = dict(alias.get("AUTH") or {})
    current = auth.get("API_KEY")
    if isinstance(current, Mapping):
        holder = dict(current.get("OPTIONS", current))
        key = holder.get("api_key") or holder.get("API_KEY")
        if key not in emulator.api_keys:
            holder = {k: v for k, v in holder.items() if k.lower() != "api_key"}
            holder["api_key"] = emulator.api_key
            auth["API_KEY"] = {**current, "OPTIONS": holder} if "OPTIONS" in current else holder
    elif current not in emulator.api_keys and (current is not None or not auth):
        auth["API_KEY"] = emulator.api_key
    alias["AUTH"] = auth
    alias.setdefault("NAMESPACES", list(emulator.settings.namespaces))
    value[api] = alias
    return value


def start_emulator(api: str | None = DEFAULT_API, **kwargs: Any) -> AppSyncEventsEmulator:
    """Start an emulator on a free loopback port for tests.

    It emulates alias ``api`` of ``APPSYNC_EVENTS`` when Django settings are configured
    and declare it (its namespaces, keys, ``EMULATOR`` section), the built-in defaults
    otherwise. The fault proxy is on, so every fault switch works.
    """
    alias: str | None = None
    if api is not None and _settings_configured() and api in _current_setting():
        alias = api
    kwargs.setdefault("fault_proxy", True)
    emulator = AppSyncEventsEmulator("127.0.0.1", 0, api=alias, **kwargs)
    return emulator.start()


@contextmanager
def use_emulator(
    emulator: AppSyncEventsEmulator | None = None,
    *,
    api: str = DEFAULT_API,
    override_settings: bool = True,
    **kwargs: Any,
) -> Iterator[AppSyncEventsEmulator]:
    """Run the block against an emulator, with ``APPSYNC_EVENTS[api]`` pointing at it.

    Args:
        emulator: a started emulator to reuse (it is reset first); ``None`` starts one
            for the block and stops it afterwards.
        api: the settings alias to point at it.
        override_settings: set ``False`` to leave Django settings alone.
        **kwargs: options for a new emulator.
    """
    own = emulator is None
    emu = start_emulator(api, **kwargs) if emulator is None else emulator
    try:
        if not own:
            emu.reset()
        if override_settings and _settings_configured():
            from django.test import override_settings as override

            with override(APPSYNC_EVENTS=emulator_settings(emu, api)):
                yield emu
        else:
            yield emu
    finally:
        if own:
            emu.stop()


class EmulatorTestMixin(unittest.TestCase):
    """Give each test an emulator (one per class), reset, with the settings pointing at it.

    .. code-block:: python

        class ChatTests(EmulatorTestMixin, TestCase):
            def test_publish(self):
                publish("/chat/room", {"text": "hi"})
                self.assertEqual(self.emulator.published_to("/chat/room"), [{"text": "hi"}])

    Class attributes:
        emulator_api: the alias pointed at the emulator (``"default"``).
        emulator_options: keyword arguments for the emulator.
    """

    emulator_api: ClassVar[str] = DEFAULT_API
    emulator_options: ClassVar[dict[str, Any]] = {}
    emulator: ClassVar[AppSyncEventsEmulator]

    @classmethod
    def setUpClass(cls) -> None:
        """Start the class's emulator (before Django's class setup, which may use it)."""
        cls.emulator = start_emulator(cls.emulator_api, **cls.emulator_options)
        cls.addClassCleanup(cls.emulator.stop)
        super().setUpClass()

    def setUp(self) -> None:
        """Reset the emulator and point the settings at it for this test."""
        super().setUp()
        self.emulator.reset()
        if _settings_configured():
            from django.test import override_settings

            override = override_settings(
                APPSYNC_EVENTS=emulator_settings(self.emulator, self.emulator_api)
            )
            override.enable()
            self.addCleanup(override.disable)
