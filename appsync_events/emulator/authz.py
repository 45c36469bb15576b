"""Authorization checks of the emulator, one per AppSync auth mode.

Every connect, subscribe and publish is checked for real against what the emulated API
declares:

``API_KEY``
    ``x-api-key`` must be one of the configured keys.
``AWS_IAM``
    With test credentials configured, the SigV4 signature is recomputed with botocore's
    public signer pieces from the headers the request declares in ``SignedHeaders``
    (method ``POST``, path ``/event``, the body the websocket protocol signs for the
    operation) and compared.
    With none configured, a well-formed ``AWS4-HMAC-SHA256`` header is accepted.
``AMAZON_COGNITO_USER_POOLS`` / ``OPENID_CONNECT``
    The ``Authorization`` value (with or without ``Bearer``) must be a JWT signed by one
    of the configured keys (by default the emulator's own, see
    :meth:`Authorizer.issue_token`), unexpired, from the mode's issuer.
``AWS_LAMBDA``
    A Python callable receives the request shape of the AppSync Lambda authorizer and
    answers ``{"isAuthorized": bool, "handlerContext": {...}, "ttlOverride": n}``; or a
    real Lambda ``handler(event, context)`` named by dotted path
    (:func:`load_lambda_handler`, e.g. ``appsync_events.lambda_authorizer.handler``).
    Answers are cached per token for ``ttlOverride`` seconds (at most 3600), as the
    service does.

Header names are matched case-insensitively: the header object is lowercased first.
Nothing here logs or puts into an error a key, a token or a signature.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import logging
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias

import jwt
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .errors import EmulatorError

__all__ = [
    "LAMBDA_CACHE_SIZE",
    "TOKEN_MODES",
    "AuthContext",
    "AuthResult",
    "Authorizer",
    "LambdaAuthorizer",
    "LambdaContext",
    "html_escape_json",
    "load_lambda_handler",
]

logger = logging.getLogger(__name__)

TOKEN_MODES: Final = ("AMAZON_COGNITO_USER_POOLS", "OPENID_CONNECT", "AWS_LAMBDA")

#: Lambda authorizer answers kept (those with a ``ttlOverride``), least recently used
#: dropped first; expired ones go when next looked up.
LAMBDA_CACHE_SIZE: Final = 10_000
_cache_clock = time.monotonic  # the Lambda cache's clock (tests move it)

Operation: TypeAlias = Literal["connect", "subscribe", "publish"]

#: A Lambda authorizer stand-in: takes the AppSync request dict, returns the response dict.
LambdaAuthorizer: TypeAlias = Callable[[dict[str, Any]], Mapping[str, Any]]

_SIGV4_RE: Final = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+)\s*,\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+)\s*,\s*Signature=(?P<signature>[0-9a-fA-F]+)\s*$"
)
_AMZ_DATE_FORMAT: Final = "%Y%m%dT%H%M%SZ"
_LAMBDA_OPERATIONS: Final = {
    "connect": "EVENT_CONNECT",
    "subscribe": "EVENT_SUBSCRIBE",
    "publish": "EVENT_PUBLISH",
}
_HTML_ESCAPES: Final = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}
_HTML_ESCAPE_RE: Final = re.compile("[<>&\u2028\u2029]")


@dataclass(frozen=True, slots=True)
class LambdaContext:
    """The context object a Lambda handler receives, as far as the emulator can tell.

    Attributes:
        aws_request_id: the request id (also the authorizer request's ``requestId``).
        function_name: the function's name (the handler's dotted path).
        deadline: ``time.monotonic()`` by which the handler should answer.
    """

    aws_request_id: str
    function_name: str
    deadline: float
    function_version: str = "$LATEST"
    memory_limit_in_mb: str = "128"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:emulator"
    log_group_name: str = "/aws/lambda/emulator"
    log_stream_name: str = "emulator"

    def get_remaining_time_in_millis(self) -> int:
        """Return the milliseconds left before the (emulated) timeout."""
        return max(0, int((self.deadline - time.monotonic()) * 1000))


#: Seconds an emulated Lambda handler is given (the service's authorizer timeout is 10 s).
_LAMBDA_TIMEOUT: Final = 10.0


def load_lambda_handler(path: str) -> LambdaAuthorizer:
    """Import the Lambda ``handler(event, context)`` at dotted ``path`` as an authorizer.

    The emulator then calls it with the request the service sends and a
    :class:`LambdaContext`, so a function deployed to AWS runs unchanged.

    Raises:
        ImportError: the path cannot be imported.
        TypeError: what it names is not callable.
    """
    from .._loading import import_string

    handler = import_string(path)
    if not callable(handler):
        raise TypeError(f"{path!r} is not callable; name a handler(event, context) function")

    def call(request: dict[str, Any]) -> Mapping[str, Any]:
        context = LambdaContext(
            aws_request_id=str(request.get("requestContext", {}).get("requestId", "")),
            function_name=path,
            deadline=time.monotonic() + _LAMBDA_TIMEOUT,
        )
        response: Mapping[str, Any] = handler(request, context)
        return response

    call.__qualname__ = call.__name__ = f"lambda:{path}"
    return call


def html_escape_json(text: str) -> str:
    """Escape ``<``, ``>``, ``&``, U+2028 and U+2029 in a JSON text, as Go's encoder does.

    Used to rebuild the signed body of a websocket publish the way the service appears to:
    events holding those characters fail the signature check over the websocket while
    HTTP publish works (https://github.com/aws/aws-appsync-community/issues/400).
    """

    def sub(match: re.Match[str]) -> str:
        char = match.group(0)
        return _HTML_ESCAPES.get(char) or f"\\u{ord(char):04x}"

    return _HTML_ESCAPE_RE.sub(sub, text)


def _same(given: str, expected: str) -> bool:
    """Compare credentials in constant time (as bytes: non-ASCII text is refused, not fatal)."""
    return hmac.compare_digest(given.encode(), expected.encode())


@dataclass(frozen=True, slots=True)
class AuthContext:
    """What one authorization check is about.

    Attributes:
        operation: ``"connect"``, ``"subscribe"`` or ``"publish"``.
        transport: ``"websocket"`` or ``"http"``.
        headers: the authorization header object, keys lowercased.
        body: the bytes an IAM signature must cover.
        request_host: the ``Host`` of the HTTP request or websocket upgrade.
        channel: the channel as sent (subscribe, publish).
        namespace: the channel's namespace (subscribe, publish).
        source_ip: the peer address.
        alt_bodies: other bodies a signature may cover (none by default).
    """

    operation: Operation
    transport: Literal["websocket", "http"]
    headers: Mapping[str, str]
    body: bytes
    request_host: str | None = None
    channel: str | None = None
    namespace: str | None = None
    source_ip: str | None = None
    alt_bodies: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class AuthResult:
    """A successful check: the mode that authorized and the caller's identity.

    ``identity`` follows the shapes of a handler's ``ctx.identity``
    (https://docs.aws.amazon.com/appsync/latest/eventapi/channel-namespace-handlers.html):
    ``None`` for API keys, IAM and Cognito dicts, ``{"handlerContext": ...}`` for Lambda.
    """

    mode: str
    identity: Mapping[str, Any] | None = None


@dataclass(slots=True)
class _CachedLambda:
    expires: float
    result: AuthResult


@dataclass(slots=True)
class _JWTIssuer:
    issuer: str
    keys: list[Any] = field(default_factory=list)


class Authorizer:
    """Check authorization header objects against the emulated API's credentials.

    Args:
        region: the region SigV4 credential scopes must name.
        api_keys: the accepted API keys.
        iam_credentials: access key id → secret access key. Empty: any well-formed IAM
            header is accepted (the signature is not checked).
        iam_session_tokens: access key id → the session token it must come with.
        cognito_issuer: the ``iss`` the ``AMAZON_COGNITO_USER_POOLS`` mode accepts.
        oidc_issuer: the ``iss`` the ``OPENID_CONNECT`` mode accepts.
        jwt_keys: extra verification keys (PEM text, JWK dicts or key objects) accepted
            for both token modes, besides the emulator's own signing key.
        jwt_audience: when set, the ``aud`` (or Cognito access-token ``client_id``)
            tokens must carry.
        jwt_leeway: seconds of clock skew allowed on ``exp`` / ``nbf``.
        lambda_authorizer: the ``AWS_LAMBDA`` stand-in; ``None`` authorizes any
            non-empty token.
        lambda_ttl: seconds to cache a Lambda answer when it sets no ``ttlOverride``.
        sigv4_max_skew: seconds an ``x-amz-date`` may differ from now (``None``: no check).
        check_host: refuse IAM signatures over a ``host`` that is neither the request's
            ``Host`` nor one of ``hosts``.
        hosts: extra host names (with port) IAM signatures may name.
        api_id: the API id reported to the Lambda authorizer.
        account_id: the account id reported to the Lambda authorizer.
    """

    def __init__(
        self,
        *,
        region: str = "us-east-1",
        api_keys: Iterable[str] = (),
        iam_credentials: Mapping[str, str] | None = None,
        iam_session_tokens: Mapping[str, str] | None = None,
        cognito_issuer: str | None = None,
        oidc_issuer: str = "https://oidc.appsync-emulator.invalid",
        jwt_keys: Sequence[Any] = (),
        jwt_audience: str | None = None,
        jwt_leeway: float = 0.0,
        lambda_authorizer: LambdaAuthorizer | None = None,
        lambda_ttl: float = 0.0,
        sigv4_max_skew: float | None = 900.0,
        check_host: bool = True,
        hosts: Iterable[str] = (),
        api_id: str = "emulatorapi00000000000000000",
        account_id: str = "123456789012",
    ) -> None:
        self.region = region
        self.api_keys = set(api_keys)
        self.iam_credentials = dict(iam_credentials or {})
        self.iam_session_tokens = dict(iam_session_tokens or {})
        self.jwt_audience = jwt_audience
        self.jwt_leeway = jwt_leeway
        self.lambda_authorizer = lambda_authorizer
        self.lambda_ttl = lambda_ttl
        self.sigv4_max_skew = sigv4_max_skew
        self.check_host = check_host
        self.hosts = set(hosts)
        self.api_id = api_id
        self.account_id = account_id
        self._signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._kid = uuid.uuid4().hex
        own = self._signing_key.public_key()
        extra = [_load_key(k) for k in jwt_keys]
        self._issuers: dict[str, _JWTIssuer] = {
            "AMAZON_COGNITO_USER_POOLS": _JWTIssuer(
                cognito_issuer or f"https://cognito-idp.{region}.amazonaws.com/{region}_emulator",
                [own, *extra],
            ),
            "OPENID_CONNECT": _JWTIssuer(oidc_issuer, [own, *extra]),
        }
        self._lambda_cache: OrderedDict[str, _CachedLambda] = OrderedDict()

    # -- public helpers ------------------------------------------------------------

    def issuer(self, mode: str) -> str:
        """Return the ``iss`` tokens of ``mode`` (a JWT mode) must carry."""
        return self._issuers[mode].issuer

    def issue_token(
        self,
        *,
        mode: str = "AMAZON_COGNITO_USER_POOLS",
        subject: str = "emulator-user",
        username: str | None = None,
        groups: Sequence[str] = (),
        expires_in: float = 3600.0,
        claims: Mapping[str, Any] | None = None,
        issuer: str | None = None,
    ) -> str:
        """Return a JWT the emulator accepts for ``mode`` (signed with its own key).

        Args:
            mode: ``AMAZON_COGNITO_USER_POOLS`` or ``OPENID_CONNECT``.
            subject: the ``sub`` claim.
            username: ``cognito:username`` / ``username`` (defaults to ``subject``).
            groups: ``cognito:groups``.
            expires_in: seconds until ``exp``; negative for an already expired token.
            claims: extra claims (override the defaults).
            issuer: the ``iss`` (defaults to the mode's issuer; another value makes a
                token the emulator refuses).
        """
        if mode not in self._issuers:
            raise ValueError(f"issue_token() makes JWTs for {', '.join(self._issuers)}, not {mode}")
        now = int(time.time())
        payload: dict[str, Any] = {
            "sub": subject,
            "iss": issuer or self._issuers[mode].issuer,
            "iat": now,
            "exp": now + int(expires_in),
            "token_use": "access",
            "username": username or subject,
        }
        if mode == "AMAZON_COGNITO_USER_POOLS":
            payload["cognito:username"] = username or subject
            if groups:
                payload["cognito:groups"] = list(groups)
        if self.jwt_audience:
            payload["aud"] = self.jwt_audience
        payload.update(claims or {})
        return jwt.encode(payload, self._signing_key, algorithm="RS256", headers={"kid": self._kid})

    def public_key_pem(self) -> str:
        """Return the PEM of the emulator's JWT verification key."""
        return (
            self._signing_key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def jwks(self) -> dict[str, Any]:
        """Return the emulator's JWT verification key as a JWKS document."""
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._signing_key.public_key()))
        jwk.update({"kid": self._kid, "use": "sig", "alg": "RS256"})
        return {"keys": [jwk]}

    def clear_cache(self) -> None:
        """Forget cached Lambda authorizer answers."""
        self._lambda_cache.clear()

    # -- the check -------------------------------------------------------------------

    async def authorize(self, ctx: AuthContext, allowed: Sequence[str]) -> AuthResult:
        """Return who ``ctx`` is, by the first of ``allowed`` its headers satisfy.

        Raises:
            EmulatorError: ``unauthorized`` when the headers carry no usable credential,
                ``mode_not_allowed`` when they carry one only for a mode not in
                ``allowed``, or the failing mode's own case.
        """
        headers = ctx.headers
        present = self._modes_present(headers)
        usable = [m for m in allowed if m in present]
        if not usable:
            if present:
                raise EmulatorError("mode_not_allowed")
            raise EmulatorError("unauthorized")
        if "AWS_IAM" not in present and "API_KEY" not in present:
            # A JWT naming the issuer of an allowed JWT mode belongs to that mode alone:
            # its verdict (expired, bad signature...) is final, never retried as a
            # Lambda token.
            issuer_mode = self._jwt_mode_by_issuer(self._token(headers))
            if issuer_mode in usable:
                usable = [issuer_mode]
        failures: list[EmulatorError] = []
        for mode in usable:
            try:
                return await self._check(mode, ctx)
            except EmulatorError as exc:
                # A token may fit several token modes: keep trying, report the first failure.
                failures.append(exc)
        raise failures[0]

    def _jwt_mode_by_issuer(self, token: str) -> str | None:
        try:
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError:
            return None
        for mode, spec in self._issuers.items():
            if issuer == spec.issuer:
                return mode
        return None

    @staticmethod
    def _modes_present(headers: Mapping[str, str]) -> set[str]:
        present: set[str] = set()
        if headers.get("x-api-key"):
            present.add("API_KEY")
        authorization = headers.get("authorization", "")
        if authorization.startswith("AWS4-HMAC-SHA256"):
            present.add("AWS_IAM")
        elif authorization.strip():
            present.update(TOKEN_MODES)
        return present

    async def _check(self, mode: str, ctx: AuthContext) -> AuthResult:
        if mode == "API_KEY":
            return self._check_api_key(ctx)
        if mode == "AWS_IAM":
            return self._check_iam(ctx)
        if mode == "AWS_LAMBDA":
            return await self._check_lambda(ctx)
        return self._check_jwt(mode, ctx)

    def _check_api_key(self, ctx: AuthContext) -> AuthResult:
        key = ctx.headers.get("x-api-key", "")
        if not any(_same(key, k) for k in self.api_keys):
            raise EmulatorError("unauthorized")
        return AuthResult("API_KEY", None)

    # -- IAM -----------------------------------------------------------------------

    def _check_iam(self, ctx: AuthContext) -> AuthResult:
        headers = ctx.headers
        match = _SIGV4_RE.match(headers.get("authorization", "").strip())
        if match is None:
            raise EmulatorError(
                "signature_invalid",
                "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' "
                "parameters in the AWS4-HMAC-SHA256 format.",
            )
        credential = match.group("credential").split("/")
        if len(credential) != 5 or credential[4] != "aws4_request":
            raise EmulatorError(
                "signature_invalid",
                "Credential must be ACCESS_KEY/DATE/REGION/SERVICE/aws4_request.",
            )
        access_key, scope_date, scope_region, scope_service, _ = credential
        amz_date = headers.get("x-amz-date", "")
        try:
            signed_at = dt.datetime.strptime(amz_date, _AMZ_DATE_FORMAT).replace(tzinfo=dt.UTC)
        except ValueError:
            raise EmulatorError(
                "signature_invalid", "x-amz-date must be present, formatted YYYYMMDD'T'HHMMSS'Z'."
            ) from None
        if scope_date != amz_date[:8]:
            raise EmulatorError(
                "signature_invalid",
                f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of "
                f"date from HTTP: '{scope_date}' != '{amz_date[:8]}'.",
            )
        if scope_region != self.region:
            raise EmulatorError(
                "signature_invalid",
                f"Credential should be scoped to a valid region, not '{scope_region}'.",
            )
        if scope_service != "appsync":
            raise EmulatorError(
                "signature_invalid",
                f"Credential should be scoped to correct service: 'appsync', "
                f"not '{scope_service}'.",
            )
        identity = {
            "accountId": self.account_id,
            "cognitoIdentityPoolId": None,
            "cognitoIdentityId": None,
            "sourceIp": [ctx.source_ip] if ctx.source_ip else [],
            "username": access_key,
            "userArn": f"arn:aws:iam::{self.account_id}:user/{access_key}",
            "cognitoIdentityAuthType": None,
            "cognitoIdentityAuthProvider": None,
        }
        if not self.iam_credentials:
            # No test credentials: accept any well-formed signature.
            return AuthResult("AWS_IAM", identity)
        secret = self.iam_credentials.get(access_key)
        if secret is None:
            raise EmulatorError("unknown_access_key")
        if self.sigv4_max_skew is not None:
            skew = abs((dt.datetime.now(dt.UTC) - signed_at).total_seconds())
            if skew > self.sigv4_max_skew:
                raise EmulatorError(
                    "signature_invalid",
                    f"Signature expired: {amz_date} is more than {self.sigv4_max_skew:g} "
                    "seconds away from the current time.",
                )
        expected_token = self.iam_session_tokens.get(access_key)
        if expected_token is not None and not _same(
            headers.get("x-amz-security-token", ""), expected_token
        ):
            raise EmulatorError("unknown_access_key")
        signed_names = match.group("signed").split(";")
        if "host" not in signed_names:
            raise EmulatorError("signature_invalid", "'Host' must be a signed header.")
        host = headers.get("host", "")
        if self.check_host and host not in self.hosts and host != (ctx.request_host or ""):
            raise EmulatorError(
                "signature_invalid",
                f"The signed host {host!r} is not a host of this API.",
            )
        signer = SigV4Auth(Credentials(access_key, secret), "appsync", self.region)
        provided = match.group("signature").lower()
        canonical = ""
        string_to_sign = ""
        for body in (ctx.body, *ctx.alt_bodies):
            canonical, string_to_sign, signature = self._sign(
                signer, headers, signed_names, body, amz_date
            )
            if hmac.compare_digest(signature, provided):
                return AuthResult("AWS_IAM", identity)
        raise EmulatorError(
            "signature_mismatch",
            "\n\nThe Canonical String for this request should have been\n'"
            + _redact_token(canonical, headers)
            + "'\n\nThe String-to-Sign should have been\n'"
            + string_to_sign
            + "'\n",
        )

    @staticmethod
    def _sign(
        signer: SigV4Auth,
        headers: Mapping[str, str],
        signed_names: Sequence[str],
        body: bytes,
        amz_date: str,
    ) -> tuple[str, str, str]:
        """Recompute (canonical request, string to sign, signature) over ``signed_names``."""
        to_sign = HTTPHeaders()
        for name in signed_names:
            # A header declared signed but absent is signed as empty, so it mismatches.
            to_sign[name] = headers.get(name, "")
        request = AWSRequest(method="POST", url=f"https://{headers.get('host', '')}/event")
        request.context["timestamp"] = amz_date
        payload_hash = (
            headers.get("x-amz-content-sha256")
            if "x-amz-content-sha256" in (signed_names)
            else None
        )
        canonical = "\n".join(
            [
                "POST",
                "/event",
                "",
                signer.canonical_headers(to_sign) + "\n",
                signer.signed_headers(to_sign),
                payload_hash or hashlib.sha256(body).hexdigest(),
            ]
        )
        string_to_sign = signer.string_to_sign(request, canonical)
        return canonical, string_to_sign, signer.signature(string_to_sign, request)

    # -- tokens --------------------------------------------------------------------

    @staticmethod
    def _token(headers: Mapping[str, str]) -> str:
        token = headers.get("authorization", "").strip()
        if token[:7].lower() == "bearer ":
            token = token[7:].strip()
        return token

    def _check_jwt(self, mode: str, ctx: AuthContext) -> AuthResult:
        token = self._token(ctx.headers)
        issuer = self._issuers[mode]
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise EmulatorError("unauthorized") from None
        algorithm = header.get("alg")
        if algorithm not in ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512"):
            raise EmulatorError("unauthorized")
        options = {"require": ["exp", "iss"], "verify_aud": self.jwt_audience is not None}
        last: jwt.PyJWTError | None = None
        for key in issuer.keys:
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=[algorithm],
                    issuer=issuer.issuer,
                    audience=self.jwt_audience,
                    leeway=self.jwt_leeway,
                    options=options,  # type: ignore[arg-type]
                )
            except jwt.ExpiredSignatureError:
                raise EmulatorError("token_expired") from None
            except jwt.InvalidAudienceError:
                if claims_client_id(token) == self.jwt_audience:
                    claims = jwt.decode(
                        token,
                        key,
                        algorithms=[algorithm],
                        issuer=issuer.issuer,
                        leeway=self.jwt_leeway,
                        options={"require": ["exp", "iss"], "verify_aud": False},
                    )
                else:
                    raise EmulatorError("unauthorized") from None
            except jwt.PyJWTError as exc:
                last = exc
                continue
            return AuthResult(mode, _token_identity(mode, claims, issuer.issuer, ctx.source_ip))
        logger.debug("JWT refused for %s: %s", mode, type(last).__name__ if last else "no key")
        raise EmulatorError("unauthorized")

    async def _check_lambda(self, ctx: AuthContext) -> AuthResult:
        token = ctx.headers.get("authorization", "").strip()
        if not token:
            raise EmulatorError("unauthorized")
        cache_key = hashlib.sha256(token.encode()).hexdigest()
        cached = self._lambda_cache.get(cache_key)
        now = _cache_clock()
        if cached is not None:
            if cached.expires > now:
                self._lambda_cache.move_to_end(cache_key)
                return cached.result
            del self._lambda_cache[cache_key]
        if self.lambda_authorizer is None:
            return AuthResult("AWS_LAMBDA", {"handlerContext": {}})
        request: dict[str, Any] = {
            "authorizationToken": token,
            "requestContext": {
                "apiId": self.api_id,
                "accountId": self.account_id,
                "requestId": str(uuid.uuid4()),
                "operation": _LAMBDA_OPERATIONS[ctx.operation],
            },
            "requestHeaders": dict(ctx.headers),
        }
        if ctx.operation != "connect":
            request["requestContext"]["channelNamespaceName"] = ctx.namespace
            request["requestContext"]["channel"] = ctx.channel
        try:
            # In a thread: the callable may block (database, HTTP) and must not stall the loop.
            response = await asyncio.to_thread(self.lambda_authorizer, request)
        except Exception:
            logger.exception("The emulator's Lambda authorizer raised; refusing the request")
            raise EmulatorError("unauthorized") from None
        if not isinstance(response, Mapping) or response.get("isAuthorized") is not True:
            raise EmulatorError("unauthorized")
        result = AuthResult(
            "AWS_LAMBDA", {"handlerContext": dict(response.get("handlerContext") or {})}
        )
        ttl = response.get("ttlOverride", self.lambda_ttl)
        if isinstance(ttl, int | float) and not isinstance(ttl, bool) and ttl > 0:
            self._lambda_cache[cache_key] = _CachedLambda(now + min(float(ttl), 3600.0), result)
            while len(self._lambda_cache) > LAMBDA_CACHE_SIZE:
                self._lambda_cache.popitem(last=False)
        return result


def claims_client_id(token: str) -> str | None:
    """Return the unverified ``client_id`` claim of a JWT (Cognito access tokens), if any."""
    try:
        value = jwt.decode(token, options={"verify_signature": False}).get("client_id")
    except jwt.PyJWTError:
        return None
    return value if isinstance(value, str) else None


def _token_identity(
    mode: str, claims: Mapping[str, Any], issuer: str, source_ip: str | None
) -> dict[str, Any]:
    groups = claims.get("cognito:groups")
    return {
        "sub": claims.get("sub"),
        "issuer": issuer,
        "username": claims.get("cognito:username") or claims.get("username") or claims.get("sub"),
        "claims": dict(claims),
        "sourceIp": [source_ip] if source_ip else [],
        "defaultAuthStrategy": "ALLOW",
        "groups": list(groups) if isinstance(groups, list) else None,
    }


def _redact_token(canonical: str, headers: Mapping[str, str]) -> str:
    token = headers.get("x-amz-security-token")
    return canonical.replace(token, "<redacted>") if token else canonical


def _load_key(value: Any) -> Any:
    """Turn PEM text, a JWK dict or a key object into a PyJWT verification key."""
    if isinstance(value, Mapping):
        return jwt.PyJWK(dict(value)).key
    if isinstance(value, str | bytes):
        data = value.encode() if isinstance(value, str) else value
        return serialization.load_pem_public_key(data)
    return value
