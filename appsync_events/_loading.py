"""Load pluggable classes named in settings, and check the options given to them.

No Django here: the auth backends and the client load classes with it too.

Publishing backends (``PUBLISH['BACKEND']``) and auth backends (``AUTH[mode]['BACKEND']``)
are both dotted paths to a subclass of a base class, constructed with options from
settings; both turn a bad path or an unknown option into the same kind of
:class:`~appsync_events.exceptions.ConfigurationError`, naming the setting to fix.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any, TypeVar

from .exceptions import ConfigurationError

__all__ = ["import_class", "import_string", "reject_unknown_options"]

T = TypeVar("T")


def import_string(dotted_path: str) -> Any:
    """Import ``"package.module.attribute"`` and return the attribute.

    The standard-library equivalent of Django's ``import_string`` (this module is used
    by the parts that need no Django).

    Raises:
        ImportError: the path has no dot, the module cannot be imported, or it has no
            such attribute.
    """
    try:
        module_path, name = dotted_path.rsplit(".", 1)
    except (ValueError, AttributeError):
        raise ImportError(f"{dotted_path!r} does not look like a module path") from None
    module = importlib.import_module(module_path)
    try:
        return getattr(module, name)
    except AttributeError:
        raise ImportError(
            f"Module {module_path!r} does not define a {name!r} attribute/class"
        ) from None


def import_class(
    path: str, base: type[T], *, base_name: str, setting: str, api: str, key: str, check_id: str
) -> type[T]:
    """Import the class at dotted ``path`` and check that it subclasses ``base``.

    Args:
        path: the dotted path from settings.
        base: the class it must subclass.
        base_name: how the error names ``base`` (its public import path).
        setting: the setting that holds ``path``, e.g.
            ``"APPSYNC_EVENTS['default']['PUBLISH']['BACKEND']"``.
        api: the alias, for the error's ``api``.
        key: the alias's top-level key, for the error's ``key``.
        check_id: the system check id the error carries.

    Raises:
        ConfigurationError: ``path`` cannot be imported, or is not a ``base`` subclass.
    """
    try:
        cls = import_string(path)
    except ImportError as exc:
        raise ConfigurationError(
            f"{setting} = {path!r} cannot be imported: {exc}",
            api=api,
            key=key,
            check_id=check_id,
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigurationError(
            f"{setting} = {path!r} is not an {base_name} subclass.",
            api=api,
            key=key,
            check_id=check_id,
        )
    return cls


def reject_unknown_options(
    options: Iterable[str],
    valid: Iterable[str],
    *,
    owner: type,
    setting: str,
    api: str,
    key: str,
    check_id: str,
) -> None:
    """Refuse option names outside ``valid``, listing the valid ones.

    Args:
        options: the option names given (lowercase).
        valid: the option names ``owner`` accepts.
        owner: the class the options are for (named in the error).
        setting: the setting that holds the options, e.g.
            ``"APPSYNC_EVENTS['default']['PUBLISH']['OPTIONS']"``.
        api: the alias, for the error's ``api``.
        key: the alias's top-level key, for the error's ``key``.
        check_id: the system check id the error carries.

    Raises:
        ConfigurationError: some option name is not in ``valid``.
    """
    allowed = set(valid)
    unknown = sorted(set(options) - allowed)
    if unknown:
        listed = ", ".join(sorted(allowed)) or "none"
        raise ConfigurationError(
            f"{setting}: unknown option(s) {', '.join(unknown)} for {owner.__name__}; "
            f"valid options: {listed}.",
            api=api,
            key=key,
            check_id=check_id,
        )
