"""``manage.py appsync_namespaces`` against moto: every mode, drift, idempotence, prune, exit codes.

moto runs in process (``mock_aws``) and, for the endpoint overrides, as ``moto_server`` in
a subprocess reached through ``AWS_ENDPOINT_URL``. The operations moto lacks (updates,
GetChannelNamespace) are covered with botocore's Stubber in ``test_control.py``.
Nothing reaches AWS: the suite hides real credentials and config files (conftest.py).
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO
from pathlib import Path
from typing import Any

import boto3
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from moto import mock_aws

from appsync_events import control
from appsync_events.config import APIConfig

ROOT = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
KEYS = {"access_key_id": "AKIDTEST", "secret_access_key": "not-a-secret"}


def alias(**overrides: Any) -> dict[str, Any]:
    """Return an alias that signs with fake IAM keys and also holds an API key."""
    mapping: dict[str, Any] = {
        "HTTP_URL": "http://127.0.0.1:8765/event",
        "REGION": REGION,
        "AUTH": {"AWS_IAM": dict(KEYS), "API_KEY": "da2-tests00000000000000000000000"},
        "DEFAULT_PUBLISH_AUTH_MODES": ["AWS_IAM"],
        "NAMESPACES": {
            "chat": {},
            "ops": {"SUBSCRIBE_AUTH_MODES": ["AWS_IAM"]},
        },
    }
    mapping.update(overrides)
    return mapping


def run(*args: str) -> tuple[int, str, str]:
    """Run the command in process; return its exit status, stdout and stderr."""
    out, err = StringIO(), StringIO()
    try:
        call_command("appsync_namespaces", *args, stdout=out, stderr=err)
    except CommandError as exc:
        return exc.returncode, out.getvalue(), str(exc)
    return 0, out.getvalue(), err.getvalue()


def event_config(*modes: str) -> dict[str, Any]:
    """An eventConfig allowing ``modes`` everywhere."""
    auth = [{"authType": mode} for mode in modes]
    return {
        "authProviders": auth,
        "connectionAuthModes": auth,
        "defaultPublishAuthModes": auth,
        "defaultSubscribeAuthModes": auth,
    }


def in_step_config() -> dict[str, Any]:
    """The eventConfig that matches :func:`alias`."""
    both = [{"authType": "API_KEY"}, {"authType": "AWS_IAM"}]
    return {
        "authProviders": both,
        "connectionAuthModes": both,
        "defaultPublishAuthModes": [{"authType": "AWS_IAM"}],
        "defaultSubscribeAuthModes": both,
    }


@pytest.fixture
def aws() -> Iterator[Any]:
    """moto's AppSync in this process, with a client to arrange and inspect it."""
    with mock_aws():
        yield boto3.client(
            "appsync",
            region_name=REGION,
            aws_access_key_id="AKIDTEST",
            aws_secret_access_key="not-a-secret",
        )


@pytest.fixture
def api(aws, settings) -> str:
    """An Event API on moto whose auth matches the alias; the alias names it by API_ID."""
    api_id = aws.create_api(name="events", eventConfig=in_step_config())["api"]["apiId"]
    settings.APPSYNC_EVENTS = {"default": alias(API_ID=api_id)}
    return str(api_id)


@pytest.fixture
def realistic_keys(monkeypatch) -> None:
    """Make moto's API keys look like AppSync's (``da2-`` and 26 characters, not 6 hex digits).

    A 6-character key could turn up by chance in a hex signature of some log record.
    """
    import secrets

    from moto.appsync import models

    real = models.EventsAPIKey.__init__

    def init(self, *args: Any, **kwargs: Any) -> None:
        real(self, *args, **kwargs)
        self.key_id = "da2-" + secrets.token_hex(13)

    monkeypatch.setattr(models.EventsAPIKey, "__init__", init)


def names(aws: Any, api_id: str) -> list[str]:
    """The namespaces moto holds for the API, in creation order."""
    listed = aws.list_channel_namespaces(apiId=api_id)["channelNamespaces"]
    return [ns["name"] for ns in listed]


def test_plan_check_apply_then_in_step(aws, api):
    """Missing namespaces: --plan lists them, --check exits 1, --apply creates, --check exits 0."""
    status, out, _ = run("--plan")
    assert status == 0
    assert "  + create namespace chat" in out
    assert "  + create namespace ops" in out
    assert names(aws, api) == []  # --plan changes nothing

    status, out, err = run("--check")
    assert status == 1
    assert "+ create namespace ops" in out
    assert "      subscribe auth modes: AWS_IAM" in out
    assert err.startswith("AWS differs from APPSYNC_EVENTS['default']: 2 change(s)")
    assert names(aws, api) == []  # --check changes nothing

    status, out, _ = run("--apply")
    assert status == 0
    assert "2 change(s) applied." in out
    ops = {ns["name"]: ns for ns in aws.list_channel_namespaces(apiId=api)["channelNamespaces"]}
    assert ops["ops"]["publishAuthModes"] == [{"authType": "AWS_IAM"}]
    assert ops["ops"]["subscribeAuthModes"] == [{"authType": "AWS_IAM"}]
    assert ops["chat"]["subscribeAuthModes"] == [{"authType": "AWS_IAM"}, {"authType": "API_KEY"}]

    status, out, _ = run("--check")
    assert status == 0
    assert "in step: nothing to change." in out


def test_apply_is_idempotent(aws, api):
    """A second --apply finds nothing to do and creates nothing twice."""
    assert run("--apply")[0] == 0
    status, out, _ = run("--apply")
    assert status == 0
    assert "applied" not in out
    assert sorted(names(aws, api)) == ["chat", "ops"]


def test_drift_in_auth_modes_is_reported_with_both_sides(aws, api):
    """A namespace whose modes differ on AWS makes --check exit 1 naming both sides."""
    aws.create_channel_namespace(
        apiId=api,
        name="chat",
        publishAuthModes=[{"authType": "API_KEY"}],
        subscribeAuthModes=[{"authType": "API_KEY"}, {"authType": "AWS_IAM"}],
    )
    aws.create_channel_namespace(
        apiId=api, name="ops", subscribeAuthModes=[{"authType": "AWS_IAM"}]
    )
    status, out, _ = run("--check")
    assert status == 1
    assert "  ~ update namespace chat" in out
    assert "      publish auth modes: AWS has API_KEY; the settings declare AWS_IAM" in out
    assert "namespace ops" not in out  # its publish modes are the API's default, as declared


def test_api_auth_drift_is_reported(aws, settings):
    """An API whose default modes differ from the settings is a difference too."""
    api_id = aws.create_api(name="events", eventConfig=event_config("API_KEY", "AWS_IAM"))["api"][
        "apiId"
    ]
    settings.APPSYNC_EVENTS = {"default": alias(API_ID=api_id, NAMESPACES=[])}
    status, out, _ = run("--check")
    assert status == 1
    assert "  ~ update the API's auth configuration" in out
    assert (
        "default publish auth modes: AWS has API_KEY, AWS_IAM; the settings declare AWS_IAM" in out
    )


def test_undeclared_namespaces_are_kept_and_only_pruned_on_request(aws, api, monkeypatch):
    """An extra namespace is reported and kept; --prune asks first and deletes only after 'yes'."""
    for name in ("chat", "ops", "legacy"):
        modes = [{"authType": "AWS_IAM"}] if name == "ops" else None
        aws.create_channel_namespace(
            apiId=api, name=name, **({"subscribeAuthModes": modes} if modes else {})
        )

    status, out, _ = run("--check")
    assert status == 0
    assert "? namespace legacy is on AWS but not in the settings (kept; --prune deletes it)" in out
    assert run("--apply")[0] == 0
    assert "legacy" in names(aws, api)

    assert run("--check", "--prune")[0] == 1

    questions: list[str] = []
    monkeypatch.setattr("builtins.input", lambda q: questions.append(q) or "no")
    status, _, err = run("--apply", "--prune")
    assert status == 1
    assert err.startswith("Nothing changed: the deletion was not confirmed")
    assert "legacy" in questions[0]
    assert "legacy" in names(aws, api)

    def eof(question: str) -> str:
        raise EOFError

    monkeypatch.setattr("builtins.input", eof)
    assert run("--apply", "--prune")[0] == 1  # no terminal: no
    assert "legacy" in names(aws, api)

    monkeypatch.setattr("builtins.input", lambda q: "yes")
    status, out, _ = run("--apply", "--prune")
    assert status == 0
    assert "  - delete namespace legacy" in out
    assert sorted(names(aws, api)) == ["chat", "ops"]


def test_prune_without_input_deletes_without_asking(aws, api, monkeypatch):
    """--no-input deletes undeclared namespaces without a question."""
    aws.create_channel_namespace(apiId=api, name="legacy")

    def no_questions(question: str) -> str:
        raise AssertionError("asked: " + question)

    monkeypatch.setattr("builtins.input", no_questions)
    assert run("--apply", "--prune", "--no-input")[0] == 0
    assert sorted(names(aws, api)) == ["chat", "ops"]


def test_api_found_by_the_http_url_host(aws, settings):
    """Without API_ID the API is the one whose dns.HTTP is HTTP_URL's host (not its DNS prefix)."""
    aws.create_api(name="other", eventConfig=in_step_config())
    target = aws.create_api(name="events", eventConfig=in_step_config())["api"]
    host = target["dns"]["HTTP"]
    assert not host.startswith(target["apiId"])  # the first label is not the API id
    settings.APPSYNC_EVENTS = {"default": alias(HTTP_URL=f"https://{host}/event")}
    assert run("--apply")[0] == 0
    assert sorted(names(aws, target["apiId"])) == ["chat", "ops"]


def test_standard_host_of_no_api_is_a_configuration_error(aws, settings):
    """A standard host that no API in the region has exits 2 with one line."""
    aws.create_api(name="events", eventConfig=in_step_config())
    host = "nosuchprefix000000000000000.appsync-api.us-east-1.amazonaws.com"
    settings.APPSYNC_EVENTS = {"default": alias(HTTP_URL=f"https://{host}/event")}
    status, _, err = run("--check")
    assert status == 2
    assert err.startswith(f"none of the 1 Event APIs in region us-east-1 has the HTTP host {host}")
    assert "\n" not in err


def test_custom_domain_without_api_id_is_a_configuration_error(aws, settings):
    """A custom domain (or the emulator) without API_ID exits 2 asking for API_ID."""
    settings.APPSYNC_EVENTS = {"default": alias(HTTP_URL="https://events.example.com/event")}
    status, _, err = run("--check")
    assert status == 2
    assert err.startswith("APPSYNC_EVENTS['default']['API_ID'] is missing, and HTTP_URL's host")
    assert "set API_ID" in err


def test_unknown_api_id_exits_2(aws, settings):
    """An API_ID with no API behind it exits 2 naming API_ID and the region."""
    settings.APPSYNC_EVENTS = {"default": alias(API_ID="nosuchapi")}
    status, _, err = run("--check")
    assert status == 2
    assert err.startswith(
        "APPSYNC_EVENTS['default']['API_ID'] is 'nosuchapi', but region us-east-1 has no such "
        "Event API (NotFoundException"
    )


def test_access_denied_exits_2_naming_the_action(aws, api, monkeypatch):
    """A refused call exits 2 with one line naming the IAM action to allow."""
    from botocore.stub import Stubber

    client = control.appsync_client(APIConfig.from_mapping("default", alias(API_ID=api)))
    stubber = Stubber(client)
    stubber.add_client_error("get_api", "AccessDeniedException", "not authorized", 403)
    stubber.activate()
    monkeypatch.setattr(control, "appsync_client", lambda config: client)
    status, _, err = run("--check")
    assert status == 2
    assert "allow the IAM action appsync:GetApi" in err


def test_unreachable_endpoint_exits_1(settings, monkeypatch):
    """An endpoint nobody listens on is a failure that may pass: exit 1, one line."""
    import socket

    with socket.socket() as probe:  # a port that was free a moment ago, now closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    settings.APPSYNC_EVENTS = {"default": alias(API_ID="someapi")}
    status, _, err = run("--check")
    assert status == 1
    assert err.startswith("cannot reach AppSync for appsync:GetApi: Could not connect")


def test_no_aws_credentials_exits_2(settings):
    """An alias without AWS_IAM in an environment without credentials exits 2 saying so."""
    settings.APPSYNC_EVENTS = {
        "default": alias(
            AUTH={"API_KEY": "da2-tests00000000000000000000000"},
            API_ID="x1",
            DEFAULT_PUBLISH_AUTH_MODES=["API_KEY"],
            NAMESPACES=["chat"],
        )
    }
    status, _, err = run("--check")
    assert status == 2
    assert err.startswith("no AWS credentials found")


def test_create_api_prints_the_settings_and_the_key_once_never_logging_it(
    aws, settings, caplog, realistic_keys
):
    """--create-api makes the API and its key; the key is on stdout once and in no log record."""
    settings.APPSYNC_EVENTS = {"default": alias()}
    caplog.set_level(logging.DEBUG)  # every logger, botocore's response bodies included
    status, out, _ = run("--create-api", "my events", "--api-key-days", "30")
    records = [(r.name, r.getMessage()) for r in caplog.records]  # before the test's own calls
    assert status == 0
    [created] = aws.list_apis()["apis"]
    assert created["name"] == "my events"
    assert created["eventConfig"]["defaultPublishAuthModes"] == [{"authType": "AWS_IAM"}]
    assert created["eventConfig"]["connectionAuthModes"] == [
        {"authType": "API_KEY"},
        {"authType": "AWS_IAM"},
    ]
    assert f'    "HTTP_URL": "https://{created["dns"]["HTTP"]}/event",' in out
    assert f'    "API_ID": "{created["apiId"]}",' in out
    [key] = [k["id"] for k in aws.list_api_keys(apiId=created["apiId"])["apiKeys"]]
    assert out.count(key) == 1
    assert re.search(rf"^    {re.escape(key)}$", out, re.MULTILINE)
    assert any(name == "botocore.parsers" for name, _ in records)  # DEBUG was really on
    assert not [r for r in records if key in r[1]]


def test_create_api_key_stays_out_of_logs_without_the_filter_it_would_not(
    aws, settings, caplog, monkeypatch, realistic_keys
):
    """Without the response-body filter botocore would log the key: the filter keeps it out."""
    from contextlib import nullcontext

    monkeypatch.setattr(control, "_response_bodies_unlogged", nullcontext)
    settings.APPSYNC_EVENTS = {"default": alias()}
    caplog.set_level(logging.DEBUG)
    assert run("--create-api", "events")[0] == 0
    records = list(caplog.records)
    [created] = aws.list_apis()["apis"]
    [key] = [k["id"] for k in aws.list_api_keys(apiId=created["apiId"])["apiKeys"]]
    assert [r for r in records if key in r.getMessage()]


def test_create_api_without_api_key_makes_no_key(aws, settings):
    """An alias that uses no API_KEY mode gets an API without a key."""
    settings.APPSYNC_EVENTS = {
        "default": alias(AUTH={"AWS_IAM": dict(KEYS)}, DEFAULT_PUBLISH_AUTH_MODES=["AWS_IAM"])
    }
    status, out, _ = run("--create-api", "iam-only")
    assert status == 0
    [created] = aws.list_apis()["apis"]
    assert created["eventConfig"]["authProviders"] == [{"authType": "AWS_IAM"}]
    assert aws.list_api_keys(apiId=created["apiId"])["apiKeys"] == []
    assert "API key" not in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--create-api", "bad/name"), "'bad/name' is not a valid Event API name"),
        (
            ("--create-api", "ok", "--api-key-days", "400"),
            "an API key lives 1 to 365 days, not 400.",
        ),
    ],
)
def test_create_api_refuses_bad_input_with_exit_2(aws, settings, args, message):
    """A bad API name or key lifetime exits 2 before any call."""
    settings.APPSYNC_EVENTS = {"default": alias()}
    status, _, err = run(*args)
    assert status == 2
    assert err.startswith(message)
    assert aws.list_apis()["apis"] == []


def test_create_api_refuses_providers_it_cannot_describe(aws, settings):
    """A Cognito mode needs a user pool the settings do not hold: exit 2, no API created."""
    settings.APPSYNC_EVENTS = {
        "default": alias(
            NAMESPACES={"chat": {"SUBSCRIBE_AUTH_MODES": ["AMAZON_COGNITO_USER_POOLS", "API_KEY"]}}
        )
    }
    status, _, err = run("--create-api", "events")
    assert status == 2
    assert "AMAZON_COGNITO_USER_POOLS" in err
    assert aws.list_apis()["apis"] == []


def test_mutually_exclusive_modes_are_a_usage_error(api):
    """Two modes at once are refused by the parser."""
    with pytest.raises(CommandError, match="not allowed with argument"):
        call_command("appsync_namespaces", "--check", "--apply")


# -- throttling: botocore's standard retries against a server that answers 429 ------------


class _Throttling(BaseHTTPRequestHandler):
    """Answers 429 TooManyRequestsException ``throttle`` times, then a GetApi / listing."""

    throttle = 0
    requests: list[str] = []

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        if len(type(self).requests) <= type(self).throttle:
            self._send(
                429, {"message": "Rate exceeded"}, {"x-amzn-ErrorType": "TooManyRequestsException"}
            )
        elif self.path.endswith("/channelNamespaces"):
            self._send(200, {"channelNamespaces": []})
        else:
            self._send(
                200,
                {"api": {"apiId": "throttled", "name": "events", "eventConfig": in_step_config()}},
            )

    def _send(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        """Keep the test output quiet."""


@pytest.fixture
def throttling(settings, monkeypatch) -> Iterator[type[_Throttling]]:
    """A local AppSync stand-in on 127.0.0.1, reached through AWS_ENDPOINT_URL_APPSYNC."""
    handler = type("Handler", (_Throttling,), {"requests": [], "throttle": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_APPSYNC", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    settings.APPSYNC_EVENTS = {"default": alias(API_ID="throttled", NAMESPACES=[])}
    try:
        yield handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_throttling_is_retried_with_backoff(throttling):
    """One 429 is retried (botocore's standard mode) and the check then succeeds."""
    throttling.throttle = 1
    status, out, _ = run("--check")
    assert status == 0, out
    assert throttling.requests[:2] == ["/v2/apis/throttled", "/v2/apis/throttled"]


def test_throttling_that_persists_exits_1_with_a_clear_line(throttling):
    """Throttled on every attempt: exit 1 (not drift, not configuration) saying what to do."""
    throttling.throttle = 99
    status, _, err = run("--check")
    assert status == 1
    assert err == (
        "AWS throttled appsync:GetApi (TooManyRequestsException: Rate exceeded) 2 times, "
        "backing off between attempts; try again later, or allow more attempts with "
        "AWS_MAX_ATTEMPTS (api='default')"
    )
    assert len(throttling.requests) == 2


# -- moto's server mode in a subprocess, reached through AWS_ENDPOINT_URL --------------------


@pytest.fixture
def moto_server() -> Iterator[str]:
    """Start ``moto_server`` on a free port of 127.0.0.1; return its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            found = re.search(r"Running on (http://127\.0\.0\.1:\d+)", line)
            if found:
                break
        else:
            raise AssertionError("moto_server did not start")
        yield found.group(1)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_command_in_a_subprocess_against_moto_server(moto_server, tmp_path):
    """manage.py with AWS_ENDPOINT_URL: --check exits 1, --apply creates, --check exits 0."""
    client = boto3.client(
        "appsync",
        region_name=REGION,
        endpoint_url=moto_server,
        aws_access_key_id="AKIDTEST",
        aws_secret_access_key="not-a-secret",
    )
    api_id = client.create_api(name="events", eventConfig=in_step_config())["api"]["apiId"]
    (tmp_path / "moto_settings.py").write_text(
        "from tests.settings import *  # noqa: F403\n"
        f"APPSYNC_EVENTS = {{'default': {alias(API_ID=api_id)!r}}}\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "moto_settings",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "AWS_ENDPOINT_URL": moto_server,
    }

    def manage(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "django", "appsync_namespaces", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    first = manage("--check")
    assert first.returncode == 1, first.stderr
    assert "+ create namespace chat" in first.stdout
    assert first.stderr.strip().splitlines()[-1].startswith("CommandError: AWS differs")
    applied = manage("--apply")
    assert applied.returncode == 0, applied.stderr
    assert sorted(
        ns["name"] for ns in client.list_channel_namespaces(apiId=api_id)["channelNamespaces"]
    ) == [
        "chat",
        "ops",
    ]
    again = manage("--check")
    assert again.returncode == 0, again.stderr
    assert "in step: nothing to change." in again.stdout


def test_setting_mistake_exits_2_with_one_line(tmp_path):
    """A bad HANDLERS declaration stops the command with one line naming the key (exit 2)."""
    (tmp_path / "bad_settings.py").write_text(
        "from tests.settings import *  # noqa: F403\n"
        "APPSYNC_EVENTS = {'default': {'HTTP_URL': 'http://127.0.0.1:8765/event',\n"
        "    'AUTH': {'API_KEY': 'da2-tests00000000000000000000000'},\n"
        "    'NAMESPACES': {'chat': {'HANDLERS': {'CODE_FILE': 'relative.js'}}}}}\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bad_settings",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
    }
    result = subprocess.run(
        [sys.executable, "-m", "django", "appsync_namespaces", "--check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(
        "CommandError: APPSYNC_EVENTS['default']['NAMESPACES']['chat']['HANDLERS']['CODE_FILE']"
    )
    assert line.endswith("[appsync_events.E013]")
