"""The dashboard: ``GET /`` on the daemon's HTTP listener (docs/dashboard.md).

- :mod:`._app`: the ASGI app and its session guard, mounted by the MCP
  plugin at ``/`` and ``/dashboard``;
- :mod:`._session`: sign-in (the token once, or a one-time link), the
  cookie and the CSRF tokens;
- :mod:`._view`: the state shown (tree, servers, recent calls, stderr),
  built in-process and rendered as HTML fragments;
- :mod:`._page`: the page, the sign-in form, the style and the script;
- :func:`dashboard_link`: the client side of ``bicameral dashboard``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bicameral._lazy import lazy_exports

if TYPE_CHECKING:
    from bicameral.mcp.dashboard._app import Dashboard
    from bicameral.mcp.dashboard._link import dashboard_link

__all__, __getattr__, __dir__ = lazy_exports(__name__, __file__)
