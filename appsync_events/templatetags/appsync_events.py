"""Template tags of appsync_events: ``{% load appsync_events %}``.

``{% appsync_events_script %}`` renders the ``<script>`` tag of the browser client
(``appsync_events/static/appsync_events/appsync-events.js``, the global ``AppSyncEvents``);
it is the same as ``{% include "appsync_events/script.html" %}``. See docs/browser.md.
"""

from __future__ import annotations

from typing import Any

from django import template

__all__ = ["SCRIPT_TEMPLATE", "appsync_events_script"]

register = template.Library()

#: The template both the tag and ``{% include %}`` render.
SCRIPT_TEMPLATE = "appsync_events/script.html"


@register.inclusion_tag(SCRIPT_TEMPLATE)
def appsync_events_script(*, defer: bool = False, nonce: str = "") -> dict[str, Any]:
    """Render the ``<script>`` tag that loads the browser client.

    Args:
        defer: add ``defer``: the script runs after the page is parsed, before the
            ``DOMContentLoaded`` event, in document order with other deferred scripts (so a
            deferred page script placed after it can use ``AppSyncEvents``). Leave it off
            when an inline script right after the tag uses ``AppSyncEvents``.
        nonce: a Content-Security-Policy nonce for the tag (e.g. ``csp_nonce`` on Django
            6's CSP support); an empty value adds no attribute.

    Returns:
        The context of ``appsync_events/script.html``.
    """
    return {"defer": bool(defer), "nonce": nonce}
