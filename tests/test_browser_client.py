"""The browser client's Django side: the static files, ``script.html`` and the template tag.

Its JavaScript runs in Chromium in ``tests/browser/test_browser_client.py``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.template import Context, Template
from django.template.loader import render_to_string

import appsync_events

PACKAGE = Path(appsync_events.__file__).resolve().parent
SCRIPT = "appsync_events/appsync-events.js"
MODULE = "appsync_events/appsync-events.mjs"
TAG = '<script src="/static/appsync_events/appsync-events.js"></script>'


def render(source: str, **context: Any) -> str:
    return Template(source).render(Context(context)).strip()


@pytest.mark.parametrize("name", [SCRIPT, MODULE])
def test_staticfiles_finders_find_the_client_in_the_package(name: str) -> None:
    """Django's staticfiles finders find both client files inside the installed app."""
    found = finders.find(name)
    assert found is not None, f"{name} is not found by the staticfiles finders"
    assert Path(str(found)).resolve() == PACKAGE / "static" / name
    assert Path(str(found)).stat().st_size > 0


def test_the_module_re_exports_every_name_of_the_classic_script() -> None:
    """appsync-events.mjs re-exports exactly the names the classic script's global returns."""
    script = (PACKAGE / "static" / SCRIPT).read_text()
    module = (PACKAGE / "static" / MODULE).read_text()
    returned = re.search(r"return Object\.freeze\(\{(.*?)\}\);\s*\}\);\s*$", script, re.S)
    assert returned is not None
    exported = re.search(r"export const \{(.*?)\} = AppSyncEvents;", module, re.S)
    assert exported is not None
    script_names = {line.split(":")[0].strip() for line in returned.group(1).split(",")} - {""}
    module_names = {name.strip() for name in exported.group(1).split(",")} - {""}
    assert script_names == module_names
    assert 'import "./appsync-events.js";' in module


def test_include_renders_the_script_tag() -> None:
    """``{% include "appsync_events/script.html" %}`` renders one plain script tag."""
    assert render('{% include "appsync_events/script.html" %}') == TAG


def test_include_with_defer_and_nonce() -> None:
    """``defer`` and an escaped CSP ``nonce`` are added when the include passes them."""
    out = render('{% include "appsync_events/script.html" with defer=True nonce=n %}', n='a"b<c>')
    assert out == (
        '<script src="/static/appsync_events/appsync-events.js" defer '
        'nonce="a&quot;b&lt;c&gt;"></script>'
    )


def test_template_tag_renders_what_the_include_renders() -> None:
    """``{% appsync_events_script %}`` is the include, with the same options."""
    assert render("{% load appsync_events %}{% appsync_events_script %}") == TAG
    assert render(
        "{% load appsync_events %}{% appsync_events_script defer=True nonce=n %}", n="r4nd"
    ) == render('{% include "appsync_events/script.html" with defer=True nonce="r4nd" %}')


def test_template_tag_ignores_the_page_context() -> None:
    """Variables named ``defer`` or ``nonce`` in the page do not leak into the tag."""
    out = render("{% load appsync_events %}{% appsync_events_script %}", defer=True, nonce="x")
    assert out == TAG


def test_script_tag_follows_static_url(settings: Any) -> None:
    """The ``src`` comes from the static files storage, so ``STATIC_URL`` (a CDN) applies."""
    settings.STATIC_URL = "https://cdn.example.test/assets/"
    assert render_to_string("appsync_events/script.html").strip() == (
        '<script src="https://cdn.example.test/assets/appsync_events/appsync-events.js"></script>'
    )
