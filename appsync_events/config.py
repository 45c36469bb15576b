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
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal, TypeAlias
from urllib.parse import SplitResult, urlsplit

from .exceptions import ConfigurationError, InvalidChannelError
from .paths import Channel, parse_channel

__all__ = [
    "AUTH_MODES",
    "DEFAULT_API",
    "APIConfig",
    "AuthModeConfig",
    "ConfigurationError",
    "EmulatorConfig",
    "ForwardingConfig",
    "ListenerConfig",
    "NamespaceConfig",
    "Operation",
    "OutboxConfig",
    "PublishConfig",
    "Timeouts",
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
_USER_INFO_RE: Final = re.compile(r"(?:(?<=://)|^)[^/?#@\s]*@")


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
class NamespaceConfig:
    """A channel namespace as the AppSync API declares it."""

    name: str
    publish_auth_modes: tuple[str, ...]
    subscribe_auth_modes: tuple[str, ...]


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


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """How ``appsync_emulator`` emulates this alias's API (when it does)."""

    host: str = "127.0.0.1"
    port: int = 8765
    api_keys: tuple[str, ...] = ()
    iam_credentials: Mapping[str, str] = field(default_factory=_empty)
    ka_interval: float = 60.0
    connection_timeout_ms: int = 300_000
    max_lifetime: float = 24 * 3600.0
    options: Mapping[str, Any] = field(default_factory=_empty)

    def __repr__(self) -> str:  # keys and secrets inside
        return (
            f"EmulatorConfig(host={self.host!r}, port={self.port!r}, api_keys=<redacted>, "
            "iam_credentials=<redacted>, ...)"
        )


@dataclass(frozen=True, slots=True)
class APIConfig:
    """One alias of ``APPSYNC_EVENTS``, parsed and validated.

    Attributes:
        alias: the alias name.
        http_url: the HTTP publish endpoint, ending in ``/event``.
        realtime_url: the websocket endpoint, ending in ``/event/realtime``.
        http_host: the host (with a non-default port) that auth headers name.
        region: the AWS region.
        auth: the credentials the alias holds, by mode, in declaration order.
        connection_auth_mode: the mode used to open the websocket.
        namespaces: the namespaces the API declares, by name.
        default_publish_auth_modes / default_subscribe_auth_modes: the API's defaults,
            for namespaces that do not override them.
    """

    alias: str
    http_url: str
    realtime_url: str
    http_host: str
    region: str
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


# -- parsing -------------------------------------------------------------------------

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
        "SUBSCRIPTIONS",
        "TIMEOUTS",
        "PUBLISH",
        "LISTENER",
        "FORWARDING",
        "OUTBOX",
        "EMULATOR",
    }
)


class _Parser:
    """Reads one alias; every error names the alias, the key and the check id."""

    def __init__(self, alias: str, raw: Mapping[str, Any]) -> None:
        self.alias = alias
        self.raw = raw

    def error(
        self, key: str, message: str, check_id: str = "appsync_events.E001"
    ) -> ConfigurationError:
        # Nested keys arrive spelled ``"TIMEOUTS']['CONNECT"`` (with or without quotes at
        # the joins); split them so the message reads as the literal setting to fix:
        # ``APPSYNC_EVENTS['default']['TIMEOUTS']['CONNECT']``.
        parts = [part.strip("'") for part in key.split("][")]
        where = "".join(f"[{part!r}]" for part in parts)
        return ConfigurationError(
            f"APPSYNC_EVENTS[{self.alias!r}]{where}: {message}",
            api=self.alias,
            key=parts[0] + "".join(f"[{part!r}]" for part in parts[1:]),
            check_id=check_id,
        )

    def mapping(self, key: str, value: Any) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(key, f"must be a dict, not {type(value).__name__}.")
        return value

    def keys(
        self,
        key: str,
        value: Mapping[str, Any],
        allowed: Mapping[str, Any] | frozenset[str],
    ) -> None:
        for name in value:
            if name not in allowed:
                text = f"unknown key {name!r}; valid keys are {', '.join(sorted(allowed))}."
                if key == "*":  # the alias's own keys: name the alias and the key alone
                    raise ConfigurationError(
                        f"APPSYNC_EVENTS[{self.alias!r}]: {text}", api=self.alias, key=str(name)
                    )
                raise self.error(key, text)

    def number(
        self,
        key: str,
        value: Any,
        *,
        integer: bool = False,
        minimum: float = 0.0,
        zero_ok: bool = False,
    ) -> Any:
        ok_type = int if integer else (int, float)
        valid = (
            not isinstance(value, bool)
            and isinstance(value, ok_type)
            # NaN compares False with everything and infinity overflows timers.
            and not (isinstance(value, float) and not math.isfinite(value))
            and (value >= minimum if zero_ok else value > minimum)
        )
        if not valid:
            kind = "an integer" if integer else "a finite number"
            bound = "at least" if zero_ok else "greater than"
            raise self.error(
                key,
                f"must be {kind} {bound} {minimum:g}, not {value!r}.",
                "appsync_events.E009",
            )
        return value

    def boolean(self, key: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.error(key, f"must be True or False, not {value!r}.", "appsync_events.E009")
        return value

    def string(self, key: str, value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise self.error(
                key,
                f"must be a non-empty string, not {value!r}.",
                "appsync_events.E009",
            )
        return value

    def modes(self, key: str, value: Any) -> tuple[str, ...]:
        if isinstance(value, str) or not isinstance(value, Sequence) or not value:
            raise self.error(
                key,
                f"must be a non-empty list of auth modes, not {value!r}.",
                "appsync_events.E004",
            )
        for mode in value:
            if mode not in AUTH_MODES:
                raise self.error(
                    key,
                    f"unknown auth mode {mode!r}; use one of {', '.join(AUTH_MODES)}.",
                    "appsync_events.E004",
                )
        return tuple(value)

    def channels(self, key: str, value: Any) -> tuple[Channel, ...]:
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise self.error(
                key,
                f"must be a list of channel paths, not {value!r}.",
                "appsync_events.E006",
            )
        out = []
        for path in value:
            try:
                out.append(parse_channel(path, allow_wildcard=True))
            except InvalidChannelError as exc:
                raise self.error(key, f"{exc.message}.", "appsync_events.E006") from None
        return tuple(out)

    def section(self, key: str, cls: type[Any], names: Mapping[str, str]) -> dict[str, Any]:
        """Validate a sub-dict's keys against ``names`` (SETTING → field) and map them."""
        value = self.mapping(key, self.raw.get(key, {}))
        self.keys(key, value, names)
        return {names[k]: v for k, v in value.items()}

    # -- endpoints ---------------------------------------------------------------

    def endpoints(self) -> tuple[str, str, str, str]:
        raw_url = self.raw.get("HTTP_URL")
        if raw_url is None:
            raise self.error(
                "HTTP_URL",
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
                    "REGION",
                    f"{region!r} is not an AWS region name like 'eu-west-1'.",
                    "appsync_events.E003",
                )
            if match and region != match.group("region"):
                # A signature for the wrong region is refused by the service.
                raise self.error(
                    "REGION",
                    f"is {region!r} but HTTP_URL's host {hostname!r} is in "
                    f"{match.group('region')!r}; remove REGION or correct it.",
                    "appsync_events.E003",
                )
        elif match:
            region = match.group("region")
        else:
            raise self.error(
                "REGION",
                f"is missing; {hostname!r} is not a standard AppSync host, so the region cannot be "
                "read from it. Add 'REGION': 'us-east-1' (your API's region).",
                "appsync_events.E003",
            )
        return http_url, realtime_url, host, region

    def http_url(self, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.error(
                "HTTP_URL",
                f"must be a URL or domain string, not {value!r}.",
                "appsync_events.E002",
            )
        text = value.strip()
        if "://" not in text:
            text = "https://" + text
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise self.error(
                "HTTP_URL",
                f"{_shown(value)!r} is not an http(s) URL or a domain name.",
                "appsync_events.E002",
            )
        self._check_url_extras("HTTP_URL", value, parts)
        if ".appsync-realtime-api." in parts.hostname and _STANDARD_HOST_RE.match(parts.hostname):
            raise self.error(
                "HTTP_URL",
                f"{_shown(value)!r} is the real-time (websocket) host; HTTP_URL takes the HTTP "
                "endpoint, whose host has 'appsync-api' in place of 'appsync-realtime-api'.",
                "appsync_events.E002",
            )
        path = parts.path.rstrip("/")
        if path == "":
            path = "/event"
        elif not path.endswith("/event"):
            raise self.error(
                "HTTP_URL",
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
                key,
                f"{_shown(value)!r} must not carry a query, fragment or user info.",
                "appsync_events.E002",
            )
        try:
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            raise self.error(
                key, f"{_shown(value)!r} has an invalid port.", "appsync_events.E002"
            ) from None

    def realtime_url(self, value: Any) -> str:
        if not isinstance(value, str):
            raise self.error(
                "REALTIME_URL",
                f"must be a URL string, not {value!r}.",
                "appsync_events.E002",
            )
        parts = urlsplit(value.strip())
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise self.error(
                "REALTIME_URL",
                f"{_shown(value)!r} must be a ws:// or wss:// URL, e.g. "
                "'wss://abc.appsync-realtime-api.eu-west-1.amazonaws.com/event/realtime'.",
                "appsync_events.E002",
            )
        self._check_url_extras("REALTIME_URL", value, parts)
        return f"{parts.scheme}://{parts.netloc.lower()}{parts.path.rstrip('/')}"

    # -- auth --------------------------------------------------------------------

    def auth(self) -> dict[str, AuthModeConfig]:
        raw = self.mapping("AUTH", self.raw.get("AUTH", {}))
        out: dict[str, AuthModeConfig] = {}
        for mode, value in raw.items():
            if mode not in AUTH_MODES:
                raise self.error(
                    "AUTH",
                    f"unknown auth mode {mode!r}; use one of {', '.join(AUTH_MODES)}.",
                    "appsync_events.E004",
                )
            out[mode] = self.auth_mode(mode, value)
        return out

    def auth_mode(self, mode: str, value: Any) -> AuthModeConfig:
        key = f"AUTH'][{mode!r}"
        if isinstance(value, str):
            if mode == "API_KEY":
                return AuthModeConfig(mode, None, MappingProxyType({"api_key": value}))
            if mode in _TOKEN_MODES:
                return AuthModeConfig(mode, None, MappingProxyType({"token": value}))
            raise self.error(
                key,
                "must be a dict of options (e.g. {} for the default AWS credential chain).",
                "appsync_events.E008",
            )
        if value is True and mode == "AWS_IAM":
            return AuthModeConfig(mode, None, MappingProxyType({}))
        value = self.mapping(key, value)
        backend = value.get("BACKEND")
        if backend is not None and not isinstance(backend, str):
            raise self.error(
                key,
                f"BACKEND must be a dotted path string, not {backend!r}.",
                "appsync_events.E008",
            )
        if "BACKEND" in value or "OPTIONS" in value:
            self.keys(key, value, frozenset({"BACKEND", "OPTIONS"}))
            options = self.mapping(f"{key}']['OPTIONS", value.get("OPTIONS", {}))
        else:
            # Shorthand: the options themselves, with lowercase or uppercase names.
            options = value
        for name in options:
            if not isinstance(name, str):
                raise self.error(
                    key,
                    f"option names must be strings, not {name!r}.",
                    "appsync_events.E008",
                )
        return AuthModeConfig(
            mode, backend, MappingProxyType({k.lower(): v for k, v in options.items()})
        )

    # -- the whole alias ---------------------------------------------------------

    def parse(self) -> APIConfig:
        self.keys("*", self.raw, _TOP_KEYS)
        http_url, realtime_url, host, region = self.endpoints()
        auth = self.auth()
        conn_mode = self.raw.get("CONNECTION_AUTH_MODE")
        if conn_mode is None:
            if not auth:
                raise self.error(
                    "AUTH",
                    "holds no credentials; add at least one mode, "
                    "e.g. 'AUTH': {'API_KEY': 'da2-...'}.",
                    "appsync_events.E005",
                )
            conn_mode = next(iter(auth))
        elif conn_mode not in AUTH_MODES:
            raise self.error(
                "CONNECTION_AUTH_MODE",
                f"unknown auth mode {conn_mode!r}; use one of {', '.join(AUTH_MODES)}.",
                "appsync_events.E004",
            )
        elif conn_mode not in auth:
            raise self.error(
                "CONNECTION_AUTH_MODE",
                f"is {conn_mode!r} but AUTH holds no credentials for it; add them to AUTH.",
                "appsync_events.E005",
            )
        held = tuple(auth)
        default_pub = self.modes(
            "DEFAULT_PUBLISH_AUTH_MODES",
            self.raw.get("DEFAULT_PUBLISH_AUTH_MODES", held),
        )
        default_sub = self.modes(
            "DEFAULT_SUBSCRIBE_AUTH_MODES",
            self.raw.get("DEFAULT_SUBSCRIBE_AUTH_MODES", held),
        )
        namespaces = self.namespaces(default_pub, default_sub, auth)
        timeouts = Timeouts(
            **{
                k: self.number(f"TIMEOUTS'][{k.upper()!r}", v)
                for k, v in self.section(
                    "TIMEOUTS",
                    Timeouts,
                    {
                        "CONNECT": "connect",
                        "HANDSHAKE": "handshake",
                        "OPERATION": "operation",
                        "HTTP": "http",
                    },
                ).items()
            }
        )
        publish = self.publish()
        listener = self.listener()
        forwarding = self.forwarding()
        outbox = self.outbox()
        if outbox.lease <= timeouts.http + 1:
            # A drainer sends only requests that can time out within its lease: with less
            # room than one request it would release every batch unsent, for ever.
            raise self.error(
                "OUTBOX']['LEASE",
                f"is {outbox.lease:g} s, too short for even one HTTP request "
                f"(TIMEOUTS['HTTP'] = {timeouts.http:g} s, plus 1 s); make it several times "
                "longer (the default is 300).",
                "appsync_events.E009",
            )
        emulator = self.emulator()
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
            emulator=emulator,
        )

    def namespaces(
        self,
        default_pub: tuple[str, ...],
        default_sub: tuple[str, ...],
        auth: Mapping[str, AuthModeConfig],
    ) -> dict[str, NamespaceConfig]:
        raw = self.raw.get("NAMESPACES", {"default": {}})
        if isinstance(raw, Sequence) and not isinstance(raw, str):
            raw = {name: {} for name in raw}
        raw = self.mapping("NAMESPACES", raw)
        out: dict[str, NamespaceConfig] = {}
        for name, value in raw.items():
            key = f"NAMESPACES'][{name!r}"
            if not isinstance(name, str) or not _NAMESPACE_RE.match(name):
                raise self.error(
                    "NAMESPACES",
                    f"{name!r} is not a valid namespace name (1-50 letters, digits and '-', "
                    "starting and ending with a letter or digit).",
                    "appsync_events.E007",
                )
            value = self.mapping(key, value or {})
            self.keys(key, value, frozenset({"PUBLISH_AUTH_MODES", "SUBSCRIBE_AUTH_MODES"}))
            pub = self.modes(
                f"{key}]['PUBLISH_AUTH_MODES",
                value.get("PUBLISH_AUTH_MODES", default_pub),
            )
            sub = self.modes(
                f"{key}]['SUBSCRIBE_AUTH_MODES",
                value.get("SUBSCRIBE_AUTH_MODES", default_sub),
            )
            for operation, modes in (("publish", pub), ("subscribe", sub)):
                if not any(m in auth for m in modes):
                    raise self.error(
                        key,
                        f"allows {operation} with {', '.join(modes)} "
                        "but AUTH holds credentials for "
                        f"none of them (it holds {', '.join(auth)}); add one to AUTH.",
                        "appsync_events.E005",
                    )
            out[name] = NamespaceConfig(name, pub, sub)
        return out

    def publish(self) -> PublishConfig:
        fields = self.section(
            "PUBLISH",
            PublishConfig,
            {
                "BACKEND": "backend",
                "OPTIONS": "options",
                "ON_COMMIT": "on_commit",
                "DURABLE": "durable",
                "ENCODER": "encoder",
            },
        )
        if "backend" in fields:
            backend = self.string("PUBLISH']['BACKEND", fields["backend"])
            fields["backend"] = PUBLISH_BACKENDS.get(backend, backend)
        if "options" in fields:
            fields["options"] = MappingProxyType(
                dict(self.mapping("PUBLISH']['OPTIONS", fields["options"]))
            )
        for name in ("on_commit", "durable"):
            if name in fields:
                self.boolean(f"PUBLISH'][{name.upper()!r}", fields[name])
        if "encoder" in fields:
            self.string("PUBLISH']['ENCODER", fields["encoder"])
        return PublishConfig(**fields)

    def listener(self) -> ListenerConfig:
        names = {
            "QUEUE_SIZE": "queue_size",
            "OVERFLOW": "overflow",
            "BACKOFF_INITIAL": "backoff_initial",
            "BACKOFF_MAX": "backoff_max",
            "BACKOFF_FACTOR": "backoff_factor",
            "STABLE_AFTER": "stable_after",
            "ROTATE_AFTER": "rotate_after",
            "STATS_INTERVAL": "stats_interval",
            "SHUTDOWN_TIMEOUT": "shutdown_timeout",
            "SUBSCRIBE_RETRIES": "subscribe_retries",
            "LEASE": "lease",
            "LEASE_REDIS_URL": "lease_redis_url",
            "LEASE_TTL": "lease_ttl",
            "LEASE_POLL_INTERVAL": "lease_poll_interval",
        }
        fields = self.section("LISTENER", ListenerConfig, names)
        for name, value in fields.items():
            if name == "lease":
                if value not in ("auto", "postgres", "redis"):
                    raise self.error(
                        "LISTENER']['LEASE",
                        f"must be 'auto', 'postgres' or 'redis', not {value!r}.",
                        "appsync_events.E009",
                    )
            elif name == "lease_redis_url":
                if not isinstance(value, str) or not value.startswith(
                    ("redis://", "rediss://", "unix://")
                ):
                    raise self.error(
                        "LISTENER']['LEASE_REDIS_URL",
                        f"must be a redis:// URL, not {_shown(value)!r}.",
                        "appsync_events.E009",
                    )
            elif name == "subscribe_retries":
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise self.error(
                        "LISTENER']['SUBSCRIBE_RETRIES",
                        f"must be an integer of 0 or more, not {value!r}.",
                        "appsync_events.E009",
                    )
            elif name == "overflow":
                if value not in ("block", "drop_newest", "drop_oldest"):
                    raise self.error(
                        "LISTENER']['OVERFLOW",
                        f"must be 'block', 'drop_newest' or 'drop_oldest', not {value!r}.",
                        "appsync_events.E009",
                    )
            else:
                self.number(f"LISTENER'][{name.upper()!r}", value, integer=name == "queue_size")
        if fields.get("backoff_factor", 2.0) < 1:
            raise self.error(
                "LISTENER']['BACKOFF_FACTOR",
                "must be at least 1.",
                "appsync_events.E009",
            )
        fields["subscriptions"] = self.channels("SUBSCRIPTIONS", self.raw.get("SUBSCRIPTIONS", ()))
        return ListenerConfig(**fields)

    def forwarding(self) -> ForwardingConfig:
        names = {
            "ENABLED": "enabled",
            "CHANNEL_LAYER": "channel_layer",
            "SUBSCRIPTIONS": "subscriptions",
            "GROUP_PREFIX": "group_prefix",
            "MESSAGE_TYPE": "message_type",
            "CONTROL_CHANNEL": "control_channel",
            "UNFOLLOW_GRACE": "unfollow_grace",
            "IN_PROCESS": "in_process",
            "FOLLOW_LEASE": "follow_lease",
            "FOLLOW_TIMEOUT": "follow_timeout",
            "MAX_FOLLOWS": "max_follows",
        }
        fields = self.section("FORWARDING", ForwardingConfig, names)
        for name in ("enabled", "in_process"):
            if name in fields:
                self.boolean(f"FORWARDING'][{name.upper()!r}", fields[name])
        for name in ("follow_lease", "follow_timeout"):
            if name in fields:
                self.number(f"FORWARDING'][{name.upper()!r}", fields[name])
        if "max_follows" in fields:
            self.number("FORWARDING']['MAX_FOLLOWS", fields["max_follows"], integer=True)
        for name in ("channel_layer", "message_type", "control_channel"):
            if name in fields:
                self.string(f"FORWARDING'][{name.upper()!r}", fields[name])
        # Channels' own grammar for a (non process-local) channel name and a message type.
        if "control_channel" in fields and not re.match(
            r"^[A-Za-z0-9._-]{1,99}\Z", fields["control_channel"]
        ):
            raise self.error(
                "FORWARDING']['CONTROL_CHANNEL",
                "must be a Channels channel name: 1-99 letters, digits, '.', '_' and '-'.",
                "appsync_events.E009",
            )
        if "message_type" in fields and not re.match(
            r"^[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*\Z", fields["message_type"]
        ):
            raise self.error(
                "FORWARDING']['MESSAGE_TYPE",
                "must be a Channels message type such as 'appsync.event' (letters, digits, "
                "'_', dot-separated); consumers handle it in a method named like it with "
                "'.' replaced by '_'.",
                "appsync_events.E009",
            )
        if "group_prefix" in fields and not (
            isinstance(fields["group_prefix"], str)
            and re.match(r"^[A-Za-z0-9._-]{1,40}\Z", fields["group_prefix"])
        ):
            raise self.error(
                "FORWARDING']['GROUP_PREFIX",
                "must be 1-40 characters of letters, digits, '.', '_' and '-'.",
                "appsync_events.E009",
            )
        if fields.get("subscriptions") is not None:
            fields["subscriptions"] = self.channels(
                "FORWARDING']['SUBSCRIPTIONS", fields["subscriptions"]
            )
        if "unfollow_grace" in fields:
            self.number("FORWARDING']['UNFOLLOW_GRACE", fields["unfollow_grace"], zero_ok=True)
        return ForwardingConfig(**fields)

    def outbox(self) -> OutboxConfig:
        names = {
            "BATCH_SIZE": "batch_size",
            "MAX_ATTEMPTS": "max_attempts",
            "BACKOFF_INITIAL": "backoff_initial",
            "BACKOFF_MAX": "backoff_max",
            "RETENTION": "retention",
            "POLL_INTERVAL": "poll_interval",
            "LEASE": "lease",
        }
        fields = self.section("OUTBOX", OutboxConfig, names)
        for name, value in fields.items():
            self.number(
                f"OUTBOX'][{name.upper()!r}",
                value,
                integer=name in ("batch_size", "max_attempts"),
            )
        return OutboxConfig(**fields)

    def emulator(self) -> EmulatorConfig:
        names = {
            "HOST": "host",
            "PORT": "port",
            "API_KEYS": "api_keys",
            "IAM_CREDENTIALS": "iam_credentials",
            "KA_INTERVAL": "ka_interval",
            "CONNECTION_TIMEOUT_MS": "connection_timeout_ms",
            "MAX_LIFETIME": "max_lifetime",
            "OPTIONS": "options",
        }
        fields = self.section("EMULATOR", EmulatorConfig, names)
        if "host" in fields:
            self.string("EMULATOR']['HOST", fields["host"])
        if "port" in fields:
            port = fields["port"]
            if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
                raise self.error(
                    "EMULATOR']['PORT",
                    f"must be an integer from 0 to 65535, not {port!r}.",
                    "appsync_events.E009",
                )
        if "api_keys" in fields:
            keys = fields["api_keys"]
            if (
                isinstance(keys, str)
                or not isinstance(keys, Sequence)
                or not all(isinstance(k, str) and k for k in keys)
            ):
                raise self.error(
                    "EMULATOR']['API_KEYS",
                    "must be a list of API key strings.",
                    "appsync_events.E009",
                )
            fields["api_keys"] = tuple(keys)
        else:
            # Accept the alias's own API key, however AUTH spells it.
            api_key = self.auth().get("API_KEY")
            key = api_key.options.get("api_key") if api_key else None
            if isinstance(key, str) and key:
                fields["api_keys"] = (key,)
        if "iam_credentials" in fields:
            creds = self.mapping("EMULATOR']['IAM_CREDENTIALS", fields["iam_credentials"])
            if not all(
                isinstance(k, str) and isinstance(v, str) and k and v for k, v in creds.items()
            ):
                raise self.error(
                    "EMULATOR']['IAM_CREDENTIALS",
                    "must map access key ids to secret keys (strings).",
                    "appsync_events.E009",
                )
            fields["iam_credentials"] = MappingProxyType(dict(creds))
        for name in ("ka_interval", "max_lifetime"):
            if name in fields:
                self.number(f"EMULATOR'][{name.upper()!r}", fields[name])
        if "connection_timeout_ms" in fields:
            self.number(
                "EMULATOR']['CONNECTION_TIMEOUT_MS",
                fields["connection_timeout_ms"],
                integer=True,
            )
        if "options" in fields:
            fields["options"] = MappingProxyType(
                dict(self.mapping("EMULATOR']['OPTIONS", fields["options"]))
            )
        return EmulatorConfig(**fields)


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a hostname or IP, no port) names this machine."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
