"""What the daemon knows about one configured MCP server: `Upstream`, and `Peer`.

Kept apart from the code that runs a server's instances (`_upstream`), and
free of the MCP SDK: the state exists from the moment the server's subtree
starts, which is on the daemon's path to readiness, and importing the SDK is
not. The SDK is only touched (lazily) once a live instance exists.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from bicameral.mcp._common import CALL_WAIT, LIST_METHODS, MAX_FRAME, UpstreamError

if TYPE_CHECKING:
    from mcp.client.session import ClientSession

    from bicameral.mcp._config import ServerConfig
    from bicameral.mcp._dispatcher import LeanDispatcher
    from bicameral.supervisor import ChildHandle

__all__ = ["Live", "Peer", "Upstream"]

#: JSON-RPC codes used here (the SDK's constants, without importing the SDK).
INTERNAL_ERROR = -32603
INVALID_REQUEST = -32600
CONNECTION_CLOSED = -32000


class Peer(Protocol):
    """An MCP client session attached to the daemon, as upstreams see it."""

    client_capabilities: dict[str, Any]

    async def client_request(self, method: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
        """Send a server-to-client request to this client; raise `UpstreamError` on its error."""
        ...

    def upstream_event(self, upstream: Upstream, method: str, params: dict[str, Any]) -> None:
        """A notification from `upstream` for its clients (logging, resource updates)."""
        ...

    def lists_changed(self, upstream: Upstream, kinds: frozenset[str]) -> None:
        """`upstream`'s tools / resources / prompts changed (`kinds` names which)."""
        ...


class Live:
    """One running server process and its MCP session (one "generation")."""

    __slots__ = ("cause", "closed", "dispatcher", "pid", "session")

    def __init__(self, dispatcher: LeanDispatcher, session: ClientSession, pid: int) -> None:
        self.dispatcher = dispatcher
        self.session = session
        self.pid = pid
        self.closed = anyio.Event()
        self.cause = "the connection closed"


class Upstream:
    """What the daemon knows about one configured MCP server, live or not.

    Attributes read by the session host: `name`, `state`, `init_result` (the
    server's raw ``initialize`` result, or ``None`` before its first start),
    `lists` (``tools``, ``resources``, ``resource_templates``, ``prompts``:
    the last known raw lists, kept while the server restarts), `peers`.
    """

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.name = config.name
        self.state = "starting"
        self.pid: int | None = None
        self.restarts = 0
        self.last_error: str | None = None
        self.last_exit_at: float | None = None
        self.init_result: dict[str, Any] | None = None
        self.lists: dict[str, list[dict[str, Any]]] = {k: [] for k in LIST_METHODS}
        self.peers: set[Peer] = set()
        self._inflight: dict[Peer, int] = {}
        self._live: Live | None = None
        self._ready = anyio.Event()
        self._changed = anyio.Event()  # any state change; replaced each time
        #: The server's entry in the ``adapters`` subtree (set by `ServerTree.run`).
        self.entry: ChildHandle | None = None
        self.shutting_down = False
        self.ready_timeout = CALL_WAIT
        #: The longest line accepted from the server (the daemon's ``max_frame``).
        self.max_frame = MAX_FRAME

    # -- state ----------------------------------------------------------------

    @property
    def health(self) -> str:
        """``ok`` when ready with tools (or a server that offers none by design), else why not."""
        if self.state == "ready":
            return "ok"
        return "degraded" if self.state == "degraded" else self.state

    def status(self) -> dict[str, Any]:
        """Plain, JSON-serialisable status (the adapter's ``started_value``)."""
        info = (self.init_result or {}).get("serverInfo") or {}
        return {
            "state": self.state,
            "health": self.health,
            "pid": self.pid,
            "restarts": self.restarts,
            "tools": len(self.lists["tools"]),
            "clients": len(self.peers),
            "resources": len(self.lists["resources"]),
            "prompts": len(self.lists["prompts"]),
            "server_info": info,
            "last_error": self.last_error,
        }

    def terminate(self) -> None:
        """SIGTERM the live instance's process group (the daemon is stopping).

        Its own stop (by its supervisor) follows and finds it exiting; the
        exit itself is not a crash (see `shutting_down`).
        """
        self.shutting_down = True
        pid = self.pid  # our own child, not yet reaped while set: never a stranger's pid
        if pid is not None:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGTERM)  # its own group: pgid == pid

    def publish(self) -> None:
        """Show the live status in the server's tree entry (its ``started_value``)."""
        if self.entry is not None:
            self.entry.report(value=self.status())

    def instance_started(self, restarts: int) -> None:
        """A new instance is starting (`restarts`: how many came before it)."""
        self.restarts = restarts
        self._set_state("starting")

    def give_up(self, reason: str) -> None:
        """The server's supervisor gave up: ``failed`` until restarted."""
        self._go_down("failed", reason)

    def _set_state(self, state: str, error: str | None = None) -> None:
        self.state = state
        if error is not None:
            self.last_error = error
        changed, self._changed = self._changed, anyio.Event()
        changed.set()
        self.publish()

    def _go_live(
        self, live: Live, init: dict[str, Any], lists: dict[str, list[dict[str, Any]]]
    ) -> None:
        had_tools = self.init_result is not None
        old = self.lists
        self._live = live
        self.pid = live.pid
        self.init_result = init
        self.lists = lists
        offers_tools = "tools" in (init.get("capabilities") or {})
        if had_tools and offers_tools and not lists["tools"] and old["tools"]:
            # It came back with none: keep serving calls, but do not call it healthy.
            self._set_state("degraded", "server came back after a restart with no tools")
        else:
            self._set_state("ready")
        self._ready.set()
        changed = frozenset(k for k in lists if lists[k] != old[k])
        if changed:  # also a server's first start, for clients already attached
            self._notify_lists(changed)

    def _detach(self, live: Live) -> None:
        """`live` is gone (its stdout closed): new calls wait for the next one."""
        if self._live is live:
            self._live = None
            self.pid = None
            if self._ready.is_set():
                self._ready = anyio.Event()

    def _go_down(self, state: str, reason: str) -> None:
        if state in ("restarting", "failed"):
            self.last_exit_at = time.time()
        self._live = None
        if self._ready.is_set():
            self._ready = anyio.Event()
        self.pid = None
        self._set_state(state, reason)

    def _notify_lists(self, kinds: frozenset[str]) -> None:
        for peer in list(self.peers):
            peer.lists_changed(self, kinds)

    def _update_list(self, kind: str, items: list[dict[str, Any]]) -> None:
        if self.lists[kind] != items:
            self.lists = {**self.lists, kind: items}
            self._notify_lists(frozenset((kind,)))
            self.publish()

    # -- calls ----------------------------------------------------------------

    async def wait_first_attempt(self) -> None:
        """Wait until the server's first start has succeeded or failed (bound it yourself)."""
        while self.init_result is None and self.state == "starting":
            await self._changed.wait()

    async def _wait_ready(self, wait: float) -> Live:
        live = self._live
        if live is not None:
            return live
        if self.state == "failed":
            raise UpstreamError(
                INTERNAL_ERROR,
                f"MCP server {self.name!r} is not available: it failed "
                f"({self.last_error}); restart it with `bicameral mcp restart {self.name}` "
                "or the bicameral__restart tool",
            )
        with anyio.move_on_after(wait):
            while self._live is None and self.state not in ("failed", "stopped"):
                await self._changed.wait()
        if self._live is None:
            raise UpstreamError(
                INTERNAL_ERROR,
                f"MCP server {self.name!r} is not available after waiting {wait:g} s "
                f"(state {self.state}: {self.last_error or 'starting'})",
            )
        return self._live

    async def request(
        self,
        peer: Peer | None,
        method: str,
        params: Mapping[str, Any] | None,
        on_progress: Any = None,
        wait: float | None = None,
    ) -> dict[str, Any]:
        """Forward one client request to the server and return its raw result.

        Waits (up to `wait` seconds) for a server that is starting or
        restarting. The SDK's dispatcher gives the request its own id, so ids
        of different clients never collide; `on_progress` receives the
        server's progress for it; cancelling the caller sends the server
        ``notifications/cancelled`` for that id.

        Raises:
          UpstreamError: the server answered with an error (its code and
            message), or died while handling the request (a message naming
            the server and the cause), or did not come up in time.
        """
        live = self._live or await self._wait_ready(self.ready_timeout if wait is None else wait)
        if peer is not None:
            self._inflight[peer] = self._inflight.get(peer, 0) + 1
        try:
            opts: Any = {"on_progress": on_progress} if on_progress is not None else None
            return await live.dispatcher.send_raw_request(method, params, opts)
        except Exception as exc:
            from mcp.shared.exceptions import MCPError  # loaded: a live instance exists

            if not isinstance(exc, MCPError):
                raise
            if exc.code != CONNECTION_CLOSED or exc.message != "Connection closed":
                raise UpstreamError(exc.code, exc.message, exc.error.data) from None
            # The server went away under this call. Give the adapter a moment
            # to learn why (the exit status), then name it.
            with anyio.move_on_after(1.0):
                await live.closed.wait()
            raise UpstreamError(
                INTERNAL_ERROR,
                f"MCP server {self.name!r} failed during {method}: {live.cause}; "
                "it is being restarted, retry the call",
            ) from None
        finally:
            if peer is not None:
                n = self._inflight[peer] - 1
                if n:
                    self._inflight[peer] = n
                else:
                    del self._inflight[peer]

    async def notify(self, method: str, params: Mapping[str, Any] | None) -> None:
        """Send a client notification on to the server (dropped while it is down)."""
        live = self._live
        if live is not None:
            await live.dispatcher.notify(method, params)

    # -- server-to-client requests ---------------------------------------------

    def route_peer(self, method: str) -> Peer:
        """The client a server-to-client request goes to (docs/mcp.md, "Routing").

        stdio MCP carries no link from such a request to the call that caused
        it, so: the one client with calls in flight to this server; else, when
        none has, the one client attached to it. Anything else is ambiguous
        and is refused rather than guessed (never broadcast).
        """
        busy = [peer for peer, n in self._inflight.items() if n > 0]
        if len(busy) == 1:
            return busy[0]
        if not busy and len(self.peers) == 1:
            return next(iter(self.peers))
        if busy:
            why = f"{len(busy)} clients have calls in flight to it"
        elif self.peers:
            why = f"{len(self.peers)} clients are attached and none has a call in flight"
        else:
            why = "no client is attached"
        raise UpstreamError(
            INVALID_REQUEST,
            f"bicameral cannot tell which client {method} from MCP server {self.name!r} "
            f"is for: {why}",
        )

    async def client_request(self, method: str, capability: str, params: dict[str, Any]) -> Any:
        try:
            peer = self.route_peer(method)
            if capability not in peer.client_capabilities:
                raise UpstreamError(
                    INVALID_REQUEST, f"the MCP client does not support {capability} ({method})"
                )
            return await peer.client_request(method, params)
        except UpstreamError as exc:
            import mcp_types  # loaded: the server asking is a live instance

            return mcp_types.ErrorData(code=exc.code, message=exc.message, data=exc.data)


# --- the adapter -------------------------------------------------------------
