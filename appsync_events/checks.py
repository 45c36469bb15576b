"""System checks for the ``APPSYNC_EVENTS`` setting.

Ids are stable; a retired id is never reused (keep retired ones listed here).

Errors::

    E001  the setting's shape: not a dict, unknown key, wrong type
    E002  a malformed HTTP_URL or REALTIME_URL
    E003  REGION malformed, or missing where AWS_IAM signs on a host that does not give it
    E004  an unknown auth mode
    E005  no credentials held for a mode the connection or a namespace requires
    E006  an invalid channel path in SUBSCRIPTIONS
    E007  an invalid namespace name
    E008  incomplete or invalid auth options for a mode
    E009  an invalid value (timeouts, sizes, PROXY, API_ID, backends, emulator options)
    E010  the setting names no such alias
    E011  an optional dependency is missing, or a dependency is older than a feature
          needs
    E012  a malformed GRANTS entry (WHO, SUBSCRIBE or PUBLISH pattern)
    E013  a malformed HANDLERS declaration of a namespace (CODE_FILE, ON_PUBLISH,
          ON_SUBSCRIBE)
    E014  browsers are meant to get events (the consumer is routed, or FORWARDING is set
          in an alias) but CHANNEL_LAYERS defines no layer: every browser websocket would
          be refused
    E015  handlers enqueue, but the alias's TASKS backend or queue refuses the task, or a
          handler that enqueues is one workers cannot find by name (a lambda, or a
          function defined inside another)
    E016  a malformed TOKENS section, or a signing key that is SECRET_KEY itself
    E017  a malformed METRICS entry (ALLOWED_IPS, PERMISSION)

Warnings::

    W001  plain http:// or ws:// to a host that is not this machine
    W002  a subscription in a namespace the API does not declare
    W003  APPSYNC_EVENTS defines no "default" alias
    W004  auth credentials are not available right now (a token_env variable is unset);
          operations in that mode would fail. AWS_IAM credentials are not looked for:
          no check makes a network call (no STS AssumeRole, no instance metadata), so
          missing ones show as an AuthError at the first signature
    W005  FORWARDING goes into an in-memory channel layer but IN_PROCESS is off: a
          listener in its own process (appsync_listen) can never reach the web server's
          consumers through it
    W006  FORWARDING['CHANNEL_LAYER'] names a layer CHANNEL_LAYERS does not define
    W007  two aliases forward into one channel layer with the same CONTROL_CHANNEL, so
          their listeners would take each other's follow requests
    W008  the browser consumer is routed (ASGI_APPLICATION) for an alias whose GRANTS
          grant nothing, and its class overrides neither can_subscribe nor can_publish:
          every browser request will be refused
    W009  a GRANTS pattern names a namespace NAMESPACES does not declare
    W010  a handler declared ordered=True is enqueued: tasks run in no particular order
    W011  a handler no subscription of SUBSCRIPTIONS can deliver to (its pattern contains
          none of them, e.g. /chat/rooms/* while the listener subscribes to /chat/*):
          AppSync names the subscription, not the channel, so it would never run
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

from django.apps import AppConfig
from django.core import checks
from django.core.checks import CheckMessage

from . import conf
from .exceptions import ConfigurationError

__all__ = [
    "check_auth",
    "check_channel_layers",
    "check_default_alias",
    "check_forwarding",
    "check_grants",
    "check_handlers",
    "check_insecure_endpoints",
    "check_publishing",
    "check_settings",
    "check_subscription_namespaces",
    "check_tasks",
    "check_tokens",
    "register",
]

TAG = "appsync_events"

logger = logging.getLogger(__name__)


def _configs() -> Iterable[tuple[str, conf.APIConfig | ConfigurationError]]:
    try:
        aliases = conf.api_aliases()
    except ConfigurationError as exc:
        yield "*", exc
        return
    for alias in aliases:
        try:
            yield alias, conf.get_api_config(alias)
        except ConfigurationError as exc:
            yield alias, exc


def check_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """E001-E017: every alias parses and validates."""
    errors: list[CheckMessage] = []
    for alias, config in _configs():
        if isinstance(config, ConfigurationError):
            errors.append(
                checks.Error(
                    str(config),
                    hint="See the configuration reference in docs/configuration.md.",
                    obj=f"APPSYNC_EVENTS[{alias!r}]" if alias != "*" else "APPSYNC_EVENTS",
                    id=config.check_id,
                )
            )
    return errors


def check_insecure_endpoints(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """W001: plain-text endpoints are only fine on this machine (the emulator)."""
    warnings: list[CheckMessage] = []
    for alias, config in _configs():
        if isinstance(config, ConfigurationError):
            continue
        for key, url in (("HTTP_URL", config.http_url), ("REALTIME_URL", config.realtime_url)):
            parts = urlsplit(url)
            if parts.scheme in ("http", "ws") and not conf.is_loopback_host(parts.hostname or ""):
                warnings.append(
                    checks.Warning(
                        f"APPSYNC_EVENTS[{alias!r}][{key!r}] is {url!r}: credentials and events "
                        "would cross the network unencrypted.",
                        hint="Use https:// (wss://) for any host other than this machine.",
                        obj=f"APPSYNC_EVENTS[{alias!r}]",
                        id="appsync_events.W001",
                    )
                )
    return warnings


def check_subscription_namespaces(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """W002: the service refuses subscriptions in namespaces the API does not declare."""
    warnings: list[CheckMessage] = []
    for alias, config in _configs():
        if isinstance(config, ConfigurationError) or not config.namespaces:
            continue
        for channel in config.listener.subscriptions:
            if channel.namespace not in config.namespaces:
                warnings.append(
                    checks.Warning(
                        f"APPSYNC_EVENTS[{alias!r}]['SUBSCRIPTIONS'] holds {channel.path!r}, but "
                        f"namespace {channel.namespace!r} is not in NAMESPACES "
                        f"({', '.join(config.namespaces)}); the service will refuse it.",
                        hint="Declare the namespace in NAMESPACES, or fix the channel path.",
                        obj=f"APPSYNC_EVENTS[{alias!r}]",
                        id="appsync_events.W002",
                    )
                )
    return warnings


def check_default_alias(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """W003: every API defaults to the ``"default"`` alias, so it should exist."""
    try:
        aliases = conf.api_aliases()
    except ConfigurationError:
        return []  # reported by check_settings
    if conf.DEFAULT_API in aliases:
        return []
    return [
        checks.Warning(
            'APPSYNC_EVENTS defines no "default" alias; every call without api=... will fail.',
            hint="Add APPSYNC_EVENTS = {'default': {'HTTP_URL': ..., 'AUTH': {...}}}.",
            obj="APPSYNC_EVENTS",
            id="appsync_events.W003",
        )
    ]


def check_auth(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """E008 and W004: every auth mode an alias holds builds a backend from its options.

    Each backend is built (unknown options, bad ``BACKEND`` paths and incomplete options
    are E008 errors), then asked for problems it can see without I/O (W004 warnings: a
    ``token_env`` variable that is unset). Nothing here resolves credentials or touches
    the network, since every management command runs the checks: AWS credentials (an
    STS AssumeRole with ``role_arn``) are resolved at the first signature, which raises
    a clear ``AuthError`` when they are missing.
    """
    from .auth import get_auth_backend

    messages: list[CheckMessage] = []
    for alias, config in _configs():
        if isinstance(config, ConfigurationError):
            continue  # reported by check_settings
        for mode in config.auth:
            obj = f"APPSYNC_EVENTS[{alias!r}]['AUTH'][{mode!r}]"
            try:
                backend = get_auth_backend(config, mode)
            except ConfigurationError as exc:
                messages.append(
                    checks.Error(
                        str(exc),
                        hint="See the auth options in docs/auth.md.",
                        obj=obj,
                        id=exc.check_id,
                    )
                )
                continue
            for problem in backend.check():
                messages.append(
                    checks.Warning(
                        problem,
                        hint="Provide the credentials before the first operation in this mode.",
                        obj=obj,
                        id="appsync_events.W004",
                    )
                )
    return messages


def check_publishing(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """E009: every alias's publishing backend and JSON encoder load and accept their options.

    Builds the shared backend (no connection is opened until the first publish), so a
    typo in ``PUBLISH`` shows at startup rather than at the first event.
    """
    from .backends import get_backend
    from .batching import load_encoder

    errors: list[CheckMessage] = []
    for alias, config in _configs():
        if isinstance(config, ConfigurationError):
            continue  # reported by check_settings
        try:
            load_encoder(config.publish.encoder)
            get_backend(alias)
        except (ConfigurationError, ValueError, TypeError) as exc:
            errors.append(
                checks.Error(
                    str(exc),
                    hint="See the backends in docs/publishing.md.",
                    obj=f"APPSYNC_EVENTS[{alias!r}]['PUBLISH']",
                    id="appsync_events.E009",
                )
            )
    return errors


def _layer_is_in_memory(layer: Any) -> bool:
    backend = layer.get("BACKEND") if isinstance(layer, dict) else None
    if not isinstance(backend, str):
        return False
    from channels.layers import InMemoryChannelLayer
    from django.utils.module_loading import import_string

    try:
        cls = import_string(backend)
    except ImportError:
        return False  # Channels itself reports a layer it cannot import
    return isinstance(cls, type) and issubclass(cls, InMemoryChannelLayer)


def check_forwarding(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """W005-W007: channel-layer forwarding can reach the consumers it is meant for."""
    from django.conf import settings

    layers = getattr(settings, "CHANNEL_LAYERS", None)
    if not isinstance(layers, dict) or not layers:
        return []  # no Channels layers: forwarding stays off (the listener logs it)
    warnings: list[CheckMessage] = []
    control: dict[tuple[str, str], str] = {}
    for alias, config in _configs():
        if isinstance(config, ConfigurationError) or not config.forwarding.enabled:
            continue
        forwarding = config.forwarding
        obj = f"APPSYNC_EVENTS[{alias!r}]['FORWARDING']"
        if forwarding.channel_layer not in layers:
            warnings.append(
                checks.Warning(
                    f"{obj}['CHANNEL_LAYER'] is {forwarding.channel_layer!r}, but "
                    f"CHANNEL_LAYERS defines only {', '.join(map(repr, layers))}.",
                    hint="Name a layer of CHANNEL_LAYERS, or set FORWARDING['ENABLED'] False.",
                    obj=obj,
                    id="appsync_events.W006",
                )
            )
            continue
        if not forwarding.in_process and _layer_is_in_memory(layers[forwarding.channel_layer]):
            warnings.append(
                checks.Warning(
                    f"{obj} forwards into the in-memory channel layer "
                    f"{forwarding.channel_layer!r}, which only works inside one process, "
                    "but IN_PROCESS is off: events received by appsync_listen (its own "
                    "process) never reach your web server's consumers.",
                    hint="Set FORWARDING['IN_PROCESS'] = True and wrap your ASGI app in "
                    "appsync_events.asgi.AppSyncEventsLifespan, or use channels_redis.",
                    obj=obj,
                    id="appsync_events.W005",
                )
            )
        key = (forwarding.channel_layer, forwarding.control_channel)
        if key in control:
            warnings.append(
                checks.Warning(
                    f"{obj}['CONTROL_CHANNEL'] is {forwarding.control_channel!r}, like alias "
                    f"{control[key]!r}'s, on the same channel layer: each listener would "
                    "take some of the other's follow requests.",
                    hint="Give every alias its own FORWARDING['CONTROL_CHANNEL'].",
                    obj=obj,
                    id="appsync_events.W007",
                )
            )
        else:
            control[key] = alias
    return warnings


def routed_consumers(application: Any) -> list[tuple[type[Any], str]]:
    """Return ``(consumer class, alias)`` for every browser consumer ``application`` routes.

    Walks the Channels routing tree through its public attributes (``application_mapping``
    of protocol routers, ``routes`` of URL routers, ``callback`` of routes, ``inner`` or
    ``application`` of middleware, ``consumer_class`` of ``as_asgi()`` apps).
    """
    from .consumers import AppSyncEventsConsumer

    found: list[tuple[type[Any], str]] = []
    seen: set[int] = set()
    todo: list[Any] = [application]
    while todo and len(seen) < 10_000:
        node = todo.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        consumer = getattr(node, "consumer_class", None)
        if isinstance(consumer, type) and issubclass(consumer, AppSyncEventsConsumer):
            kwargs = getattr(node, "consumer_initkwargs", None) or {}
            found.append((consumer, kwargs.get("api", consumer.api)))
            continue
        mapping = getattr(node, "application_mapping", None)
        if isinstance(mapping, dict):
            todo.extend(mapping.values())
        routes = getattr(node, "routes", None)
        if isinstance(routes, list | tuple):
            todo.extend(routes)
        for name in ("callback", "inner", "application"):
            todo.append(getattr(node, name, None))
    return found


def check_channel_layers(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """E014: relaying events to browsers needs a Channels layer."""
    from django.conf import settings

    layers = getattr(settings, "CHANNEL_LAYERS", None)
    if isinstance(layers, dict) and layers:
        return []
    try:
        raw = conf.raw_settings()
    except ConfigurationError:
        return []  # reported by check_settings
    why = [
        f"APPSYNC_EVENTS[{alias!r}] sets FORWARDING"
        for alias, value in raw.items()
        if isinstance(value, dict)
        and isinstance(value.get("FORWARDING"), dict)
        and value["FORWARDING"].get("ENABLED", True)
    ]
    application = _asgi_application()
    if application is not None:
        why.extend(
            f"ASGI_APPLICATION routes {consumer.__name__}"
            for consumer, _ in routed_consumers(application)
        )
    if not why:
        return []
    return [
        checks.Error(
            f"{'; '.join(dict.fromkeys(why))}, but CHANNEL_LAYERS defines no channel layer: "
            "every browser websocket would be refused and no event would reach a page.",
            hint=(
                "Add CHANNEL_LAYERS = {'default': {'BACKEND': "
                "'channels.layers.InMemoryChannelLayer'}} (one process, with "
                "FORWARDING['IN_PROCESS'] = True) or channels_redis (docs/channels.md)."
            ),
            obj="CHANNEL_LAYERS",
            id="appsync_events.E014",
        )
    ]


def _asgi_application() -> Any:
    """The project's ``ASGI_APPLICATION``, or ``None`` when unset or not importable."""
    from django.conf import settings
    from django.utils.module_loading import import_string

    path = getattr(settings, "ASGI_APPLICATION", None)
    if not isinstance(path, str):
        return None
    try:
        return import_string(path)
    except Exception:
        # The ASGI server reports an application it cannot import; checks on it skip.
        logger.debug("ASGI_APPLICATION %r cannot be imported", path, exc_info=True)
        return None


def check_grants(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """W008, W009: browsers are granted something where the consumer serves them, and
    grants name declared namespaces."""
    from django.conf import settings

    from .consumers import AppSyncEventsConsumer

    warnings: list[CheckMessage] = []
    configs = {a: c for a, c in _configs() if not isinstance(c, ConfigurationError)}
    for alias, config in configs.items():
        if not config.namespaces:
            continue
        for grant in config.grants:
            for pattern in (*grant.subscribe, *grant.publish):
                namespace = pattern.strip("/").split("/")[0]
                if namespace not in config.namespaces:
                    warnings.append(
                        checks.Warning(
                            f"APPSYNC_EVENTS[{alias!r}]['GRANTS'] grants {pattern!r}, but "
                            f"namespace {namespace!r} is not in NAMESPACES "
                            f"({', '.join(config.namespaces)}): it grants nothing usable.",
                            hint="Declare the namespace, or fix the pattern.",
                            obj=f"APPSYNC_EVENTS[{alias!r}]",
                            id="appsync_events.W009",
                        )
                    )
    application = _asgi_application()
    if application is None:
        return warnings
    path = str(getattr(settings, "ASGI_APPLICATION", ""))
    for consumer, alias in routed_consumers(application):
        served = configs.get(alias)
        if served is None or served.grants:
            continue
        overridden = any(
            getattr(consumer, hook) is not getattr(AppSyncEventsConsumer, hook)
            for hook in ("can_subscribe", "can_publish")
        )
        if not overridden:
            warnings.append(
                checks.Warning(
                    f"{consumer.__name__} serves browsers for APPSYNC_EVENTS[{alias!r}], "
                    "whose GRANTS grant nothing: every subscribe and publish from a browser "
                    "will be refused.",
                    hint=(
                        f"Add APPSYNC_EVENTS[{alias!r}]['GRANTS'], e.g. "
                        "[{'SUBSCRIBE': ['/chat/*']}] for signed-in users (docs/channels.md)."
                    ),
                    obj=path,
                    id="appsync_events.W008",
                )
            )
    return warnings


def check_tasks(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """E011, E015 and W010: handlers that enqueue can be enqueued and found on workers.

    For every alias with ``TASKS['ENQUEUE']`` or a handler that enqueues its events:
    Django's Tasks framework is importable (E011), the alias's ``TASKS['BACKEND']`` and
    ``QUEUE_NAME`` accept :data:`appsync_events.tasks.run_handler` (E015), every such
    handler has a name workers can find (E015), and none is ``ordered=True`` (W010).
    """
    from .dispatch import default_router

    entries = default_router.entries()
    messages: list[CheckMessage] = []
    reported: set[tuple[str, int]] = set()
    for alias, config in _configs():
        if isinstance(config, ConfigurationError):
            continue  # reported by check_settings
        obj = f"APPSYNC_EVENTS[{alias!r}]['TASKS']"
        default = config.tasks.enqueue
        enqueued = [
            entry
            for entry in entries
            if (entry.api is None or entry.api == alias)
            and (default if entry.enqueue is None else entry.enqueue)
        ]
        if not default and not enqueued:
            continue
        try:
            from . import tasks

            tasks.run_handler.using(
                backend=config.tasks.backend, queue_name=config.tasks.queue_name
            )
        except ConfigurationError as exc:  # ImproperlyInstalled: no Tasks framework
            messages.append(
                checks.Error(
                    f"{obj}: handlers of this alias enqueue, but: {exc}",
                    hint="On Django 5.2 install the django-tasks backport (the 'tasks' "
                    "extra) and add 'django_tasks' to INSTALLED_APPS; Django 6 has it.",
                    obj=obj,
                    id=exc.check_id,
                )
            )
            continue
        except Exception as exc:  # the framework's own errors: no such backend, bad queue
            messages.append(
                checks.Error(
                    f"{obj}: handlers of this alias enqueue to task backend "
                    f"{config.tasks.backend!r}, queue {config.tasks.queue_name!r}, which "
                    f"refuses the task: {type(exc).__name__}: {exc}",
                    hint="Name a backend of the TASKS setting in TASKS['BACKEND'] and one "
                    "of its QUEUES in TASKS['QUEUE_NAME'].",
                    obj=obj,
                    id="appsync_events.E015",
                )
            )
            continue
        for entry in enqueued:
            if (entry.name, entry.order) in reported:
                continue
            reported.add((entry.name, entry.order))
            why = "enqueue=True" if entry.enqueue else f"TASKS['ENQUEUE'] of alias {alias!r}"
            if not entry.has_stable_name:
                messages.append(
                    checks.Error(
                        f"Handler {entry.name} enqueues ({why}), but workers cannot find a "
                        "lambda or a function defined inside another by name.",
                        hint="Define it at module level in an appsync_handlers module, or "
                        "register it with enqueue=False.",
                        obj=entry.name,
                        id="appsync_events.E015",
                    )
                )
            if entry.ordered:
                messages.append(
                    checks.Warning(
                        f"Handler {entry.name} is declared ordered=True but enqueues "
                        f"({why}): tasks run on workers in no particular order.",
                        hint="Register it with enqueue=False to keep it in the listener "
                        "(one event at a time, in arrival order), or drop ordered=True.",
                        obj=entry.name,
                        id="appsync_events.W010",
                    )
                )
    return messages


def check_handlers(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """W011: every registered handler can run for some configured subscription.

    An event arrives named by the subscription it matched, and a handler runs for the
    subscriptions its pattern contains. A handler whose pattern contains none of the
    ``SUBSCRIPTIONS`` of its alias (of every alias, for a handler of all aliases) never
    runs. Aliases without ``SUBSCRIPTIONS`` are skipped: their listener is given
    ``--channel`` paths when it starts.
    """
    from .dispatch import default_router
    from .paths import pattern_contains

    subscriptions: dict[str, list[str]] = {}
    unknown = False  # an alias subscribes to paths only known at run time
    for alias, config in _configs():
        if isinstance(config, ConfigurationError):
            return []  # reported by check_settings; nothing to compare against
        paths = [c.path for c in config.listener.subscriptions]
        if paths:
            subscriptions[alias] = paths
        else:
            unknown = True
    messages: list[CheckMessage] = []
    for entry in default_router.entries():
        if entry.api is None:
            if unknown:
                continue
            aliases = list(subscriptions)
        elif entry.api in subscriptions:
            aliases = [entry.api]
        else:
            continue
        held = [(a, s) for a in aliases for s in subscriptions[a]]
        if not held or any(pattern_contains(entry.pattern, s) for _, s in held):
            continue
        covering = sorted({s for _, s in held if pattern_contains(s, entry.pattern)})
        listed = ", ".join(dict.fromkeys(s for _, s in held))
        where = f"APPSYNC_EVENTS[{aliases[0]!r}]" if len(aliases) == 1 else "any alias"
        hint = (
            f"Register it on {covering[0]} (the subscription its events arrive on) and read "
            "the detail from the payload, or subscribe to "
            f"{entry.pattern.path} too."
            if covering
            else f"Add {entry.pattern.path} (or a wildcard covering it) to SUBSCRIPTIONS."
        )
        messages.append(
            checks.Warning(
                f"Handler {entry.name} ({entry.pattern.path}) never runs: the listener of "
                f"{where} subscribes to {listed}, and a handler runs only for a subscription "
                "its pattern contains (AppSync names the subscription an event matched, "
                "not its channel).",
                hint=hint,
                obj=entry.name,
                id="appsync_events.W011",
            )
        )
    return messages


def check_tokens(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """E016: direct-mode tokens are signed with a dedicated key, never ``SECRET_KEY``."""
    from .tokens import is_secret_key

    errors: list[CheckMessage] = []
    for alias, config in _configs():
        if isinstance(config, ConfigurationError):
            continue
        for key_id, key in config.tokens.signing_keys.items():
            if is_secret_key(key):
                errors.append(
                    checks.Error(
                        f"APPSYNC_EVENTS[{alias!r}]['TOKENS']['SIGNING_KEYS'][{key_id!r}] is "
                        "SECRET_KEY itself (or one of SECRET_KEY_FALLBACKS).",
                        hint="Give tokens a dedicated random key: it is deployed to the Lambda "
                        "authorizer too (docs/direct.md).",
                        obj=f"APPSYNC_EVENTS[{alias!r}]",
                        id="appsync_events.E016",
                    )
                )
    return errors


def register() -> None:
    """Register every check of this module (called from ``AppConfig.ready()``)."""
    for check in (
        check_settings,
        check_insecure_endpoints,
        check_subscription_namespaces,
        check_default_alias,
        check_auth,
        check_publishing,
        check_forwarding,
        check_grants,
        check_channel_layers,
        check_tasks,
        check_handlers,
        check_tokens,
    ):
        checks.register(check, TAG)
