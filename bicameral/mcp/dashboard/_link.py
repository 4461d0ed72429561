"""``bicameral dashboard``'s side: ask the running daemon for a one-time sign-in link."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bicameral.daemon import DaemonPaths

__all__ = ["dashboard_link"]


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
