"""IAM auth: SigV4 vectors, the AWS JS signer cross-check, credential refresh and sources."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.credentials import Credentials, RefreshableCredentials

from appsync_events.auth import (
    AuthRequest,
    aconnect_headers,
    ahttp_headers,
    aoperation_headers,
    connect_headers,
    get_auth_backend,
    http_headers,
    operation_headers,
)
from appsync_events.auth.iam import IAMAuth
from appsync_events.conf import get_api_config
from appsync_events.config import APIConfig
from appsync_events.exceptions import AuthError, ConfigurationError
from tests.prereqs import JS_DIR, require_node

HOST = "example1234567890000.appsync-api.us-east-1.amazonaws.com"
ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TEMP_ACCESS_KEY = "ASIAEXAMPLE"
SESSION_TOKEN = "FwoGZXIvYXdzEXAMPLESESSIONTOKEN//////////wEaDEXAMPLE"
DATE = datetime(2025, 1, 1, tzinfo=UTC)

CONNECT = b"{}"
SUBSCRIBE = b'{"channel":"/default/foo"}'
PUBLISH = b'{"channel":"/default/foo","events":["{\\"a\\":1}"]}'

#: The three reference signing vectors (connect, subscribe, publish) with long-term keys,
#: fixed keys and date: a regression guard, cross-checked by AWS's JS signer below.
DOC_VECTORS = [
    (CONNECT, "eea55356d53e51c239dc6576fc3efa2208d112fddd8ce2f919f1411aadae7da7"),
    (SUBSCRIBE, "c4b4221f34398129186037bd6bc223d8ce4aac7d4e1f41c98d00a48fb5effc55"),
    (PUBLISH, "2988e9f5c01fb1a5a1b8eaa2972891b6e42b270eeb5147f9a84148301ea0353b"),
]
#: The same bodies with temporary credentials (computed by AWS's JS signer, sign.mjs).
SESSION_VECTORS = [
    (CONNECT, "ac14443e76309f1c488787470bec8a64ff987bd62b1f557700d1ac4301693c35"),
    (SUBSCRIBE, "9e1d479f6a0477d09ade4e5fc269163fd1c0fa8435803b396dcfc3ccbd8e482a"),
    (PUBLISH, "18c2d2d48a34a20290a5f1be8dfd794e999af7a37578141f45596bcb7041f6de"),
]

DOC_CANONICAL_CONNECT = "\n".join(
    [
        "POST",
        "/event",
        "",
        "accept:application/json, text/javascript",
        "content-encoding:amz-1.0",
        "content-type:application/json; charset=UTF-8",
        f"host:{HOST}",
        "x-amz-date:20250101T000000Z",
        "",
        "accept;content-encoding;content-type;host;x-amz-date",
        "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
    ]
)


# -- an independent SigV4 verifier (hashlib + hmac only), also used by other tests ---------


def reference_canonical_request(headers: dict[str, str], body: bytes, path: str = "/event") -> str:
    """Rebuild the canonical request from the headers an authorization declares as signed."""
    lowered = {k.lower(): v for k, v in headers.items()}
    auth = lowered["authorization"]
    signed = auth.split("SignedHeaders=")[1].split(",")[0].strip().split(";")
    lines = ["POST", path, ""]
    lines += [f"{name}:{' '.join(lowered[name].split())}" for name in signed]
    lines += ["", ";".join(signed), hashlib.sha256(body).hexdigest()]
    return "\n".join(lines)


def reference_signature(
    headers: dict[str, str], body: bytes, secret: str, path: str = "/event"
) -> str:
    """Compute the SigV4 signature the service would expect for ``headers`` and ``body``."""
    lowered = {k.lower(): v for k, v in headers.items()}
    scope = lowered["authorization"].split("Credential=")[1].split(",")[0]
    _, day, region, service, _ = scope.split("/")
    canonical = reference_canonical_request(headers, body, path)
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            lowered["x-amz-date"],
            f"{day}/{region}/{service}/aws4_request",
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    key = f"AWS4{secret}".encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def signature_of(headers: dict[str, str]) -> str:
    """Return the hex signature of an authorization header object."""
    return headers["authorization"].rsplit("Signature=", 1)[1]


# -- fixtures ----------------------------------------------------------------------------


def use_iam(settings: Any, url: str = f"https://{HOST}/event", **options: Any) -> None:
    """Configure the default alias with IAM auth and ``options``."""
    options.setdefault("clock", lambda: DATE)
    settings.APPSYNC_EVENTS = {
        "default": {
            "HTTP_URL": url,
            "REGION": "us-east-1",
            "AUTH": {"AWS_IAM": options},
        }
    }


@pytest.fixture
def static_keys(settings):
    """IAM with the doc's long-term keys and a fixed clock."""
    use_iam(settings, access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY)
    return get_api_config()


@pytest.fixture
def temp_keys(settings):
    """IAM with temporary keys (session token) and a fixed clock."""
    use_iam(
        settings,
        access_key_id=TEMP_ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        session_token=SESSION_TOKEN,
    )
    return get_api_config()


def headers_for(api, body: bytes) -> dict[str, str]:
    """Return the websocket header object for one of the three vector bodies."""
    if body == CONNECT:
        return connect_headers(api)
    if body == SUBSCRIBE:
        return operation_headers(api, "subscribe", "/default/foo")
    return operation_headers(api, "publish", "/default/foo", ['{"a":1}'])


# -- the vectors -------------------------------------------------------------------------


def test_reference_verifier_matches_the_documented_canonical_request(static_keys):
    """The test's own SigV4 verifier rebuilds the reference canonical request of this file."""
    headers = connect_headers(static_keys)
    assert reference_canonical_request(headers, CONNECT) == DOC_CANONICAL_CONNECT


@pytest.mark.parametrize(("body", "signature"), DOC_VECTORS)
def test_doc_vectors_are_reproduced_exactly(static_keys, body, signature):
    """Connect, subscribe and publish sign to the exact reference signatures of this file."""
    headers = headers_for(static_keys, body)
    assert headers == {
        "accept": "application/json, text/javascript",
        "content-encoding": "amz-1.0",
        "content-type": "application/json; charset=UTF-8",
        "host": HOST,
        "x-amz-date": "20250101T000000Z",
        "authorization": (
            f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20250101/us-east-1/appsync/aws4_request, "
            "SignedHeaders=accept;content-encoding;content-type;host;x-amz-date, "
            f"Signature={signature}"
        ),
    }
    assert reference_signature(headers, body, SECRET_KEY) == signature


@pytest.mark.parametrize(("body", "signature"), SESSION_VECTORS)
def test_session_token_vectors(temp_keys, body, signature):
    """Temporary credentials add a signed x-amz-security-token and sign to fixed vectors."""
    headers = headers_for(temp_keys, body)
    assert headers["x-amz-security-token"] == SESSION_TOKEN
    assert (
        "SignedHeaders=accept;content-encoding;content-type;host;x-amz-date;x-amz-security-token"
        in headers["authorization"]
    )
    assert signature_of(headers) == signature
    assert reference_signature(headers, body, SECRET_KEY) == signature


async def test_async_twins_sign_the_same(static_keys):
    """The async helpers produce the very same header objects as the sync ones."""
    assert await aconnect_headers(static_keys) == connect_headers(static_keys)
    sub = await aoperation_headers(static_keys, "subscribe", "/default/foo")
    assert signature_of(sub) == DOC_VECTORS[1][1]
    body = b'{"channel":"/default/foo","events":["1"]}'
    assert await ahttp_headers(static_keys, "/default/foo", body) == http_headers(
        static_keys, "/default/foo", body
    )


def test_http_publish_signs_the_real_body(static_keys):
    """An HTTP publish signs its request body bytes with the HTTP header set."""
    body = b'{"channel":"/default/foo","events":["{\\"a\\":\\"<b>\\"}"]}'
    headers = http_headers(static_keys, "/default/foo", body)
    assert headers["content-type"] == "application/json"
    assert "content-encoding" not in headers
    assert reference_signature(headers, body, SECRET_KEY) == signature_of(headers)
    assert reference_signature(headers, body + b" ", SECRET_KEY) != signature_of(headers)


def test_emulator_host_with_port_is_signed_as_host(settings):
    """A non-standard endpoint signs its host:port and the /event path over https."""
    use_iam(
        settings,
        url="http://127.0.0.1:8765/event",
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
    )
    headers = connect_headers(get_api_config())
    assert headers["host"] == "127.0.0.1:8765"
    assert reference_signature(headers, CONNECT, SECRET_KEY) == signature_of(headers)


def test_region_option_signs_without_an_alias_region(settings):
    """On a custom host without REGION the ``region`` option names the signing region."""
    settings.APPSYNC_EVENTS = {
        "default": {
            "HTTP_URL": "https://events.example.com/event",
            "AUTH": {
                "AWS_IAM": {
                    "access_key_id": ACCESS_KEY,
                    "secret_access_key": SECRET_KEY,
                    "region": "eu-west-3",
                    "clock": lambda: DATE,
                }
            },
        }
    }
    api = get_api_config()
    assert api.region is None
    headers = connect_headers(api)
    assert (
        f"Credential={ACCESS_KEY}/20250101/eu-west-3/appsync/aws4_request"
        in (headers["authorization"])
    )
    assert reference_signature(headers, CONNECT, SECRET_KEY) == signature_of(headers)


def test_no_region_at_all_refuses_to_build_the_signer():
    """An IAM backend for a config without any region is a configuration error (E003)."""
    api = APIConfig.from_mapping(
        "local", {"HTTP_URL": "http://127.0.0.1:8765/event", "AUTH": {"API_KEY": "da2-x"}}
    )
    assert api.region is None
    with pytest.raises(ConfigurationError) as info:
        IAMAuth(api, access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY)
    assert info.value.check_id == "appsync_events.E003"
    assert "APPSYNC_EVENTS['local']['AUTH']['AWS_IAM']: no signing region" in str(info.value)
    assert "'region'" in str(info.value)


def test_fresh_date_for_every_signature(settings):
    """Each operation is signed with the clock's current time, not a cached date."""
    times = iter([DATE, DATE + timedelta(seconds=1)])
    use_iam(
        settings, access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY, clock=lambda: next(times)
    )
    api = get_api_config()
    first = operation_headers(api, "subscribe", "/default/foo")
    second = operation_headers(api, "subscribe", "/default/foo")
    assert (first["x-amz-date"], second["x-amz-date"]) == ("20250101T000000Z", "20250101T000001Z")
    assert signature_of(first) != signature_of(second)


# -- cross-check with the official AWS JS signer --------------------------------------------


def js_sign(payload: dict[str, Any]) -> dict[str, Any]:
    """Sign with Amplify's SigV4 signer through tests/interop/js/sign.mjs."""
    proc = subprocess.run(
        ["node", "sign.mjs"],
        cwd=JS_DIR,
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


@pytest.mark.node
@pytest.mark.parametrize("temporary", [False, True], ids=["long-term", "session-token"])
@pytest.mark.parametrize(
    "body", [CONNECT, SUBSCRIBE, PUBLISH], ids=["connect", "subscribe", "publish"]
)
def test_websocket_vectors_match_the_aws_js_signer(settings, temporary, body):
    """Our websocket header objects equal those AWS's own JS signer makes for the same input."""
    require_node()
    if not (JS_DIR / "node_modules").is_dir():
        pytest.skip("tests/interop/js/node_modules is missing: run `npm ci` there")
    creds: dict[str, Any] = {"access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY}
    payload: dict[str, Any] = {"accessKeyId": ACCESS_KEY}
    if temporary:
        creds = {
            "access_key_id": TEMP_ACCESS_KEY,
            "secret_access_key": SECRET_KEY,
            "session_token": SESSION_TOKEN,
        }
        payload = {"accessKeyId": TEMP_ACCESS_KEY, "sessionToken": SESSION_TOKEN}
    use_iam(settings, **creds)
    ours = headers_for(get_api_config(), body)
    theirs = js_sign(
        {
            **payload,
            "secretAccessKey": SECRET_KEY,
            "region": "us-east-1",
            "host": HOST,
            "date": "20250101T000000Z",
            "body": body.decode(),
        }
    )
    assert ours == theirs["headers"]
    assert signature_of(ours) == theirs["signature"]


@pytest.mark.node
def test_http_publish_matches_the_aws_js_signer(temp_keys):
    """The HTTP publish header object equals the JS signer's for the same headers and body."""
    require_node()
    body = '{"channel":"/default/foo","events":["{\\"a\\":\\"<b>\\"}"]}'
    ours = http_headers(temp_keys, "/default/foo", body.encode())
    theirs = js_sign(
        {
            "accessKeyId": TEMP_ACCESS_KEY,
            "secretAccessKey": SECRET_KEY,
            "sessionToken": SESSION_TOKEN,
            "region": "us-east-1",
            "host": HOST,
            "date": "20250101T000000Z",
            "body": body,
            "headers": {"accept": "application/json", "content-type": "application/json"},
        }
    )
    assert ours == theirs["headers"]


# -- credentials are read again for every signature -------------------------------------


class RotatingSource:
    """A refresh function returning new keys on each call, valid for five more minutes."""

    def __init__(self) -> None:
        self.calls = 0
        self.threads: list[int] = []

    def __call__(self) -> dict[str, str]:
        self.calls += 1
        self.threads.append(threading.get_ident())
        expiry = datetime.now(UTC) + timedelta(minutes=5)  # inside botocore's refresh window
        return {
            "access_key": f"ASIAROTATED{self.calls}",
            "secret_key": f"secret-{self.calls}-xxxxxxxx",
            "token": f"session-token-{self.calls}-xxxxxxxx",
            "expiry_time": expiry.isoformat(),
        }


def refreshable(source: RotatingSource) -> RefreshableCredentials:
    """Real botocore refreshable credentials driven by ``source``."""
    return RefreshableCredentials.create_from_metadata(
        metadata=source(), refresh_using=source, method="test"
    )


def test_refreshable_credentials_are_read_for_every_signature(settings):
    """Two signatures in a row use the credentials as they are at each moment."""
    source = RotatingSource()
    use_iam(settings, credentials=refreshable(source))
    api = get_api_config()
    first = operation_headers(api, "subscribe", "/default/foo")
    second = operation_headers(api, "subscribe", "/default/foo")
    assert "Credential=ASIAROTATED2/" in first["authorization"]
    assert first["x-amz-security-token"] == "session-token-2-xxxxxxxx"
    assert "Credential=ASIAROTATED3/" in second["authorization"]
    assert second["x-amz-security-token"] == "session-token-3-xxxxxxxx"
    assert reference_signature(second, SUBSCRIBE, "secret-3-xxxxxxxx") == signature_of(second)


async def test_async_refresh_runs_off_the_event_loop(settings):
    """A due credential refresh (network I/O in real life) runs in a worker thread."""
    source = RotatingSource()
    use_iam(settings, credentials=refreshable(source))
    api = get_api_config()
    headers = await aconnect_headers(api)
    assert "Credential=ASIAROTATED2/" in headers["authorization"]
    assert source.threads[-1] != threading.get_ident()


async def test_async_signs_inline_when_no_refresh_is_due(static_keys):
    """Static keys need no worker thread: the async path signs on the loop."""
    backend = get_auth_backend(static_keys, "AWS_IAM")
    assert isinstance(backend, IAMAuth)
    backend.get_credentials()
    assert not backend._needs_io()
    assert signature_of(await aconnect_headers(static_keys)) == DOC_VECTORS[0][1]


# -- credential sources ------------------------------------------------------------------


def test_standard_chain_reads_environment_variables(settings, monkeypatch):
    """With no options, boto3's default chain finds keys in the environment."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    settings.APPSYNC_EVENTS = {
        "default": {"HTTP_URL": f"https://{HOST}/event", "AUTH": {"AWS_IAM": True}}
    }
    api = get_api_config()
    backend = get_auth_backend(api, "AWS_IAM")
    headers = backend.get_headers(AuthRequest("connect", "websocket", CONNECT))
    assert f"Credential={ACCESS_KEY}/" in headers["authorization"]
    assert reference_signature(headers, CONNECT, SECRET_KEY) == signature_of(headers)


def test_profile_option_reads_the_shared_credentials_file(settings, monkeypatch, tmp_path):
    """``profile`` selects a named profile from the shared credentials file."""
    creds_file = tmp_path / "credentials"
    creds_file.write_text(
        f"[appsync]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = {SECRET_KEY}\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds_file))
    use_iam(settings, profile="appsync")
    headers = connect_headers(get_api_config())
    assert "Credential=AKIDPROFILE/" in headers["authorization"]


class FakeSTS:
    """Stands in for an STS client: records AssumeRole calls, returns fresh keys."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def assume_role(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return {
            "Credentials": {
                "AccessKeyId": f"ASIAASSUMED{len(self.calls)}",
                "SecretAccessKey": "assumed-secret-xxxxxxxx",
                "SessionToken": "assumed-session-token-xxxxxxxx",
                "Expiration": datetime.now(UTC) + timedelta(hours=1),
            }
        }


class FakeSession:
    """Stands in for a boto3 Session: base credentials and an STS client."""

    instances: list[FakeSession] = []

    def __init__(self) -> None:
        self.sts = FakeSTS()
        self.client_calls: list[tuple[str, dict[str, Any]]] = []
        FakeSession.instances.append(self)

    def get_credentials(self) -> Credentials:
        return Credentials("AKIDBASE", "base-secret-xxxxxxxx")

    def client(self, service_name: str, **kwargs: Any) -> FakeSTS:
        self.client_calls.append((service_name, kwargs))
        return self.sts


def test_session_factory_supplies_credentials(settings):
    """``session_factory`` (a dotted path) provides the session whose credentials sign."""
    FakeSession.instances.clear()
    use_iam(settings, session_factory="tests.test_auth_iam.FakeSession")
    headers = connect_headers(get_api_config())
    assert "Credential=AKIDBASE/" in headers["authorization"]
    assert len(FakeSession.instances) == 1


def test_role_arn_assumes_the_role_once_and_signs_with_it(settings):
    """``role_arn`` assumes the role through STS and signs with the temporary keys."""
    FakeSession.instances.clear()
    use_iam(
        settings,
        session_factory=FakeSession,
        role_arn="arn:aws:iam::123456789012:role/publisher",
        external_id="ext-1",
    )
    api = get_api_config()
    first = connect_headers(api)
    second = operation_headers(api, "subscribe", "/default/foo")
    session = FakeSession.instances[-1]
    assert session.client_calls == [("sts", {"region_name": "us-east-1"})]
    assert session.sts.calls == [
        {
            "RoleArn": "arn:aws:iam::123456789012:role/publisher",
            "RoleSessionName": "django-appsync-events",
            "ExternalId": "ext-1",
        }
    ]
    for headers, body in ((first, CONNECT), (second, SUBSCRIBE)):
        assert "Credential=ASIAASSUMED1/" in headers["authorization"]
        assert headers["x-amz-security-token"] == "assumed-session-token-xxxxxxxx"
        assert reference_signature(headers, body, "assumed-secret-xxxxxxxx") == signature_of(
            headers
        )


def test_missing_credentials_raise_auth_error_naming_alias_and_operation(settings):
    """No credentials anywhere gives an AuthError that says where to put them."""
    use_iam(settings)
    api = get_api_config()
    with pytest.raises(AuthError) as info:
        operation_headers(api, "subscribe", "/default/foo")
    text = str(info.value)
    assert "no AWS credentials found" in text
    assert "api='default'" in text
    assert "operation=subscribe" in text
    assert "mode=AWS_IAM" in text


def test_failing_refresh_is_wrapped_without_secrets(settings):
    """A refresh that raises becomes an AuthError naming the operation, secrets redacted."""

    def broken() -> dict[str, str]:
        raise RuntimeError(f"STS said no to {SESSION_TOKEN}")

    creds = RefreshableCredentials.create_from_metadata(
        metadata={
            "access_key": TEMP_ACCESS_KEY,
            "secret_key": SECRET_KEY,
            "token": SESSION_TOKEN,
            "expiry_time": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
        },
        refresh_using=broken,
        method="test",
    )
    use_iam(settings, credentials=creds)
    with pytest.raises(AuthError) as info:
        operation_headers(get_api_config(), "publish", "/default/foo", ["1"])
    assert "operation=publish" in str(info.value)
    assert SESSION_TOKEN not in str(info.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"access_key_id": ACCESS_KEY}, "go together"),
        ({"session_token": "x" * 20}, "needs 'access_key_id'"),
        ({"profile": "a", "session_factory": "tests.test_auth_iam.FakeSession"}, "choose one"),
        ({"session_factory": "tests.nope.factory"}, "cannot be imported"),
        ({"session_factory": 42}, "callable"),
        ({"credentials": "not-creds"}, "botocore Credentials"),
        (
            {"credentials": Credentials(ACCESS_KEY, "s" * 20), "role_arn": "arn:aws:iam::1:role/r"},
            "cannot assume a role with 'credentials'",
        ),
        ({"external_id": "x"}, "only applies with 'role_arn'"),
        ({"role_arn": "arn", "duration_seconds": 60}, ">= 900"),
        ({"profile": ""}, "non-empty string"),
        ({"colour": "blue"}, "unknown option(s) colour"),
        ({"clock": "now"}, "'clock' must be a callable"),
    ],
)
def test_invalid_options_are_configuration_errors(settings, options, message):
    """Incomplete or contradictory IAM options are refused with a clear E008 error."""
    settings.APPSYNC_EVENTS = {
        "default": {"HTTP_URL": f"https://{HOST}/event", "AUTH": {"AWS_IAM": options}}
    }
    with pytest.raises(ConfigurationError) as info:
        get_auth_backend(get_api_config(), "AWS_IAM")
    assert message in str(info.value)
    assert info.value.check_id == "appsync_events.E008"


# -- secrets ------------------------------------------------------------------------------


def test_signing_logs_nothing_from_botocore(temp_keys, caplog):
    """Signing never goes through botocore's DEBUG-logging add_auth path."""
    caplog.set_level(logging.DEBUG)
    headers = connect_headers(temp_keys)
    http_headers(temp_keys, "/default/foo", b"{}")
    assert not [r for r in caplog.records if r.name.startswith("botocore")]
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert SESSION_TOKEN not in text
    assert signature_of(headers) not in text


def test_repr_of_backend_shows_no_secret(temp_keys):
    """The backend's repr names the mode and alias only."""
    backend = get_auth_backend(temp_keys, "AWS_IAM")
    text = repr(backend) + str(backend)
    assert SECRET_KEY not in text
    assert SESSION_TOKEN not in text
    assert "AWS_IAM" in text
