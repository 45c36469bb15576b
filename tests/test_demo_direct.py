"""The demo's direct mode (``DEMO_DIRECT=1``) without a browser: settings and page markup.

``tests/browser/test_demo_direct.py`` runs it in Chromium.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parent.parent


def _demo_settings(**env: str) -> dict[str, Any]:
    """Import the demo settings in a fresh interpreter with ``env``; return what matters."""
    code = (
        "import json, os\n"
        "import demo_project.settings as s\n"
        "d = s.APPSYNC_EVENTS['default']\n"
        "print(json.dumps({'direct': s.DEMO_DIRECT, 'tokens': d.get('TOKENS'),\n"
        "  'namespaces': d['NAMESPACES'], 'emulator': d['EMULATOR'],\n"
        "  'keys_env': os.environ.get('APPSYNC_EVENTS_TOKEN_KEYS')}))\n"
    )
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DEMO_DIRECT", "APPSYNC_EVENTS_TOKEN_KEYS", "APPSYNC_EVENTS_URL")
    }
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return dict(json.loads(result.stdout))


def test_direct_mode_settings_share_one_key_variable_with_the_authorizer() -> None:
    """DEMO_DIRECT=1 signs with the keys of APPSYNC_EVENTS_TOKEN_KEYS (a demo key when it is
    unset), lets the chat namespace take Lambda auth, and has the emulator run the module."""
    relay = _demo_settings()
    assert relay["direct"] is False
    assert relay["tokens"] is None
    assert "LAMBDA_AUTHORIZER" not in relay["emulator"]

    direct = _demo_settings(DEMO_DIRECT="1")
    assert direct["direct"] is True
    assert direct["tokens"]["SIGNING_KEYS"] == json.loads(direct["keys_env"])
    assert direct["namespaces"]["chat"]["SUBSCRIBE_AUTH_MODES"] == ["API_KEY", "AWS_LAMBDA"]
    assert direct["emulator"]["LAMBDA_AUTHORIZER"] == "appsync_events.lambda_authorizer.handler"

    own = json.dumps({"mine": "my-own-demo-key-0123456789abcdef0123"})
    chosen = _demo_settings(DEMO_DIRECT="1", APPSYNC_EVENTS_TOKEN_KEYS=own)
    assert chosen["tokens"]["SIGNING_KEYS"] == json.loads(own)


@pytest.mark.django_db
def test_pages_say_which_mode_is_on(client: Client, settings: Any) -> None:
    """The pages carry the mode and the token URL the browser script reads."""
    page = client.get("/rooms/lobby/").content.decode()
    assert 'data-mode="relay"' in page
    assert 'id="page-mode" data-mode="relay">relay<' in page
    settings.DEMO_DIRECT = True
    page = client.get("/rooms/lobby/").content.decode()
    assert 'data-mode="direct"' in page
    assert 'data-token-url="/appsync/token/"' in page
    assert 'id="page-mode" data-mode="direct">direct<' in page
