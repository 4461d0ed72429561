"""What an MCP client needs to reach the daemon's HTTP listener (``bicameral mcp http``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bicameral.daemon import ConfigError

if TYPE_CHECKING:
    from bicameral.daemon import DaemonPaths

__all__ = ["http_endpoint"]


def http_endpoint(paths: DaemonPaths, server: str | None = None) -> dict[str, Any]:
    """The URL, header and ready-to-paste commands for ``/mcp`` (or ``/mcp/SERVER``).

    Read from the running daemon's descriptor (the address it actually
    bound) and ``http.token``. Raises `ConfigError` with what to do when the
    daemon is not running with its listener on.
    """
    from bicameral.daemon import MalformedDescriptor, read_descriptor, read_http_token

    try:
        descriptor = read_descriptor(paths.descriptor)
    except MalformedDescriptor as exc:
        raise ConfigError(str(exc)) from None
    if descriptor is None or descriptor.http_url is None:
        raise ConfigError(
            'the daemon\'s HTTP listener is not on: set listen = "127.0.0.1:8765" under '
            "[daemon.http] in config.toml, or run `bicameral daemon start --http 127.0.0.1:8765`"
        )
    if server is not None:
        from bicameral.mcp._ps import server_rows

        server_rows(paths, server)  # ConfigError naming the configured ones if it is not one
    url = f"{descriptor.http_url}/mcp" + (f"/{server}" if server else "")
    token = read_http_token(paths.home)
    name = server or "bicameral"
    result: dict[str, Any] = {"url": url, "name": name}
    if token is not None:
        header = f"Authorization: Bearer {token}"
        result["header"] = header
        result["claude"] = f'claude mcp add --transport http {name} {url} --header "{header}"'
        result["json"] = {
            "mcpServers": {
                name: {"type": "http", "url": url, "headers": {"Authorization": f"Bearer {token}"}}
            }
        }
    else:
        result["claude"] = f"claude mcp add --transport http {name} {url}"
        result["json"] = {"mcpServers": {name: {"type": "http", "url": url}}}
    return result
