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

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bicameral.daemon import DaemonPaths
    from bicameral.mcp.dashboard._app import Dashboard

__all__ = ["Dashboard", "dashboard_link"]


def dashboard_link(paths: DaemonPaths) -> dict[str, Any]:
    """A one-time sign-in link to the running daemon's dashboard: ``{"url", "dashboard"}``.

    Raises :class:`~bicameral.daemon.ConfigError` saying what to do when no
    daemon runs with its listener on.
    """
    from bicameral.daemon import ConfigError, DaemonError, call_daemon
    from bicameral.mcp._endpoint import http_endpoint

    base = str(http_endpoint(paths)["url"]).removesuffix("/mcp")
    try:
        code = call_daemon(paths, "dashboard.link")
    except DaemonError as exc:
        raise ConfigError(f"cannot reach the daemon: {exc}") from None
    return {"url": f"{base}/dashboard/link?code={code}", "dashboard": f"{base}/"}


def __getattr__(name: str) -> Any:
    if name == "Dashboard":
        from bicameral.mcp.dashboard._app import Dashboard

        return Dashboard
    raise AttributeError(f"module 'bicameral.mcp.dashboard' has no attribute {name!r}")
