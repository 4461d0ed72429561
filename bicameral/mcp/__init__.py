"""MCP: upstream server adapters, the MCP session host and the ``bicameral mcp`` bridge.

Light on purpose: ``import bicameral.mcp`` costs nothing more than the bridge
(standard library only). `plugin` (the daemon plugin), `ServerConfig` and
`load_servers` are loaded on first use; the MCP SDK only when a server is
configured.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bicameral._lazy import lazy_exports
from bicameral.mcp._bridge import run_bridge

if TYPE_CHECKING:
    from bicameral.mcp._config import SHARE_MODES, ServerConfig, check_server_name, load_servers
    from bicameral.mcp._config_edit import (
        add_server,
        import_entries,
        import_servers,
        list_servers,
        remove_server,
    )
    from bicameral.mcp._doctor import mcp_checks
    from bicameral.mcp._endpoint import http_endpoint
    from bicameral.mcp._login import login_server, logout_server
    from bicameral.mcp._plugin import McpPlugin, plugin
    from bicameral.mcp._ps import control_server, ps_footer, server_rows, view_tools

__all__, __getattr__, __dir__ = lazy_exports(__name__, __file__, eager=["run_bridge"])
