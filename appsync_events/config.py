"""Typed configuration of one Event API, validated from a plain mapping; no Django.

The mapping has the keys of one alias of the ``APPSYNC_EVENTS`` setting:

.. code-block:: python

    from appsync_events.config import APIConfig

    config = APIConfig.from_mapping("default", {
        "HTTP_URL": "https://abc.appsync-api.eu-west-1.amazonaws.com/event",
        "AUTH": {"API_KEY": "da2-..."},
        "NAMESPACES": {"chat": {}},
        "SUBSCRIPTIONS": ["/chat/*"],
    })

Every mistake raises :class:`~appsync_events.exceptions.ConfigurationError` naming the
alias and the key, with the system check id it is reported under (``check_id``). Django
projects read these objects through :func:`appsync_events.conf.get_api_config`, which
caches them per alias.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal, TypeAlias
from urllib.parse import SplitResult, urlsplit

from .exceptions import ConfigurationError, InvalidChannelError
from .grants import Grant, parse_grant_pattern, parse_who
from .lambda_authorizer import check_keys
from .paths import Channel, parse_channel

__all__ = [
    "AUTH_MODES",
    "DEFAULT_API",
    "APIConfig",
    "AuthModeConfig",
    "ConfigurationError",
    "EmulatorConfig",
    "ForwardingConfig",
    "HandlerIntegrationConfig",
    "ListenerConfig",
    "MetricsConfig",
    "NamespaceConfig",
    "NamespaceHandlersConfig",
    "Operation",
    "OutboxConfig",
    "PublishConfig",
    "TasksConfig",
    "Timeouts",
    "TokensConfig",
    "is_loopback_host",
]

DEFAULT_API: Final = "default"

#: The five AppSync auth modes, by their AppSync names.
AUTH_MODES: Final = (
    "API_KEY",
    "AWS_IAM",
    "AMAZON_COGNITO_USER_POOLS",
    "OPENID_CONNECT",
    "AWS_LAMBDA",
)

Operation: TypeAlias = Literal["connect", "subscribe", "publish"]

_STANDARD_HOST_RE: Final = re.compile(
    r"^(?P<prefix>[A-Za-z0-9]+)\.appsync-(?:api|realtime-api)\.(?P<region>[a-z0-9-]+)"
    r"\.amazonaws\.com(?P<cn>\.cn)?\Z"
)
# ``\Z``, not ``$``, in every pattern: ``$`` also matches before a trailing newline.
_REGION_RE: Final = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d+\Z")
_NAMESPACE_RE: Final = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,48}[A-Za-z0-9])?\Z")
_TOKEN_MODES: Final = ("AMAZON_COGNITO_USER_POOLS", "OPENID_CONNECT", "AWS_LAMBDA")

#: Short names of the built-in publishing backends.
PUBLISH_BACKENDS: Final = MappingProxyType(
    {
        "appsync": "appsync_events.backends.appsync.AppSyncBackend",
        "websocket": "appsync_events.backends.websocket.WebSocketBackend",
        "locmem": "appsync_events.backends.locmem.LocMemBackend",
        "console": "appsync_events.backends.console.ConsoleBackend",
        "dummy": "appsync_events.backends.dummy.DummyBackend",
    }
)


# User info: after the scheme, or at the start of a bare domain (HTTP_URL accepts those).
# Greedy up to the last ``@`` of the authority, so a password holding an ``@`` is hidden
# whole.
_USER_INFO_RE: Final = re.compile(r"(?:(?<=://)|^)[^/?#\s]*@")


def _shown(value: Any) -> Any:
    """Return a URL setting as error messages may quote it: user info (a password) hidden."""
    return _USER_INFO_RE.sub("<redacted>@", value) if isinstance(value, str) else value


def _empty() -> Mapping[str, Any]:
    """Return an empty read-only mapping: config objects are frozen all the way down."""
    return MappingProxyType({})


# -- typed config objects ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthModeConfig:
    """The credentials an alias holds for one auth mode.

    Attributes:
        mode: one of :data:`AUTH_MODES`.
        backend: dotted path of the auth backend class, or ``None`` for the built-in.
        options: keyword arguments for the backend (validated by the backend).
    """

    mode: str
    backend: str | None
    options: Mapping[str, Any]

    def __repr__(self) -> str:  # options hold secrets
        return f"AuthModeConfig(mode={self.mode!r}, backend={self.backend!r}, options=<redacted>)"


@dataclass(frozen=True, slots=True)
class HandlerIntegrationConfig:
    """How one handler (``onPublish`` or ``onSubscribe``) of a namespace uses a data source.

    The AppSync ``HandlerConfig`` shape: ``behavior`` ``CODE`` runs the namespace's code
    handler, which calls the data source; ``DIRECT`` invokes the data source (a Lambda
    function) without code. See
    https://docs.aws.amazon.com/appsync/latest/eventapi/direct-lambda-integrations.html

    Attributes:
        behavior: ``"CODE"`` or ``"DIRECT"``.
        data_source: the name of a data source configured on the API.
        invoke_type: ``"REQUEST_RESPONSE"`` or ``"EVENT"`` (a ``DIRECT`` Lambda
            integration only); ``None`` leaves the service default (``REQUEST_RESPONSE``).
    """

    behavior: Literal["CODE", "DIRECT"]
    data_source: str
    invoke_type: Literal["REQUEST_RESPONSE", "EVENT"] | None = None


@dataclass(frozen=True, slots=True)
class NamespaceHandlersConfig:
    """The event handlers a namespace declares (``NAMESPACES[name]['HANDLERS']``).

    Only ``manage.py appsync_namespaces`` reads them, to keep the namespace on AWS in
    step; the emulator runs Python stand-ins instead (see :mod:`appsync_events.emulator`).

    Attributes:
        code_file: absolute path of the ``APPSYNC_JS`` code (the namespace's
            ``codeHandlers``), read by the command, never at settings time.
        on_publish / on_subscribe: the data source integrations, by handler.
    """

    code_file: str | None = None
    on_publish: HandlerIntegrationConfig | None = None
    on_subscribe: HandlerIntegrationConfig | None = None


@dataclass(frozen=True, slots=True)
class NamespaceConfig:
    """A channel namespace as the AppSync API declares it.

    Attributes:
        name: the namespace name.
        publish_auth_modes / subscribe_auth_modes: the modes it allows (its own, else the
            alias's defaults).
        handlers: its declared event handlers, or ``None`` when the settings leave them
            alone (``appsync_namespaces`` then neither compares nor changes them).
    """

    name: str
    publish_auth_modes: tuple[str, ...]
    subscribe_auth_modes: tuple[str, ...]
    handlers: NamespaceHandlersConfig | None = None


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds to wait, per step."""

    connect: float = 10.0
    handshake: float = 15.0
    operation: float = 15.0
    http: float = 10.0


@dataclass(frozen=True, slots=True)
class PublishConfig:
    """How publishing behaves for the alias."""

    backend: str = PUBLISH_BACKENDS["appsync"]
    options: Mapping[str, Any] = field(default_factory=_empty)
    on_commit: bool = True
    durable: bool = False
    encoder: str = "django.core.serializers.json.DjangoJSONEncoder"


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    """How ``appsync_listen`` behaves for the alias."""

    subscriptions: tuple[Channel, ...] = ()
    queue_size: int = 1000
    overflow: Literal["block", "drop_newest", "drop_oldest"] = "block"
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    backoff_factor: float = 2.0
    stable_after: float = 60.0
    rotate_after: float = 23 * 3600.0
    stats_interval: float = 60.0
    shutdown_timeout: float = 10.0
    #: Retries (fresh credentials each) of a subscription refused for an auth reason.
    subscribe_retries: int = 3
    #: ``--exclusive`` lease backend: ``"auto"``, ``"postgres"`` or ``"redis"``.
    lease: Literal["auto", "postgres", "redis"] = "auto"
    #: Not in ``repr()``: the URL may hold the Redis password.
    lease_redis_url: str | None = field(default=None, repr=False)
    lease_ttl: float = 15.0
    lease_poll_interval: float = 1.0
    #: The largest inbound websocket message (bytes) the client accepts. The largest
    #: legal event is 240,000 bytes (:data:`appsync_events.limits.MAX_EVENT_BYTES`); the
    #: service may escape every character of it to ``\u003c`` (6 bytes), and the frame
    #: carries that text inside a JSON string, escaping it again (``\\u003c``, 7 bytes
    #: per character): 1,680,000 bytes, plus the frame's own members. 2 MiB holds that
    #: with room to spare.
    max_message_bytes: int = 2 * 1024 * 1024
    #: Serve ``/healthz``, ``/readyz`` and ``/metrics`` on this port (``None``: no server;
    #: ``0``: a free port, logged at start).
    http_port: int | None = None
    #: The interface of that server: every interface by default, so that Kubernetes
    #: probes and Prometheus reach it at the pod's address.
    http_host: str = "0.0.0.0"  # noqa: S104 - probes and scrapers come from outside


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """What the Prometheus metrics of the alias record, and who may read the web views.

    Attributes:
        enabled: record metrics for this alias (when ``prometheus-client`` is installed).
        subscription_labels: the subscription paths used as the ``subscription`` label
            value; ``None``: the paths the listener holds for its whole run (its
            ``SUBSCRIPTIONS`` or ``--channel``). Events on any other subscription are
            counted under ``"other"``, on browser follows under ``"followed"``.
        max_label_values: distinct values one label of one metric takes at most (error
            codes, handler names, subscription paths); further ones are counted under
            ``"other"``.
        allowed_ips: addresses and networks that may read the web views
            (:mod:`appsync_events.urls`) without signing in.
        permission: the permission a signed-in user needs to read them (``None``:
            superusers only).
    """

    enabled: bool = True
    subscription_labels: tuple[Channel, ...] | None = None
    max_label_values: int = 50
    allowed_ips: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    permission: str | None = "appsync_events.view_outboxevent"


@dataclass(frozen=True, slots=True)
class ForwardingConfig:
    """How received events are forwarded to the Channels channel layer."""

    enabled: bool = True
    channel_layer: str = "default"
    subscriptions: tuple[Channel, ...] | None = None
    group_prefix: str = "appsync"
    message_type: str = "appsync.event"
    control_channel: str = "appsync-events-control"
    unfollow_grace: float = 5.0
    #: Run the listener inside the ASGI process (started from the ASGI lifespan, see
    #: :mod:`appsync_events.asgi`); required with ``InMemoryChannelLayer``.
    in_process: bool = False
    #: Seconds a browser follow lives without renewal (consumers renew at a third of it).
    follow_lease: float = 60.0
    #: Seconds a consumer waits for the listener to confirm a follow.
    follow_timeout: float = 10.0
    #: Dynamic follows one listener holds at most (the service allows 200 subscriptions
    #: per connection, static ones included).
    max_follows: int = 150
    #: Distinct channels one client (a signed-in user, else a session, else an address)
    #: may follow at a time across all its browser sockets, so no client can take the
    #: listener's follows from the others.
    max_follows_per_client: int = 20


@dataclass(frozen=True, slots=True)
class OutboxConfig:
    """How the durable outbox drains for the alias."""

    batch_size: int = 100
    max_attempts: int = 20
    backoff_initial: float = 1.0
    backoff_max: float = 300.0
    retention: float = 7 * 24 * 3600.0
    poll_interval: float = 1.0
    #: Seconds a drainer owns the rows it claimed; a killed drainer's rows are claimed
    #: again after this. Must exceed the time to send one batch.
    lease: float = 300.0
    #: ``appsync_outbox`` serves ``/healthz``, ``/readyz`` and ``/metrics`` on this port
    #: (``None``: no server; ``0``: a free port, printed at start).
    http_port: int | None = None
    #: The interface of that server: every interface by default, so that Kubernetes
    #: probes and Prometheus reach it at the pod's address.
    http_host: str = "0.0.0.0"  # noqa: S104 - probes and scrapers come from outside


@dataclass(frozen=True, slots=True)
class TasksConfig:
    """How handlers are handed to Django's Tasks framework for the alias.

    Attributes:
        enqueue: the default of handlers registered without ``enqueue=``: ``True``
            enqueues their events as tasks instead of running them in the listener.
        backend: the alias of Django's ``TASKS`` setting the tasks go to.
        queue_name: the queue of that backend.
    """

    enqueue: bool = False
    backend: str = "default"
    queue_name: str = "default"


#: The emulator's port when ``EMULATOR['PORT']`` is unset and ``HTTP_URL`` gives none.
DEFAULT_EMULATOR_PORT: Final = 8765


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """How ``appsync_emulator`` emulates this alias's API (when it does)."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_EMULATOR_PORT
    api_keys: tuple[str, ...] = ()
    iam_credentials: Mapping[str, str] = field(default_factory=_empty)
    ka_interval: float = 60.0
    connection_timeout_ms: int = 300_000
    max_lifetime: float = 24 * 3600.0
    options: Mapping[str, Any] = field(default_factory=_empty)
    #: Dotted path of an AWS Lambda ``handler(event, context)`` run as the emulator's
    #: ``AWS_LAMBDA`` authorizer (e.g. ``appsync_events.lambda_authorizer.handler``).
    lambda_authorizer: str | None = None

    def __repr__(self) -> str:  # keys and secrets inside
        return (
            f"EmulatorConfig(host={self.host!r}, port={self.port!r}, api_keys=<redacted>, "
            "iam_credentials=<redacted>, ...)"
        )


@dataclass(frozen=True, slots=True)
class TokensConfig:
    """How direct-mode browser tokens are signed (see :mod:`appsync_events.tokens`).

    Attributes:
        signing_keys: key id → signing key (never in ``repr()`` or an error message).
        current_key_id: the key new tokens are signed with; the others still verify.
        ttl: seconds a token lives unless ``mint(ttl=...)`` says otherwise.
        max_ttl: the longest lifetime ``mint()`` may be asked for.
    """

    signing_keys: Mapping[str, str] = field(default_factory=_empty)
    current_key_id: str | None = None
    ttl: int = 300
    max_ttl: int = 3600

    def __repr__(self) -> str:  # keys inside
        return (
            f"TokensConfig(key_ids={tuple(self.signing_keys)!r}, "
            f"current_key_id={self.current_key_id!r}, ttl={self.ttl!r}, max_ttl={self.max_ttl!r})"
        )


@dataclass(frozen=True, slots=True)
class APIConfig:
    """One alias of ``APPSYNC_EVENTS``, parsed and validated.

    Attributes:
        alias: the alias name.
        http_url: the HTTP publish endpoint, ending in ``/event``.
        realtime_url: the websocket endpoint, ending in ``/event/realtime``.
        http_host: the host (with a non-default port) that auth headers name.
        region: the AWS region: ``REGION``, else read from a standard AppSync host,
            else ``None`` (only IAM signing needs one, and validation demands it then).
        auth: the credentials the alias holds, by mode, in declaration order.
        connection_auth_mode: the mode used to open the websocket.
        namespaces: the namespaces the API declares, by name.
        default_publish_auth_modes / default_subscribe_auth_modes: the API's defaults,
            for namespaces that do not override them.
        proxy: ``True`` to follow the proxy environment variables (``HTTPS_PROXY``,
            ``HTTP_PROXY``, ``ALL_PROXY``, ``NO_PROXY``), ``False`` for no proxy at all,
            or a proxy URL, for both the websocket and HTTP publishing. Not in
            ``repr()``: the URL may hold a password.
        grants: what browser users may subscribe and publish to (deny by default; see
            :mod:`appsync_events.grants`).
        api_id: the Event API's id (``API_ID``), for ``manage.py appsync_namespaces``;
            ``None`` when not set (the command then looks the API up by its HTTP host).
        tasks: how handlers hand events to Django's Tasks framework (``TASKS``).
        tokens: how direct-mode tokens are signed (``TOKENS``; no keys: none are minted).
    """

    alias: str
    http_url: str
    realtime_url: str
    http_host: str
    region: str | None
    auth: Mapping[str, AuthModeConfig]
    connection_auth_mode: str
    namespaces: Mapping[str, NamespaceConfig]
    default_publish_auth_modes: tuple[str, ...]
    default_subscribe_auth_modes: tuple[str, ...]
    timeouts: Timeouts
    publish: PublishConfig
    listener: ListenerConfig
    forwarding: ForwardingConfig
    outbox: OutboxConfig
    emulator: EmulatorConfig
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    proxy: str | bool = field(default=True, repr=False)
    grants: tuple[Grant, ...] = ()
    api_id: str | None = None
    tasks: TasksConfig = field(default_factory=TasksConfig)
    tokens: TokensConfig = field(default_factory=TokensConfig)
    #: The auth backends built for this config, by mode (see
    #: :func:`appsync_events.auth.get_auth_backend`): they live and die with it.
    auth_backends: dict[str, Any] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @classmethod
    def from_mapping(cls, alias: str, mapping: Mapping[str, Any]) -> APIConfig:
        """Validate ``mapping`` (the keys of one ``APPSYNC_EVENTS`` alias) into a config.

        Raises:
            ConfigurationError: naming the alias, the key and what to change.
        """
        if not isinstance(mapping, Mapping):
            raise ConfigurationError(
                f"APPSYNC_EVENTS[{alias!r}] must be a dict, not {type(mapping).__name__}.",
                api=alias,
                check_id="appsync_events.E001",
            )
        return _Parser(alias, mapping).parse()

    @property
    def is_standard_host(self) -> bool:
        """Whether the HTTP host is an AWS-generated ``appsync-api`` host."""
        return _STANDARD_HOST_RE.match(self.http_host) is not None

    def allowed_modes(self, operation: Operation, namespace: str) -> tuple[str, ...]:
        """The auth modes the API allows for ``operation`` on ``namespace``."""
        if operation == "connect":
            return (self.connection_auth_mode,)
        ns = self.namespaces.get(namespace)
        if operation == "publish":
            return ns.publish_auth_modes if ns else self.default_publish_auth_modes
        return ns.subscribe_auth_modes if ns else self.default_subscribe_auth_modes

    def auth_mode_for(self, operation: Operation, namespace: str | None = None) -> str:
        """Pick the auth mode for an operation: the first allowed mode the alias holds.

        Raises:
            ConfigurationError: when the alias holds credentials for none of them.
        """
        if operation == "connect":
            return self.connection_auth_mode
        if namespace is None:
            raise ValueError("a namespace is needed for subscribe and publish")
        allowed = self.allowed_modes(operation, namespace)
        for mode in allowed:
            if mode in self.auth:
                return mode
        raise ConfigurationError(
            f"APPSYNC_EVENTS[{self.alias!r}] holds no credentials for {operation} on "
            f"namespace {namespace!r}: it allows {', '.join(allowed)}; add one of them to "
            f"APPSYNC_EVENTS[{self.alias!r}]['AUTH'].",
            api=self.alias,
            key="AUTH",
        )


# -- validators ----------------------------------------------------------------------
#
# A validator takes a setting's value and returns it (converted when the kind says so),
# or raises _Invalid with what is wrong; the parser puts the setting's path in front.


class _Invalid(Exception):
    """Raised when a validator refuses a value; ``message`` follows the setting's path."""

    def __init__(self, message: str, check_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: Overrides the setting's check id (a wrong shape is E001 whatever the setting).
        self.check_id = check_id


_Validator: TypeAlias = Callable[[Any], Any]

_E001: Final = "appsync_events.E001"
_E003: Final = "appsync_events.E003"
_E004: Final = "appsync_events.E004"
_E005: Final = "appsync_events.E005"
_E006: Final = "appsync_events.E006"
_E009: Final = "appsync_events.E009"
_E012: Final = "appsync_events.E012"
_E013: Final = "appsync_events.E013"
_E016: Final = "appsync_events.E016"
_E017: Final = "appsync_events.E017"


def _number(*, integer: bool = False, minimum: float = 0, zero_ok: bool = False) -> _Validator:
    """Return a validator of finite numbers (integers with ``integer``) above ``minimum``,
    or at least ``minimum`` with ``zero_ok``."""
    ok_type = int if integer else (int, float)
    kind = "an integer" if integer else "a finite number"
    bound = "at least" if zero_ok else "greater than"

    def validate(value: Any) -> Any:
        valid = (
            not isinstance(value, bool)
            and isinstance(value, ok_type)
            # NaN compares False with everything and infinity overflows timers.
            and not (isinstance(value, float) and not math.isfinite(value))
            and (value >= minimum if zero_ok else value > minimum)
        )
        if not valid:
            raise _Invalid(f"must be {kind} {bound} {minimum:g}, not {value!r}.")
        return value

    return validate


def _integer_range(low: int, high: int) -> _Validator:
    """Return a validator of integers from ``low`` to ``high``, both included."""

    def validate(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _Invalid(f"must be an integer from {low} to {high}, not {value!r}.")
        return value

    return validate


def _boolean(value: Any) -> bool:
    """Check ``True`` or ``False`` (not 0, 1 or a string)."""
    if not isinstance(value, bool):
        raise _Invalid(f"must be True or False, not {value!r}.")
    return value


def _string(value: Any) -> str:
    """Check a non-empty string."""
    if not isinstance(value, str) or not value:
        raise _Invalid(f"must be a non-empty string, not {value!r}.")
    return value


def _choice(*options: str) -> _Validator:
    """Return a validator accepting one of ``options``."""
    listed = f"{', '.join(map(repr, options[:-1]))} or {options[-1]!r}"

    def validate(value: Any) -> str:
        if value not in options:
            raise _Invalid(f"must be {listed}, not {value!r}.")
        return str(value)

    return validate


def _matching(pattern: str, message: str) -> _Validator:
    """Return a validator of strings matching ``pattern`` (anchored by the caller);
    ``message`` states the rule."""
    regex = re.compile(pattern)

    def validate(value: Any) -> str:
        if not isinstance(value, str) or not regex.match(value):
            raise _Invalid(message)
        return value

    return validate


def _all(*validators: _Validator) -> _Validator:
    """Return a validator running each of ``validators`` on what the previous returned."""

    def validate(value: Any) -> Any:
        for validator in validators:
            value = validator(value)
        return value

    return validate


def _optional(validator: _Validator) -> _Validator:
    """Return a validator accepting ``None`` or what ``validator`` accepts."""

    def validate(value: Any) -> Any:
        return None if value is None else validator(value)

    return validate


def _mapping(value: Any) -> Mapping[Any, Any]:
    """Check a dict (a wrong shape, E001)."""
    if not isinstance(value, Mapping):
        raise _Invalid(f"must be a dict, not {type(value).__name__}.", _E001)
    return value


def _read_only_mapping(value: Any) -> Mapping[Any, Any]:
    """Check a dict and copy it read-only (config objects are frozen all the way down)."""
    return MappingProxyType(dict(_mapping(value)))


def _string_pairs(message: str) -> _Validator:
    """Return a validator of dicts of non-empty strings to non-empty strings, copied
    read-only; ``message`` states the rule."""

    def validate(value: Any) -> Mapping[str, str]:
        pairs = _mapping(value)
        if not all(isinstance(k, str) and isinstance(v, str) and k and v for k, v in pairs.items()):
            raise _Invalid(message)
        return MappingProxyType(dict(pairs))

    return validate


def _strings(what: str) -> _Validator:
    """Return a validator of lists of non-empty strings (not one string), as a tuple."""

    def validate(value: Any) -> tuple[str, ...]:
        if (
            isinstance(value, str)
            or not isinstance(value, Sequence)
            or not all(isinstance(item, str) and item for item in value)
        ):
            raise _Invalid(f"must be a list of {what}.")
        return tuple(value)

    return validate


def _channels(value: Any) -> tuple[Channel, ...]:
    """Parse a list of channel paths, wildcards allowed."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise _Invalid(f"must be a list of channel paths, not {value!r}.", _E006)
    out = []
    for path in value:
        try:
            out.append(parse_channel(path, allow_wildcard=True))
        except InvalidChannelError as exc:
            raise _Invalid(f"{exc.message}.", _E006) from None
    return tuple(out)


def _auth_modes(value: Any) -> tuple[str, ...]:
    """Check a non-empty list of AppSync auth mode names."""
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise _Invalid(f"must be a non-empty list of auth modes, not {value!r}.", _E004)
    for mode in value:
        if mode not in AUTH_MODES:
            raise _Invalid(
                f"unknown auth mode {mode!r}; use one of {', '.join(AUTH_MODES)}.", _E004
            )
    return tuple(value)


def _redis_url(value: Any) -> str:
    """Check a redis://, rediss:// or unix:// URL."""
    if not isinstance(value, str) or not value.startswith(("redis://", "rediss://", "unix://")):
        raise _Invalid(f"must be a redis:// URL, not {_shown(value)!r}.")
    return value


_PROXY_SCHEMES: Final = ("http", "https", "socks5", "socks5h", "socks4")


def _proxy(value: Any) -> str | bool:
    """Read ``PROXY``: ``True`` (the environment's proxy), ``False`` or ``None`` (no proxy,
    stored as ``False``) or a proxy URL."""
    if value is None or isinstance(value, bool):
        return bool(value)
    schemes = ", ".join(f"{scheme}://" for scheme in _PROXY_SCHEMES)
    if not isinstance(value, str) or not value.strip():
        raise _Invalid(
            "must be True (use the HTTPS_PROXY/HTTP_PROXY/ALL_PROXY/NO_PROXY environment "
            f"variables), False (no proxy) or a proxy URL ({schemes}), not {value!r}."
        )
    text = value.strip()
    parts = urlsplit(text)
    if parts.scheme not in _PROXY_SCHEMES or not parts.hostname:
        raise _Invalid(f"{_shown(value)!r} is not a proxy URL; start it with one of {schemes}.")
    if parts.query or parts.fragment or parts.path not in ("", "/"):
        raise _Invalid(f"{_shown(value)!r} must not carry a path, query or fragment.")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise _Invalid(f"{_shown(value)!r} has an invalid port.") from None
    return text


def _networks(value: Any) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Parse a list of IP addresses and networks (``"10.0.0.0/8"``)."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise _Invalid(
            f"must be a list of IP addresses or networks such as ['10.0.0.0/8'], not {value!r}.",
            _E017,
        )
    out = []
    for item in value:
        try:
            out.append(ipaddress.ip_network(str(item), strict=False))
        except ValueError:
            raise _Invalid(
                f"{item!r} is not an IP address or network (such as '10.0.0.0/8').", _E017
            ) from None
    return tuple(out)


def _permission(value: Any) -> str | None:
    """Check ``None`` or a permission name ``"app_label.codename"``."""
    if value is None:
        return None
    if not isinstance(value, str) or value.count(".") != 1 or not all(value.split(".")):
        raise _Invalid(
            f"must be a permission name such as 'appsync_events.view_outboxevent', or None "
            f"(superusers only), not {value!r}.",
            _E017,
        )
    return value


_POSITIVE: Final = _number()
_NON_NEGATIVE: Final = _number(zero_ok=True)
_POSITIVE_INTEGER: Final = _number(integer=True)


def _grants(value: Any) -> tuple[Grant, ...]:
    if isinstance(value, str | Mapping) or not isinstance(value, Sequence):
        raise _Invalid(
            "must be a list of grants such as [{'WHO': 'authenticated', 'SUBSCRIBE': "
            f"['/chat/*'], 'PUBLISH': []}}], not {type(value).__name__}."
        )
    out = []
    for index, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise _Invalid(f"item {index} must be a dict, not {type(item).__name__}.")
        unknown = sorted(str(k) for k in item if k not in ("WHO", "SUBSCRIBE", "PUBLISH"))
        if unknown:
            raise _Invalid(
                f"item {index} has unknown key(s) {', '.join(unknown)}; "
                "valid keys are PUBLISH, SUBSCRIBE, WHO."
            )
        if "SUBSCRIBE" not in item and "PUBLISH" not in item:
            raise _Invalid(f"item {index} grants nothing: give it SUBSCRIBE or PUBLISH patterns.")
        try:
            who = parse_who(item.get("WHO", "authenticated"))
            lists = {}
            for key in ("SUBSCRIBE", "PUBLISH"):
                patterns = item.get(key, ())
                if isinstance(patterns, str) or not isinstance(patterns, Sequence):
                    raise ValueError(f"{key} must be a list of channel patterns")
                lists[key] = tuple(parse_grant_pattern(p) for p in patterns)
        except ValueError as exc:
            raise _Invalid(f"item {index}: {exc}.") from None
        out.append(Grant(who, lists["SUBSCRIBE"], lists["PUBLISH"]))
    return tuple(out)


def _signing_keys(value: Any) -> Mapping[str, str]:
    """Check ``TOKENS['SIGNING_KEYS']`` with the authorizer's own rules; copy it read-only."""
    try:
        check_keys(value)
    except ValueError as exc:
        raise _Invalid(f"{exc}.") from None
    return MappingProxyType(dict(value))


# -- the settings table --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Setting:
    """One setting: where it is, the field it fills, how it is checked.

    Attributes:
        path: the keys leading to it: ``("LISTENER", "QUEUE_SIZE")`` inside a section,
            ``("PROXY",)`` for a key of the alias itself.
        target: the config dataclass it fills.
        field: the dataclass field it fills.
        validate: checks the value and returns it (converted when the kind says so).
        check_id: the system check reporting a bad value (a validator may override it).
        convert: applied to the validated value, for this setting alone.
    """

    path: tuple[str, ...]
    target: type[Any]
    field: str
    validate: _Validator
    check_id: str = _E009
    convert: Callable[[Any], Any] | None = None


#: Every setting validated by one rule of its own. Adding one: a row here and the field
#: on its dataclass; the valid keys listed by "unknown key" errors follow from the rows.
#: Rules across settings (and the endpoints, AUTH and NAMESPACES) are in _Parser.
_SETTINGS: Final[tuple[_Setting, ...]] = (
    # -- keys of the alias itself
    _Setting(("SUBSCRIPTIONS",), ListenerConfig, "subscriptions", _channels, _E006),
    _Setting(("PROXY",), APIConfig, "proxy", _proxy),
    _Setting(("GRANTS",), APIConfig, "grants", _grants, _E012),
    _Setting(
        ("API_ID",),
        APIConfig,
        "api_id",
        # None: not set (so ``os.environ.get(...)`` can fill it).
        _optional(
            _matching(
                r"^[A-Za-z0-9]{1,64}\Z",
                "must be the Event API's id: letters and digits, as `aws appsync list-apis` "
                "shows it under apiId.",
            )
        ),
    ),
    # -- TIMEOUTS
    _Setting(("TIMEOUTS", "CONNECT"), Timeouts, "connect", _POSITIVE),
    _Setting(("TIMEOUTS", "HANDSHAKE"), Timeouts, "handshake", _POSITIVE),
    _Setting(("TIMEOUTS", "OPERATION"), Timeouts, "operation", _POSITIVE),
    _Setting(("TIMEOUTS", "HTTP"), Timeouts, "http", _POSITIVE),
    # -- PUBLISH
    _Setting(
        ("PUBLISH", "BACKEND"),
        PublishConfig,
        "backend",
        _string,
        convert=lambda name: PUBLISH_BACKENDS.get(name, name),
    ),
    _Setting(("PUBLISH", "OPTIONS"), PublishConfig, "options", _read_only_mapping),
    _Setting(("PUBLISH", "ON_COMMIT"), PublishConfig, "on_commit", _boolean),
    _Setting(("PUBLISH", "DURABLE"), PublishConfig, "durable", _boolean),
    _Setting(("PUBLISH", "ENCODER"), PublishConfig, "encoder", _string),
    # -- LISTENER
    _Setting(("LISTENER", "QUEUE_SIZE"), ListenerConfig, "queue_size", _POSITIVE_INTEGER),
    _Setting(
        ("LISTENER", "OVERFLOW"),
        ListenerConfig,
        "overflow",
        _choice("block", "drop_newest", "drop_oldest"),
    ),
    _Setting(("LISTENER", "BACKOFF_INITIAL"), ListenerConfig, "backoff_initial", _POSITIVE),
    _Setting(("LISTENER", "BACKOFF_MAX"), ListenerConfig, "backoff_max", _POSITIVE),
    _Setting(
        ("LISTENER", "BACKOFF_FACTOR"),
        ListenerConfig,
        "backoff_factor",
        _number(minimum=1, zero_ok=True),
    ),
    _Setting(("LISTENER", "STABLE_AFTER"), ListenerConfig, "stable_after", _POSITIVE),
    _Setting(("LISTENER", "ROTATE_AFTER"), ListenerConfig, "rotate_after", _POSITIVE),
    _Setting(("LISTENER", "STATS_INTERVAL"), ListenerConfig, "stats_interval", _POSITIVE),
    _Setting(("LISTENER", "SHUTDOWN_TIMEOUT"), ListenerConfig, "shutdown_timeout", _POSITIVE),
    _Setting(
        ("LISTENER", "SUBSCRIBE_RETRIES"),
        ListenerConfig,
        "subscribe_retries",
        _number(integer=True, zero_ok=True),
    ),
    _Setting(("LISTENER", "LEASE"), ListenerConfig, "lease", _choice("auto", "postgres", "redis")),
    _Setting(("LISTENER", "LEASE_REDIS_URL"), ListenerConfig, "lease_redis_url", _redis_url),
    _Setting(("LISTENER", "LEASE_TTL"), ListenerConfig, "lease_ttl", _POSITIVE),
    _Setting(("LISTENER", "LEASE_POLL_INTERVAL"), ListenerConfig, "lease_poll_interval", _POSITIVE),
    _Setting(
        ("LISTENER", "MAX_MESSAGE_BYTES"),
        ListenerConfig,
        "max_message_bytes",
        # The floor leaves room for every protocol frame; lower the limit only when the
        # API's events are known to be small. ListenerConfig.max_message_bytes explains
        # the default.
        _number(integer=True, minimum=65_536, zero_ok=True),
    ),
    _Setting(
        ("LISTENER", "HTTP_PORT"), ListenerConfig, "http_port", _optional(_integer_range(0, 65535))
    ),
    _Setting(("LISTENER", "HTTP_HOST"), ListenerConfig, "http_host", _string),
    # -- METRICS
    _Setting(("METRICS", "ENABLED"), MetricsConfig, "enabled", _boolean),
    _Setting(
        ("METRICS", "SUBSCRIPTION_LABELS"),
        MetricsConfig,
        "subscription_labels",
        _optional(_channels),
        _E006,
    ),
    _Setting(("METRICS", "MAX_LABEL_VALUES"), MetricsConfig, "max_label_values", _POSITIVE_INTEGER),
    _Setting(("METRICS", "ALLOWED_IPS"), MetricsConfig, "allowed_ips", _networks, _E017),
    _Setting(("METRICS", "PERMISSION"), MetricsConfig, "permission", _permission, _E017),
    # -- FORWARDING
    _Setting(("FORWARDING", "ENABLED"), ForwardingConfig, "enabled", _boolean),
    _Setting(("FORWARDING", "CHANNEL_LAYER"), ForwardingConfig, "channel_layer", _string),
    _Setting(
        ("FORWARDING", "SUBSCRIPTIONS"),
        ForwardingConfig,
        "subscriptions",
        _optional(_channels),
        _E006,
    ),
    _Setting(
        ("FORWARDING", "GROUP_PREFIX"),
        ForwardingConfig,
        "group_prefix",
        _matching(
            r"^[A-Za-z0-9._-]{1,40}\Z",
            "must be 1-40 characters of letters, digits, '.', '_' and '-'.",
        ),
    ),
    _Setting(
        ("FORWARDING", "MESSAGE_TYPE"),
        ForwardingConfig,
        "message_type",
        # Channels' own grammar for a message type.
        _all(
            _string,
            _matching(
                r"^[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*\Z",
                "must be a Channels message type such as 'appsync.event' (letters, digits, "
                "'_', dot-separated); consumers handle it in a method named like it with "
                "'.' replaced by '_'.",
            ),
        ),
    ),
    _Setting(
        ("FORWARDING", "CONTROL_CHANNEL"),
        ForwardingConfig,
        "control_channel",
        # Channels' own grammar for a (non process-local) channel name.
        _all(
            _string,
            _matching(
                r"^[A-Za-z0-9._-]{1,99}\Z",
                "must be a Channels channel name: 1-99 letters, digits, '.', '_' and '-'.",
            ),
        ),
    ),
    _Setting(("FORWARDING", "UNFOLLOW_GRACE"), ForwardingConfig, "unfollow_grace", _NON_NEGATIVE),
    _Setting(("FORWARDING", "IN_PROCESS"), ForwardingConfig, "in_process", _boolean),
    _Setting(("FORWARDING", "FOLLOW_LEASE"), ForwardingConfig, "follow_lease", _POSITIVE),
    _Setting(("FORWARDING", "FOLLOW_TIMEOUT"), ForwardingConfig, "follow_timeout", _POSITIVE),
    _Setting(("FORWARDING", "MAX_FOLLOWS"), ForwardingConfig, "max_follows", _POSITIVE_INTEGER),
    _Setting(
        ("FORWARDING", "MAX_FOLLOWS_PER_CLIENT"),
        ForwardingConfig,
        "max_follows_per_client",
        _POSITIVE_INTEGER,
    ),
    # -- OUTBOX
    _Setting(("OUTBOX", "BATCH_SIZE"), OutboxConfig, "batch_size", _POSITIVE_INTEGER),
    _Setting(("OUTBOX", "MAX_ATTEMPTS"), OutboxConfig, "max_attempts", _POSITIVE_INTEGER),
    _Setting(("OUTBOX", "BACKOFF_INITIAL"), OutboxConfig, "backoff_initial", _POSITIVE),
    _Setting(("OUTBOX", "BACKOFF_MAX"), OutboxConfig, "backoff_max", _POSITIVE),
    _Setting(("OUTBOX", "RETENTION"), OutboxConfig, "retention", _POSITIVE),
    _Setting(("OUTBOX", "POLL_INTERVAL"), OutboxConfig, "poll_interval", _POSITIVE),
    _Setting(("OUTBOX", "LEASE"), OutboxConfig, "lease", _POSITIVE),
    _Setting(
        ("OUTBOX", "HTTP_PORT"), OutboxConfig, "http_port", _optional(_integer_range(0, 65535))
    ),
    _Setting(("OUTBOX", "HTTP_HOST"), OutboxConfig, "http_host", _string),
    # -- TASKS
    _Setting(("TASKS", "ENQUEUE"), TasksConfig, "enqueue", _boolean),
    _Setting(("TASKS", "BACKEND"), TasksConfig, "backend", _string),
    _Setting(("TASKS", "QUEUE_NAME"), TasksConfig, "queue_name", _string),
    # -- EMULATOR
    _Setting(("EMULATOR", "HOST"), EmulatorConfig, "host", _string),
    _Setting(("EMULATOR", "PORT"), EmulatorConfig, "port", _integer_range(0, 65535)),
    _Setting(("EMULATOR", "API_KEYS"), EmulatorConfig, "api_keys", _strings("API key strings")),
    _Setting(
        ("EMULATOR", "IAM_CREDENTIALS"),
        EmulatorConfig,
        "iam_credentials",
        _string_pairs("must map access key ids to secret keys (strings)."),
    ),
    _Setting(("EMULATOR", "KA_INTERVAL"), EmulatorConfig, "ka_interval", _POSITIVE),
    _Setting(
        ("EMULATOR", "CONNECTION_TIMEOUT_MS"),
        EmulatorConfig,
        "connection_timeout_ms",
        _POSITIVE_INTEGER,
    ),
    _Setting(("EMULATOR", "MAX_LIFETIME"), EmulatorConfig, "max_lifetime", _POSITIVE),
    _Setting(("EMULATOR", "OPTIONS"), EmulatorConfig, "options", _read_only_mapping),
    _Setting(
        ("EMULATOR", "LAMBDA_AUTHORIZER"),
        EmulatorConfig,
        "lambda_authorizer",
        _matching(
            r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+\Z",
            "must be the dotted path of a handler(event, context), e.g. "
            "'appsync_events.lambda_authorizer.handler'.",
        ),
    ),
    # -- TOKENS
    _Setting(("TOKENS", "SIGNING_KEYS"), TokensConfig, "signing_keys", _signing_keys, _E016),
    _Setting(("TOKENS", "CURRENT_KEY_ID"), TokensConfig, "current_key_id", _string, _E016),
    _Setting(("TOKENS", "TTL"), TokensConfig, "ttl", _POSITIVE_INTEGER, _E016),
    _Setting(("TOKENS", "MAX_TTL"), TokensConfig, "max_ttl", _POSITIVE_INTEGER, _E016),
)


def _index(settings: Sequence[_Setting]) -> dict[tuple[str, ...], dict[str, _Setting]]:
    """Group the rows by the keys enclosing them (``()`` for the alias's own keys)."""
    index: dict[tuple[str, ...], dict[str, _Setting]] = {}
    for row in settings:
        index.setdefault(row.path[:-1], {})[row.path[-1]] = row
    return index


_ROWS: Final = _index(_SETTINGS)
#: The section each config dataclass is read from.
_SECTIONS: Final = MappingProxyType(
    {row.target: row.path[0] for row in _SETTINGS if len(row.path) == 2}
)
#: The alias's own keys: those the parser reads itself, and the table's.
_TOP_KEYS: Final = frozenset(
    {
        "HTTP_URL",
        "REALTIME_URL",
        "REGION",
        "AUTH",
        "CONNECTION_AUTH_MODE",
        "NAMESPACES",
        "DEFAULT_PUBLISH_AUTH_MODES",
        "DEFAULT_SUBSCRIBE_AUTH_MODES",
    }
    | {row.path[0] for row in _SETTINGS}
)


# -- parsing -------------------------------------------------------------------------


class _Parser:
    """Reads one alias; every error names the alias, the key and the check id."""

    def __init__(self, alias: str, raw: Mapping[str, Any]) -> None:
        self.alias = alias
        self.raw = raw

    def error(self, path: Sequence[Any], message: str, check_id: str = _E001) -> ConfigurationError:
        """Return the error for the setting at ``path``, reading as the literal setting.

        The message starts ``APPSYNC_EVENTS['default']['TIMEOUTS']['CONNECT']: ``; the
        error's ``key`` is ``TIMEOUTS['CONNECT']``.
        """
        first, *rest = path
        return ConfigurationError(
            f"APPSYNC_EVENTS[{self.alias!r}]{''.join(f'[{part!r}]' for part in path)}: {message}",
            api=self.alias,
            key=str(first) + "".join(f"[{part!r}]" for part in rest),
            check_id=check_id,
        )

    def check(
        self, path: Sequence[Any], validate: _Validator, value: Any, check_id: str = _E009
    ) -> Any:
        """Return ``validate(value)``, or raise its complaint as the error of ``path``."""
        try:
            return validate(value)
        except _Invalid as exc:
            raise self.error(path, exc.message, exc.check_id or check_id) from None

    def keys(self, path: Sequence[Any], value: Mapping[str, Any], allowed: Collection[str]) -> None:
        """Refuse a key of ``value`` (the dict at ``path``) that is not in ``allowed``."""
        for name in value:
            if name not in allowed:
                text = f"unknown key {name!r}; valid keys are {', '.join(sorted(allowed))}."
                if not path:  # the alias's own keys: name the alias and the key alone
                    raise ConfigurationError(
                        f"APPSYNC_EVENTS[{self.alias!r}]: {text}", api=self.alias, key=str(name)
                    )
                raise self.error(path, text)

    def fields(self, target: type[Any]) -> dict[str, Any]:
        """Validate the settings the table maps onto ``target``; return them by field.

        Reads the alias's own keys that fill ``target``, then its section (a dict whose
        unknown keys are refused). Absent settings are left out: the dataclass defaults
        apply.
        """
        values = self.read((), self.raw, target)
        section = _SECTIONS.get(target)
        if section is not None:
            raw = self.check((section,), _mapping, self.raw.get(section, {}))
            self.keys((section,), raw, _ROWS[(section,)])
            values.update(self.read((section,), raw, target))
        return values

    def read(
        self, where: tuple[str, ...], raw: Mapping[str, Any], target: type[Any]
    ) -> dict[str, Any]:
        """Validate the rows under ``where`` that fill ``target`` and are present in ``raw``."""
        values: dict[str, Any] = {}
        for key, row in _ROWS.get(where, {}).items():
            if row.target is target and key in raw:
                value = self.check(row.path, row.validate, raw[key], row.check_id)
                values[row.field] = row.convert(value) if row.convert else value
        return values

    # -- endpoints ---------------------------------------------------------------

    def endpoints(self) -> tuple[str, str, str, str | None]:
        """Return the HTTP URL, the real-time URL, the HTTP host and the region (if known)."""
        raw_url = self.raw.get("HTTP_URL")
        if raw_url is None:
            raise self.error(
                ("HTTP_URL",),
                "is missing; set it to your Event API's HTTP endpoint, e.g. "
                "'https://abc.appsync-api.eu-west-1.amazonaws.com/event', or "
                "'http://127.0.0.1:8765/event' for the emulator.",
                "appsync_events.E002",
            )
        http_url = self.http_url(raw_url)
        parts = urlsplit(http_url)
        host = parts.netloc
        hostname = parts.hostname or ""
        match = _STANDARD_HOST_RE.match(hostname)
        raw_rt = self.raw.get("REALTIME_URL")
        if raw_rt is not None:
            realtime_url = self.realtime_url(raw_rt)
        elif match:
            rt_host = host.replace(".appsync-api.", ".appsync-realtime-api.", 1)
            realtime_url = f"wss://{rt_host}{parts.path}/realtime"
        else:
            scheme = "wss" if parts.scheme == "https" else "ws"
            realtime_url = f"{scheme}://{host}{parts.path}/realtime"
        region = self.raw.get("REGION")
        if region is not None:
            if not isinstance(region, str) or not _REGION_RE.match(region):
                raise self.error(
                    ("REGION",), f"{region!r} is not an AWS region name like 'eu-west-1'.", _E003
                )
            if match and region != match.group("region"):
                # A signature for the wrong region is refused by the service.
                raise self.error(
                    ("REGION",),
                    f"is {region!r} but HTTP_URL's host {hostname!r} is in "
                    f"{match.group('region')!r}; remove REGION or correct it.",
                    _E003,
                )
        elif match:
            region = match.group("region")
        return http_url, realtime_url, host, region

    def http_url(self, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.error(
                ("HTTP_URL",),
                f"must be a URL or domain string, not {value!r}.",
                "appsync_events.E002",
            )
        text = value.strip()
        if "://" not in text:
            text = "https://" + text
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise self.error(
                ("HTTP_URL",),
                f"{_shown(value)!r} is not an http(s) URL or a domain name.",
                "appsync_events.E002",
            )
        self._check_url_extras("HTTP_URL", value, parts)
        if ".appsync-realtime-api." in parts.hostname and _STANDARD_HOST_RE.match(parts.hostname):
            raise self.error(
                ("HTTP_URL",),
                f"{_shown(value)!r} is the real-time (websocket) host; HTTP_URL takes the HTTP "
                "endpoint, whose host has 'appsync-api' in place of 'appsync-realtime-api'.",
                "appsync_events.E002",
            )
        path = parts.path.rstrip("/")
        if path == "":
            path = "/event"
        elif not path.endswith("/event"):
            raise self.error(
                ("HTTP_URL",),
                f"{_shown(value)!r} must end in '/event' (the Event API's HTTP path), "
                "or have no path.",
                "appsync_events.E002",
            )
        # Host names are case-insensitive; lowercase them so derivation and signing agree.
        return f"{parts.scheme}://{parts.netloc.lower()}{path}"

    def _check_url_extras(self, key: str, value: str, parts: SplitResult) -> None:
        """Refuse a query, fragment, user info or bad port in the URL setting ``key``."""
        if parts.query or parts.fragment or parts.username or parts.password:
            raise self.error(
                (key,),
                f"{_shown(value)!r} must not carry a query, fragment or user info.",
                "appsync_events.E002",
            )
        try:
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            raise self.error(
                (key,), f"{_shown(value)!r} has an invalid port.", "appsync_events.E002"
            ) from None

    def realtime_url(self, value: Any) -> str:
        if not isinstance(value, str):
            raise self.error(
                ("REALTIME_URL",),
                f"must be a URL string, not {value!r}.",
                "appsync_events.E002",
            )
        parts = urlsplit(value.strip())
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise self.error(
                ("REALTIME_URL",),
                f"{_shown(value)!r} must be a ws:// or wss:// URL, e.g. "
                "'wss://abc.appsync-realtime-api.eu-west-1.amazonaws.com/event/realtime'.",
                "appsync_events.E002",
            )
        self._check_url_extras("REALTIME_URL", value, parts)
        return f"{parts.scheme}://{parts.netloc.lower()}{parts.path.rstrip('/')}"

    def signing_region(
        self, http_url: str, region: str | None, auth: Mapping[str, AuthModeConfig]
    ) -> None:
        """Demand a region when AWS_IAM signs and neither REGION nor the host gives one.

        API-key and token modes name no region, so they work on any host without one.
        """
        iam = auth.get("AWS_IAM")
        if region is not None or iam is None or iam.options.get("region") is not None:
            return
        raise self.error(
            ("REGION",),
            f"is missing; AUTH holds AWS_IAM, whose signatures name a region, and "
            f"{urlsplit(http_url).hostname!r} is not a standard AppSync host, so the region "
            "cannot be read from it. Add 'REGION': 'us-east-1' (your API's region), or the "
            "AWS_IAM option 'region'.",
            _E003,
        )

    # -- auth --------------------------------------------------------------------

    def auth(self) -> dict[str, AuthModeConfig]:
        raw = self.check(("AUTH",), _mapping, self.raw.get("AUTH", {}))
        out: dict[str, AuthModeConfig] = {}
        for mode, value in raw.items():
            if mode not in AUTH_MODES:
                raise self.error(
                    ("AUTH",),
                    f"unknown auth mode {mode!r}; use one of {', '.join(AUTH_MODES)}.",
                    _E004,
                )
            out[mode] = self.auth_mode(mode, value)
        return out

    def auth_mode(self, mode: str, value: Any) -> AuthModeConfig:
        path = ("AUTH", mode)
        if isinstance(value, str):
            if mode == "API_KEY":
                return AuthModeConfig(mode, None, MappingProxyType({"api_key": value}))
            if mode in _TOKEN_MODES:
                return AuthModeConfig(mode, None, MappingProxyType({"token": value}))
            raise self.error(
                path,
                "must be a dict of options (e.g. {} for the default AWS credential chain).",
                "appsync_events.E008",
            )
        if value is True and mode == "AWS_IAM":
            return AuthModeConfig(mode, None, MappingProxyType({}))
        value = self.check(path, _mapping, value)
        backend = value.get("BACKEND")
        if backend is not None and not isinstance(backend, str):
            raise self.error(
                path,
                f"BACKEND must be a dotted path string, not {backend!r}.",
                "appsync_events.E008",
            )
        if "BACKEND" in value or "OPTIONS" in value:
            self.keys(path, value, ("BACKEND", "OPTIONS"))
            options = self.check((*path, "OPTIONS"), _mapping, value.get("OPTIONS", {}))
        else:
            # Shorthand: the options themselves, with lowercase or uppercase names.
            options = value
        for name in options:
            if not isinstance(name, str):
                raise self.error(
                    path,
                    f"option names must be strings, not {name!r}.",
                    "appsync_events.E008",
                )
        return AuthModeConfig(
            mode, backend, MappingProxyType({k.lower(): v for k, v in options.items()})
        )

    def connection_auth_mode(self, auth: Mapping[str, AuthModeConfig]) -> str:
        conn_mode = self.raw.get("CONNECTION_AUTH_MODE")
        if conn_mode is None:
            if not auth:
                raise self.error(
                    ("AUTH",),
                    "holds no credentials; add at least one mode, "
                    "e.g. 'AUTH': {'API_KEY': 'da2-...'}.",
                    _E005,
                )
            return next(iter(auth))
        if conn_mode not in AUTH_MODES:
            raise self.error(
                ("CONNECTION_AUTH_MODE",),
                f"unknown auth mode {conn_mode!r}; use one of {', '.join(AUTH_MODES)}.",
                _E004,
            )
        if conn_mode not in auth:
            raise self.error(
                ("CONNECTION_AUTH_MODE",),
                f"is {conn_mode!r} but AUTH holds no credentials for it; add them to AUTH.",
                _E005,
            )
        return str(conn_mode)

    # -- namespaces --------------------------------------------------------------

    def namespaces(
        self,
        default_pub: tuple[str, ...],
        default_sub: tuple[str, ...],
        auth: Mapping[str, AuthModeConfig],
    ) -> dict[str, NamespaceConfig]:
        raw = self.raw.get("NAMESPACES", {"default": {}})
        if isinstance(raw, Sequence) and not isinstance(raw, str):
            raw = {name: {} for name in raw}
        raw = self.check(("NAMESPACES",), _mapping, raw)
        out: dict[str, NamespaceConfig] = {}
        for name, value in raw.items():
            if not isinstance(name, str) or not _NAMESPACE_RE.match(name):
                raise self.error(
                    ("NAMESPACES",),
                    f"{name!r} is not a valid namespace name (1-50 letters, digits and '-', "
                    "starting and ending with a letter or digit).",
                    "appsync_events.E007",
                )
            path = ("NAMESPACES", name)
            value = self.check(path, _mapping, value or {})
            self.keys(path, value, ("PUBLISH_AUTH_MODES", "SUBSCRIBE_AUTH_MODES", "HANDLERS"))
            pub = self.check(
                (*path, "PUBLISH_AUTH_MODES"),
                _auth_modes,
                value.get("PUBLISH_AUTH_MODES", default_pub),
            )
            sub = self.check(
                (*path, "SUBSCRIBE_AUTH_MODES"),
                _auth_modes,
                value.get("SUBSCRIBE_AUTH_MODES", default_sub),
            )
            for operation, modes in (("publish", pub), ("subscribe", sub)):
                if not any(m in auth for m in modes):
                    raise self.error(
                        path,
                        f"allows {operation} with {', '.join(modes)} "
                        "but AUTH holds credentials for "
                        f"none of them (it holds {', '.join(auth)}); add one to AUTH.",
                        _E005,
                    )
            handlers = (
                self.handlers((*path, "HANDLERS"), value["HANDLERS"])
                if "HANDLERS" in value
                else None
            )
            out[name] = NamespaceConfig(name, pub, sub, handlers)
        return out

    def handlers(self, path: tuple[str, ...], value: Any) -> NamespaceHandlersConfig:
        """Read a namespace's ``HANDLERS``: its code file and data source integrations."""
        value = self.check(path, _mapping, value)
        self.keys(path, value, ("CODE_FILE", "ON_PUBLISH", "ON_SUBSCRIBE"))
        if not value:
            raise self.error(
                path,
                "declares nothing; give it CODE_FILE, ON_PUBLISH or ON_SUBSCRIBE, or leave "
                "HANDLERS out to keep the namespace's handlers as they are on AWS.",
                _E013,
            )
        code_file = value.get("CODE_FILE")
        if code_file is not None:
            text = os.fspath(code_file) if isinstance(code_file, os.PathLike) else code_file
            if not isinstance(text, str) or not os.path.isabs(text):
                raise self.error(
                    (*path, "CODE_FILE"),
                    f"must be the absolute path of the APPSYNC_JS code file (e.g. BASE_DIR / "
                    f"'appsync' / 'chat.js'), not {code_file!r}.",
                    _E013,
                )
            code_file = text
        integrations: dict[str, HandlerIntegrationConfig | None] = {}
        for key in ("ON_PUBLISH", "ON_SUBSCRIBE"):
            raw = value.get(key)
            integration = None if raw is None else self.integration((*path, key), raw)
            if integration is not None and integration.behavior == "CODE" and code_file is None:
                raise self.error(
                    (*path, key),
                    "has BEHAVIOR 'CODE', which runs the namespace's code handler: add "
                    "CODE_FILE, or use BEHAVIOR 'DIRECT'.",
                    _E013,
                )
            integrations[key] = integration
        return NamespaceHandlersConfig(
            code_file, integrations["ON_PUBLISH"], integrations["ON_SUBSCRIBE"]
        )

    def integration(self, path: tuple[str, ...], value: Any) -> HandlerIntegrationConfig:
        """Read one handler's data source integration (``ON_PUBLISH`` / ``ON_SUBSCRIBE``)."""
        value = self.check(path, _mapping, value)
        self.keys(path, value, ("BEHAVIOR", "DATA_SOURCE", "INVOKE_TYPE"))
        behavior = self.check(
            (*path, "BEHAVIOR"), _choice("CODE", "DIRECT"), value.get("BEHAVIOR"), _E013
        )
        data_source = self.check(
            (*path, "DATA_SOURCE"),
            _matching(
                r"^[_A-Za-z][_0-9A-Za-z]*\Z",
                "must name a data source of the API (letters, digits and '_', not starting "
                f"with a digit), not {value.get('DATA_SOURCE')!r}.",
            ),
            value.get("DATA_SOURCE"),
            _E013,
        )
        invoke_type = value.get("INVOKE_TYPE")
        if invoke_type is not None:
            invoke_type = self.check(
                (*path, "INVOKE_TYPE"), _choice("REQUEST_RESPONSE", "EVENT"), invoke_type, _E013
            )
            if behavior != "DIRECT":
                raise self.error(
                    (*path, "INVOKE_TYPE"),
                    "only applies to BEHAVIOR 'DIRECT' (a Lambda data source invoked without "
                    "code); remove it.",
                    _E013,
                )
        return HandlerIntegrationConfig(behavior, data_source, invoke_type)

    # -- rules across settings ---------------------------------------------------

    def outbox_lease(self, outbox: OutboxConfig, timeouts: Timeouts) -> None:
        if outbox.lease <= timeouts.http + 1:
            # A drainer sends only requests that can time out within its lease: with less
            # room than one request it would release every batch unsent, for ever.
            raise self.error(
                ("OUTBOX", "LEASE"),
                f"is {outbox.lease:g} s, too short for even one HTTP request "
                f"(TIMEOUTS['HTTP'] = {timeouts.http:g} s, plus 1 s); make it several times "
                "longer (the default is 300).",
                _E009,
            )

    def tokens(self) -> TokensConfig:
        """Read TOKENS: the current key must be one of the keys, TTL at most MAX_TTL."""
        values = self.fields(TokensConfig)
        keys = values.get("signing_keys", {})
        current = values.get("current_key_id")
        if current is None and len(keys) > 1:
            raise self.error(
                ("TOKENS", "CURRENT_KEY_ID"),
                f"is missing; SIGNING_KEYS holds several keys ({', '.join(map(repr, keys))}): "
                "name the one new tokens are signed with.",
                _E016,
            )
        if current is not None and current not in keys:
            raise self.error(
                ("TOKENS", "CURRENT_KEY_ID"),
                f"is {current!r}, which SIGNING_KEYS does not hold "
                f"(it holds {', '.join(map(repr, keys)) or 'no key'}).",
                _E016,
            )
        if current is None and keys:
            values["current_key_id"] = next(iter(keys))
        tokens = TokensConfig(**values)
        if tokens.ttl > tokens.max_ttl:
            raise self.error(
                ("TOKENS", "TTL"),
                f"is {tokens.ttl} s, longer than MAX_TTL ({tokens.max_ttl} s); lower it or "
                "raise MAX_TTL.",
                _E016,
            )
        return tokens

    @staticmethod
    def emulator_port(http_url: str) -> int:
        """The emulator's port when EMULATOR has no PORT: a loopback HTTP_URL's port, so
        the project reaches the emulator it starts; else :data:`DEFAULT_EMULATOR_PORT`."""
        parts = urlsplit(http_url)
        if parts.hostname and is_loopback_host(parts.hostname) and parts.port:
            return parts.port
        return DEFAULT_EMULATOR_PORT

    @staticmethod
    def emulator_api_keys(auth: Mapping[str, AuthModeConfig]) -> tuple[str, ...]:
        """The emulator's keys when EMULATOR has no API_KEYS: the alias's own API key."""
        api_key = auth.get("API_KEY")
        key = api_key.options.get("api_key") if api_key else None  # however AUTH spells it
        return (key,) if isinstance(key, str) and key else ()

    # -- the whole alias ---------------------------------------------------------

    def parse(self) -> APIConfig:
        self.keys((), self.raw, _TOP_KEYS)
        http_url, realtime_url, host, region = self.endpoints()
        auth = self.auth()
        self.signing_region(http_url, region, auth)
        conn_mode = self.connection_auth_mode(auth)
        held = tuple(auth)
        default_pub = self.check(
            ("DEFAULT_PUBLISH_AUTH_MODES",),
            _auth_modes,
            self.raw.get("DEFAULT_PUBLISH_AUTH_MODES", held),
        )
        default_sub = self.check(
            ("DEFAULT_SUBSCRIBE_AUTH_MODES",),
            _auth_modes,
            self.raw.get("DEFAULT_SUBSCRIBE_AUTH_MODES", held),
        )
        namespaces = self.namespaces(default_pub, default_sub, auth)
        timeouts = Timeouts(**self.fields(Timeouts))
        publish = PublishConfig(**self.fields(PublishConfig))
        listener = ListenerConfig(**self.fields(ListenerConfig))
        forwarding = ForwardingConfig(**self.fields(ForwardingConfig))
        outbox = OutboxConfig(**self.fields(OutboxConfig))
        self.outbox_lease(outbox, timeouts)
        metrics = MetricsConfig(**self.fields(MetricsConfig))
        emulator_fields = self.fields(EmulatorConfig)
        emulator_fields.setdefault("api_keys", self.emulator_api_keys(auth))
        emulator_fields.setdefault("port", self.emulator_port(http_url))
        return APIConfig(
            alias=self.alias,
            http_url=http_url,
            realtime_url=realtime_url,
            http_host=host,
            region=region,
            auth=MappingProxyType(auth),
            connection_auth_mode=conn_mode,
            namespaces=MappingProxyType(namespaces),
            default_publish_auth_modes=default_pub,
            default_subscribe_auth_modes=default_sub,
            timeouts=timeouts,
            publish=publish,
            listener=listener,
            forwarding=forwarding,
            outbox=outbox,
            emulator=EmulatorConfig(**emulator_fields),
            tasks=TasksConfig(**self.fields(TasksConfig)),
            tokens=self.tokens(),
            metrics=metrics,
            **self.fields(APIConfig),
        )


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a hostname or IP, no port) names this machine."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
