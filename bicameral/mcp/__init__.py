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
    from bicameral.mcp._plugin import McpPlugin, plugin

__all__ = ["McpPlugin", "ServerConfig", "load_servers", "plugin", "run_bridge"]

_LAZY = {
    "McpPlugin": "bicameral.mcp._plugin",
    "plugin": "bicameral.mcp._plugin",
    "ServerConfig": "bicameral.mcp._config",
    "load_servers": "bicameral.mcp._config",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bicameral.mcp' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
