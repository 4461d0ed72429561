"""``bicameral mcp login | logout NAME``: the operator's side of OAuth (see `_oauth`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from bicameral.daemon import ConfigError, DaemonError

if TYPE_CHECKING:
    from bicameral.daemon import DaemonPaths
    from bicameral.mcp._config import ServerConfig

__all__ = ["login_server", "logout_server"]


def _oauth_server(paths: DaemonPaths, name: str) -> ServerConfig:
    from bicameral.mcp._config_edit import list_servers

    configured = {s.name: s for s in list_servers(paths.config)}
    server = configured.get(name)
    if server is None:
        known = ", ".join(configured) or "none"
        raise ConfigError(f"no MCP server named {name!r} in {paths.config} (configured: {known})")
    if server.auth != "oauth":
        raise ConfigError(
            f"MCP server {name!r} does not use OAuth (it has auth = {server.auth!r}); "
            'set auth = "oauth" to log in to it'
        )
    return server


def _restart(paths: DaemonPaths, name: str) -> bool:
    """Have a running daemon connect again with the new tokens; whether one did."""
    from bicameral.mcp._ps import control_server

    try:
        control_server(paths, "restart", name)
    except DaemonError:
        return False
    return True


def login_server(
    paths: DaemonPaths,
    name: str,
    show: Callable[[str, str], Awaitable[None]] | None = None,
    *,
    browser: bool = True,
) -> dict[str, Any]:
    """Log in to `name` (browser flow, loopback redirect); store its tokens for the daemon.

    With `browser` false no browser is opened: the URL is only printed (on a
    line of its own), for whoever or whatever follows it.

    Raises:
      ConfigError: no such server, or it does not use OAuth.
      ValueError: the authorization server advertised an endpoint that is
        refused, or it refused the login (the message says which).
      TimeoutError: nobody completed the login in the browser in time.
    """
    import anyio

    from bicameral.mcp import _oauth

    server = _oauth_server(paths, name)
    # The SDK logs a failed flow with its traceback; the caller reports it in
    # one line (the exception), so its logs stay out of the terminal.
    import logging

    logging.getLogger("mcp").addHandler(logging.NullHandler())
    logging.getLogger("mcp").propagate = False

    async def run() -> None:
        async def show_it(url: str) -> None:
            if show is None:
                await _oauth.show_url(name, url, browser=browser)
            else:
                await show(name, url)

        await _oauth.login(server, paths.home, show_it)

    try:
        anyio.run(run)
    except BaseExceptionGroup as group:
        raise _leaf(group) from None
    restarted = _restart(paths, name)
    return {
        "status": "logged-in",
        "name": name,
        "tokens": _oauth.TokenFile(_oauth.token_path(paths.home, name)).where(),
        "daemon": "reconnected" if restarted else "not running",
    }


def _leaf(exc: BaseException) -> BaseException:
    """The one error inside nested task-group wrappers (what to tell the user)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def logout_server(paths: DaemonPaths, name: str) -> dict[str, Any]:
    """Forget `name`'s tokens (the daemon's connection to it ends: it needs a login again)."""
    from bicameral.mcp._config import token_path
    from bicameral.mcp._oauth import TokenFile

    _oauth_server(paths, name)
    had = TokenFile(token_path(paths.home, name)).forget()
    restarted = _restart(paths, name)
    return {
        "status": "logged-out" if had else "unchanged",
        "name": name,
        "daemon": "disconnected" if restarted else "not running",
    }
