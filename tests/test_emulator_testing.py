"""The test tools shipped for users: the unittest mixin, use_emulator, the pytest plugin."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from django.test import SimpleTestCase

from appsync_events.conf import get_api_config
from appsync_events.testing import EmulatorTestMixin, emulator_settings, use_emulator

ROOT = Path(__file__).resolve().parent.parent


class MixinTests(EmulatorTestMixin, SimpleTestCase):
    """A Django TestCase using the mixin."""

    def test_settings_point_at_the_emulator_and_records_start_empty(self):
        """Each test sees the class's emulator, reset, with the settings pointing at it."""
        config = get_api_config()
        assert config.http_url == self.emulator.http_url
        assert self.emulator.published == []
        key = config.auth["API_KEY"].options["api_key"]
        response = httpx.post(
            config.http_url,
            json={"channel": "/chat/a", "events": ["1"]},
            headers={"x-api-key": key},
        )
        assert response.status_code == 200
        assert self.emulator.published_to("/chat/a") == [1]

    def test_second_test_starts_clean(self):
        """Records from another test are gone."""
        assert self.emulator.published == []


def test_use_emulator_starts_and_stops_its_own():
    """use_emulator() without an emulator starts one for the block and stops it after."""
    with use_emulator() as emulator:
        assert get_api_config().http_url == emulator.http_url
    assert not emulator.running


def test_emulator_settings_replaces_an_unknown_key():
    """An alias whose API key the emulator does not accept gets the emulator's key."""
    with use_emulator(override_settings=False, api_keys=["da2-only"]) as emulator:
        value = emulator_settings(
            emulator, base={"default": {"HTTP_URL": "https://x/event", "AUTH": {"API_KEY": "k"}}}
        )
    assert value["default"]["AUTH"]["API_KEY"] == "da2-only"
    assert value["default"]["HTTP_URL"] == emulator.http_url


def _plugin_entry_point_installed() -> bool:
    from importlib.metadata import entry_points

    return any(ep.value == PLUGIN for ep in entry_points(group="pytest11"))


PLUGIN = "appsync_events.testing.pytest_plugin"


@pytest.mark.parametrize("how", ["entry point", "-p"])
def test_pytest_plugin_in_a_user_project(tmp_path, how):
    """A user's tests get the fixtures and marker, from the installed entry point or -p."""
    if how == "entry point" and not _plugin_entry_point_installed():
        pytest.skip("the package is not installed (pip install -e .): no pytest11 entry point")
    (tmp_path / "test_user.py").write_text(
        textwrap.dedent(
            """
            import httpx
            import pytest

            @pytest.mark.appsync_emulator(max_events=2)
            def test_uses_fixture(appsync_events_emulator, appsync_emulator_faults):
                emu = appsync_events_emulator
                body = {"channel": "/default/a", "events": ["1", "2", "3"]}
                r = httpx.post(emu.http_url, json=body, headers={"x-api-key": emu.api_key})
                assert r.status_code == 400
                assert appsync_emulator_faults is emu.faults

            def test_switches_were_reset(appsync_events_emulator):
                assert appsync_events_emulator.settings.max_events == 5
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    if how == "-p":
        # Without autoloading, only -p can bring the plugin in (as for an uninstalled copy).
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        plugin_args = ["-p", PLUGIN]
    else:
        env.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
        plugin_args = ["-p", "no:django"]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            *plugin_args,
            "-p",
            "no:cacheprovider",
            str(tmp_path),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout
