"""MCP: upstream server adapters, the MCP session host and the ``bicameral mcp`` bridge.

Light on purpose: ``import bicameral.mcp`` costs nothing more than the bridge
(standard library only). `plugin` (the daemon plugin), `ServerConfig` and
`load_servers` are loaded on first use; the MCP SDK only when a server is
configured.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bicameral.mcp._bridge import run_bridge

if TYPE_CHECKING:
    from bicameral.mcp._config import ServerConfig, load_servers
    from bicameral.mcp._login import login_server, logout_server
    from bicameral.mcp._plugin import McpPlugin, plugin
    from bicameral.mcp._ps import control_server, server_rows

__all__ = [
    "McpPlugin",
    "ServerConfig",
    "control_server",
    "load_servers",
    "login_server",
    "logout_server",
    "plugin",
    "run_bridge",
    "server_rows",
]

_LAZY = {
    "McpPlugin": "bicameral.mcp._plugin",
    "plugin": "bicameral.mcp._plugin",
    "ServerConfig": "bicameral.mcp._config",
    "load_servers": "bicameral.mcp._config",
    "control_server": "bicameral.mcp._ps",
    "server_rows": "bicameral.mcp._ps",
    "login_server": "bicameral.mcp._login",
    "logout_server": "bicameral.mcp._login",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bicameral.mcp' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
