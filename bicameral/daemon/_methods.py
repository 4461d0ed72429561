"""The daemon's control methods: ``system.*`` and ``adapters.*`` (SPEC §5).

What ``daemon status``, ``daemon reload``, ``daemon start --http``, the
bridge's attach and ``mcp restart|start|stop`` call over the control
socket. Each method acts on the running daemon (:mod:`._daemon`) it is
given; an error is an `RPCError` whose message is one line for the user.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import bicameral
from bicameral.daemon._descriptor import PROTOCOL_VERSION
from bicameral.daemon._errors import ConfigError, DaemonError
from bicameral.daemon._health import all_running
from bicameral.daemon._http import http_from_config, parse_listen
from bicameral.daemon._plugin import load_config_file
from bicameral.protocol import (
    INVALID_PARAMS,
    SERVER_ERROR,
    Connection,
    Dispatcher,
    RPCError,
)

if TYPE_CHECKING:
    from bicameral.daemon._daemon import RunningDaemon

__all__ = ["ControlMethods"]


class ControlMethods:
    """The control methods of one running daemon."""

    def __init__(self, daemon: RunningDaemon) -> None:
        self.daemon = daemon

    def install(self, d: Dispatcher) -> None:
        """Add the methods to the daemon's dispatcher."""
        d.add("system.version", self._m_version)
        d.add("system.health", self._m_health)
        d.add("system.attach", self._m_attach)
        d.add("system.shutdown", self._m_shutdown)
        d.add("system.reload", self._m_reload)
        d.add("system.http", self._m_http)
        d.add("adapters.list", self._m_adapters_list)
        d.add("adapters.restart", self._m_adapters_restart)
        d.add("adapters.start", self._m_adapters_start)
        d.add("adapters.stop", self._m_adapters_stop)

    async def _m_version(self, params: Any, conn: Connection) -> Any:
        return {"daemon_version": bicameral.__version__, "protocol_version": PROTOCOL_VERSION}

    def health(self) -> dict[str, Any]:
        assert self.daemon.root is not None
        tree = self.daemon.root.snapshot()
        health = {
            "status": "ok" if all_running(tree) else "degraded",
            "pid": self.daemon.pid,
            "uptime_s": round(time.monotonic() - self.daemon.t0, 3),
            "tree": tree,
        }
        if self.daemon.store is not None:
            health["store"] = self.daemon.store.status()
        return health

    async def _m_health(self, params: Any, conn: Connection) -> Any:
        return self.health()

    async def _m_attach(self, params: Any, conn: Connection) -> Any:
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise RPCError(INVALID_PARAMS, "system.attach takes an object")
        mode = params.get("mode", "rpc")
        tenant = params.get("tenant_id", "default")
        if not isinstance(mode, str) or not isinstance(tenant, str):
            raise RPCError(INVALID_PARAMS, "mode and tenant_id must be strings")
        handler = None
        if mode != "rpc":
            assert self.daemon.host is not None
            handler = self.daemon.host.attach_modes.get(mode)
            if handler is None:
                raise RPCError(INVALID_PARAMS, f"unknown attach mode {mode!r}")
        session = {"session_id": os.urandom(16).hex(), "tenant_id": tenant, "mode": mode}
        conn.state["session"] = dict(session, client=params.get("client"))
        if handler is not None:
            extra = await handler(conn, params)
            if isinstance(extra, dict):
                session = {**extra, **session}
        return session

    async def _m_shutdown(self, params: Any, conn: Connection) -> Any:
        self.daemon.request_stop("system.shutdown")
        return {"status": "stopping"}

    async def _m_reload(self, params: Any, conn: Connection) -> Any:
        try:
            return await self.daemon.reload()
        except ConfigError as exc:
            raise RPCError(SERVER_ERROR, f"reload rejected: {exc}") from None

    async def _m_http(self, params: Any, conn: Connection) -> Any:
        """``{"listen": "HOST:PORT"}``: serve HTTP there from now on (``daemon start --http``).

        The address overrides ``[daemon.http] listen`` as ``--http`` does at
        start; no MCP server is restarted. Returns ``{"http_url"}``.
        """
        listen = params.get("listen") if isinstance(params, dict) else None
        if not isinstance(listen, str):
            raise RPCError(INVALID_PARAMS, 'system.http takes {"listen": "HOST:PORT"}')
        try:
            parse_listen(listen)
        except ValueError as exc:
            raise RPCError(INVALID_PARAMS, f"--http: {exc}") from None
        assert self.daemon.reload_lock is not None
        async with self.daemon.reload_lock:
            try:
                self.daemon.check_home_unchanged()
                config, path = load_config_file(self.daemon.paths, self.daemon.home_fd)
                settings = http_from_config(config, path, listen)
                await self.daemon.apply_http(settings)
            except DaemonError as exc:
                raise RPCError(SERVER_ERROR, str(exc)) from None
            self.daemon.options.http = listen
        return {"http_url": self.daemon.http.url}

    async def _m_adapters_list(self, params: Any, conn: Connection) -> Any:
        assert self.daemon.adapters is not None
        children: list[dict[str, Any]] = self.daemon.adapters.snapshot().get("children", [])
        return children

    def _adapter_name(self, params: Any, method: str) -> str:
        name = params.get("name") if isinstance(params, dict) else None
        if not isinstance(name, str):
            raise RPCError(INVALID_PARAMS, f'{method} takes {{"name": <adapter name>}}')
        assert self.daemon.adapters is not None
        if name not in {child.name for child in self.daemon.adapters.children}:
            running = ", ".join(child.name for child in self.daemon.adapters.children) or "none"
            raise RPCError(INVALID_PARAMS, f"no adapter named {name!r} (adapters: {running})")
        return name

    async def _m_adapters_restart(self, params: Any, conn: Connection) -> Any:
        """Stop (if running) and start again; revives one its supervisor gave up on."""
        name = self._adapter_name(params, "adapters.restart")
        assert self.daemon.adapters is not None
        return await self.daemon.adapters.restart_child(name)

    async def _m_adapters_start(self, params: Any, conn: Connection) -> Any:
        """Start a stopped or failed adapter; a running one is left as it is."""
        name = self._adapter_name(params, "adapters.start")
        assert self.daemon.adapters is not None
        if self.daemon.adapters.child(name).state in ("stopped", "failed"):
            return await self.daemon.adapters.restart_child(name)
        return next(c for c in self.daemon.adapters.snapshot()["children"] if c["name"] == name)

    async def _m_adapters_stop(self, params: Any, conn: Connection) -> Any:
        """Stop an adapter and keep it stopped (until start, restart or a reload changing it)."""
        name = self._adapter_name(params, "adapters.stop")
        assert self.daemon.adapters is not None
        await self.daemon.adapters.terminate_child(name)
        return next(c for c in self.daemon.adapters.snapshot()["children"] if c["name"] == name)
