"""The emulator's real credential checks: SigV4 (signed and tampered), JWTs, Lambda.

Correct signatures come from botocore's own signer (``SigV4Auth.add_auth``, a different
code path from the emulator's verifier) and from fixed vectors (signatures precomputed
over the connect, subscribe and publish bodies); tampered ones change one byte of what
was signed.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from appsync_events.emulator import AppSyncEventsEmulator, NamespaceSpec
from appsync_events.protocol import signing_body
from tests.test_emulator_helpers import RawClient, api_key_auth, connected, http_publish

AKID = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TEMP_AKID = "ASIATEMPEXAMPLE"
TEMP_SECRET = "temporarysecretkeyexample0000000000000000"
SESSION_TOKEN = "FwoGZXIvYXdzEXAMPLEsessiontoken"
DOC_HOST = "example1234567890000.appsync-api.us-east-1.amazonaws.com"
WS_SIGNED = {
    "accept": "application/json, text/javascript",
    "content-encoding": "amz-1.0",
    "content-type": "application/json; charset=UTF-8",
}

NAMESPACES = [
    NamespaceSpec("default"),
    NamespaceSpec("iam", ("AWS_IAM",), ("AWS_IAM",)),
    NamespaceSpec("cognito", ("AMAZON_COGNITO_USER_POOLS",), ("AMAZON_COGNITO_USER_POOLS",)),
    NamespaceSpec("oidc", ("OPENID_CONNECT",), ("OPENID_CONNECT",)),
    NamespaceSpec("lambda", ("AWS_LAMBDA",), ("AWS_LAMBDA",)),
]


@pytest.fixture(scope="module")
def auth_emulator() -> Iterator[AppSyncEventsEmulator]:
    """One emulator with IAM test credentials and a namespace per auth mode."""
    emulator = AppSyncEventsEmulator(
        namespaces=NAMESPACES,
        iam_credentials={AKID: SECRET, TEMP_AKID: TEMP_SECRET},
        iam_session_tokens={TEMP_AKID: SESSION_TOKEN},
        hosts=[DOC_HOST],
    )
    with emulator:
        yield emulator


@pytest.fixture
def emu(auth_emulator: AppSyncEventsEmulator) -> AppSyncEventsEmulator:
    """The auth emulator, reset."""
    auth_emulator.reset()
    return auth_emulator


def sign(
    emu: AppSyncEventsEmulator,
    body: str | bytes,
    *,
    headers: Mapping[str, str] = WS_SIGNED,
    akid: str = AKID,
    secret: str = SECRET,
    token: str | None = None,
    region: str = "us-east-1",
) -> dict[str, str]:
    """Sign POST /event with botocore's full signer; return the lowercased header object."""
    data = body.encode() if isinstance(body, str) else body
    request = AWSRequest(
        method="POST", url=f"http://{emu.http_host}/event", data=data, headers=dict(headers)
    )
    SigV4Auth(Credentials(akid, secret, token), "appsync", region).add_auth(request)
    out = {k.lower(): v for k, v in request.headers.items()}
    out["host"] = emu.http_host
    return out


def signed_connect(emu: AppSyncEventsEmulator, **kwargs: Any) -> dict[str, str]:
    """The IAM connect header object (body ``{}``)."""
    return sign(emu, "{}", **kwargs)


def tamper(signature_header: str) -> str:
    """Flip the last hex digit of the Signature."""
    last = signature_header[-1]
    return signature_header[:-1] + ("0" if last != "0" else "1")


# -- SigV4: fixed vectors ---------------------------------------------------------------------


DOC_VECTORS = [
    ("{}", "eea55356d53e51c239dc6576fc3efa2208d112fddd8ce2f919f1411aadae7da7"),
    (
        '{"channel":"/default/foo"}',
        "c4b4221f34398129186037bd6bc223d8ce4aac7d4e1f41c98d00a48fb5effc55",
    ),
    (
        '{"channel":"/default/foo","events":["{\\"a\\":1}"]}',
        "2988e9f5c01fb1a5a1b8eaa2972891b6e42b270eeb5147f9a84148301ea0353b",
    ),
]


def doc_headers(signature: str) -> dict[str, str]:
    """The header object of the fixed vectors with ``signature``."""
    return {
        **WS_SIGNED,
        "host": DOC_HOST,
        "x-amz-date": "20250101T000000Z",
        "authorization": (
            f"AWS4-HMAC-SHA256 Credential={AKID}/20250101/us-east-1/appsync/aws4_request, "
            "SignedHeaders=accept;content-encoding;content-type;host;x-amz-date, "
            f"Signature={signature}"
        ),
    }


async def test_doc_vectors_verify(emu):
    """The fixed vectors verify for connect, subscribe and publish (date check off)."""
    emu.authorizer.sigv4_max_skew = None
    try:
        async with await RawClient.open(emu, doc_headers(DOC_VECTORS[0][1])) as client:
            assert (await client.init())["type"] == "connection_ack"
            answer = await client.subscribe("s", "/default/foo", doc_headers(DOC_VECTORS[1][1]))
            assert answer["type"] == "subscribe_success"
            answer = await client.publish(
                "p", "/default/foo", ['{"a":1}'], doc_headers(DOC_VECTORS[2][1])
            )
            assert answer["type"] == "publish_success"
            assert (await client.data(1))[0]["event"] == '{"a":1}'
    finally:
        emu.authorizer.sigv4_max_skew = 900.0


async def test_doc_vector_tampered_connect_gets_signature_error(emu):
    """A connect whose signature is off by one digit gets BadRequestException with the
    canonical string the service expected."""
    emu.authorizer.sigv4_max_skew = None
    try:
        async with await RawClient.open(emu, doc_headers(tamper(DOC_VECTORS[0][1]))) as client:
            answer = await client.init()
    finally:
        emu.authorizer.sigv4_max_skew = 900.0
    assert answer["type"] == "connection_error"
    [error] = answer["errors"]
    assert error["errorType"] == "BadRequestException"
    assert error["message"].startswith("The request signature we calculated does not match")
    canonical = (
        "POST\n/event\n\naccept:application/json, text/javascript\ncontent-encoding:amz-1.0\n"
        "content-type:application/json; charset=UTF-8\n"
        f"host:{DOC_HOST}\nx-amz-date:20250101T000000Z\n\n"
        "accept;content-encoding;content-type;host;x-amz-date\n"
        "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    )
    assert (
        f"The Canonical String for this request should have been\n'{canonical}'"
        in (error["message"])
    )


async def test_stale_signature_is_refused(emu):
    """With the default 15-minute skew check, a 2025 signature is refused as expired."""
    async with await RawClient.open(emu, doc_headers(DOC_VECTORS[0][1])) as client:
        answer = await client.init()
    assert answer["errors"][0]["errorType"] == "BadRequestException"
    assert "Signature expired" in answer["errors"][0]["message"]


# -- SigV4: fresh signatures from botocore -----------------------------------------------------


async def test_iam_websocket_round_trip(emu):
    """IAM connect, subscribe and publish signed by botocore are accepted."""
    async with await RawClient.open(emu, signed_connect(emu)) as client:
        assert (await client.init())["type"] == "connection_ack"
        assert emu.connections[0].auth_mode == "AWS_IAM"
        sub = sign(emu, signing_body("iam/room"))
        assert (await client.subscribe("s", "iam/room", sub))["type"] == "subscribe_success"
        events = ['{"n":1}', '"two"']
        pub = sign(emu, signing_body("iam/room", events))
        assert (await client.publish("p", "iam/room", events, pub))["type"] == "publish_success"
        assert sorted(d["event"] for d in await client.data(2)) == sorted(events)
    assert emu.published[-1].auth_mode == "AWS_IAM"


@pytest.mark.parametrize(
    "what", ["signature", "channel", "events", "date", "host", "secret", "signed-header"]
)
async def test_iam_tampered_websocket_operations(emu, what):
    """Changing anything a signature covers makes the operation fail with the signature error."""
    events = ['{"n":1}']
    body = signing_body("iam/room", events)
    headers = sign(emu, body, secret="wrong" if what == "secret" else SECRET)
    channel = "iam/room"
    if what == "signature":
        headers["authorization"] = tamper(headers["authorization"])
    elif what == "channel":
        channel = "/iam/room"  # the same channel, but not the string that was signed
    elif what == "events":
        events = ['{"n":2}']
    elif what == "date":
        date = headers["x-amz-date"]
        headers["x-amz-date"] = date[:-3] + ("00Z" if date[-3:] != "00Z" else "01Z")
    elif what == "host":
        headers["host"] = emu.http_host.replace("127.0.0.1", "localhost")
        emu.authorizer.hosts.add(headers["host"])
    elif what == "signed-header":
        headers["content-encoding"] = "gzip"
    async with await connected(emu, api_key_auth(emu)) as client:
        answer = await client.publish("p", channel, events, headers)
    emu.authorizer.hosts.discard(emu.http_host.replace("127.0.0.1", "localhost"))
    assert answer["type"] == "publish_error"
    assert answer["errors"][0]["errorType"] == "BadRequestException"
    assert answer["errors"][0]["message"].startswith("The request signature we calculated")


async def test_iam_host_not_of_this_api(emu):
    """A signature over a host that is not this API's is refused even if it verifies."""
    headers = sign(emu, signing_body("iam/room"))
    headers["host"] = "elsewhere.example"
    async with await connected(emu) as client:
        answer = await client.subscribe("s", "iam/room", headers)
    assert answer["errors"][0]["errorType"] == "BadRequestException"
    assert "not a host of this API" in answer["errors"][0]["message"]


async def test_iam_unknown_access_key(emu):
    """An access key id the emulator does not know is Unauthorized."""
    async with await RawClient.open(emu, signed_connect(emu, akid="AKIDUNKNOWN")) as client:
        answer = await client.init()
    assert answer["errors"][0] == {
        "errorType": "UnauthorizedException",
        "message": "The security token included in the request is invalid.",
        "errorCode": 401,
    }


async def test_iam_wrong_region(emu):
    """A credential scope for another region is refused."""
    async with await RawClient.open(emu, signed_connect(emu, region="eu-west-1")) as client:
        answer = await client.init()
    assert "scoped to a valid region" in answer["errors"][0]["message"]


async def test_iam_session_token(emu):
    """Temporary credentials need their session token, which is signed."""
    good = signed_connect(emu, akid=TEMP_AKID, secret=TEMP_SECRET, token=SESSION_TOKEN)
    assert "x-amz-security-token" in good["authorization"]
    async with await RawClient.open(emu, good) as client:
        assert (await client.init())["type"] == "connection_ack"
    bad = signed_connect(emu, akid=TEMP_AKID, secret=TEMP_SECRET, token="other-token")
    async with await RawClient.open(emu, bad) as client:
        answer = await client.init()
    assert answer["errors"][0]["errorType"] == "UnauthorizedException"
    assert "other-token" not in json.dumps(answer)


async def test_iam_malformed_authorization(emu):
    """An AWS4-HMAC-SHA256 header without its parts is refused with a clear message."""
    headers = {"host": emu.http_host, "authorization": "AWS4-HMAC-SHA256 nonsense"}
    async with await RawClient.open(emu, headers) as client:
        answer = await client.init()
    assert answer["errors"][0]["errorType"] == "BadRequestException"
    assert "Credential" in answer["errors"][0]["message"]


async def test_iam_http_publish_signed_and_tampered(emu):
    """HTTP publish: botocore's signature over the real body passes; a changed body fails."""
    body = json.dumps({"channel": "/iam/x", "events": ['{"a":"<b>"}']}).encode()
    headers = sign(emu, body, headers={"content-type": "application/json"})
    response = await http_publish(emu, "", [], headers, body=body)
    assert response.status_code == 200, response.text
    assert emu.published[-1].auth_mode == "AWS_IAM"
    tampered = body.replace(b"<b>", b"<i>")
    response = await http_publish(emu, "", [], headers, body=tampered)
    assert response.status_code == 403
    assert response.json()["errors"][0]["errorType"] == "BadRequestException"


async def test_iam_http_publish_content_sha256_header(emu):
    """A signed x-amz-content-sha256 stands for the body hash, as in any SigV4 request."""
    body = json.dumps({"channel": "/iam/x", "events": ["1"]}).encode()
    import hashlib

    digest = hashlib.sha256(body).hexdigest()
    headers = sign(
        emu, body, headers={"content-type": "application/json", "x-amz-content-sha256": digest}
    )
    assert (await http_publish(emu, "", [], headers, body=body)).status_code == 200


@pytest.mark.parametrize(
    ("escape", "signed_as", "accepted"),
    [
        ("html", "raw", False),
        ("html", "escaped", True),
        ("none", "raw", True),
        ("none", "escaped", False),
        ("both", "raw", True),
        ("both", "escaped", True),
    ],
)
async def test_ws_publish_signing_with_angle_brackets(emu, escape, signed_as, accepted):
    """ws_signing_escape decides which body a WS publish of '<', '>', '&' must be signed over
    (the service rejects the raw form: aws/aws-appsync-community#400)."""
    from appsync_events.emulator.authz import html_escape_json

    emu.configure(ws_signing_escape=escape)
    events = ['{"html":"<b>&</b>"}']
    body = signing_body("iam/x", events)
    headers = sign(emu, html_escape_json(body) if signed_as == "escaped" else body)
    async with await connected(emu) as client:
        await client.subscribe("s", "/default/x", api_key_auth(emu))
        answer = await client.publish("p", "iam/x", events, headers)
    assert answer["type"] == ("publish_success" if accepted else "publish_error")


async def test_iam_without_test_credentials_accepts_well_formed_headers():
    """With no IAM credentials configured any well-formed IAM header is accepted."""
    async with AppSyncEventsEmulator() as emu:
        headers = sign(emu, "{}", secret="anything")
        async with await RawClient.open(emu, headers) as client:
            assert (await client.init())["type"] == "connection_ack"
        bad = {"host": emu.http_host, "authorization": "AWS4-HMAC-SHA256 x"}
        async with await RawClient.open(emu, bad) as client:
            assert (await client.init())["type"] == "connection_error"


# -- JWT modes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "namespace"),
    [("AMAZON_COGNITO_USER_POOLS", "cognito"), ("OPENID_CONNECT", "oidc")],
)
@pytest.mark.parametrize("bearer", [False, True])
async def test_jwt_modes_round_trip(emu, mode, namespace, bearer):
    """A token issued by the emulator works with and without the Bearer prefix."""
    token = emu.issue_token(mode=mode, subject="alice", groups=["admins"])
    auth = {"host": emu.http_host, "authorization": f"Bearer {token}" if bearer else token}
    async with await RawClient.open(emu, auth) as client:
        assert (await client.init())["type"] == "connection_ack"
        assert (await client.subscribe("s", f"{namespace}/a", auth))["type"] == "subscribe_success"
        answer = await client.publish("p", f"{namespace}/a", ["1"], auth)
        assert answer["type"] == "publish_success"
    assert emu.published[-1].auth_mode == mode
    response = await http_publish(emu, f"/{namespace}/a", ["2"], {"authorization": token})
    assert response.status_code == 200


async def test_jwt_expired(emu):
    """An expired token is refused with 'Token has expired.'."""
    token = emu.issue_token(expires_in=-10)
    async with await RawClient.open(emu, {"authorization": token, "host": emu.http_host}) as c:
        answer = await c.init()
    assert answer["errors"][0] == {
        "errorType": "UnauthorizedException",
        "message": "Token has expired.",
        "errorCode": 401,
    }
    response = await http_publish(emu, "/cognito/a", ["1"], {"authorization": token})
    assert response.status_code == 401


async def test_jwt_expiry_is_checked_per_operation(emu):
    """A connection opened with a valid token still needs a valid token per operation."""
    good = {"authorization": emu.issue_token(), "host": emu.http_host}
    expired = {"authorization": emu.issue_token(expires_in=-1), "host": emu.http_host}
    async with await RawClient.open(emu, good) as client:
        assert (await client.init())["type"] == "connection_ack"
        answer = await client.subscribe("s", "cognito/a", expired)
        assert answer["errors"][0]["message"] == "Token has expired."


@pytest.mark.parametrize("problem", ["issuer", "key", "garbage", "hs256", "mode"])
async def test_jwt_refused(emu, problem):
    """Tokens from another issuer, signed by another key, not JWTs, or HMAC are refused."""
    import jwt as pyjwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    if problem == "issuer":
        token = emu.issue_token(issuer="https://someone.else")
    elif problem == "key":
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        claims = {"sub": "x", "iss": emu.authorizer.issuer("AMAZON_COGNITO_USER_POOLS")}
        token = pyjwt.encode({**claims, "exp": 4102444800}, other, algorithm="RS256")
    elif problem == "garbage":
        token = "not-a-jwt"
    elif problem == "hs256":
        claims = {"sub": "x", "iss": emu.authorizer.issuer("AMAZON_COGNITO_USER_POOLS")}
        token = pyjwt.encode({**claims, "exp": 4102444800}, "k" * 32, algorithm="HS256")
    else:
        token = emu.issue_token(mode="OPENID_CONNECT")  # an OIDC token on a Cognito namespace
    response = await http_publish(emu, "/cognito/a", ["1"], {"authorization": token})
    assert response.status_code == 401


async def test_jwt_configured_key_and_issuer():
    """Tokens signed by a configured key (JWK) from a configured issuer are accepted."""
    import jwt as pyjwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(pyjwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    async with AppSyncEventsEmulator(
        oidc_issuer="https://issuer.test", jwt_keys=[jwk], jwt_audience="my-app"
    ) as emu:
        claims = {"sub": "u", "iss": "https://issuer.test", "exp": 4102444800}
        good = pyjwt.encode({**claims, "aud": "my-app"}, key, algorithm="RS256")
        wrong_aud = pyjwt.encode({**claims, "aud": "other"}, key, algorithm="RS256")
        assert (
            await http_publish(emu, "/default/a", ["1"], {"authorization": good})
        ).status_code == (200)
        assert emu.published[-1].auth_mode == "OPENID_CONNECT"
        response = await http_publish(emu, "/default/a", ["1"], {"authorization": wrong_aud})
        assert response.status_code == 401


async def test_jwks_endpoint_serves_the_emulator_key(emu):
    """GET /.well-known/jwks.json serves the key test tokens are signed with."""
    import httpx
    import jwt as pyjwt

    async with httpx.AsyncClient() as client:
        jwks = (await client.get(emu.http_url.replace("/event", "/.well-known/jwks.json"))).json()
    key = pyjwt.PyJWK(jwks["keys"][0]).key
    token = emu.issue_token()
    claims = pyjwt.decode(token, key, algorithms=["RS256"], options={"verify_iss": False})
    assert claims["sub"] == "emulator-user"


# -- Lambda -------------------------------------------------------------------------------


async def test_lambda_authorizer_request_and_response_shapes(emu):
    """The authorizer gets the AppSync request shape; handlerContext becomes the identity."""
    calls: list[dict[str, Any]] = []
    lock = threading.Lock()

    def authorizer(request: dict[str, Any]) -> dict[str, Any]:
        with lock:
            calls.append(request)
        return {
            "isAuthorized": request["authorizationToken"] == "let-me-in",
            "handlerContext": {"u": 1},
        }

    emu.configure(lambda_authorizer=authorizer)
    auth = {"authorization": "let-me-in", "host": emu.http_host}
    async with await RawClient.open(emu, auth) as client:
        assert (await client.init())["type"] == "connection_ack"
        assert (await client.subscribe("s", "lambda/a/b", auth))["type"] == "subscribe_success"
        denied = {"authorization": "nope", "host": emu.http_host}
        answer = await client.publish("p", "lambda/a/b", ["1"], denied)
        assert answer["errors"][0]["errorType"] == "UnauthorizedException"
    connect, subscribe, publish = calls
    assert connect["requestContext"]["operation"] == "EVENT_CONNECT"
    assert "channel" not in connect["requestContext"]
    assert subscribe["requestContext"]["operation"] == "EVENT_SUBSCRIBE"
    assert subscribe["requestContext"]["channelNamespaceName"] == "lambda"
    assert subscribe["requestContext"]["channel"] == "lambda/a/b"
    assert publish["requestContext"]["operation"] == "EVENT_PUBLISH"
    assert publish["requestHeaders"]["authorization"] == "nope"
    assert set(connect["requestContext"]) >= {"apiId", "accountId", "requestId"}


async def test_lambda_authorizer_raising_refuses(emu, caplog):
    """An authorizer that raises refuses the request (and the error is logged)."""

    def authorizer(request: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("boom")

    emu.configure(lambda_authorizer=authorizer)
    response = await http_publish(emu, "/lambda/a", ["1"], {"authorization": "t"})
    assert response.status_code == 401
    assert "Lambda authorizer raised" in caplog.text


async def test_lambda_ttl_caches_answers(emu):
    """ttlOverride caches the authorizer's answer per token."""
    count = 0

    def authorizer(request: dict[str, Any]) -> dict[str, Any]:
        nonlocal count
        count += 1
        return {"isAuthorized": True, "ttlOverride": 300}

    emu.configure(lambda_authorizer=authorizer)
    for _ in range(3):
        response = await http_publish(emu, "/lambda/a", ["1"], {"authorization": "cached"})
        assert response.status_code == 200
    assert count == 1


async def test_the_lambda_cache_is_bounded_and_forgets_expired_answers(emu, monkeypatch):
    """Past LAMBDA_CACHE_SIZE tokens the least recently used answer is asked again; an
    expired answer is asked again too."""
    from appsync_events.emulator import authz

    monkeypatch.setattr(authz, "LAMBDA_CACHE_SIZE", 2)
    asked: list[str] = []

    def authorizer(request: dict[str, Any]) -> dict[str, Any]:
        asked.append(request["authorizationToken"])
        ttl = 1 if request["authorizationToken"] == "brief" else 300
        return {"isAuthorized": True, "ttlOverride": ttl}

    emu.configure(lambda_authorizer=authorizer)

    async def publish(token: str) -> None:
        response = await http_publish(emu, "/lambda/a", ["1"], {"authorization": token})
        assert response.status_code == 200

    for token in ("a", "b", "a", "c", "a", "b"):  # "c" evicts "b" (a was used since)
        await publish(token)
    assert asked == ["a", "b", "c", "b"]
    now = [1000.0]
    monkeypatch.setattr(authz, "_cache_clock", lambda: now[0])
    await publish("brief")
    now[0] += 2  # past the 1 s ttlOverride
    await publish("brief")
    assert asked[-2:] == ["brief", "brief"]


async def test_lambda_without_authorizer_accepts_tokens(emu):
    """With no authorizer configured, any non-empty Lambda token is accepted."""
    response = await http_publish(emu, "/lambda/a", ["1"], {"authorization": "anything"})
    assert response.status_code == 200
    assert emu.published[-1].auth_mode == "AWS_LAMBDA"


async def test_secrets_never_in_logs(emu, caplog):
    """Keys, tokens and signatures never reach the emulator's log records."""
    import logging

    caplog.set_level(logging.DEBUG, logger="appsync_events")
    token = emu.issue_token(expires_in=-1)
    headers = sign(emu, "{}")
    headers["authorization"] = tamper(headers["authorization"])
    async with await RawClient.open(emu, headers) as client:
        await client.init()
    async with await RawClient.open(emu, {"authorization": token, "host": emu.http_host}) as c:
        await c.init()
    await http_publish(emu, "/default/a", ["1"], {"x-api-key": "da2-secretvalue"})
    signature = headers["authorization"].rsplit("=", 1)[1]
    for secret in (token, signature, "da2-secretvalue", SECRET, emu.api_key):
        assert secret not in caplog.text


async def test_non_ascii_credentials_are_refused_not_crashed(emu):
    """A key or session token with non-ASCII characters gets 401/403 answers, not a crash."""
    response = await http_publish(
        emu, "/default/x", ['{"a":1}'], {"x-api-key": "cl\xe9-invalide".encode("latin-1")}
    )
    assert response.status_code == 401, response.text
    assert response.json()["errors"][0]["errorType"] == "UnauthorizedException"
    async with await RawClient.open(emu, {"x-api-key": "cl\xe9 \u2713"}) as client:
        answer = await client.init()
    assert answer["errors"][0]["errorType"] == "UnauthorizedException"
    bad = signed_connect(emu, akid=TEMP_AKID, secret=TEMP_SECRET, token="jeton-\xe9")
    async with await RawClient.open(emu, bad) as client:
        answer = await client.init()
    assert answer["errors"][0]["errorType"] == "UnauthorizedException"
