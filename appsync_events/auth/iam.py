"""IAM auth: AWS Signature Version 4 with botocore's signer.

What is signed: a ``POST`` to ``https://<HTTP host>/event`` for service ``appsync`` in the
API's region, whatever the transport. The body is ``{}`` for the websocket connect, the
compact JSON of
:func:`appsync_events.protocol.signing_body` for a websocket subscribe or publish, and the
real request body for an HTTP publish. See "Authorization" in
https://docs.aws.amazon.com/appsync/latest/eventapi/event-api-websocket-protocol.html

Secrets and logging: botocore's ``SigV4Auth.add_auth`` logs the canonical request (with
the session token) and the signature at DEBUG. This module never calls it: it composes
the signature from the signer's public building blocks (``canonical_request``,
``string_to_sign``, ``signature``, ``signed_headers``, ``scope``), which do not log. No
logger level is touched, so concurrent threads are unaffected.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Final, Protocol
from urllib.parse import urlsplit

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials, RefreshableCredentials

from .._loading import import_string
from ..config import APIConfig
from ..exceptions import AuthError, ConfigurationError
from ..redaction import redact, register_secret
from .base import AuthBackend, AuthRequest

__all__ = [
    "DEFAULT_ROLE_SESSION_NAME",
    "HTTP_SIGNED_HEADERS",
    "SERVICE",
    "WEBSOCKET_SIGNED_HEADERS",
    "IAMAuth",
    "SessionLike",
    "assume_role_credentials",
]

logger = logging.getLogger(__name__)

#: The SigV4 service name of AppSync.
SERVICE: Final = "appsync"
#: The role session name used when ``role_arn`` is set without ``role_session_name``.
DEFAULT_ROLE_SESSION_NAME: Final = "django-appsync-events"
#: Headers signed (besides ``host``, ``x-amz-date`` and ``x-amz-security-token``) for the
#: websocket connect, subscribe and publish: exactly what the service rebuilds.
WEBSOCKET_SIGNED_HEADERS: Final = {
    "accept": "application/json, text/javascript",
    "content-encoding": "amz-1.0",
    "content-type": "application/json; charset=UTF-8",
}
#: Headers signed (besides the same three) for an HTTP publish; the request must carry
#: them exactly (send the header object as returned).
HTTP_SIGNED_HEADERS: Final = {
    "accept": "application/json",
    "content-type": "application/json",
}
_AMZ_DATE_FORMAT: Final = "%Y%m%dT%H%M%SZ"


class SessionLike(Protocol):
    """What ``session_factory`` must return: a :class:`boto3.session.Session` fits.

    ``client("sts", region_name=...)`` is only used with ``role_arn``.
    """

    def get_credentials(self) -> Credentials | None:
        """Return the session's credentials (possibly refreshable), or ``None``."""

    @property
    def client(self) -> Callable[..., Any]:
        """Return a client for a service name (used for STS with ``role_arn``)."""


def assume_role_credentials(
    session: SessionLike,
    role_arn: str,
    *,
    role_session_name: str = DEFAULT_ROLE_SESSION_NAME,
    external_id: str | None = None,
    duration_seconds: int | None = None,
    region: str | None = None,
) -> RefreshableCredentials:
    """Return refreshable credentials for ``role_arn``, assumed with ``session``'s credentials.

    The role is assumed once now and again whenever botocore finds the credentials near
    expiry, through the public :meth:`RefreshableCredentials.create_from_metadata`.
    """
    sts = session.client("sts", region_name=region)
    kwargs: dict[str, Any] = {"RoleArn": role_arn, "RoleSessionName": role_session_name}
    if external_id is not None:
        kwargs["ExternalId"] = external_id
    if duration_seconds is not None:
        kwargs["DurationSeconds"] = duration_seconds

    def fetch() -> dict[str, str]:
        logger.debug("assuming role %s for AppSync signing", role_arn)
        creds = sts.assume_role(**kwargs)["Credentials"]
        expiration = creds["Expiration"]
        return {
            "access_key": creds["AccessKeyId"],
            "secret_key": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
            "expiry_time": expiration.isoformat()
            if isinstance(expiration, datetime)
            else str(expiration),
        }

    return RefreshableCredentials.create_from_metadata(
        metadata=fetch(), refresh_using=fetch, method="assume-role"
    )


def _utcnow() -> datetime:
    return datetime.now(UTC)


class IAMAuth(AuthBackend):
    """Authorize with AWS SigV4 signatures (``AWS_IAM``).

    Where credentials come from (first that applies):

    1. ``credentials``: a botocore ``Credentials`` object (may be refreshable).
    2. ``access_key_id`` + ``secret_access_key`` (+ ``session_token``): static keys.
       Prefer the environment or a profile in production.
    3. a session: ``session_factory`` (a callable or dotted path returning a
       :class:`boto3.session.Session`), else ``boto3.Session(profile_name=profile)``,
       else ``boto3.Session()``, i.e. the standard chain: environment, shared config and
       SSO profiles, web identity, container and instance roles.

    With ``role_arn`` the credentials from 2 or 3 assume that role (``role_session_name``,
    ``external_id``, ``duration_seconds``), refreshed before they expire.

    Other options:
        region: the signing region (default: the alias's region; one of the two is
            needed, see :attr:`~appsync_events.config.APIConfig.region`).
        clock: a callable returning the current ``datetime`` (for tests).

    Credentials are resolved once, lazily, at the first signature (never by
    ``manage.py check``: building the backend and :meth:`check` do no I/O, so no
    management command assumes a role or reads instance metadata); a failure then raises
    :class:`~appsync_events.exceptions.AuthError` saying where to put credentials. Each
    signature reads them again with ``get_frozen_credentials()``, so refreshable
    credentials (roles, SSO, instance profiles) are renewed in time and a listener
    running for days never signs with expired keys. Settings shorthand:
    ``"AUTH": {"AWS_IAM": {}}`` (or ``True``).

    Sync and async: :meth:`aget_headers` resolves and refreshes credentials (which can do
    network I/O) in a worker thread, and signs inline when no refresh is due.
    """

    mode = "AWS_IAM"
    option_names: ClassVar[frozenset[str]] = frozenset(
        {
            "credentials",
            "access_key_id",
            "secret_access_key",
            "session_token",
            "session_factory",
            "profile",
            "role_arn",
            "role_session_name",
            "external_id",
            "duration_seconds",
            "region",
            "clock",
        }
    )

    def __init__(self, api: APIConfig, **options: Any) -> None:
        super().__init__(api, **options)
        self._options = options
        self._validate(options)
        region = options.get("region") or api.region
        if region is None:
            # Validation demands one for AWS_IAM; an APIConfig built by other means may
            # still lack it, and a signature must never name no region.
            raise ConfigurationError(
                f"{self._setting}: no signing region; set REGION on the alias, or the "
                "'region' option of AWS_IAM, to your API's region (e.g. 'us-east-1').",
                api=api.alias,
                key="REGION",
                check_id="appsync_events.E003",
            )
        self._region: str = region
        clock = options.get("clock", _utcnow)
        if not callable(clock):
            raise self._config_error("'clock' must be a callable returning a datetime.")
        self._clock: Callable[[], datetime] = clock
        parts = urlsplit(api.http_url)
        # The canonical request names the HTTP host and /event path even for websocket
        # operations and even when the emulator listens on plain http.
        self._url = f"https://{api.http_host}{parts.path or '/event'}"
        self._lock = threading.Lock()
        self._credentials: Credentials | None = None
        secret = options.get("secret_access_key")
        register_secret(secret)
        register_secret(options.get("session_token"))

    # -- configuration ---------------------------------------------------------------

    def _validate(self, options: Mapping[str, Any]) -> None:
        for name in (
            "access_key_id",
            "secret_access_key",
            "session_token",
            "profile",
            "role_arn",
            "role_session_name",
            "external_id",
            "region",
        ):
            value = options.get(name)
            if value is not None and (not isinstance(value, str) or not value):
                raise self._config_error(f"{name!r} must be a non-empty string.")
        has_key = "access_key_id" in options
        has_secret = "secret_access_key" in options
        if has_key != has_secret:
            raise self._config_error(
                "'access_key_id' and 'secret_access_key' go together; set both or neither."
            )
        if "session_token" in options and not has_key:
            raise self._config_error(
                "'session_token' needs 'access_key_id' and 'secret_access_key'."
            )
        sources = [
            name
            for name in ("credentials", "access_key_id", "session_factory", "profile")
            if name in options
        ]
        if len(sources) > 1:
            raise self._config_error(
                f"choose one credential source, not {' and '.join(repr(s) for s in sources)}."
            )
        if "credentials" in options and "role_arn" in options:
            # The role would be assumed with a snapshot of these credentials, which could
            # not be refreshed once they expire: every later role refresh would fail.
            raise self._config_error(
                "'role_arn' cannot assume a role with 'credentials'; give a 'profile' or a "
                "'session_factory' whose session holds the base credentials instead."
            )
        if "credentials" in options and not hasattr(
            options["credentials"], "get_frozen_credentials"
        ):
            raise self._config_error(
                "'credentials' must be a botocore Credentials object "
                "(with get_frozen_credentials())."
            )
        factory = options.get("session_factory")
        if isinstance(factory, str):
            try:
                factory = import_string(factory)
            except ImportError as exc:
                raise self._config_error(
                    f"'session_factory' = {options['session_factory']!r} cannot be imported: {exc}"
                ) from exc
        if factory is not None and not callable(factory):
            raise self._config_error("'session_factory' must be a callable or its dotted path.")
        self._factory: Callable[[], SessionLike] | None = factory
        duration = options.get("duration_seconds")
        if duration is not None and (
            isinstance(duration, bool) or not isinstance(duration, int) or duration < 900
        ):
            raise self._config_error("'duration_seconds' must be an integer >= 900.")
        if "role_arn" not in options:
            for name in ("role_session_name", "external_id", "duration_seconds"):
                if name in options:
                    raise self._config_error(f"{name!r} only applies with 'role_arn'.")

    # -- credentials -----------------------------------------------------------------

    def _resolve(self) -> Credentials:
        """Find the credentials object once (may do I/O: profiles, SSO, metadata)."""
        options = self._options
        creds: Credentials | None
        if "credentials" in options:
            creds = options["credentials"]
        elif "access_key_id" in options:
            creds = Credentials(
                options["access_key_id"],
                options["secret_access_key"],
                options.get("session_token"),
                method="explicit",
            )
        else:
            session: SessionLike
            if self._factory is not None:
                session = self._factory()
            else:
                session = boto3.Session(profile_name=options.get("profile"))
            if "role_arn" in options:
                return self._assume_role(session)
            creds = session.get_credentials()
        if creds is None:
            raise AuthError(
                "no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or "
                "AWS_PROFILE, run on a role, or set a profile, role_arn or session_factory "
                f"in APPSYNC_EVENTS[{self.api.alias!r}]['AUTH']['AWS_IAM']",
                api=self.api.alias,
                mode=self.mode,
            )
        if "role_arn" in options:
            # Static keys (never refreshed, so a snapshot is exact) that assume a role.
            base = boto3.Session(
                aws_access_key_id=creds.access_key,
                aws_secret_access_key=creds.secret_key,
                aws_session_token=creds.token,
            )
            return self._assume_role(base)
        return creds

    def _assume_role(self, session: SessionLike) -> RefreshableCredentials:
        """Assume the configured ``role_arn`` with ``session``'s credentials."""
        options = self._options
        return assume_role_credentials(
            session,
            options["role_arn"],
            role_session_name=options.get("role_session_name", DEFAULT_ROLE_SESSION_NAME),
            external_id=options.get("external_id"),
            duration_seconds=options.get("duration_seconds"),
            region=self._region,
        )

    def get_credentials(self) -> Credentials:
        """Return the credentials object, resolving it on first use.

        Raises:
            AuthError: no credentials could be found or assumed.
        """
        creds = self._credentials
        if creds is not None:
            return creds
        with self._lock:
            if self._credentials is None:
                self._credentials = self._resolve()
            return self._credentials

    def _needs_io(self) -> bool:
        creds = self._credentials
        if creds is None:
            return True
        return isinstance(creds, RefreshableCredentials) and creds.refresh_needed()

    def frozen_credentials(self, purpose: str = "AWS call") -> ReadOnlyCredentials:
        """Return the credentials as they are now, refreshed first when they are due.

        Args:
            purpose: what they are for, named in error messages ("publish", ...).

        Raises:
            AuthError: no credentials could be found, read or assumed, or they are
                incomplete.
        """
        try:
            frozen = self.get_credentials().get_frozen_credentials()
        except AuthError:
            raise
        except Exception as exc:
            raise AuthError(
                f"cannot read AWS credentials for the {purpose}: "
                f"{type(exc).__name__}: {redact(str(exc))}",
                api=self.api.alias,
                mode=self.mode,
            ) from exc
        if not frozen.access_key or not frozen.secret_key:
            raise AuthError(
                f"the AWS credentials are incomplete (no access key or secret) for the {purpose}",
                api=self.api.alias,
                mode=self.mode,
            )
        register_secret(frozen.secret_key)
        register_secret(frozen.token)
        return frozen

    def _frozen(self, request: AuthRequest) -> ReadOnlyCredentials:
        """Read the credentials again (refreshing them when due) for one signature."""
        try:
            return self.frozen_credentials(request.operation)
        except AuthError as exc:
            exc.operation = request.operation
            exc.channel = request.channel
            raise

    def boto3_session(self) -> boto3.Session:
        """Return a boto3 session holding these credentials, in the signing region.

        For calls to AWS APIs with the alias's credentials (``manage.py
        appsync_namespaces`` builds its ``appsync`` client from it). The session holds the
        credentials as they are now, so use it for short work and ask again for later work;
        the standard endpoint overrides (``AWS_ENDPOINT_URL``,
        ``AWS_ENDPOINT_URL_<SERVICE>``) apply to its clients as to any boto3 client.

        Raises:
            AuthError: as :meth:`frozen_credentials`.
        """
        frozen = self.frozen_credentials()
        return boto3.Session(
            aws_access_key_id=frozen.access_key,
            aws_secret_access_key=frozen.secret_key,
            aws_session_token=frozen.token,
            region_name=self._region,
        )

    # -- signing ---------------------------------------------------------------------

    def sign(self, request: AuthRequest, credentials: ReadOnlyCredentials) -> dict[str, str]:
        """Return the signed header object for ``request`` with ``credentials``.

        Pure: no I/O and no logging. The result holds the signed headers (``accept``,
        ``content-encoding``, ``content-type`` for websocket operations; ``accept``,
        ``content-type`` for an HTTP publish), ``host``, ``x-amz-date``,
        ``x-amz-security-token`` with temporary credentials, and ``authorization``.
        """
        now = self._clock()
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        stamp = now.astimezone(UTC).strftime(_AMZ_DATE_FORMAT)
        base = HTTP_SIGNED_HEADERS if request.transport == "http" else WEBSOCKET_SIGNED_HEADERS
        headers = {**base, "host": self.api.http_host, "x-amz-date": stamp}
        if credentials.token:
            headers["x-amz-security-token"] = credentials.token
        aws_request = AWSRequest(method="POST", url=self._url, data=request.body, headers=headers)
        aws_request.context["timestamp"] = stamp
        signer = SigV4Auth(credentials, SERVICE, self._region)
        canonical = signer.canonical_request(aws_request)
        string_to_sign = signer.string_to_sign(aws_request, canonical)
        signature = signer.signature(string_to_sign, aws_request)
        signed = signer.signed_headers(signer.headers_to_sign(aws_request))
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={signer.scope(aws_request)}, "
            f"SignedHeaders={signed}, Signature={signature}"
        )
        return headers

    def get_headers(self, request: AuthRequest) -> dict[str, str]:
        """Return the SigV4-signed header object for ``request``."""
        return self.sign(request, self._frozen(request))

    async def aget_headers(self, request: AuthRequest) -> dict[str, str]:
        """Async twin of :meth:`get_headers`; credential I/O happens in a worker thread."""
        if self._needs_io():
            frozen = await asyncio.to_thread(self._frozen, request)
        else:
            frozen = self._frozen(request)
        return self.sign(request, frozen)

    def check(self) -> list[str]:
        """Return no problem, having looked at nothing beyond the options.

        Every management command runs the checks, so resolving credentials here would
        reach the network (an STS ``AssumeRole`` with ``role_arn``, instance metadata);
        the first signature resolves them and raises a clear ``AuthError`` instead.
        """
        return []
