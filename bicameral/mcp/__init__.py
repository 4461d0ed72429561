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
    from bicameral.mcp._config import SHARE_MODES, ServerConfig, check_server_name, load_servers
    from bicameral.mcp._config_edit import add_server, import_servers, list_servers, remove_server
    from bicameral.mcp._doctor import mcp_checks
    from bicameral.mcp._endpoint import http_endpoint
    from bicameral.mcp._login import login_server, logout_server
    from bicameral.mcp._plugin import McpPlugin, plugin
    from bicameral.mcp._ps import control_server, server_rows

__all__ = [
    "SHARE_MODES",
    "McpPlugin",
    "ServerConfig",
    "add_server",
    "check_server_name",
    "control_server",
    "http_endpoint",
    "import_servers",
    "list_servers",
    "load_servers",
    "login_server",
    "logout_server",
    "mcp_checks",
    "plugin",
    "remove_server",
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
    "http_endpoint": "bicameral.mcp._endpoint",
    "login_server": "bicameral.mcp._login",
    "logout_server": "bicameral.mcp._login",
    "SHARE_MODES": "bicameral.mcp._config",
    "add_server": "bicameral.mcp._config_edit",
    "check_server_name": "bicameral.mcp._config",
    "import_servers": "bicameral.mcp._config_edit",
    "list_servers": "bicameral.mcp._config_edit",
    "mcp_checks": "bicameral.mcp._doctor",
    "remove_server": "bicameral.mcp._config_edit",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bicameral.mcp' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
