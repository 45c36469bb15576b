"""``manage.py appsync_emulator``: the ready line, serving, clean stop, bad flags."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from django.core.management import CommandError, call_command

ROOT = Path(__file__).resolve().parent.parent
READY = re.compile(r"AppSync Events emulator listening on http://127\.0\.0\.1:\d+/event")


def run_emulator(*args: str) -> tuple[subprocess.Popen[str], str]:
    """Start the command in a subprocess; return it and its ready line."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "django", "appsync_emulator", "--port", "0", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    return proc, line


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[int, str]:
    """Send ``sig`` and return the exit status and stderr."""
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=20)
    return proc.returncode, err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_command_serves_and_stops_cleanly(sig):
    """The command prints the ready line, serves HTTP publish, and exits 0 on a signal."""
    proc, line = run_emulator("--api-key", "da2-cmd", "--namespace", "news", "--ka-interval", "5")
    try:
        assert READY.fullmatch(line), line
        url = line.rsplit(" ", 1)[1]
        body = {"channel": "/news/a", "events": ['{"x":1}']}
        ok = httpx.post(url, json=body, headers={"x-api-key": "da2-cmd"}, timeout=10)
        assert ok.status_code == 200
        assert ok.json()["failed"] == []
        other_ns = httpx.post(
            url, json={**body, "channel": "/default/a"}, headers={"x-api-key": "da2-cmd"}
        )
        assert other_ns.status_code == 403  # --namespace replaced the settings' namespaces
    finally:
        code, err = stop(proc, sig)
    assert code == 0, err
    assert "Stopping the emulator." in err


def test_command_defaults_come_from_settings():
    """Without flags the alias's namespaces and API key (tests/settings.py) are used."""
    proc, line = run_emulator()
    try:
        url = line.rsplit(" ", 1)[1]
        response = httpx.post(
            url,
            content=json.dumps({"channel": "/chat/a", "events": ["1"]}),
            headers={"x-api-key": "da2-tests00000000000000000000000"},
            timeout=10,
        )
        assert response.status_code == 200
    finally:
        code, err = stop(proc)
    assert code == 0
    assert "Generated test API key" not in err


def test_command_verifies_iam_with_given_credentials():
    """--iam credentials are used to verify signatures (a wrong secret fails)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    proc, line = run_emulator("--iam", "AKIDCMD:secret-cmd", "--namespace", "chat")
    try:
        url = line.rsplit(" ", 1)[1]
        body = json.dumps({"channel": "/chat/a", "events": ["1"]}).encode()
        statuses = []
        for secret in ("secret-cmd", "wrong"):
            request = AWSRequest(method="POST", url=url, data=body)
            SigV4Auth(Credentials("AKIDCMD", secret), "appsync", "us-east-1").add_auth(request)
            statuses.append(
                httpx.post(url, content=body, headers=dict(request.headers), timeout=10).status_code
            )
    finally:
        stop(proc)
    assert statuses == [200, 403]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--iam", "nocolon"], "ACCESS_KEY_ID:SECRET"),
        (["--api", "nope"], "no alias 'nope' to emulate: pass --api one of 'default'"),
        (["--ka-interval", "0"], "--ka-interval must be positive"),
        (["--connection-timeout-ms", "-5"], "--connection-timeout-ms must be positive"),
        (["--port", "65536"], "--port must be between 0 and 65535"),
    ],
)
def test_command_refuses_bad_flags(args, message):
    """Bad flags raise a one-line CommandError carrying exit status 2."""
    with pytest.raises(CommandError, match=message) as caught:
        call_command("appsync_emulator", *args)
    assert "\n" not in str(caught.value)
    assert caught.value.returncode == 2


def test_command_reports_port_in_use():
    """A taken port is a CommandError (status 1) naming it and the --port way out."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CommandError) as caught:
            call_command("appsync_emulator", "--port", str(port))
    assert str(caught.value) == (
        f"Port {port} on 127.0.0.1 is already in use: stop what listens there, or pass "
        "--port another value (--port 0 for any free port)."
    )
    assert caught.value.returncode == 1


def test_command_exits_2_with_one_line_for_a_bad_flag():
    """From the command line a bad value exits 2 with one CommandError line on stderr."""
    proc, line = run_emulator("--ka-interval", "0")
    _, err = proc.communicate(timeout=20)
    assert line == ""
    assert proc.returncode == 2
    # (system check warnings of the test settings may come first)
    assert err.splitlines()[-1] == "CommandError: --ka-interval must be positive, not 0.0."


def test_command_exits_2_with_one_line_for_a_setting_mistake(tmp_path):
    """A mistake in APPSYNC_EVENTS exits 2 with one line naming the key and the check id."""
    (tmp_path / "bad_settings.py").write_text(
        "from tests.settings import *  # noqa: F403\n"
        "APPSYNC_EVENTS = {'default': {'HTTP_URL': 'https://example.com/event',\n"
        "    'REGION': 'nowhere', 'AUTH': {'API_KEY': 'da2-x'}}}\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bad_settings",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
    }
    result = subprocess.run(
        [sys.executable, "-m", "django", "appsync_emulator", "--port", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("CommandError: APPSYNC_EVENTS['default']['REGION']")
    assert "[appsync_events.E0" in lines[0]
    assert result.stdout == ""
