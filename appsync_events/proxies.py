"""Which proxy a connection to AppSync goes through: one rule for HTTP and websocket.

``APPSYNC_EVENTS[alias]['PROXY']`` (``APIConfig.proxy``) is read by :func:`proxy_for`,
and both transports (the HTTP publisher and the websocket client) connect through what
it returns, so they never disagree:

* ``True`` (the default): the proxy environment variables, as Python's
  :func:`urllib.request.getproxies` reads them: ``HTTPS_PROXY`` for ``https://`` and
  ``wss://`` endpoints, ``HTTP_PROXY`` for ``http://`` and ``ws://`` ones, ``ALL_PROXY``
  for either when the specific one is unset; ``NO_PROXY`` lists hosts to reach directly
  (:func:`urllib.request.proxy_bypass`). Lower-case names work too.
* a URL string: that proxy, for every connection of the alias.
* ``False``: no proxy, whatever the environment says.

HTTP proxies are used with ``CONNECT`` tunnels for ``https://``/``wss://``. SOCKS proxies
(``socks5://``...) need the optional packages of the two libraries: ``httpx[socks]`` for
publishing and ``python-socks[asyncio]`` for the websocket.
"""

from __future__ import annotations

import urllib.request
from urllib.parse import urlsplit

__all__ = ["proxy_for"]

#: The environment variable family a URL scheme reads (websockets use the HTTP ones).
_FAMILY = {"https": "https", "wss": "https", "http": "http", "ws": "http"}


def proxy_for(url: str, setting: str | bool) -> str | None:
    """Return the proxy URL to reach ``url`` through, or ``None`` to connect directly.

    Args:
        url: the endpoint (``https://…/event`` or ``wss://…/event/realtime``).
        setting: ``APIConfig.proxy``: ``True`` (environment), a proxy URL, or ``False``.
    """
    if setting is False:
        return None
    if isinstance(setting, str):
        return setting
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port
    if urllib.request.proxy_bypass(f"{host}:{port}" if port else host):
        return None
    proxies = urllib.request.getproxies()
    family = _FAMILY.get(parts.scheme, parts.scheme)
    return proxies.get(family) or proxies.get("all") or None
