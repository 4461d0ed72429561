"""The plugin's registry of upstream servers, shared by adapters and client sessions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bicameral.mcp._common import CALL_WAIT, MAX_FRAME
from bicameral.mcp._metrics import RecentCalls
from bicameral.mcp.surface import Source, Surface

if TYPE_CHECKING:
    from bicameral.mcp._config import ServerConfig
    from bicameral.mcp._state import Instance, Upstream
    from bicameral.mcp.surface import SurfaceConfig

__all__ = ["Registry", "up_source"]


class Registry:
    """Every configured server's `Upstream`, by name, shared by adapters and sessions."""

    def __init__(self) -> None:
        self.upstreams: dict[str, Upstream] = {}
        self.configured: list[str] = []
        #: Configured but `enabled = false`: named as such when a client asks for one.
        self.disabled: list[str] = []
        self.on_change: list[Callable[[], None]] = []
        #: ``[mcp] ready_timeout``: how long a call waits for a (re)starting server.
        self.ready_timeout = CALL_WAIT
        #: MCP client sessions attached now (every transport).
        self.clients = 0
        #: The daemon's ``max_frame``: the longest line a server may write.
        self.max_frame = MAX_FRAME
        #: Set when the daemon is ready; servers are not spawned before (SPEC §8.2).
        self.daemon_ready: Any = None
        #: Runs a background task for the daemon's life (retiring idle instances).
        self.start_soon: Callable[..., None] | None = None
        #: The daemon's state directory (OAuth tokens live under it).
        self.home: Path | None = None
        #: The last calls forwarded to any server (the dashboard's list).
        self.recent = RecentCalls()
        #: What each view offers (``[mcp.servers.NAME.tools]``, ``[mcp.profiles.NAME]``).
        self.surface = Surface()
        #: The store replicas share (``[daemon.store]``): OAuth tokens live there then.
        self.store: Any = None

    def upstream(self, config: ServerConfig) -> Upstream:
        from bicameral.mcp._state import Upstream

        up = self.upstreams.get(config.name)
        if up is None:
            up = self.upstreams[config.name] = Upstream(config)
            up.calls.server, up.calls.recent = config.name, self.recent
            self._changed()  # attached clients pick the new server up
        else:
            up.config = config
        up.ready_timeout = self.ready_timeout
        up.max_frame = self.max_frame
        up.start_soon = self.start_soon
        up.home = self.home
        up.on_publish = self._published
        up.store = self.store
        return up

    def _published(self, up: Upstream) -> None:
        """`up`'s state or lists changed: what the rules say of its lists goes to the log.

        At load a server may not have listed yet; its rules (a glob that
        matches nothing, a pinned tool that is not there) are checked here,
        once it has, and each problem is logged once. Cached by the lists'
        identity, so an unchanged list costs lookups only.
        """
        if up.init_result is None:
            return
        from bicameral.mcp.surface import OWN_TOOLS

        surface = self.surface
        surface.check(up_source(up))
        if surface.config.profiles:
            sources = self.sources()
            for profile in surface.config.profiles.values():
                if profile.shows(up.name):
                    surface.catalog(profile, "tools", sources, OWN_TOOLS)

    def _changed(self) -> None:
        for callback in list(self.on_change):
            callback()

    def set_configured(self, names: list[str]) -> None:
        """The servers of the current configuration, in order (others are hidden)."""
        if names != self.configured:
            self.configured = list(names)
            self._changed()

    def set_surface(self, config: SurfaceConfig) -> None:
        """Apply a reload's rules and profiles; attached clients are told their lists changed."""
        if config != self.surface.config:
            self.surface = Surface(config)
            self._changed()

    def sources(self) -> list[Source]:
        """Every active server's lists as a client with no instance of its own sees them."""
        return [up_source(up) for up in self.active()]

    def terminate_all(self) -> None:
        """The daemon is stopping: SIGTERM every live server's process group now."""
        for up in self.upstreams.values():
            up.terminate()

    def active(self) -> list[Upstream]:
        return [self.upstreams[n] for n in self.configured if n in self.upstreams]

    def get(self, name: str) -> Upstream | None:
        if name in self.configured:
            return self.upstreams.get(name)
        return None


def up_source(up: Upstream, inst: Instance | None = None) -> Source:
    """`up`'s lists for the surface: those of `inst`, else the primary's."""
    inst = inst if inst is not None else up.primary
    return Source(up.name, inst.lists, inst.pages, inst.init_result is not None)
