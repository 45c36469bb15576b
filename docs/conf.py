"""Sphinx configuration: the Markdown pages of docs/ and README.md, plus an API reference.

Built by ``make docs`` (docs/development.md): ``sphinx-build -E -W --keep-going -n -c docs
. docs/_build/html``. The source directory is the repository root, so the relative links
between README.md and docs/*.md are the same for Sphinx as on a repository browser; only
the files in ``include_patterns`` are read.

The API reference (docs/api/, generated here at each build, not committed) has one page
per public module of ``appsync_events``: its docstring and the names of its ``__all__``
that it defines. A name a module re-exports is listed there with a link to the page of the
module that defines it, so each object is described once, and a cross-reference through a
re-export or an imported name (``appsync_events.publish``, ``:class:`Listener``` in a
module that imports it) resolves to that one description (``rewrite_imported_names``).

The build is offline: no intersphinx inventory is downloaded. References to the standard
library and to third-party packages therefore cannot resolve; ``nitpick_ignore_regex``
lets them through as plain text (module by module, so a typo in a reference to the
package's own API still fails the build).
"""

from __future__ import annotations

import ast
import builtins
import functools
import importlib
import inspect
import sys
from pathlib import Path
from typing import Any, TypeVar

from docutils import nodes
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.pycode import ModuleAnalyzer
from sphinx.util.docstrings import prepare_docstring

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "appsync_events"
API_DIR = ROOT / "docs" / "api"

sys.path.insert(0, str(ROOT))

# Autodoc imports every module; the Django layer needs configured settings and a ready
# app registry (models, the consumer). Nothing here connects to a database or a service.
import django  # noqa: E402
from django.conf import settings  # noqa: E402

if not settings.configured:
    settings.configure(
        INSTALLED_APPS=[
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "channels",
            PACKAGE,
        ],
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        USE_TZ=True,
    )
    django.setup()

import appsync_events  # noqa: E402

# -- project ----------------------------------------------------------------------------------

project = "django-appsync-events"
author = "django-appsync-events developers"
copyright = "django-appsync-events developers"
release = appsync_events.__version__
version = release

# -- general ----------------------------------------------------------------------------------

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]
root_doc = "docs/index"
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
include_patterns = ["README.md", "BENCHMARKS.md", "docs/**"]
exclude_patterns = ["docs/_build", ".*", "**/node_modules", "**/.venv*"]
nitpicky = True
# Every problem is an error under -W; these are the only expected reference gaps:
# objects of other projects (no inventory offline), rendered as plain text.
THIRD_PARTY = [
    "asgiref",
    "boto3",
    "botocore",
    "channels",
    "channels_redis",
    "cryptography",
    "django",
    "django_tasks",
    "httpx",
    "jwt",
    "psycopg",
    "pytest",
    "_pytest",
    "redis",
    "uvicorn",
    "websockets",
]
_external = sorted({*sys.stdlib_module_names, *THIRD_PARTY})
nitpick_ignore_regex = [
    (r"py:.*", rf"(?:{'|'.join(_external)})(?:\..*)?"),
    # A private name of the package in a signature or a list of base classes (a private
    # base, the type of a private attribute): not documented, shown as text.
    (r"py:.*", rf"{PACKAGE}(?:\.\w+)*\._\w+(?:\..*)?"),
]
# The type variables of generic signatures (``R`` in ``idempotent``); set below.
nitpick_ignore: list[tuple[str, str]] = []

# -- MyST -------------------------------------------------------------------------------------

# GitHub-style anchors for headings, so links like production.md#2-iam-permissions work.
myst_heading_anchors = 6

# -- autodoc ----------------------------------------------------------------------------------

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
# The package's own "name: description" sections besides Args and Attributes.
napoleon_custom_sections = [
    (name, "params_style")
    for name in ("Options", "Other options", "Caching options", "Class attributes")
]

# -- HTML -------------------------------------------------------------------------------------

html_theme = "alabaster"
html_title = f"django-appsync-events {release}"
html_static_path: list[str] = []


# -- the API reference ------------------------------------------------------------------------


@functools.cache
def public_modules() -> list[str]:
    """Return the dotted names of the documented modules, packages first, sorted."""
    names = []
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if any(part.startswith("_") for part in parts) or "migrations" in parts:
            continue
        names.append(".".join(parts))
    return sorted(names)


def module_path(module: str) -> Path | None:
    """Return the source file of a module of the package, or ``None``."""
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


class ModuleInfo:
    """What one module says: its ``__all__``, the names it imports and where it defines each."""

    def __init__(self, module: str, path: Path) -> None:
        self.name = module
        self.is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text())
        # local name -> (module, name) it was imported from, TYPE_CHECKING imports included
        self.imports: dict[str, tuple[str, str]] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                source = self.absolute(node.module, node.level)
                for alias in node.names:
                    self.imports[alias.asname or alias.name] = (source, alias.name)
        # name -> line of its first definition, to document names in source order
        self.lines: dict[str, int] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                self.lines.setdefault(node.name, node.lineno)
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if isinstance(target, ast.Name):
                        self.lines.setdefault(target.id, node.lineno)
        self.all: list[str] = list(getattr(importlib.import_module(module), "__all__", []))

    def absolute(self, module: str | None, level: int) -> str:
        """Return the absolute name of a (possibly relative) ``from`` import."""
        if not level:
            return module or ""
        parts = self.name.split(".")
        base = parts if self.is_package else parts[:-1]
        base = base[: len(base) - (level - 1)]
        return ".".join([*base, module] if module else base)


MODULES: dict[str, ModuleInfo] = {}
# module.name of every name a package module imports -> where that object is documented
ALIASES: dict[str, str] = {}


def info(module: str) -> ModuleInfo | None:
    """Return what a module of the package says, or ``None`` for another package's."""
    if module != PACKAGE and not module.startswith(PACKAGE + "."):
        return None
    if module not in MODULES:
        path = module_path(module)
        if path is None:
            return None
        MODULES[module] = ModuleInfo(module, path)
    return MODULES[module]


def public_info(module: str) -> ModuleInfo:
    """Return what a public module of the package says."""
    mod = info(module)
    if mod is None:
        raise LookupError(f"{module} is not a module of {PACKAGE}")
    return mod


def canonical(module: str, name: str) -> str:
    """Return where ``module.name`` is documented.

    Follows the imports to the module that defines the object; it is documented by the
    deepest public module on the way whose ``__all__`` lists it (usually the defining one).
    An object of another package keeps its own name.
    """
    public = set(public_modules())
    documented = None
    current, current_name = module, name
    seen = set()
    while (current, current_name) not in seen:
        seen.add((current, current_name))
        mod = info(current)
        if mod is None:
            return documented or f"{current}.{current_name}"
        if current in public and current_name in mod.all:
            documented = f"{current}.{current_name}"
        if current_name not in mod.imports:
            if module_path(f"{current}.{current_name}") is not None:
                return f"{current}.{current_name}"  # a submodule
            return documented or f"{current}.{current_name}"
        current, current_name = mod.imports[current_name]
    return documented or f"{module}.{name}"


def aliases() -> dict[str, str]:
    """Map every name a package module imports (``module.name``) to where it is documented."""
    table = {}
    for module in public_modules():
        mod = public_info(module)
        for local in {*mod.imports, *mod.all}:
            target = canonical(module, local)
            if target != f"{module}.{local}":
                table[f"{module}.{local}"] = target
    return table


def title(module: str) -> str:
    """Return a page title: the module's name as a literal, underlined."""
    heading = f"``{module}``"
    return f"{heading}\n{'=' * len(heading)}\n"


def directive(module: str, name: str) -> list[str]:
    """Return the autodoc directive documenting ``module.name``, chosen by what it is."""
    obj = getattr(importlib.import_module(module), name)
    if inspect.isclass(obj):
        kind = "exception" if issubclass(obj, BaseException) else "class"
        options = ["   :members:", "   :show-inheritance:"]
    elif inspect.isroutine(obj):
        kind, options = "function", []
    else:
        kind, options = "data", []
    return [f".. auto{kind}:: {module}.{name}", *options, ""]


def module_page(module: str) -> str:
    """Return the reStructuredText of one module's page."""
    mod = public_info(module)
    defined, reexported = [], []
    for name in mod.all:
        target = canonical(module, name)
        if target == f"{module}.{name}":
            defined.append(name)
        else:
            reexported.append((name, target))
    defined.sort(key=lambda name: mod.lines.get(name, sys.maxsize))
    lines = [title(module), f".. automodule:: {module}", ""]
    for name in defined:
        lines += directive(module, name)
    if reexported:
        lines += ["Re-exported here", "----------------", ""]
        lines += [f"* ``{name}``: :py:obj:`{target}`" for name, target in reexported]
        lines.append("")
    return "\n".join(lines)


def index_page(modules: list[str]) -> str:
    """Return the reStructuredText of the API reference's index."""
    lines = [
        "API reference",
        "=============",
        "",
        "Generated from the docstrings of the package, one page per public module (see",
        ":doc:`/docs/development` for how it is built). The everyday API is importable from",
        ":py:mod:`appsync_events` itself; a page lists the names its module re-exports, with a",
        "link to the module that defines them.",
        "",
        ".. toctree::",
        "   :maxdepth: 1",
        "",
    ]
    lines += [f"   {module}" for module in modules]
    lines.append("")
    return "\n".join(lines)


def write_if_changed(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` unless it already holds it (keeps incremental builds)."""
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def generate_api_pages(app: Sphinx, config: Any) -> None:
    """Write docs/api/: the index and one page per public module; remove stale pages."""
    API_DIR.mkdir(exist_ok=True)
    modules = public_modules()
    wanted = {API_DIR / "index.rst": index_page(modules)}
    for module in modules:
        wanted[API_DIR / f"{module}.rst"] = module_page(module)
    for path in API_DIR.glob("*.rst"):
        if path not in wanted:
            path.unlink()
    for path, text in wanted.items():
        write_if_changed(path, text)


def rewrite_imported_names(app: Sphinx, doctree: nodes.document) -> None:
    """Point Python references made through an import or a re-export at the documented object.

    ``:class:`Listener``` in a module that imports ``Listener``, an annotation naming an
    imported class, or ``appsync_events.publish``: each becomes a reference to the one
    description (``appsync_events.listener.Listener``...), never a guess among the objects
    of that name (the domain's fuzzy search for annotations finds ``Connection`` in two
    modules). A built-in (``type[...]``) is never matched against attributes of that name.
    """
    objects = app.env.domains.python_domain.objects
    for node in doctree.findall(pending_xref):
        if node.get("refdomain") != "py":
            continue
        target = node["reftarget"]
        module = node.get("py:module")
        klass = node.get("py:class")
        if module and klass and f"{module}.{klass}.{target}" in objects:
            continue
        if module and f"{module}.{target}" in objects:
            continue
        for name in ([f"{module}.{target}"] if module else []) + [target]:
            resolved = through_aliases(name)
            if resolved is not None:
                node["reftarget"] = resolved
                node["refspecific"] = False
                break
        else:
            if node.get("refspecific") and isinstance(getattr(builtins, target, None), type):
                node["refspecific"] = False


def through_aliases(name: str) -> str | None:
    """Return ``name`` with its longest imported prefix replaced by where it is documented."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        prefix = ".".join(parts[:cut])
        if prefix in ALIASES:
            return ".".join([ALIASES[prefix], *parts[cut:]])
    return None


def show_factory_defaults(
    app: Sphinx,
    what: str,
    name: str,
    obj: Any,
    options: Any,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str | None, str | None] | None:
    """Show a dataclass field's ``default_factory`` as ``...`` (``<factory>`` is no Python)."""
    if signature and "<factory>" in signature:
        return signature.replace("<factory>", "..."), return_annotation
    return None


def own_docstring_only(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """Give module-level data only its own documentation, never its type's docstring.

    A constant's documentation is its ``#:`` comment (or the string after it); without one
    autodoc would show the docstring of the value's type (``Callable``'s for a callback
    alias). A task object (Django's ``@task``) shows the docstring of its function.
    """
    if what != "data":
        return
    module, _, attr = name.rpartition(".")
    if ("", attr) in ModuleAnalyzer.for_module(module).find_attr_docs():
        return
    function = getattr(obj, "func", None)
    lines[:] = prepare_docstring(function.__doc__) if function and function.__doc__ else []


def add_root_redirect(app: Sphinx, exception: Exception | None) -> None:
    """Write index.html at the top of the output, pointing at the documentation's index."""
    if exception is None and app.builder.format == "html":
        target = "docs/index.html"
        html = (
            '<!DOCTYPE html>\n<meta charset="utf-8">\n<title>django-appsync-events</title>\n'
            f'<meta http-equiv="refresh" content="0; url={target}">\n'
            f'<a href="{target}">django-appsync-events documentation</a>\n'
        )
        write_if_changed(Path(app.outdir) / "index.html", html)


def type_variables() -> list[tuple[str, str]]:
    """Return a reference to each type variable of the package, under each module using it."""
    found = []
    for module in public_modules():
        for name, value in vars(importlib.import_module(module)).items():
            if isinstance(value, TypeVar):
                found.append(("py:class", f"{module}.{name}"))
    return found


nitpick_ignore += type_variables()


def napoleon_except_attributes(app: Sphinx) -> None:
    """Run napoleon on every docstring but an attribute's, a property's or a constant's.

    Their documentation here is prose whose first line often has a colon ("The first
    segment: the namespace"); napoleon would read the part before it as a type (Google
    style's ``type: description``). Their type comes from the annotation instead.
    """
    event = "autodoc-process-docstring"
    napoleon = [
        listener
        for listener in app.events.listeners[event]
        if getattr(listener.handler, "__module__", None) == "sphinx.ext.napoleon"
    ]
    if len(napoleon) != 1:
        raise ExtensionError(f"docs/conf.py expects one {event} handler of napoleon")
    process = napoleon[0].handler

    def process_unless_attribute(
        app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]
    ) -> None:
        if what not in {"attribute", "data", "property"}:
            process(app, what, name, obj, options, lines)

    app.disconnect(napoleon[0].id)
    app.connect(event, process_unless_attribute, priority=napoleon[0].priority)


def setup(app: Sphinx) -> dict[str, Any]:
    """Generate the API pages and resolve references through imported names."""
    ALIASES.update(aliases())
    app.connect("config-inited", generate_api_pages)
    app.connect("doctree-read", rewrite_imported_names)
    app.connect("autodoc-process-signature", show_factory_defaults)
    app.connect("autodoc-process-docstring", own_docstring_only)
    napoleon_except_attributes(app)
    app.connect("build-finished", add_root_redirect)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
