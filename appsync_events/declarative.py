"""Declarative events: typed event classes bound to a channel template, and a model mixin.

.. code-block:: python

    import appsync_events

    class ChatMessage(appsync_events.Event):
        channel = "/chat/rooms/{room_id}"

        room_id: int
        text: str
        author: str | None = None

        class Meta:
            durable = False          # True: through the outbox
            on_commit = True         # wait for the transaction (the default)

    ChatMessage(room_id=7, text="hi").publish()
    await ChatMessage(room_id=7, text="hi").apublish()
    ChatMessage.publish_many([ChatMessage(room_id=7, text=t) for t in texts])

    # in a handler of /chat/*:
    message = ChatMessage.from_event(received)   # typed, validated

Every payload is a JSON object holding the fields (template fields included, so a
receiver of a wildcard subscription can rebuild the concrete channel), ``event_type``
(``Meta.type_name``, default the class name) and, unless ``Meta.event_id = False``,
``event_id``: a UUID the receivers can de-duplicate by (the outbox delivers at least
once).

With ``Meta.trace_context = True`` the payload also carries, under ``trace_context``,
the W3C trace context of the code that built it (when OpenTelemetry traces are on;
see :mod:`appsync_events.tracing`): the listener's spans for the event link to it.

:class:`PublishChangesMixin` publishes ``created`` / ``updated`` / ``deleted`` events for
a Django model from ``save()`` and ``delete()``, after the commit.
"""

from __future__ import annotations

import datetime as dt
import json
import string
import types
import typing
import uuid
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, Final, Literal, Self, Union, get_args, get_origin

from django.db import router
from django.db.models.signals import post_save
from django.utils.dateparse import parse_date, parse_datetime

from .batching import encode_event, load_encoder
from .conf import DEFAULT_API, get_api_config
from .events import ReceivedEvent
from .exceptions import EventValidationError, InvalidChannelError
from .paths import parse_channel
from .publishing import DeferredPublish, apublish_encoded, publish_encoded
from .results import PublishResult
from .tracing import TRACE_CONTEXT_KEY, inject

__all__ = ["Event", "EventOptions", "PublishChangesMixin"]

TYPE_KEY: Final = "event_type"
ID_KEY: Final = "event_id"
_RESERVED: Final = frozenset({TYPE_KEY, ID_KEY, "channel", "Meta"})
_MISSING: Final[Any] = object()
_SIMPLE: Final = (str, int, float, bool, Decimal, uuid.UUID, dt.datetime, dt.date)


def _template_fields(template: str, owner: str) -> tuple[str, ...]:
    names = []
    for _literal, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if not name.isidentifier():
            raise TypeError(
                f"{owner}.channel {template!r}: placeholder {{{name}}} must name a field "
                "(a Python identifier)."
            )
        if spec or conversion:
            raise TypeError(
                f"{owner}.channel {template!r}: write {{{name}}} without a format spec or "
                "conversion; the field's value is used as is."
            )
        names.append(name)
    return tuple(dict.fromkeys(names))


def _check_template(template: str, fields: Sequence[str], owner: str) -> None:
    try:
        sample = template.format(**{name: "x" for name in fields})
        parse_channel(sample)
    except InvalidChannelError as exc:
        raise TypeError(f"{owner}.channel {template!r} is not a valid channel: {exc}") from None


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _is_instance(value: Any, tp: Any) -> bool:
    """Tell whether ``value`` fits annotation ``tp`` (the supported subset)."""
    if tp is Any:
        return True
    if tp is None or tp is type(None):
        return value is None
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return any(_is_instance(value, arg) for arg in get_args(tp))
    if origin is Literal:
        return value in get_args(tp)
    if origin in (list, tuple, Sequence):
        if not isinstance(value, list | tuple):
            return False
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            # A fixed-length tuple: one annotation per position.
            return len(value) == len(args) and all(
                _is_instance(v, a) for v, a in zip(value, args, strict=True)
            )
        return not args or all(_is_instance(v, args[0]) for v in value)
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            return False
        args = get_args(tp)
        return not args or all(
            _is_instance(k, args[0]) and _is_instance(v, args[1]) for k, v in value.items()
        )
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is dt.date:
        return isinstance(value, dt.date) and not isinstance(value, dt.datetime)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return False


def _supported(tp: Any) -> bool:
    if tp is Any or tp is None or tp is type(None) or tp in _SIMPLE or tp in (list, dict):
        return True
    origin = get_origin(tp)
    if origin in (Union, types.UnionType, list, tuple, Sequence, dict, Mapping):
        return all(a is Ellipsis or _supported(a) for a in get_args(tp))
    return origin is Literal


def _coerce(value: Any, tp: Any) -> Any:
    """Turn a decoded JSON value back into ``tp`` where JSON lost the type."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        for arg in get_args(tp):
            if _is_instance(value, arg):
                return value
        for arg in get_args(tp):
            if arg is not type(None):
                converted = _coerce(value, arg)
                if _is_instance(converted, arg):
                    return converted
        return value
    if origin in (list, tuple, Sequence) and isinstance(value, list):
        args = get_args(tp)
        if (
            args
            and (len(args) == 1 or args[-1] is Ellipsis)
            and not (origin is tuple and len(args) == 1)
        ):
            value = [_coerce(v, args[0]) for v in value]
        elif origin is tuple and args and len(args) == len(value):
            # A fixed-length tuple: one annotation per position.
            value = [_coerce(v, a) for v, a in zip(value, args, strict=True)]
        return tuple(value) if origin is tuple else value
    if not isinstance(value, str):
        if tp is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if tp is Decimal and isinstance(value, int | float) and not isinstance(value, bool):
            return Decimal(str(value))
        return value
    try:
        if tp is uuid.UUID:
            return uuid.UUID(value)
        if tp is Decimal:
            return Decimal(value)
        if tp is dt.datetime:
            return parse_datetime(value) or value
        if tp is dt.date:
            return parse_date(value) or value
    except (ValueError, InvalidOperation):
        return value
    return value


class EventOptions:
    """The resolved ``Meta`` of an :class:`Event` subclass (``cls._meta``).

    Attributes:
        api: the alias published through (default ``"default"``).
        durable: write to the outbox (``None``: the alias's ``PUBLISH['DURABLE']``).
        on_commit: wait for the commit (``None``: the alias's ``PUBLISH['ON_COMMIT']``).
        type_name: the ``event_type`` in payloads (default: the class name).
        event_id: whether payloads carry a UUID ``event_id`` (default ``True``).
        using: the database alias for transactions and the outbox (default: ``"default"``).
        trace_context: whether payloads carry the publisher's trace context under
            ``trace_context`` (default ``False``; see :mod:`appsync_events.tracing`).
    """

    names: ClassVar[tuple[str, ...]] = (
        "api",
        "durable",
        "on_commit",
        "type_name",
        "event_id",
        "using",
        "trace_context",
    )

    def __init__(self, cls: type[Event], meta: Any, parent: EventOptions | None) -> None:
        unknown = (
            sorted(n for n in vars(meta) if not n.startswith("_") and n not in self.names)
            if meta is not None
            else []
        )
        if unknown:
            raise TypeError(
                f"{cls.__name__}.Meta has unknown option(s) {', '.join(unknown)}; "
                f"valid options: {', '.join(self.names)}."
            )

        def get(name: str, default: Any) -> Any:
            if meta is not None and name in vars(meta):
                return vars(meta)[name]
            return getattr(parent, name) if parent is not None else default

        self.api: str = get("api", DEFAULT_API)
        self.durable: bool | None = get("durable", None)
        self.on_commit: bool | None = get("on_commit", None)
        self.event_id: bool = get("event_id", True)
        self.using: str | None = get("using", None)
        self.trace_context: bool = get("trace_context", False)
        # The type name is the class's own unless Meta names one explicitly.
        self.type_name: str = (
            vars(meta)["type_name"]
            if meta is not None and "type_name" in vars(meta)
            else cls.__name__
        )
        for name, ok, wanted in (
            ("api", isinstance(self.api, str) and bool(self.api), "a non-empty str"),
            ("type_name", isinstance(self.type_name, str) and bool(self.type_name), "a str"),
            ("durable", self.durable in (None, True, False), "True, False or None"),
            ("on_commit", self.on_commit in (None, True, False), "True, False or None"),
            ("event_id", self.event_id in (True, False), "True or False"),
            ("using", self.using is None or isinstance(self.using, str), "a str or None"),
            ("trace_context", self.trace_context in (True, False), "True or False"),
        ):
            if not ok:
                raise TypeError(
                    f"{cls.__name__}.Meta.{name} must be {wanted}, not {getattr(self, name)!r}."
                )


class Event:
    """Base class of declarative events; subclass it (see the module docstring).

    Class attributes:
        channel: the channel template, placeholders naming fields
            (``"/chat/rooms/{room_id}"``).
        Meta: options (:class:`EventOptions`).

    Fields are the class's annotations (``room_id: int``), optionally with defaults.
    Supported types: ``str``, ``int``, ``float``, ``bool``, ``Decimal``, ``UUID``,
    ``datetime``, ``date``, ``list[...]``, ``tuple[...]``, ``dict[...]``, ``Literal``,
    unions (``X | None``) and ``Any``.

    Raises:
        TypeError: when the class is defined, if the template names no field or is not a
            valid channel, or a field uses a reserved name (``event_type``, ``event_id``,
            ``channel``) or an unsupported type.
    """

    channel: ClassVar[str]
    _meta: ClassVar[EventOptions]
    _fields: ClassVar[dict[str, Any]] = {}
    _defaults: ClassVar[dict[str, Any]] = {}
    _template_names: ClassVar[tuple[str, ...]] = ()

    event_id: str | None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        hints = typing.get_type_hints(cls)
        fields: dict[str, Any] = {}
        defaults: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            for name in getattr(klass, "__annotations__", {}):
                if klass is Event or name.startswith("_"):
                    continue
                tp = hints.get(name, Any)
                if get_origin(tp) is ClassVar:
                    continue
                if name in _RESERVED:
                    raise TypeError(
                        f"{cls.__name__}.{name}: {name!r} is reserved; rename the field."
                    )
                if not _supported(tp):
                    raise TypeError(
                        f"{cls.__name__}.{name}: type {_type_name(tp)} is not supported; use "
                        "str, int, float, bool, Decimal, UUID, datetime, date, list, tuple, "
                        "dict, Literal, a union of these, or Any."
                    )
                fields[name] = tp
                if name in vars(klass):
                    defaults[name] = vars(klass)[name]
                else:
                    defaults.pop(name, None)
        cls._fields = fields
        cls._defaults = defaults
        parent = next(
            (getattr(b, "_meta", None) for b in cls.__mro__[1:] if "_meta" in vars(b)), None
        )
        cls._meta = EventOptions(cls, vars(cls).get("Meta"), parent)
        if cls._meta.trace_context and TRACE_CONTEXT_KEY in fields:
            raise TypeError(
                f"{cls.__name__}.{TRACE_CONTEXT_KEY}: {TRACE_CONTEXT_KEY!r} is reserved with "
                "Meta.trace_context = True; rename the field."
            )
        template = getattr(cls, "channel", None)
        if template is None:
            # An intermediate base (shared fields or Meta): usable only through subclasses.
            cls._template_names = ()
            return
        if not isinstance(template, str):
            raise TypeError(f"{cls.__name__}.channel must be a str, not {type(template).__name__}.")
        names = _template_fields(template, cls.__name__)
        missing = [n for n in names if n not in fields]
        if missing:
            raise TypeError(
                f"{cls.__name__}.channel {template!r} names {', '.join(missing)}, which "
                f"{'is not a field' if len(missing) == 1 else 'are not fields'}; declare "
                f"{', '.join(f'{n}: <type>' for n in missing)}."
            )
        _check_template(template, names, cls.__name__)
        cls._template_names = names

    def __init__(self, *, event_id: str | uuid.UUID | None = None, **values: Any) -> None:
        """Validate the fields; see the class docstring.

        Raises:
            EventValidationError: missing, unknown or mistyped fields (all listed).
            InvalidChannelError: a template field's value makes an invalid channel.
        """
        cls = type(self)
        if getattr(cls, "channel", None) is None:
            raise TypeError(
                f"{cls.__name__} has no channel template, e.g. "
                "channel = '/chat/rooms/{room_id}'; declare one to create events."
            )
        problems: dict[str, str] = {}
        for name in values:
            if name not in cls._fields:
                problems[name] = "unknown field"
        clean: dict[str, Any] = {}
        for name, tp in cls._fields.items():
            value = values.get(name, cls._defaults.get(name, _MISSING))
            if value is _MISSING:
                problems[name] = "required"
                continue
            if not _is_instance(value, tp):
                problems[name] = (
                    f"expected {_type_name(tp)}, got {type(value).__name__} ({value!r:.40})"
                )
                continue
            clean[name] = value
        if problems:
            detail = "; ".join(f"{k}: {v}" for k, v in problems.items())
            raise EventValidationError(
                f"Invalid {cls.__name__}: {detail}. Fields: "
                f"{', '.join(f'{n}: {_type_name(t)}' for n, t in cls._fields.items())}.",
                event_class=cls.__name__,
                problems=problems,
            )
        for name, value in clean.items():
            # Copy mutable defaults so instances never share a list or dict.
            if isinstance(value, list):
                value = list(value)
            elif isinstance(value, dict):
                value = dict(value)
            setattr(self, name, value)
        if event_id is None and cls._meta.event_id:
            event_id = uuid.uuid4()
        self.event_id = None if event_id is None else str(event_id)
        self._channel = self._format_channel()

    def _format_channel(self) -> str:
        cls = type(self)
        values = {name: getattr(self, name) for name in cls._template_names}
        text = cls.channel.format(**{k: str(v) for k, v in values.items()})
        try:
            return parse_channel(text).path
        except InvalidChannelError as exc:
            fields = ", ".join(f"{k}={v!r}" for k, v in values.items())
            raise InvalidChannelError(
                f"{cls.__name__}({fields}) makes channel {text!r}: {exc.message}. Template "
                "values may only use letters, digits and '-'.",
                channel=text,
            ) from None

    # -- payload ------------------------------------------------------------------------

    @property
    def channel_path(self) -> str:
        """The concrete channel this event goes to (the template, formatted)."""
        return self._channel

    def to_payload(self) -> dict[str, Any]:
        """Return the event as published: ``event_type``, ``event_id``, the fields, and
        with ``Meta.trace_context`` the current trace context (when a span is recording)."""
        meta = type(self)._meta
        payload: dict[str, Any] = {TYPE_KEY: meta.type_name}
        if self.event_id is not None:
            payload[ID_KEY] = self.event_id
        payload.update({name: getattr(self, name) for name in type(self)._fields})
        if meta.trace_context:
            carrier = inject({})
            if carrier:
                payload[TRACE_CONTEXT_KEY] = carrier
        return payload

    def encode(self, *, api: str | None = None) -> str:
        """Return the payload as the JSON text sent (checked against the size limit).

        Encoded with the ``PUBLISH['ENCODER']`` of ``api`` (default ``Meta.api``).
        """
        return encode_event(self.to_payload(), encoder=_encoder(api or type(self)._meta.api))

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        mine, theirs = self.to_payload(), other.to_payload()
        mine.pop(TRACE_CONTEXT_KEY, None)  # where it was built is not what it says
        theirs.pop(TRACE_CONTEXT_KEY, None)
        return mine == theirs

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in type(self)._fields)
        return f"{type(self).__name__}({fields})"

    # -- publishing ---------------------------------------------------------------------

    def publish(
        self,
        *,
        api: str | None = None,
        on_commit: bool | None = None,
        durable: bool | None = None,
        using: str | None = None,
    ) -> PublishResult | DeferredPublish:
        """Publish this event to its channel; the arguments override ``Meta``.

        Returns and raises as :func:`appsync_events.publish` does.
        """
        opts = _resolve(
            type(self), {"api": api, "on_commit": on_commit, "durable": durable, "using": using}
        )
        alias = opts.pop("api")
        return publish_encoded(alias, self._channel, (self.encode(api=alias),), **opts)

    async def apublish(
        self, *, api: str | None = None, durable: bool | None = None, using: str | None = None
    ) -> PublishResult | DeferredPublish:
        """Async twin of :meth:`publish` (never deferred to a commit; see ``apublish()``)."""
        opts = _resolve(type(self), {"api": api, "durable": durable, "using": using})
        opts.pop("on_commit", None)
        alias = opts.pop("api")
        return await apublish_encoded(alias, self._channel, (self.encode(api=alias),), **opts)

    @classmethod
    def _group(cls, events: Iterable[Event], api: str) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for index, event in enumerate(events):
            if not isinstance(event, cls):
                raise TypeError(
                    f"{cls.__name__}.publish_many() got a {type(event).__name__} at index "
                    f"{index}; pass {cls.__name__} instances."
                )
            groups.setdefault(event._channel, []).append(event.encode(api=api))
        return groups

    @classmethod
    def publish_many(
        cls,
        events: Iterable[Self],
        *,
        api: str | None = None,
        on_commit: bool | None = None,
        durable: bool | None = None,
        using: str | None = None,
    ) -> list[PublishResult | DeferredPublish]:
        """Publish many events, grouped by channel and chunked (like ``bulk_create``).

        Every event is validated and encoded before anything is sent.

        Returns:
            one result (or deferred handle) per channel, in order of first appearance.
        """
        opts = _resolve(
            cls, {"api": api, "on_commit": on_commit, "durable": durable, "using": using}
        )
        alias = opts.pop("api")
        groups = cls._group(events, alias)
        return [
            publish_encoded(alias, channel, tuple(texts), **opts)
            for channel, texts in groups.items()
        ]

    @classmethod
    async def apublish_many(
        cls,
        events: Iterable[Self],
        *,
        api: str | None = None,
        durable: bool | None = None,
        using: str | None = None,
    ) -> list[PublishResult | DeferredPublish]:
        """Async twin of :meth:`publish_many`."""
        opts = _resolve(cls, {"api": api, "durable": durable, "using": using})
        opts.pop("on_commit", None)
        alias = opts.pop("api")
        groups = cls._group(events, alias)
        return [
            await apublish_encoded(alias, channel, tuple(texts), **opts)
            for channel, texts in groups.items()
        ]

    # -- receiving ----------------------------------------------------------------------

    @classmethod
    def matches(cls, event: ReceivedEvent | Mapping[str, Any]) -> bool:
        """Tell whether a received event's ``event_type`` is this class's."""
        payload = event.payload if isinstance(event, ReceivedEvent) else event
        return isinstance(payload, Mapping) and payload.get(TYPE_KEY) == cls._meta.type_name

    @classmethod
    def from_event(cls, event: ReceivedEvent | Mapping[str, Any] | str | bytes) -> Self:
        """Parse a received event into an instance, validating and converting its fields.

        Args:
            event: a :class:`~appsync_events.events.ReceivedEvent`, a decoded payload or
                its JSON text. Keys that are not fields are ignored (newer publishers may
                add some); ISO strings become ``datetime``/``date``, strings become
                ``UUID``/``Decimal`` where the field says so.

        Raises:
            EventValidationError: not an object, another ``event_type``, or invalid fields.
        """
        payload: Any
        if isinstance(event, ReceivedEvent):
            payload = event.payload
        elif isinstance(event, str | bytes):
            try:
                payload = json.loads(event)
            except ValueError as exc:
                raise EventValidationError(
                    f"Cannot parse {cls.__name__}: not JSON ({exc})",
                    event_class=cls.__name__,
                    problems={"": "not JSON"},
                ) from None
        else:
            payload = event
        if not isinstance(payload, Mapping):
            raise EventValidationError(
                f"Cannot parse {cls.__name__} from a {type(payload).__name__}; expected an object.",
                event_class=cls.__name__,
                problems={"": "not an object"},
            )
        kind = payload.get(TYPE_KEY)
        if kind is not None and kind != cls._meta.type_name:
            raise EventValidationError(
                f"Cannot parse {cls.__name__}: the event is a {kind!r}, not a "
                f"{cls._meta.type_name!r}.",
                event_class=cls.__name__,
                problems={TYPE_KEY: f"is {kind!r}"},
            )
        values = {
            name: _coerce(payload[name], tp) for name, tp in cls._fields.items() if name in payload
        }
        event_id = payload.get(ID_KEY)
        return cls(event_id=str(event_id) if event_id is not None else None, **values)


def _encoder(api: str) -> type[json.JSONEncoder]:
    return load_encoder(get_api_config(api).publish.encoder)


def _resolve(cls: type[Event], given: Mapping[str, Any]) -> dict[str, Any]:
    meta = cls._meta
    out = {
        "api": meta.api,
        "on_commit": meta.on_commit,
        "durable": meta.durable,
        "using": meta.using,
    }
    out.update({k: v for k, v in given.items() if v is not None})
    return out


# -- the model mixin ------------------------------------------------------------------


class PublishChangesMixin:
    """Publish ``created`` / ``updated`` / ``deleted`` events from a model's save and delete.

    .. code-block:: python

        class Message(PublishChangesMixin, models.Model):
            room = models.ForeignKey(Room, on_delete=models.CASCADE)
            text = models.TextField()

            appsync_channel = "/chat/rooms/{room_id}"
            appsync_fields = ("text", "room")

    The payload: ``event_type`` (``"<app_label>.<model>.<action>"``), ``event_id``,
    ``model``, ``action``, ``pk``, the template's values and the chosen fields (a foreign
    key by its id). Events go out through ``publish()``, so inside ``transaction.atomic()``
    they wait for the commit (on the database the instance was saved to) and a rollback
    publishes nothing.

    Only ``Model.save()`` / ``asave()`` and ``Model.delete()`` / ``adelete()`` publish.
    ``bulk_create()``, ``QuerySet.update()`` and ``QuerySet.delete()`` publish **nothing**:
    they do not call those methods (publish from your code after them if needed).

    Class attributes:
        appsync_channel: channel template; placeholders are instance attributes
            (``{pk}``, ``{room_id}``).
        appsync_fields: field names included in the payload.
        appsync_actions: which of ``created``, ``updated``, ``deleted`` to publish.
        appsync_api / appsync_durable / appsync_on_commit: as for ``publish()``.
    """

    appsync_channel: ClassVar[str] = ""
    appsync_fields: ClassVar[Sequence[str]] = ()
    appsync_actions: ClassVar[Sequence[str]] = ("created", "updated", "deleted")
    appsync_api: ClassVar[str] = DEFAULT_API
    appsync_durable: ClassVar[bool | None] = None
    appsync_on_commit: ClassVar[bool | None] = None

    def appsync_channel_path(self) -> str:
        """Return the concrete channel of this instance's events."""
        template = type(self).appsync_channel
        if not template:
            raise TypeError(
                f"{type(self).__name__} uses PublishChangesMixin but sets no appsync_channel, "
                "e.g. appsync_channel = '/shop/orders/{pk}'."
            )
        names = _template_fields(template, type(self).__name__)
        text = template.format(**{n: str(getattr(self, n)) for n in names})
        return parse_channel(text).path

    def appsync_payload(self, action: str) -> dict[str, Any]:
        """Return the payload published for ``action``; override to customise it."""
        # Model._meta is Django's documented "Model _meta API", public despite its name.
        opts = self._meta  # type: ignore[attr-defined]
        payload: dict[str, Any] = {
            TYPE_KEY: f"{opts.label_lower}.{action}",
            ID_KEY: str(uuid.uuid4()),
            "model": opts.label_lower,
            "action": action,
            "pk": self.pk,  # type: ignore[attr-defined]
        }
        for name in _template_fields(type(self).appsync_channel, type(self).__name__):
            payload[name] = getattr(self, name)
        for name in type(self).appsync_fields:
            field = opts.get_field(name)
            key = field.attname if getattr(field, "is_relation", False) else name
            payload[key] = field.value_from_object(self)
        return payload

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Saves are announced from post_save (public arguments: created, using,
        # update_fields), which Model.save() and asave() send and bulk operations do not.
        post_save.connect(
            _publish_saved,
            sender=cls,  # type: ignore[arg-type]  # a Model subclass once mixed in
            dispatch_uid=f"appsync_events.changes.{id(cls)}",
        )

    def _appsync_publish(
        self, action: str, channel: str, payload: dict[str, Any], using: str
    ) -> None:
        if action not in type(self).appsync_actions:
            return
        publish_encoded(
            type(self).appsync_api,
            channel,
            (encode_event(payload, encoder=_encoder(type(self).appsync_api)),),
            on_commit=type(self).appsync_on_commit,
            durable=type(self).appsync_durable,
            using=using,
        )

    def delete(self, using: str | None = None, keep_parents: bool = False) -> Any:
        """Delete, then publish ``deleted`` (with the primary key it had)."""
        using = using or router.db_for_write(type(self), instance=self)  # type: ignore[arg-type]
        channel = self.appsync_channel_path()
        payload = self.appsync_payload("deleted")
        result = super().delete(using=using, keep_parents=keep_parents)  # type: ignore[misc]
        self._appsync_publish("deleted", channel, payload, using)
        return result


def _publish_saved(
    sender: type[Any],
    instance: PublishChangesMixin,
    created: bool,
    raw: bool,
    using: str,
    update_fields: frozenset[str] | None,
    **kwargs: Any,
) -> None:
    """Publish ``created`` or ``updated`` after a :class:`PublishChangesMixin` model saved.

    Fixture loading (``raw``) publishes nothing, and Django sends no ``post_save`` for
    ``save(update_fields=[])``, which saves nothing.
    """
    if raw:
        return
    action = "created" if created else "updated"
    payload = instance.appsync_payload(action)
    if update_fields is not None and action == "updated":
        payload["updated_fields"] = sorted(update_fields)
    instance._appsync_publish(action, instance.appsync_channel_path(), payload, using)
