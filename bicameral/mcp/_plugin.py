"""The MCP layer as a daemon plugin (entry point ``bicameral.plugins: mcp``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from bicameral.daemon import DaemonHost
    from bicameral.mcp._config import ServerConfig
    from bicameral.mcp._host import McpHost
    from bicameral.mcp._registry import Registry
    from bicameral.mcp.surface import SurfaceConfig
    from bicameral.supervisor import ChildSpec

__all__ = ["McpPlugin", "plugin"]


class McpPlugin:
    """`bicameral.daemon.DaemonPlugin` for MCP servers.

    ``load_config`` validates ``[mcp]`` and ``[mcp.servers.*]``;
    ``adapter_specs`` gives one TRANSIENT child per enabled server, its
    `ServerTree` (``bicameral.mcp._adapter``), which the ``adapters``
    supervisor retries ``FAILED_RETRY`` seconds after it gave up
    (``ChildSpec.retry_after``, SPEC §8.2): trees of equal configuration
    compare equal, so an unchanged server's spec is left running across a
    reload. ``install`` registers the ``mcp`` attach mode and the
    ``mcp.servers`` method. Nothing here imports the SDK: the servers' own
    children do, after the daemon is ready.
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

    def load_config(
        self, config: Mapping[str, Any], path: Path | None
    ) -> tuple[dict[str, ServerConfig], SurfaceConfig]:
        from bicameral.mcp._config import load_mcp, load_ready_timeout

        servers, surface = load_mcp(config, path)
        enabled = [name for name, server in servers.items() if server.enabled]
        _check_against_lists(surface, self.registry, enabled)
        self.registry.ready_timeout = load_ready_timeout(config, path)
        return servers, surface

    def adapter_specs(self, loaded: object) -> list[ChildSpec]:
        servers, surface = cast("tuple[dict[str, ServerConfig], SurfaceConfig]", loaded)
        self.registry.set_surface(surface)
        enabled = [s for s in servers.values() if s.enabled]
        self.registry.set_configured([s.name for s in enabled])
        self.registry.disabled = [s.name for s in servers.values() if not s.enabled]
        if not enabled:
            return []
        from bicameral.mcp._adapter import (
            FAILED_RETRY,
            REMOTE_RETRY,
            ServerTree,
            quiet_server_exits,
        )
        from bicameral.supervisor import ChildSpec, Restart

        quiet_server_exits()  # a server's exit is one line of ours, not a crash traceback

        return [
            ChildSpec(
                name=s.name,
                target=ServerTree(s, self.registry),
                restart=Restart.TRANSIENT,
                retry_after=REMOTE_RETRY if s.remote else FAILED_RETRY,
            )
            for s in enabled
        ]

    def _warming(self) -> str | None:
        """The servers still in their first start (``/readyz`` waits for them)."""
        names = [
            up.name
            for up in self.registry.active()
            if up.state == "starting" and up.init_result is None and not up.restarts
        ]
        return f"servers warming up: {', '.join(names)}" if names else None

    def install(self, host: DaemonHost) -> None:
        from bicameral.mcp._host import McpHost
        from bicameral.mcp._registry import up_source

        self.host = McpHost(self.registry, host)
        self.registry.max_frame = host.limits.max_frame
        self.registry.daemon_ready = host.ready
        self.registry.start_soon = host.start_soon
        self.registry.home = host.state_dir if host.paths is not None else None
        self.registry.store = getattr(host, "store", None)
        host.add_attach_mode("mcp", self.host.attach)
        registry = self.registry

        async def servers(params: Any, conn: Any) -> list[dict[str, Any]]:
            surface = registry.surface
            return [
                {"name": up.name, **up.status(), **surface.accounting(up_source(up))}
                for up in registry.active()
            ]

        async def tools(params: Any, conn: Any) -> dict[str, Any]:
            """``mcp.tools {server?, profile?}``: what a client of that view receives."""
            from bicameral.mcp.surface import Refused, view_report
            from bicameral.protocol import INVALID_PARAMS, RPCError

            params = params if isinstance(params, dict) else {}
            server, profile = params.get("server"), params.get("profile")
            if not isinstance(server, str | None) or not isinstance(profile, str | None):
                raise RPCError(INVALID_PARAMS, "server and profile must be names")
            try:
                return view_report(
                    registry.surface, registry.sources(), server=server, profile=profile
                )
            except Refused as exc:
                raise RPCError(INVALID_PARAMS, str(exc)) from None

        host.dispatcher.add("mcp.servers", servers)
        host.dispatcher.add("mcp.tools", tools)
        mcp_host = self.host

        def serve_http(listener: object) -> None:
            # Clients over streamable HTTP (``/mcp``, ``/mcp/NAME``): the
            # listener is the daemon's (at start, or opened by a reload); the
            # sessions, and what /metrics says about servers, are ours.
            # Nothing here imports the SDK yet.
            from bicameral.mcp._http import HttpSessions
            from bicameral.mcp._metrics import McpCollector

            sessions = HttpSessions(
                mcp_host,
                host.limits.max_frame,
                host.limits.max_buffered,
                # Read at each new session: a reload may change it.
                session_id_header=lambda: listener.settings.session_id_header,  # type: ignore[attr-defined]
            )
            host.add_http_app("/mcp", sessions)
            host.add_metrics(McpCollector(registry, sessions))
            host.on_http_drain(sessions.drain)
            host.add_warming(self._warming)
            host.start_soon(sessions.run)
            # The dashboard, for people: `GET /` and `/dashboard/*`.
            from bicameral.mcp.dashboard import Dashboard

            dashboard = Dashboard(host, registry)
            dashboards[:] = [dashboard]
            host.add_http_app("/", dashboard)
            host.add_http_app("/dashboard", dashboard)
            host.on_http_drain(dashboard.drain)

        dashboards: list[Any] = []

        async def link(params: Any, conn: Any) -> str:
            if not dashboards:
                from bicameral.daemon import DaemonError

                raise DaemonError("the HTTP listener is off: start the daemon with --http")
            return str(dashboards[0].link_code())

        host.dispatcher.add("dashboard.link", link)
        host.on_http(serve_http)
        host.start_soon(terminate_on_stop, host, self.registry)


def _check_against_lists(surface: SurfaceConfig, registry: Registry, servers: list[str]) -> None:
    """A reload's rules checked against what the running servers listed (docs/tools.md).

    A glob that matches none of a server's tools, a rename onto a name it
    has, a pinned tool the view lacks: the reload is refused, naming the
    table and key, and the running configuration stays. Servers that have not
    listed yet are checked when they do (a warning in the log).
    """
    from bicameral.daemon import ConfigError
    from bicameral.mcp.surface import check_lists

    running = [s for s in registry.sources() if s.server in servers]
    problems = check_lists(surface, running, servers)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConfigError(f"{surface.file}: {problems[0]}{more}")


async def terminate_on_stop(host: DaemonHost, registry: Registry) -> None:
    """When the daemon begins a graceful stop, SIGTERM every server's process group at once.

    With an HTTP listener, after it has drained: the calls it is finishing
    need their servers. The tree then stops the servers' subtrees in reverse
    order, as OTP does,
    and finds each instance already exiting: stopping 30 servers takes about
    as long as stopping the slowest, not the sum of them all. An instance that
    exits now waits for its own stop instead of being restarted.
    """
    if host.stopping is None:
        return
    await host.stopping.wait()
    if host.http is not None:
        # Requests the HTTP listener is draining still need their servers.
        import anyio

        with anyio.move_on_after(10.0):
            await host.http.wait_drained()
    registry.terminate_all()


plugin = McpPlugin()
