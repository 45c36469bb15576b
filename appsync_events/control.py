"""Keep an Event API on AWS in step with an alias of ``APPSYNC_EVENTS``; no Django.

This is the control plane behind ``manage.py appsync_namespaces``: it reads the API and
its channel namespaces with boto3's ``appsync`` client, compares them with what the
alias declares, and plans and applies the changes.

What the settings declare (the same reading as the client and the emulator):

* every namespace in ``NAMESPACES``, with the publish and subscribe modes it allows:
  its own ``PUBLISH_AUTH_MODES`` / ``SUBSCRIBE_AUTH_MODES``, else the alias's
  ``DEFAULT_PUBLISH_AUTH_MODES`` / ``DEFAULT_SUBSCRIBE_AUTH_MODES``, else every mode
  ``AUTH`` holds. On AWS a namespace without modes of its own has the API's defaults.
* its handlers, only when the namespace declares ``HANDLERS`` (the code of
  ``CODE_FILE`` and the ``ON_PUBLISH`` / ``ON_SUBSCRIBE`` integrations); without
  ``HANDLERS`` the namespace's handlers on AWS are neither compared nor changed.
* the API's default publish and subscribe modes, and, as its auth providers and
  connection modes, every mode the alias uses: ``CONNECTION_AUTH_MODE``, the defaults
  and every namespace's modes (a client holding any of them must be able to connect).

Modes are compared as sets. Namespaces on AWS that the settings do not declare are
reported and kept; they are deleted only with ``prune=True``.

Which API: ``API_ID``, else the API whose ``dns["HTTP"]`` (what ``GetApi`` and
``ListApis`` return) is the host of ``HTTP_URL``. The first label of that host is a DNS
prefix, not the API id, so the id cannot be read from the URL itself; a custom domain
needs ``API_ID``. See
https://docs.aws.amazon.com/appsync/latest/APIReference/API_Api.html

Credentials: those of the alias's ``AWS_IAM`` auth (the same chain as IAM signing,
:meth:`appsync_events.auth.iam.IAMAuth.boto3_session`), else the default AWS chain. The
standard endpoint overrides (``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_APPSYNC``) apply,
so the control plane can run against a local AWS emulator. Throttled calls are retried
by botocore's ``standard`` retry mode with exponential backoff (``AWS_MAX_ATTEMPTS``
attempts, 3 by default).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias
from urllib.parse import urlsplit

import botocore
from botocore import xform_name
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotocoreConnectionError

from .auth import get_auth_backend
from .auth.iam import IAMAuth
from .config import AUTH_MODES, APIConfig, NamespaceConfig
from .exceptions import ConfigurationError, ControlPlaneError, ValidationError
from .redaction import redact, register_secret

__all__ = [
    "IAM_ACTIONS",
    "MAX_API_KEY_DAYS",
    "MIN_BOTOCORE",
    "Change",
    "ControlPlane",
    "CreatedApi",
    "Plan",
    "appsync_client",
    "declared_modes",
]

logger = logging.getLogger(__name__)

#: The IAM actions the control plane calls (``appsync:<operation>``): ``--check`` and
#: ``--plan`` need the first three (``ListApis`` only without ``API_ID``), plus
#: ``GetChannelNamespace`` for namespaces that declare ``HANDLERS``; ``--apply`` the next
#: four too (``DeleteChannelNamespace`` only with prune); creating an API the last two.
IAM_ACTIONS: Final = (
    "appsync:GetApi",
    "appsync:ListChannelNamespaces",
    "appsync:ListApis",
    "appsync:GetChannelNamespace",
    "appsync:CreateChannelNamespace",
    "appsync:UpdateChannelNamespace",
    "appsync:UpdateApi",
    "appsync:DeleteChannelNamespace",
    "appsync:CreateApi",
    "appsync:CreateApiKey",
)

#: The first botocore (and boto3) release whose AppSync model has channel namespace
#: handler configurations (April 2025); Event APIs themselves arrived in 1.35.52.
MIN_BOTOCORE: Final = "1.38.2"

#: Auth providers that need configuration the settings do not hold, and what it is.
_PROVIDER_CONFIG: Final = {
    "AMAZON_COGNITO_USER_POOLS": "a Cognito user pool (cognitoConfig)",
    "OPENID_CONNECT": "an OIDC issuer (openIDConnectConfig)",
    "AWS_LAMBDA": "an authorizer function (lambdaAuthorizerConfig)",
}
#: AWS error codes for calls the credentials may not make.
_DENIED: Final = frozenset({"AccessDeniedException", "UnauthorizedException", "AccessDenied"})
#: AWS error codes (and the HTTP status) of throttling, as botocore's retry logic knows them.
_THROTTLED: Final = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
    }
)
_THROTTLED_STATUS: Final = 429
#: The largest ``codeHandlers`` AppSync accepts, in characters.
_MAX_CODE: Final = 32_768
#: API keys live at most 365 days; AppSync counts from creation, rounded down to the hour.
MAX_API_KEY_DAYS: Final = 365

ChangeKind: TypeAlias = Literal["update-api", "create", "update", "delete"]
_OPERATIONS: Final[Mapping[str, str]] = {
    "update-api": "UpdateApi",
    "create": "CreateChannelNamespace",
    "update": "UpdateChannelNamespace",
    "delete": "DeleteChannelNamespace",
}


# -- what the settings declare -------------------------------------------------------


def declared_modes(config: APIConfig) -> tuple[str, ...]:
    """Return every auth mode the alias uses, in the order of :data:`AUTH_MODES`.

    The connection mode, the default publish and subscribe modes and every namespace's
    modes: the API's auth providers and connection modes must include them all.
    """
    used = {
        config.connection_auth_mode,
        *config.default_publish_auth_modes,
        *config.default_subscribe_auth_modes,
    }
    for namespace in config.namespaces.values():
        used.update(namespace.publish_auth_modes, namespace.subscribe_auth_modes)
    return tuple(mode for mode in AUTH_MODES if mode in used)


def _auth_modes(modes: Sequence[str]) -> list[dict[str, str]]:
    """Return ``modes`` in AppSync's ``AuthModes`` shape."""
    return [{"authType": mode} for mode in modes]


def _modes(items: Sequence[Mapping[str, Any]] | None) -> tuple[str, ...]:
    """Return the mode names of an AppSync ``AuthModes`` (or ``AuthProviders``) list."""
    return tuple(str(item.get("authType")) for item in items or ())


def _listed(modes: Sequence[str]) -> str:
    return ", ".join(sorted(modes)) or "none"


def _handler_configs(namespace: NamespaceConfig) -> dict[str, Any]:
    """Return the namespace's declared integrations in AppSync's ``HandlerConfigs`` shape."""
    out: dict[str, Any] = {}
    handlers = namespace.handlers
    if handlers is None:
        return out
    for key, integration in (
        ("onPublish", handlers.on_publish),
        ("onSubscribe", handlers.on_subscribe),
    ):
        if integration is None:
            continue
        body: dict[str, Any] = {"dataSourceName": integration.data_source}
        if integration.invoke_type is not None:
            body["lambdaConfig"] = {"invokeType": integration.invoke_type}
        out[key] = {"behavior": integration.behavior, "integration": body}
    return out


def _integration_view(config: Mapping[str, Any] | None) -> tuple[str, str, str | None] | None:
    """Reduce one AppSync ``HandlerConfig`` to what the settings can say about it.

    A ``DIRECT`` integration without an invoke type uses ``REQUEST_RESPONSE``; a ``CODE``
    one has none.
    """
    if not config:
        return None
    integration = config.get("integration") or {}
    behavior = str(config.get("behavior"))
    invoke = (integration.get("lambdaConfig") or {}).get("invokeType")
    invoke = (invoke or "REQUEST_RESPONSE") if behavior == "DIRECT" else None
    return (behavior, str(integration.get("dataSourceName")), invoke)


def _describe_integration(view: tuple[str, str, str | None] | None) -> str:
    if view is None:
        return "none"
    behavior, data_source, invoke = view
    return f"{behavior} with data source {data_source}" + (f" ({invoke})" if invoke else "")


# -- plans ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    """One step of a :class:`Plan`.

    Attributes:
        kind: ``"update-api"``, ``"create"``, ``"update"`` or ``"delete"``.
        namespace: the namespace it changes (``None`` for the API itself).
        differences: what differs, one line each ("publish auth modes: AWS has ...").
        request: the keyword arguments of the AppSync call that makes the change.
        blocked: why the command cannot make the change itself (``None`` when it can).
        keeps_handlers: an update of a namespace whose handlers the settings leave alone:
            :meth:`ControlPlane.apply` reads them first and sends them back unchanged.
    """

    kind: ChangeKind
    namespace: str | None
    differences: tuple[str, ...]
    request: Mapping[str, Any] = field(repr=False)
    blocked: str | None = None
    keeps_handlers: bool = False

    @property
    def operation(self) -> str:
        """The AppSync operation that makes the change (``"CreateChannelNamespace"``...)."""
        return _OPERATIONS[self.kind]

    @property
    def title(self) -> str:
        """One line naming the change, e.g. ``"+ create namespace chat"``."""
        sign = {"update-api": "~", "create": "+", "update": "~", "delete": "-"}[self.kind]
        what = (
            "the API's auth configuration"
            if self.namespace is None
            else f"namespace {self.namespace}"
        )
        verb = "update" if self.kind == "update-api" else self.kind
        return f"{sign} {verb} {what}"


@dataclass(frozen=True, slots=True)
class Plan:
    """What it takes to bring the Event API in step with the settings.

    Attributes:
        alias: the ``APPSYNC_EVENTS`` alias.
        api_id / api_name / region: the Event API compared.
        changes: in the order :meth:`ControlPlane.apply` makes them.
        undeclared: namespaces on AWS the settings do not declare, kept (without prune).
    """

    alias: str
    api_id: str
    api_name: str
    region: str
    changes: tuple[Change, ...]
    undeclared: tuple[str, ...] = ()

    @property
    def in_sync(self) -> bool:
        """Whether there is nothing to change."""
        return not self.changes

    def lines(self) -> list[str]:
        """Return the plan as text, one line each: every change with its differences."""
        out = [
            f"Event API {self.api_name!r} ({self.api_id}, {self.region}) and "
            f"APPSYNC_EVENTS[{self.alias!r}]:"
        ]
        for change in self.changes:
            out.append(f"  {change.title}")
            out.extend(f"      {line}" for line in change.differences)
            if change.blocked:
                out.append(f"      cannot be applied by this command: {change.blocked}")
        for name in self.undeclared:
            out.append(
                f"  ? namespace {name} is on AWS but not in the settings (kept; --prune deletes it)"
            )
        if self.in_sync:
            out.append("  in step: nothing to change.")
        return out


@dataclass(frozen=True, slots=True)
class CreatedApi:
    """What :meth:`ControlPlane.create_api` made.

    Attributes:
        api_id / name / region: the new Event API.
        http_url: its HTTP endpoint, for ``HTTP_URL``.
        api_key: the new API key (``None`` when the settings use no ``API_KEY`` mode);
            AppSync shows it at creation only. Not in ``repr()``.
        api_key_expires: when the key expires (seconds since the epoch), if one was made.
    """

    api_id: str
    name: str
    region: str
    http_url: str
    api_key: str | None = field(default=None, repr=False)
    api_key_expires: int | None = None


# -- the client ----------------------------------------------------------------------


def _credentials_backend(config: APIConfig) -> IAMAuth:
    """The IAM backend whose credentials sign control-plane calls.

    The alias's own ``AWS_IAM`` backend when it is the built-in one (so a profile,
    session factory or role in its options applies); else the default AWS chain.
    """
    if "AWS_IAM" in config.auth:
        backend = get_auth_backend(config, "AWS_IAM")
        if isinstance(backend, IAMAuth):
            return backend
        logger.info(
            "APPSYNC_EVENTS[%r]['AUTH']['AWS_IAM'] uses a custom backend; the control plane "
            "signs with the default AWS credential chain",
            config.alias,
        )
    return IAMAuth(config)


def appsync_client(config: APIConfig) -> Any:
    """Return boto3's ``appsync`` client for the alias's region and AWS credentials.

    Raises:
        ConfigurationError: no region is known, or the installed botocore predates
            :data:`MIN_BOTOCORE`.
        AuthError: no AWS credentials could be found.
    """
    session = _credentials_backend(config).boto3_session()
    # Only the mode: AWS_MAX_ATTEMPTS (or max_attempts in the AWS config) still applies.
    client = session.client("appsync", config=Config(retries={"mode": "standard"}))
    model = client.meta.service_model
    if "CreateChannelNamespace" not in model.operation_names or (
        "handlerConfigs" not in model.operation_model("CreateChannelNamespace").input_shape.members
    ):
        raise ConfigurationError(
            f"botocore {botocore.__version__} is too old to manage AppSync Event API "
            f"namespaces: upgrade boto3 and botocore to {MIN_BOTOCORE} or newer "
            "(pip install -U boto3).",
            api=config.alias,
            check_id="appsync_events.E011",
        )
    return client


class _NoResponseBodies(logging.Filter):
    """Drop botocore's DEBUG records of response bodies (one would hold a new API key)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep every record but a response body."""
        return not str(record.msg).startswith("Response body")


@contextmanager
def _response_bodies_unlogged() -> Iterator[None]:
    """Keep botocore from logging response bodies while the block runs.

    botocore logs every response body at DEBUG (``botocore.parsers``); the body of
    ``CreateApiKey`` is the key itself. A filter on that logger drops those records
    before any handler sees them, without touching any logger's level.
    """
    parsers = logging.getLogger("botocore.parsers")
    quiet = _NoResponseBodies()
    parsers.addFilter(quiet)
    try:
        yield
    finally:
        parsers.removeFilter(quiet)


def _key_expiry(now: int, days: int) -> int:
    """Return when an API key made at ``now`` for ``days`` days expires, on the hour.

    AppSync keeps expiries on the hour and wants them 1 to 365 days away: the hour
    after ``days`` days, but never past 365 days.
    """
    hour = 3600
    wanted = -(-(now + days * 86_400) // hour) * hour  # rounded up
    latest = (now + MAX_API_KEY_DAYS * 86_400) // hour * hour  # rounded down
    return min(wanted, latest)


def _reworded(exc: ControlPlaneError, message: str) -> ControlPlaneError:
    """Return a copy of ``exc`` saying ``message``."""
    return ControlPlaneError(
        message,
        operation=exc.operation,
        code=exc.code,
        configuration=exc.configuration,
        api=exc.api,
    )


# -- the control plane ---------------------------------------------------------------


class ControlPlane:
    """Compare, plan and apply an alias's declarations on its Event API.

    Args:
        config: the alias.
        client: a boto3 ``appsync`` client (default: :func:`appsync_client`, built on
            first use).
        read_file: reads a handler's ``CODE_FILE`` (for tests).
    """

    def __init__(
        self,
        config: APIConfig,
        client: Any | None = None,
        *,
        read_file: Callable[[str], str] | None = None,
    ) -> None:
        self.config = config
        self._client = client
        self._read_file = read_file or (lambda path: Path(path).read_text(encoding="utf-8"))
        self._api_id: str | None = None

    @property
    def client(self) -> Any:
        """The boto3 ``appsync`` client."""
        if self._client is None:
            self._client = appsync_client(self.config)
        return self._client

    @property
    def region(self) -> str:
        """The region of the client."""
        return str(self.client.meta.region_name)

    @property
    def _setting(self) -> str:
        return f"APPSYNC_EVENTS[{self.config.alias!r}]"

    # -- calls ---------------------------------------------------------------------

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        """Call ``operation`` (``"GetApi"``...) with errors made :class:`ControlPlaneError`."""
        method = getattr(self.client, xform_name(operation))
        logger.debug("appsync:%s %s", operation, kwargs.get("name") or kwargs.get("apiId") or "")
        with self._translated(operation):
            response: dict[str, Any] = method(**kwargs)
        return response

    def _pages(self, operation: str, key: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Yield every item under ``key`` of every page of a paginated ``operation``."""
        paginator = self.client.get_paginator(xform_name(operation))
        with self._translated(operation):
            for page in paginator.paginate(**kwargs):
                yield from page.get(key, [])

    @contextmanager
    def _translated(self, operation: str) -> Iterator[None]:
        """Turn botocore's exceptions into :class:`ControlPlaneError` with a clear message."""
        try:
            yield
        except ClientError as exc:
            raise self._client_error(operation, exc) from exc
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise ControlPlaneError(
                f"no usable AWS credentials for appsync:{operation} ({exc}); set "
                f"{self._setting}['AUTH']['AWS_IAM'] or the standard AWS variables",
                operation=operation,
                configuration=True,
                api=self.config.alias,
            ) from exc
        except BotocoreConnectionError as exc:
            raise ControlPlaneError(
                f"cannot reach AppSync for appsync:{operation}: {redact(str(exc))}",
                operation=operation,
                api=self.config.alias,
            ) from exc
        except BotoCoreError as exc:
            raise ControlPlaneError(
                f"appsync:{operation} failed: {redact(str(exc))}",
                operation=operation,
                api=self.config.alias,
            ) from exc

    def _client_error(self, operation: str, exc: ClientError) -> ControlPlaneError:
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "")
        message = redact(str(error.get("Message") or "")).rstrip(".")
        metadata = exc.response.get("ResponseMetadata", {})
        said = f"{code}: {message}" if message else code
        if code in _DENIED:
            text = (
                f"the AWS credentials may not call appsync:{operation} ({said}); allow the "
                f"IAM action appsync:{operation} (docs/production.md lists the policy)"
            )
            if operation == "ListApis":
                text += f", or set {self._setting}['API_ID'] so the API need not be looked up"
            return ControlPlaneError(
                text, operation=operation, code=code, configuration=True, api=self.config.alias
            )
        if code == "NotFoundException" and operation in ("GetApi", "ListChannelNamespaces"):
            if self.config.api_id:
                text = (
                    f"{self._setting}['API_ID'] is {self.config.api_id!r}, but region "
                    f"{self.region} has no such Event API ({said}); check API_ID and REGION"
                )
            else:
                text = (
                    f"region {self.region} has no Event API {self._api_id} ({said}); check "
                    "HTTP_URL and REGION"
                )
            return ControlPlaneError(
                text, operation=operation, code=code, configuration=True, api=self.config.alias
            )
        if code in _THROTTLED or metadata.get("HTTPStatusCode") == _THROTTLED_STATUS:
            attempts = int(metadata.get("RetryAttempts", 0)) + 1
            text = (
                f"AWS throttled appsync:{operation} ({said or 'HTTP 429'}) {attempts} times, "
                "backing off between attempts; try again later, or allow more attempts "
                "with AWS_MAX_ATTEMPTS"
            )
            return ControlPlaneError(text, operation=operation, code=code, api=self.config.alias)
        return ControlPlaneError(
            f"appsync:{operation} failed ({said or metadata.get('HTTPStatusCode')})",
            operation=operation,
            code=code,
            api=self.config.alias,
        )

    # -- the API -------------------------------------------------------------------

    def api_id(self) -> str:
        """Return the Event API's id: ``API_ID``, else looked up by ``HTTP_URL``'s host.

        Raises:
            ConfigurationError: no ``API_ID`` and ``HTTP_URL`` is not a standard
                AppSync host (a custom domain, the emulator).
            ControlPlaneError: no API in the region has that host, or a call failed.
        """
        if self._api_id is not None:
            return self._api_id
        config = self.config
        if config.api_id is not None:
            self._api_id = config.api_id
            return config.api_id
        host = (urlsplit(config.http_url).hostname or "").lower()
        if not config.is_standard_host:
            raise ConfigurationError(
                f"{self._setting}['API_ID'] is missing, and HTTP_URL's host {host!r} is not "
                "an AppSync host (a custom domain or the emulator), so the API cannot be found "
                "from it: set API_ID to your Event API's id (aws appsync list-apis).",
                api=config.alias,
                key="API_ID",
                check_id="appsync_events.E009",
            )
        count = 0
        for api in self._pages("ListApis", "apis"):
            count += 1
            if str((api.get("dns") or {}).get("HTTP", "")).lower() == host:
                self._api_id = str(api["apiId"])
                logger.debug("%s is Event API %s", host, self._api_id)
                return self._api_id
        raise ControlPlaneError(
            f"none of the {count} Event APIs in region {self.region} has the HTTP host {host} "
            f"of {self._setting}['HTTP_URL']; check HTTP_URL and that the credentials are "
            "those of its account, or set API_ID",
            operation="ListApis",
            configuration=True,
            api=config.alias,
        )

    def get_api(self) -> dict[str, Any]:
        """Return the Event API (``GetApi``), checked against ``HTTP_URL``'s host.

        Raises:
            ControlPlaneError: the API does not exist, or is not the one ``HTTP_URL``
                names, or the call failed.
        """
        api_id = self.api_id()
        api: dict[str, Any] = self._call("GetApi", apiId=api_id)["api"]
        host = (urlsplit(self.config.http_url).hostname or "").lower()
        aws_host = str((api.get("dns") or {}).get("HTTP", "")).lower()
        if self.config.is_standard_host and aws_host and aws_host != host:
            raise ControlPlaneError(
                f"{self._setting}['API_ID'] {api_id!r} is the Event API {api.get('name')!r}, "
                f"whose HTTP host is {aws_host}, but HTTP_URL's host is {host}: the two "
                "settings name different APIs; correct one of them",
                operation="GetApi",
                configuration=True,
                api=self.config.alias,
            )
        return api

    # -- planning ------------------------------------------------------------------

    def plan(self, *, prune: bool = False) -> Plan:
        """Compare AWS with the settings; return the changes that would bring them in step.

        Args:
            prune: also plan deleting the namespaces the settings do not declare.

        Raises:
            ConfigurationError: a handler's ``CODE_FILE`` cannot be read.
            ControlPlaneError: a call failed (see :meth:`api_id`).
        """
        api = self.get_api()
        api_id = str(api["apiId"])
        event_config = api.get("eventConfig") or {}
        remote = {
            str(ns["name"]): ns
            for ns in self._pages("ListChannelNamespaces", "channelNamespaces", apiId=api_id)
        }
        api_change = self._api_change(api, event_config)
        # What namespaces without modes of their own will have once the plan is applied.
        defaults_after = event_config if api_change is None else api_change.request["eventConfig"]
        creates: list[Change] = []
        updates: list[Change] = []
        for name, declared in self.config.namespaces.items():
            if name not in remote:
                creates.append(self._create_change(api_id, declared))
            else:
                change = self._update_change(
                    api_id, declared, remote[name], event_config, defaults_after
                )
                if change is not None:
                    updates.append(change)
        undeclared = tuple(sorted(set(remote) - set(self.config.namespaces)))
        deletes = (
            [
                Change(
                    "delete",
                    name,
                    ("on AWS, not declared in the settings",),
                    {"apiId": api_id, "name": name},
                )
                for name in undeclared
            ]
            if prune
            else []
        )
        changes: list[Change] = [*creates, *updates, *deletes]
        if api_change is not None:
            # Add auth providers before namespaces use them; remove them after.
            removes = set(_modes(event_config.get("authProviders"))) - set(
                declared_modes(self.config)
            )
            changes = [*changes, api_change] if removes else [api_change, *changes]
        return Plan(
            alias=self.config.alias,
            api_id=api_id,
            api_name=str(api.get("name", "")),
            region=self.region,
            changes=tuple(changes),
            undeclared=() if prune else undeclared,
        )

    def _api_change(self, api: Mapping[str, Any], event_config: Mapping[str, Any]) -> Change | None:
        config = self.config
        modes = declared_modes(config)
        wanted = {
            "authProviders": ("auth providers", modes),
            "connectionAuthModes": ("connection auth modes", modes),
            "defaultPublishAuthModes": (
                "default publish auth modes",
                config.default_publish_auth_modes,
            ),
            "defaultSubscribeAuthModes": (
                "default subscribe auth modes",
                config.default_subscribe_auth_modes,
            ),
        }
        differences = []
        for key, (label, want) in wanted.items():
            have = _modes(event_config.get(key))
            if set(have) != set(want):
                differences.append(
                    f"{label}: AWS has {_listed(have)}; the settings declare {_listed(want)}"
                )
        if not differences:
            return None
        existing = {
            str(p.get("authType")): dict(p) for p in event_config.get("authProviders") or ()
        }
        missing = [mode for mode in modes if mode not in existing and mode in _PROVIDER_CONFIG]
        blocked = None
        if missing:
            blocked = "; ".join(
                f"an auth provider for {mode} needs {_PROVIDER_CONFIG[mode]}, which the "
                "settings do not hold: add it with Terraform, CloudFormation or the console"
                for mode in missing
            )
        new_config: dict[str, Any] = {
            "authProviders": [existing.get(mode, {"authType": mode}) for mode in modes],
            "connectionAuthModes": _auth_modes(modes),
            "defaultPublishAuthModes": _auth_modes(config.default_publish_auth_modes),
            "defaultSubscribeAuthModes": _auth_modes(config.default_subscribe_auth_modes),
        }
        if event_config.get("logConfig"):
            new_config["logConfig"] = event_config["logConfig"]
        request: dict[str, Any] = {
            "apiId": api["apiId"],
            "name": api["name"],
            "eventConfig": new_config,
        }
        if api.get("ownerContact"):
            request["ownerContact"] = api["ownerContact"]
        return Change("update-api", None, tuple(differences), request, blocked)

    def _code(self, namespace: NamespaceConfig) -> str | None:
        """Read the namespace's declared ``CODE_FILE`` (``None`` when it declares none)."""
        handlers = namespace.handlers
        if handlers is None or handlers.code_file is None:
            return None
        setting = f"{self._setting}['NAMESPACES'][{namespace.name!r}]['HANDLERS']['CODE_FILE']"
        try:
            code = self._read_file(handlers.code_file)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(
                f"{setting}: cannot read {handlers.code_file!r}: {exc}",
                api=self.config.alias,
                key="NAMESPACES",
                check_id="appsync_events.E013",
            ) from exc
        if not code.strip() or len(code) > _MAX_CODE:
            raise ConfigurationError(
                f"{setting}: {handlers.code_file!r} holds {len(code)} characters; AppSync "
                f"takes code handlers of 1 to {_MAX_CODE:,} characters.",
                api=self.config.alias,
                key="NAMESPACES",
                check_id="appsync_events.E013",
            )
        return code

    def _create_change(self, api_id: str, declared: NamespaceConfig) -> Change:
        request: dict[str, Any] = {
            "apiId": api_id,
            "name": declared.name,
            "publishAuthModes": _auth_modes(declared.publish_auth_modes),
            "subscribeAuthModes": _auth_modes(declared.subscribe_auth_modes),
        }
        lines = [
            f"publish auth modes: {_listed(declared.publish_auth_modes)}",
            f"subscribe auth modes: {_listed(declared.subscribe_auth_modes)}",
        ]
        if declared.handlers is not None:
            code = self._code(declared)
            if code is not None:
                request["codeHandlers"] = code
                lines.append(f"code handlers: {declared.handlers.code_file}")
            configs = _handler_configs(declared)
            if configs:
                request["handlerConfigs"] = configs
            for key, integration in (
                ("onPublish", declared.handlers.on_publish),
                ("onSubscribe", declared.handlers.on_subscribe),
            ):
                if integration is not None:
                    lines.append(f"{key}: {_describe_integration(_integration_view(configs[key]))}")
        return Change("create", declared.name, ("missing on AWS", *lines), request)

    def _update_change(
        self,
        api_id: str,
        declared: NamespaceConfig,
        listed: Mapping[str, Any],
        event_config: Mapping[str, Any],
        defaults_after: Mapping[str, Any],
    ) -> Change | None:
        differences = []
        for label, key, want, default_key in (
            (
                "publish auth modes",
                "publishAuthModes",
                declared.publish_auth_modes,
                "defaultPublishAuthModes",
            ),
            (
                "subscribe auth modes",
                "subscribeAuthModes",
                declared.subscribe_auth_modes,
                "defaultSubscribeAuthModes",
            ),
        ):
            # A namespace without modes of its own has the API's defaults: those the plan
            # leaves (the settings' when it updates the API) decide, AWS's are shown.
            own = _modes(listed.get(key))
            have = own or _modes(event_config.get(default_key))
            if set(own or _modes(defaults_after.get(default_key))) != set(want):
                differences.append(
                    f"{label}: AWS has {_listed(have)}; the settings declare {_listed(want)}"
                )
        code: str | None = None
        configs: dict[str, Any] = {}
        if declared.handlers is not None:
            # The listing may leave the code out; GetChannelNamespace has all of it.
            current = self._call("GetChannelNamespace", apiId=api_id, name=declared.name)[
                "channelNamespace"
            ]
            code = self._code(declared)
            have_code = current.get("codeHandlers") or None
            if code != have_code:
                if code is None:
                    differences.append("code handlers: AWS has code; the settings declare none")
                elif have_code is None:
                    differences.append(
                        "code handlers: AWS has none; the settings declare "
                        f"{declared.handlers.code_file}"
                    )
                else:
                    differences.append(
                        f"code handlers: AWS has other code than {declared.handlers.code_file}"
                    )
            configs = _handler_configs(declared)
            have_configs = current.get("handlerConfigs") or {}
            for key in ("onPublish", "onSubscribe"):
                have_view = _integration_view(have_configs.get(key))
                want_view = _integration_view(configs.get(key))
                if have_view != want_view:
                    differences.append(
                        f"{key}: AWS has {_describe_integration(have_view)}; the settings declare "
                        f"{_describe_integration(want_view)}"
                    )
        if not differences:
            return None
        request: dict[str, Any] = {
            "apiId": api_id,
            "name": declared.name,
            "publishAuthModes": _auth_modes(declared.publish_auth_modes),
            "subscribeAuthModes": _auth_modes(declared.subscribe_auth_modes),
        }
        if declared.handlers is None:
            return Change("update", declared.name, tuple(differences), request, keeps_handlers=True)
        if code is not None:
            request["codeHandlers"] = code
        request["handlerConfigs"] = configs
        return Change("update", declared.name, tuple(differences), request)

    # -- applying ------------------------------------------------------------------

    def apply(self, plan: Plan, *, on_change: Callable[[Change], None] | None = None) -> None:
        """Make the plan's changes, in order; ``on_change`` is called after each.

        Raises:
            ControlPlaneError: a change cannot be made by this command (nothing is
                changed then), or a call failed (the earlier changes are made).
        """
        blocked = [change for change in plan.changes if change.blocked]
        if blocked:
            raise ControlPlaneError(
                f"cannot apply the plan ({blocked[0].title.lstrip('~+- ')}): {blocked[0].blocked}",
                operation=blocked[0].operation,
                configuration=True,
                api=self.config.alias,
            )
        for done, change in enumerate(plan.changes):
            try:
                self._call(change.operation, **self._request(change))
            except ControlPlaneError as exc:
                if not done:
                    raise
                raise _reworded(
                    exc, f"{exc.message} (after {done} of {len(plan.changes)} changes were made)"
                ) from exc
            logger.info("%s: %s", plan.api_id, change.title)
            if on_change is not None:
                on_change(change)

    def _request(self, change: Change) -> dict[str, Any]:
        """Return the change's request, with the handlers AWS has when it keeps them."""
        request = dict(change.request)
        if change.keeps_handlers:
            # UpdateChannelNamespace replaces the handlers: send back what AWS has.
            current = self._call(
                "GetChannelNamespace", apiId=request["apiId"], name=request["name"]
            )["channelNamespace"]
            if current.get("codeHandlers"):
                request["codeHandlers"] = current["codeHandlers"]
            if current.get("handlerConfigs"):
                request["handlerConfigs"] = current["handlerConfigs"]
        return request

    # -- creating an API -----------------------------------------------------------

    def create_api(self, name: str, *, api_key_days: int = MAX_API_KEY_DAYS) -> CreatedApi:
        """Create an Event API with the alias's auth modes (and an API key when it uses one).

        The API's auth providers and connection modes are :func:`declared_modes`, its
        default publish and subscribe modes the alias's. Namespaces are not created: put
        the new ``API_ID`` and ``HTTP_URL`` in the settings and :meth:`apply` a plan.

        Args:
            name: the API name (1-50 letters, digits, ``_``, ``-`` and spaces).
            api_key_days: the API key's lifetime in days (1-365).

        Raises:
            ValidationError: a bad name or key lifetime.
            ConfigurationError: the alias uses a mode whose provider needs configuration
                the settings do not hold (Cognito, OIDC, Lambda).
            ControlPlaneError: a call failed.
        """
        if not re.fullmatch(r"[A-Za-z0-9_\- ]{1,50}", name):
            raise ValidationError(
                f"{name!r} is not a valid Event API name: 1-50 letters, digits, '_', '-' "
                "and spaces."
            )
        if not 1 <= api_key_days <= MAX_API_KEY_DAYS:
            raise ValidationError(
                f"an API key lives 1 to {MAX_API_KEY_DAYS} days, not {api_key_days}."
            )
        config = self.config
        modes = declared_modes(config)
        needing = [mode for mode in modes if mode in _PROVIDER_CONFIG]
        if needing:
            raise ConfigurationError(
                f"{self._setting} uses {', '.join(needing)}, whose auth provider needs "
                f"{'; '.join(_PROVIDER_CONFIG[m] for m in needing)}, which the settings do not "
                "hold: create the API with Terraform, CloudFormation or the console.",
                api=config.alias,
                key="AUTH",
                check_id="appsync_events.E005",
            )
        event_config = {
            "authProviders": _auth_modes(modes),
            "connectionAuthModes": _auth_modes(modes),
            "defaultPublishAuthModes": _auth_modes(config.default_publish_auth_modes),
            "defaultSubscribeAuthModes": _auth_modes(config.default_subscribe_auth_modes),
        }
        api = self._call("CreateApi", name=name, eventConfig=event_config)["api"]
        api_id = str(api["apiId"])
        self._api_id = api_id
        logger.info("created Event API %s (%s)", name, api_id)
        http_url = f"https://{(api.get('dns') or {}).get('HTTP', '')}/event"
        if "API_KEY" not in modes:
            return CreatedApi(api_id, name, self.region, http_url)
        expires = _key_expiry(int(time.time()), api_key_days)
        try:
            with _response_bodies_unlogged():
                answer = self._call(
                    "CreateApiKey",
                    apiId=api_id,
                    description="django-appsync-events",
                    expires=expires,
                )
        except ControlPlaneError as exc:
            raise _reworded(
                exc,
                f"the Event API {api_id} was created, but not its API key: {exc.message}; "
                f"create one with `aws appsync create-api-key --api-id {api_id}`",
            ) from exc
        key = str(answer["apiKey"]["id"])
        register_secret(key)
        logger.info("created an API key for Event API %s, expiring at %s", api_id, expires)
        return CreatedApi(
            api_id,
            name,
            self.region,
            http_url,
            key,
            int(answer["apiKey"].get("expires") or expires),
        )
