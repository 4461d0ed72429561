"""The MCP layer as a daemon plugin (entry point ``bicameral.plugins: mcp``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bicameral.daemon import DaemonHost
    from bicameral.mcp._config import ServerConfig
    from bicameral.mcp._host import McpHost
    from bicameral.mcp._registry import Registry
    from bicameral.supervisor import ChildSpec

__all__ = ["McpPlugin", "plugin"]

#: An adapter's grace: the server process gets 2 s after SIGTERM, the rest is margin.
ADAPTER_SHUTDOWN = 5.0


class McpPlugin:
    """`bicameral.daemon.DaemonPlugin` for MCP servers.

    ``load_config`` validates ``[mcp.servers.*]``; ``adapter_specs`` gives one
    adapter child per enabled server, ``ChildSpec(name, run_adapter,
    args=(config, registry))``: the registry is this plugin's for the
    daemon's life, so an unchanged server's spec compares equal across a
    reload and is left running. ``install`` registers the ``mcp`` attach
    mode and the ``mcp.servers`` method. The SDK is imported only once a
    server is configured.
    """

    name = "mcp"

    def __init__(self) -> None:
        self._registry: Registry | None = None
        self.host: McpHost | None = None

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            from bicameral.mcp._registry import Registry

            self._registry = Registry()
        return self._registry

    def load_config(self, config: Mapping[str, Any], path: Path | None) -> dict[str, ServerConfig]:
        from bicameral.mcp._config import load_servers

        return load_servers(config, path)

    def adapter_specs(self, loaded: object) -> list[ChildSpec]:
        servers: Mapping[str, ServerConfig] = loaded  # type: ignore[assignment]
        enabled = [s for s in servers.values() if s.enabled]
        self.registry.set_configured([s.name for s in enabled])
        if not enabled:
            return []
        from bicameral.mcp._adapter import run_adapter
        from bicameral.supervisor import ChildSpec, Restart

        return [
            ChildSpec(
                name=s.name,
                target=run_adapter,
                args=(s, self.registry),
                restart=Restart.PERMANENT,
                shutdown=ADAPTER_SHUTDOWN,
            )
            for s in enabled
        ]

    def install(self, host: DaemonHost) -> None:
        from bicameral.mcp._host import McpHost

        self.host = McpHost(self.registry, host)
        host.add_attach_mode("mcp", self.host.attach)
        registry = self.registry

        async def servers(params: Any, conn: Any) -> list[dict[str, Any]]:
            return [{"name": up.name, **up.status()} for up in registry.active()]

        host.dispatcher.add("mcp.servers", servers)


plugin = McpPlugin()
