"""The MCP session host: MCP clients attached to the daemon, routed to upstreams.

After ``system.attach {"mode": "mcp", "server"?}`` the protocol layer hands
the connection's byte stream to `McpHost.serve`; from then on it carries MCP
JSON-RPC, one message per line. Each connection is one `ClientConn`, an MCP
server from the client's point of view:

* With ``server``: a transparent stand-in for that one server. ``initialize``
  is answered from the server's cached result (serverInfo, capabilities,
  instructions), the list methods from its cached lists, ``ping`` locally;
  everything else goes to the server verbatim.
* Without: every configured server aggregated. Tools and prompts are named
  ``<server>__<name>``; resources and resource templates get the URI
  ``bicameral://<server>/<original URI>`` and the name ``<server>__<name>``;
  plus the daemon's own tools, ``bicameral__status`` and
  ``bicameral__restart``.

Ids: the client's request ids never reach a server. Each forwarded request is
sent by the upstream's SDK dispatcher under an id of its own, and the answer
comes back to the task that holds the client's id, so many clients share one
upstream without collisions. ``notifications/cancelled`` from a client cancels
that task, which makes the dispatcher send the server a cancel for *its* id;
progress comes back through the same task, re-addressed to the client's
``progressToken``.

The per-message work on the ``tools/call`` path is one ``orjson`` parse, one
dict lookup, the SDK dispatcher's send, and one ``orjson`` dump.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anyio

from bicameral.mcp._common import (
    CLIENT_CAPABILITIES_KEY,
    CLIENT_INFO_KEY,
    ENVELOPE_KEYS,
    INIT_WAIT,
    LIST_METHODS,
    LOG_LEVEL_KEY,
    MAX_FRAME,
    PROTOCOL_VERSION_KEY,
    SERVER_INFO_KEY,
    UpstreamError,
)
from bicameral.mcp._front import (
    REMOVED_METHODS,
    Listen,
    annotated_tools,
    check_param_headers,
)
from bicameral.mcp._registry import up_source
from bicameral.mcp._rounds import ROUND_METHODS, Rounds
from bicameral.mcp._state import LEVELS
from bicameral.mcp.surface import (
    CALL_TOOL,
    OWN_PREFIX,
    OWN_TOOLS,
    SEARCH_TOOL,
    SEPARATOR,
    URI_PREFIX,
    Profile,
    Refused,
    Source,
    split_name,
)
from bicameral.platform import can_pass_fds, fd_opened_for, fds_from_ancillary, fds_space
from bicameral.protocol import (
    CONNECTION_CLOSED,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    UNSUPPORTED_PROTOCOL_VERSION,
    FdReader,
    FdWriter,
    InputBudget,
    Peer,
    PeerClosed,
    RPCError,
    Wire,
)

if TYPE_CHECKING:
    from bicameral.mcp._registry import Registry
    from bicameral.mcp._state import Upstream

__all__ = ["ClientConn", "McpHost"]

logger = logging.getLogger("bicameral.mcp.host")

KNOWN_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
#: The stateless era's revisions (``server/discover``, a ``_meta`` envelope per request).
MODERN_VERSIONS = ("2026-07-28",)
_CACHEABLE = frozenset(
    {"server/discover", "resources/read", *(method for method, _ in LIST_METHODS.values())}
)
#: A retried call's own keys (2026-07-28 multi-round-trip), not the server's business.
_ROUND_KEYS = frozenset({"requestState", "inputResponses"})
MAX_LINE = MAX_FRAME
#: Forwarded requests one client may have in flight (as the protocol's default).
MAX_IN_FLIGHT = 64
#: Server notifications (logging, resource updates) queued for one client at most.
MAX_PENDING_NOTES = 256
#: After a client closes its input: how long its requests in flight may take to
#: be answered before the session ends anyway.
DRAIN_GRACE = 10.0
#: How long a client may take to answer ``roots/list`` (then it has none).
ROOTS_WAIT = 5.0
#: Requests about one task, routed in the aggregated view by its ``taskId``.
_TASK_METHODS = ("tasks/get", "tasks/result", "tasks/cancel")
_RELATED_TASK = "io.modelcontextprotocol/related-task"
_CURSOR_PREFIX = "bicameral-page-"

_LIST_KINDS = {method: (kind, key) for kind, (method, key) in LIST_METHODS.items()}
#: Requests a client gets answered in line, in order (see `ClientConn.in_line`).
_IN_LINE = frozenset({"ping", "initialize", "server/discover", *_LIST_KINDS})
_NOTIFY_FOR_KIND = {
    "tools": "notifications/tools/list_changed",
    "resources": "notifications/resources/list_changed",
    "resource_templates": "notifications/resources/list_changed",
    "prompts": "notifications/prompts/list_changed",
}


async def _receive_fds(sock: Any) -> list[int]:
    """Receive the file descriptors the bridge sends with one byte (SCM_RIGHTS)."""
    _, ancdata, _, _ = await sock.recvmsg(1, fds_space(2))
    return fds_from_ancillary(ancdata)


def _valid_id(value: Any) -> bool:
    """A JSON-RPC id we can key by: a string or a number (not a bool)."""
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def _negotiate(requested: Any, upstream_version: str | None) -> str:
    ceiling = upstream_version if upstream_version in KNOWN_VERSIONS else KNOWN_VERSIONS[-1]
    if isinstance(requested, str) and requested in KNOWN_VERSIONS:
        return min(requested, ceiling)
    return ceiling


class McpHost:
    """Registers the ``mcp`` attach mode and serves the attached connections."""

    def __init__(self, registry: Registry, daemon: Any = None) -> None:
        self.registry = registry
        self.daemon = daemon  # the DaemonHost, for the aggregated mode's own tools
        self.clients = 0  # sessions so far: names each one (client-N)

    async def attach(self, conn: Any, params: Mapping[str, Any]) -> dict[str, Any]:
        """``system.attach`` with ``mode: mcp``: check ``server``, then take the connection over.

        ``profile`` names the aggregated view's profile; an unknown one is
        not refused here but answered, request by request, with an MCP
        error naming the profiles that exist (the client shows that one).
        """
        server = params.get("server")
        profile = params.get("profile")
        if profile is not None and (not isinstance(profile, str) or server is not None):
            raise RPCError(INVALID_PARAMS, "profile must be a profile's name, without a server")
        if server is not None and (
            not isinstance(server, str) or self.registry.get(server) is None
        ):
            configured = ", ".join(self.registry.configured) or "none"
            if self.registry.disabled:
                configured += f"; disabled: {', '.join(self.registry.disabled)}"
            if server in self.registry.disabled:
                raise RPCError(
                    INVALID_PARAMS,
                    f"MCP server {server!r} is disabled in config.toml: set enabled = true "
                    f"and run `bicameral daemon reload` (configured: {configured})",
                )
            raise RPCError(
                INVALID_PARAMS,
                f"no MCP server named {server!r} is configured (configured: {configured})",
            )

        # The bridge may offer its own stdin and stdout (SCM_RIGHTS over the
        # Unix socket): the daemon then reads and writes the MCP client's
        # pipes itself and the bridge relays nothing, which takes two process
        # hops off every message each way.
        passing = params.get("stdio") == "pass" and can_pass_fds()
        # The session's unfinished messages count against the daemon's one
        # budget of unfinished input, and its lines obey the same max_frame.
        limits = dict(budget=conn.input_budget, max_line=conn.limits.max_frame)

        async def handler(stream: Any, buffered: bytes) -> None:
            if passing and not buffered and hasattr(stream, "socket"):
                await self.serve_passed(stream, server, profile=profile, **limits)
            else:
                await self.serve(stream, buffered, server, profile=profile, **limits)

        conn.upgrade(handler)
        answer = {"server": server, "stdio": "pass" if passing else "relay"}
        return {**answer, "profile": profile} if profile is not None else answer

    async def serve(
        self,
        stream: Any,
        buffered: bytes,
        server: str | None,
        *,
        budget: InputBudget | None = None,
        max_line: int = MAX_LINE,
        profile: str | None = None,
    ) -> None:
        """Serve one attached connection until the client or the daemon closes it."""
        conn = ClientConn(self, Wire(stream), server, budget, max_line, profile=profile)
        await conn.run(buffered)

    async def serve_passed(
        self,
        stream: Any,
        server: str | None,
        *,
        budget: InputBudget | None = None,
        max_line: int = MAX_LINE,
        profile: str | None = None,
    ) -> None:
        """Serve a client whose stdin/stdout the bridge passed over `stream`.

        The session ends when the client closes its stdin (then the bridge is
        told ``bye`` and exits 0) or when the bridge's socket closes.
        """
        fds = await _receive_fds(stream.socket)
        usable = len(fds) == 2 and fd_opened_for(fds[0], os.O_RDONLY)
        if not usable or not fd_opened_for(fds[1], os.O_WRONLY):
            # Whatever was passed (too many, too few, O_PATH, the wrong
            # direction) is closed here: nothing the bridge sends may leak.
            for fd in fds:
                os.close(fd)
            logger.warning("refusing an MCP session: its passed stdio is not a reader and a writer")
            await Wire(stream).aclose()
            return
        try:
            client_in = FdReader(fds[0], owned=True)
        except BaseException:
            os.close(fds[0])
            os.close(fds[1])
            raise
        try:
            client_out = FdWriter(fds[1], owned=True)
        except BaseException:
            await client_in.aclose()
            os.close(fds[1])
            raise
        wire = Wire(client_in, client_out)
        session = ClientConn(self, wire, server, budget, max_line, profile=profile)
        async with anyio.create_task_group() as tg:

            async def watch_bridge() -> None:
                # Nothing more comes from the bridge; EOF means it is gone.
                while await Wire(stream).receive():
                    pass
                tg.cancel_scope.cancel()

            tg.start_soon(watch_bridge)
            await session.run(b"")
            with contextlib.suppress(BrokenPipeError):
                await Wire(stream).send(b"bye\n")
            tg.cancel_scope.cancel()
        await Wire(stream).aclose()


class ClientConn:
    """One MCP client attached to the daemon (an `Upstream`'s `Peer`, the `Peer`'s handler).

    Its stream is a `bicameral.protocol.Peer`, like every MCP stream of the
    daemon: ``ping``, ``initialize`` and the list methods are answered in
    line, in order; every other request is forwarded in a task of its own
    (at most `MAX_IN_FLIGHT`, then the client is not read until one ends).
    """

    def __init__(
        self,
        host: McpHost,
        wire: Wire,
        server: str | None,
        budget: InputBudget | None = None,
        max_line: int = MAX_LINE,
        *,
        profile: str | None = None,
    ) -> None:
        self.host = host
        self.registry = host.registry
        self.server = server
        #: The aggregated view's profile (``[mcp.profiles.NAME]``; None: ``default``).
        self.profile_name = profile
        self._surface = host.registry.surface
        self.peer = Peer(
            wire,
            self,
            name="an MCP client" if server is None else f"an MCP client of {server!r}",
            max_frame=max_line,
            budget=budget,
            answers_malformed=True,
            max_inbound=MAX_IN_FLIGHT,
            max_notify_tasks=MAX_PENDING_NOTES,
            drain=DRAIN_GRACE,
        )
        host.clients += 1
        self.client_id = f"client-{host.clients}"
        self.client_capabilities: dict[str, Any] = {}
        #: ``name`` and ``version`` of the ``clientInfo`` it gave (for the audit log).
        self.client_info: dict[str, str] | None = None
        self.log_level: str | None = None
        self.initialized = False
        #: The client speaks the stateless era (2026-07-28): it sent
        #: ``server/discover`` or an enveloped request; what its servers ask
        #: of it reaches it as ``input_required`` rounds (`rounds`).
        self.modern = False
        self._level_changed = False
        self.rounds = Rounds(self.peer.start_soon)
        self._attached: set[Upstream] = set()
        self._queued_notices: set[str] = set()
        self._roots: list[dict[str, Any]] | None = None
        self._roots_fetch: anyio.Event | None = None
        #: A stateless-era HTTP exchange: its ``Mcp-Param-*`` headers are
        #: checked (`param_headers`: those it sent, None for none).
        self.http_exchange = False
        self.param_headers: dict[str, str] | None = None
        #: Its open ``subscriptions/listen`` streams.
        self.listens: list[Listen] = []

    # -- lifecycle --------------------------------------------------------------

    def _attach_upstreams(self) -> None:
        if self.server is not None:
            up = self.registry.get(self.server)
            wanted = {up} if up is not None else set()
        else:
            profile = self.registry.surface.config.profile(self.profile_name)
            shown = profile.shows if profile is not None else lambda _: False
            wanted = {up for up in self.registry.active() if shown(up.name)}
        for up in self._attached - wanted:
            up.detach(self)
        for up in wanted - self._attached:
            up.attach(self)
        self._attached = wanted

    def _config_changed(self) -> None:
        self._attach_upstreams()
        rules_changed = self._surface is not self.registry.surface
        self._surface = self.registry.surface
        if self.server is None or rules_changed:
            for kind in ("tools", "resources", "prompts"):
                self._queue_notice(_NOTIFY_FOR_KIND[kind])

    async def run(self, buffered: bytes) -> None:
        """Serve the client until it closes its input (its requests answered) or is cancelled."""
        self._attach_upstreams()
        self.registry.on_change.append(self._config_changed)
        self.registry.clients += 1
        try:
            await self.peer.run(buffered)
        finally:
            self.rounds.forget()
            self.registry.clients -= 1
            self.registry.on_change.remove(self._config_changed)
            for up in self._attached:
                up.detach(self)
            self._attached = set()
            await self.peer.aclose()

    # -- PeerHandler: what the client sends ----------------------------------------

    def in_line(self, method: str) -> bool:
        # Answered from the caches, in order, without a task: answers to what
        # the client pipelined after an ``initialize`` must not overtake it
        # (it may wait for a server's first start; only this client waits).
        # Not the lists of a client that has roots, though, until they are
        # known: its instance depends on them, and asking the client for them
        # needs this reader free to read the answer.
        if method in _LIST_KINDS and "roots" in self.client_capabilities:
            return self._roots is not None
        return method in _IN_LINE

    async def on_request(self, request_id: Any, method: str, params: dict[str, Any] | None) -> Any:
        params = params or {}
        meta = params.get("_meta")
        if isinstance(meta, dict) and PROTOCOL_VERSION_KEY in meta:
            params = self._unwrap_envelope(params, meta)
            if method in REMOVED_METHODS:
                raise RPCError(
                    METHOD_NOT_FOUND, f"method not found: {method} (not in the stateless era)"
                )
            if method == "subscriptions/listen":
                return await self._listen(request_id, params)
            if self.http_exchange and method == "tools/call":
                self._check_param_headers(params)
            if self._level_changed:
                self._level_changed = False
                with contextlib.suppress(RPCError):  # a server without logging: no messages
                    await self._set_level({"level": self.log_level})
        if self.modern and method in ROUND_METHODS:
            # Its server may ask it something meanwhile: see `Rounds`.
            rest = {k: v for k, v in params.items() if k not in _ROUND_KEYS}
            result = await self.rounds.call(params, lambda: self._answer(method, rest))
        else:
            result = await self._answer(method, params)
        # The 2026-07-28 result shapes: every result says whether it is
        # complete; cacheable ones say for how long (never: lists change on
        # restarts).
        if self.modern and isinstance(result, dict):
            complete = result.setdefault("resultType", "complete") == "complete"
            if complete and method in _CACHEABLE:
                result.setdefault("ttlMs", 0)
                result.setdefault("cacheScope", "private")
        return result

    async def _answer(self, method: str, params: dict[str, Any]) -> Any:
        try:
            return await self._dispatch(method, params)
        except Refused as exc:  # a rule hides it, or no such profile: the server never hears
            raise RPCError(INVALID_PARAMS, str(exc)) from None

    async def _dispatch(self, method: str, params: dict[str, Any]) -> Any:
        if method == "ping":
            return {}
        if method == "initialize":
            return await self._initialize(params)
        if method == "server/discover":
            return await self._discover()
        if method in _LIST_KINDS:
            await self._settle()
            kind = _LIST_KINDS[method][0]
            for up in list(self._attached):
                await up.fresh(self, kind)
            return self._list(method, params.get("cursor"))
        if method == "tasks/list" and self.server is None:
            return await self._all_tasks()
        if method == "logging/setLevel":
            return await self._set_level(params)
        target = self._route(method, params)
        if target is None:
            return await self._own_tool(params, self._view())
        up, fwd = target
        if method in ("resources/subscribe", "resources/unsubscribe"):
            return await up.subscribe(self, str(fwd.get("uri")), method == "resources/subscribe")
        audit = getattr(self.host.daemon, "audit", None)
        if method == "tools/call" and audit is not None:
            from bicameral.mcp._audit import audited

            result = await audited(
                audit,
                lambda: up.request(self, method, fwd, self._progress_fn(params)),
                client={"id": self.client_id, **(self.client_info or {})},
                view=self.server,
                server=up.name,
                params=fwd,
            )
        else:
            result = await up.request(self, method, fwd, self._progress_fn(params))
        self._after(up, method, result)
        return result

    def note(self, method: str, params: dict[str, Any] | None) -> bool:
        if method == "notifications/initialized":
            self.initialized = True
            if "roots" in self.client_capabilities:
                self.peer.start_soon(self.client_roots)  # ask now: its instances depend on them
            return True
        return method != "notifications/roots/list_changed"

    async def on_notification(self, method: str, params: dict[str, Any] | None) -> None:
        # notifications/roots/list_changed: ask the client again, then give it
        # the instances of its new roots (an instance only it used follows it,
        # and its server is told the roots changed).
        self._roots = None
        await self.client_roots()
        for up in list(self._attached):
            with contextlib.suppress(RPCError):
                await up.instance_for(self)

    # -- what upstreams ask of a client ------------------------------------------

    async def client_roots(self) -> list[dict[str, Any]]:
        """The client's roots: asked once (again after its ``roots/list_changed``).

        A client that does not answer within `ROOTS_WAIT`, or answers with an
        error, has no roots.
        """
        while self._roots is None:
            if self._roots_fetch is not None:
                await self._roots_fetch.wait()
                continue
            fetch = self._roots_fetch = anyio.Event()
            roots: list[dict[str, Any]] = []
            try:
                with anyio.move_on_after(ROOTS_WAIT):
                    result = await self.client_request("roots/list", None)
                    listed = result.get("roots")
                    if isinstance(listed, list):
                        roots = [r for r in listed if isinstance(r, dict)]
            except UpstreamError as exc:
                logger.info("%s answered roots/list with an error: %s", self.client_id, exc)
            finally:
                self._roots = roots
                self._roots_fetch = None
                fetch.set()
        return self._roots

    async def _settle(self) -> None:
        """Give this client its instance of every attached server, started once (bounded)."""
        ups = list(self._attached)
        with anyio.move_on_after(INIT_WAIT):
            if len(ups) == 1:
                await ups[0].settle(self)
                return
            async with anyio.create_task_group() as tg:
                for up in ups:
                    tg.start_soon(up.settle, self)

    async def _listen(self, request_id: Any, params: dict[str, Any]) -> dict[str, Any]:
        """``subscriptions/listen``: the notices the filter asks for, until the stream ends.

        Its resource subscriptions are held on the servers like any (restored
        after a restart) and dropped when the client's session ends; a URI
        that no server accepts is left out of the acknowledgement.
        """
        wanted, uris = Listen.parse(params)
        listen = Listen(request_id, wanted)
        await self._settle()  # (a server's first start is no news to this stream)
        self.listens.append(listen)
        try:
            for uri in uris:
                try:
                    target = self._route("resources/subscribe", {"uri": uri})
                    if target is not None:
                        up, fwd = target
                        await up.subscribe(self, str(fwd.get("uri")), True)
                        listen.uris.add(uri)
                except (RPCError, Refused) as exc:
                    logger.info("%s: no subscription to %r: %s", self.client_id, uri, exc)
            await listen.acknowledge(self.peer)
            await listen.ended.wait()
            return listen.result()
        finally:
            listen.ended.set()
            self.listens.remove(listen)

    def end_listening(self) -> None:
        """End the client's listen streams gracefully (each answers its request)."""
        for listen in self.listens:
            listen.ended.set()

    def _check_param_headers(self, params: dict[str, Any]) -> None:
        """-32020 when the ``Mcp-Param-*`` headers contradict the call's arguments."""
        name = params.get("name")
        if not isinstance(name, str):
            return
        try:
            tool = annotated_tools(self._pages("tools")).get(name)
        except Refused:
            return  # (no such profile: the call itself says so)
        if tool is not None:
            check_param_headers(tool, params.get("arguments"), self.param_headers)

    async def _set_level(self, params: dict[str, Any]) -> dict[str, Any]:
        level = params.get("level")
        if level not in LEVELS:
            raise RPCError(INVALID_PARAMS, f"unknown log level {level!r}")
        self.log_level = level
        for up in list(self._attached):
            if self.server is None:
                with contextlib.suppress(RPCError):  # one server down: the others still get it
                    await up.set_level(self)
            else:
                await up.set_level(self)
        return {}

    # -- answers --------------------------------------------------------------------

    def _unwrap_envelope(self, params: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        """A 2026-07-28 request: adopt its envelope, return its params without it.

        The envelope says who the client is on every request; servers behind
        bicameral hear only the request itself (they are spoken to in the era
        they chose when their session began).
        """
        version = meta.get(PROTOCOL_VERSION_KEY)
        if version not in MODERN_VERSIONS:
            raise RPCError(
                UNSUPPORTED_PROTOCOL_VERSION,
                f"unsupported protocol version {version!r}",
                {"supported": [*MODERN_VERSIONS], "requested": version},
            )
        caps = meta.get(CLIENT_CAPABILITIES_KEY)
        if self.client_info is None:
            self.client_info = _client_info(meta.get(CLIENT_INFO_KEY))
        if not self.modern:
            self.modern = True
            self.client_capabilities = caps if isinstance(caps, dict) else {}
        level = meta.get(LOG_LEVEL_KEY)
        if level in LEVELS and level != self.log_level:
            # The era's per-request opt-in to log messages: this client's
            # level, as `logging/setLevel` sets it in the handshake era.
            self.log_level = level
            self._level_changed = True
        rest = {k: v for k, v in meta.items() if k not in ENVELOPE_KEYS}
        params = {k: v for k, v in params.items() if k != "_meta"}
        if rest:
            params["_meta"] = rest
        return params

    async def _discover(self) -> dict[str, Any]:
        """``server/discover`` (2026-07-28): who we are, in the stateless era's words."""
        self.modern = True
        identity = await self._initialize({"protocolVersion": KNOWN_VERSIONS[-1]}, adopt=False)
        result: dict[str, Any] = {
            "supportedVersions": [*MODERN_VERSIONS],
            "capabilities": identity["capabilities"],
            "resultType": "complete",
            "_meta": {SERVER_INFO_KEY: identity["serverInfo"]},
        }
        if identity.get("instructions"):
            result["instructions"] = identity["instructions"]
        return result

    async def _initialize(self, params: dict[str, Any], *, adopt: bool = True) -> dict[str, Any]:
        if adopt:
            caps = params.get("capabilities")
            self.client_capabilities = caps if isinstance(caps, dict) else {}
            self.client_info = _client_info(params.get("clientInfo"))
        requested = params.get("protocolVersion")
        if self.server is None:
            profile = self._view()
            shown = [n for n in self.registry.configured if profile.shows(n)]
            names = ", ".join(shown) or "none configured yet"
            search = (
                f" When the tools offer {SEARCH_TOOL}, find a tool by describing the task, "
                f"then call it with {CALL_TOOL}."
                if profile.search != "off"
                else ""
            )
            result: dict[str, Any] = {
                "protocolVersion": _negotiate(requested, None),
                "capabilities": {
                    "tools": {"listChanged": True},
                    "resources": {"listChanged": True, "subscribe": True},
                    "prompts": {"listChanged": True},
                    "logging": {},
                    "completions": {},
                },
                "serverInfo": {"name": "bicameral", "version": _version()},
                "instructions": (
                    f"bicameral shares these MCP servers: {names}. Their tools and prompts are "
                    f"named <server>{SEPARATOR}<name>; their resources "
                    f"{URI_PREFIX}<server>/<uri>.{search}"
                ),
            }
            return result
        up = self.registry.get(self.server)
        if up is not None and up.init_result is None:
            # Its very first start: wait for it (a first `npx` run may take a
            # while). A server that never came up gets an error naming why,
            # not a made-up initialize result.
            with anyio.move_on_after(INIT_WAIT):
                await up.wait_first_attempt()
            if up.init_result is None:
                why = up.last_error or f"still starting after {INIT_WAIT:g} s"
                raise RPCError(
                    INTERNAL_ERROR, f"MCP server {self.server!r} is not available: {why}"
                )
        init = (up.init_result if up is not None else None) or {}
        caps = dict(init.get("capabilities") or {"tools": {}})
        # We tell clients when lists change after a restart, so say we may.
        for key in ("tools", "resources", "prompts"):
            if isinstance(caps.get(key), dict):
                caps[key] = {**caps[key], "listChanged": True}
        result = {
            "protocolVersion": _negotiate(requested, init.get("protocolVersion")),
            "capabilities": caps,
            "serverInfo": init.get("serverInfo") or {"name": self.server, "version": "0"},
        }
        if init.get("instructions"):
            result["instructions"] = init["instructions"]
        return result

    def _list(self, method: str, cursor: Any = None) -> dict[str, Any]:
        """One page of a list, from the caches.

        A server that pages its lists is passed through page by page (its own
        page sizes, bicameral's cursors); in the aggregated view the first page
        holds the daemon's own tools and every server that does not page, then
        come the pages of each server that does.
        """
        kind, key = _LIST_KINDS[method]
        pages = self._pages(kind)
        index: int | None = 0
        if cursor is not None:
            index = _page_index(cursor)
        if index is None or not 0 <= index < len(pages):
            raise RPCError(INVALID_PARAMS, f"invalid cursor {cursor!r}")
        result: dict[str, Any] = {key: pages[index]}
        if index + 1 < len(pages):
            result["nextCursor"] = f"{_CURSOR_PREFIX}{index + 1}"
        return result

    def _pages(self, kind: str) -> list[list[dict[str, Any]]]:
        surface = self.registry.surface
        if self.server is not None:
            up = self.registry.get(self.server)
            if up is None:
                return [[]]
            return surface.server_pages(up_source(up, up.instance_seen_by(self)), kind)
        own = OWN_TOOLS if kind == "tools" else ()
        return surface.catalog(self._view(), kind, self._sources(), own).listed()

    def _view(self) -> Profile:
        """The aggregated view's profile; `Refused` (naming those that exist) when unknown."""
        return self.registry.surface.profile(self.profile_name)

    def _sources(self) -> list[Source]:
        """Every active server's lists as this client sees them."""
        return [up_source(up, up.instance_seen_by(self)) for up in self.registry.active()]

    def _route(self, method: str, params: dict[str, Any]) -> tuple[Upstream, dict[str, Any]] | None:
        """(upstream, params for it) for a request, or None for the daemon's own tools.

        Names and URIs go through the view's rules (`bicameral.mcp.surface`):
        what a rule hides raises `Refused` and never reaches a server.
        """
        if self.server is not None:
            up = self.registry.get(self.server)
            if up is None:
                raise RPCError(
                    INTERNAL_ERROR, f"MCP server {self.server!r} is no longer configured"
                )
            source = up_source(up, up.instance_seen_by(self))
            return up, self.registry.surface.server_params(source, method, params)
        names = self.registry.configured
        surface, profile = self.registry.surface, self._view()
        if method in ("tools/call", "prompts/get"):
            name = params.get("name")
            if not isinstance(name, str):
                raise RPCError(INVALID_PARAMS, f"{method} needs a name")
            if method == "tools/call" and name in (SEARCH_TOOL, CALL_TOOL):
                return None
            kind = "tools" if method == "tools/call" else "prompts"
            own = OWN_TOOLS if kind == "tools" else ()
            split = surface.route(profile, kind, name, self._sources(), own)
            if split is None:
                return None
            return self._upstream(split[0]), {**params, "name": split[1]}
        if method in _TASK_METHODS:
            task = params.get("taskId")
            split = split_name(task, names) if isinstance(task, str) else None
            if split is None or not profile.shows(split[0]):
                raise RPCError(INVALID_PARAMS, f"unknown task {task!r}")
            return self._upstream(split[0]), {**params, "taskId": split[1]}
        if method in ("resources/read", "resources/subscribe", "resources/unsubscribe"):
            uri = params.get("uri")
            if not isinstance(uri, str):
                raise RPCError(INVALID_PARAMS, f"unknown resource {uri!r}")
            server, rest = surface.resource(profile, uri, names)
            return self._upstream(server), {**params, "uri": rest}
        if method == "completion/complete":
            ref = params.get("ref") or {}
            if ref.get("type") == "ref/prompt" and isinstance(ref.get("name"), str):
                split = surface.route(profile, "prompts", ref["name"], self._sources())
                if split is not None:
                    return self._upstream(split[0]), {**params, "ref": {**ref, "name": split[1]}}
            elif ref.get("type") == "ref/resource" and isinstance(ref.get("uri"), str):
                server, rest = surface.resource(profile, ref["uri"], names)
                return self._upstream(server), {**params, "ref": {**ref, "uri": rest}}
            raise RPCError(INVALID_PARAMS, "unknown completion reference")
        raise RPCError(METHOD_NOT_FOUND, f"method not found: {method}")

    def _upstream(self, name: str) -> Upstream:
        up = self.registry.get(name)
        if up is None:
            raise RPCError(INVALID_PARAMS, f"no MCP server named {name!r}")
        return up

    def _progress_fn(self, params: dict[str, Any]) -> Any:
        meta = params.get("_meta")
        token = meta.get("progressToken") if isinstance(meta, dict) else None
        if token is None or isinstance(token, bool):
            return None

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            note: dict[str, Any] = {"progressToken": token, "progress": progress}
            if total is not None:
                note["total"] = total
            if message is not None:
                note["message"] = message
            await self.peer.notify("notifications/progress", note)

        return on_progress

    async def _all_tasks(self) -> dict[str, Any]:
        """``tasks/list`` in the aggregated view: every server's tasks, named as routed."""
        tasks: list[dict[str, Any]] = []
        for up in self.registry.active():
            if not self._view().shows(up.name):
                continue
            try:
                result = await up.request(self, "tasks/list", {})
            except RPCError:
                continue  # no tasks there (or it is down): the others still count
            for task in result.get("tasks") or []:
                if isinstance(task, dict) and isinstance(task.get("taskId"), str):
                    tasks.append({**task, "taskId": f"{up.name}{SEPARATOR}{task['taskId']}"})
        return {"tasks": tasks}

    def _after(self, up: Upstream, method: str, result: dict[str, Any]) -> None:
        if self.server is None:
            _name_tasks(up.name, method, result)
        if method == "resources/read" and self.server is None:
            for item in result.get("contents") or []:
                if isinstance(item, dict) and "uri" in item:
                    item["uri"] = f"{URI_PREFIX}{up.name}/{item['uri']}"
        elif method == "tools/call" and self.server is None:
            # Links and embedded resources a tool returns name the server's
            # own URIs: rewrite them as the aggregated view names resources,
            # so that a client can read back what a tool pointed it to.
            for item in result.get("content") or []:
                if not isinstance(item, dict):
                    continue
                if item.get("type") == "resource_link" and isinstance(item.get("uri"), str):
                    item["uri"] = f"{URI_PREFIX}{up.name}/{item['uri']}"
                elif item.get("type") == "resource" and isinstance(item.get("resource"), dict):
                    inner = item["resource"]
                    if isinstance(inner.get("uri"), str):
                        inner["uri"] = f"{URI_PREFIX}{up.name}/{inner['uri']}"

    async def _own_tool(self, params: dict[str, Any], profile: Profile) -> dict[str, Any]:
        name = params.get("name")
        args = params.get("arguments") or {}
        if not isinstance(args, dict):
            raise RPCError(INVALID_PARAMS, f"{name}: arguments must be an object")
        if name == SEARCH_TOOL:
            catalog = self.registry.surface.catalog(profile, "tools", self._sources(), OWN_TOOLS)
            return catalog.search_result(args)
        if name == CALL_TOOL:
            # As if the client had called the tool itself: its progress
            # (the same _meta), its result and its errors, unchanged.
            inner, arguments = args.get("name"), args.get("arguments", {})
            if not isinstance(inner, str) or inner in (SEARCH_TOOL, CALL_TOOL):
                raise RPCError(INVALID_PARAMS, f"{CALL_TOOL} needs the name of a tool to call")
            if not isinstance(arguments, dict):
                raise RPCError(INVALID_PARAMS, f"{CALL_TOOL}: arguments must be an object")
            result = await self._dispatch(
                "tools/call", {**params, "name": inner, "arguments": arguments}
            )
            return result if isinstance(result, dict) else {}
        if name == f"{OWN_PREFIX}{SEPARATOR}status":
            status = {
                "servers": {up.name: up.status() for up in self.registry.active()},
                "tree": self.host.daemon.snapshot() if self.host.daemon is not None else None,
            }
            text = json.dumps(status, indent=2, default=str)
            return {"content": [{"type": "text", "text": text}], "structuredContent": status}
        server = args.get("server")
        up = self.registry.get(server) if isinstance(server, str) else None
        if up is None or not profile.shows(up.name):
            return _tool_error(f"no MCP server named {server!r}")
        if self.host.daemon is not None:
            try:
                entry = await self.host.daemon.adapters.restart_child(up.name)
            except Exception as exc:
                return _tool_error(f"restarting {up.name!r} failed: {exc}")
            text = f"restarted {up.name!r}: {json.dumps(entry, default=str)}"
        else:
            text = f"asked {up.name!r} to retry"
        return {"content": [{"type": "text", "text": text}]}

    # -- Peer: what upstreams call ------------------------------------------------------

    async def client_request(self, method: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
        if self.modern:
            # The stateless era has no server-to-client requests: the client's
            # call answers `input_required` instead (`bicameral.mcp._rounds`).
            return await self.rounds.ask(method, params)
        try:
            result = await self.peer.request(method, params)
        except PeerClosed:
            raise UpstreamError(CONNECTION_CLOSED, "the MCP client disconnected") from None
        except RPCError as exc:
            raise UpstreamError(exc.code, exc.message, exc.data) from None
        return result if isinstance(result, dict) else {}

    def upstream_event(self, upstream: Upstream, method: str, params: dict[str, Any]) -> None:
        if method == "notifications/message" and self.modern and self.log_level is None:
            return  # the stateless era delivers logs only to requests that opt in
        if method == "notifications/resources/updated":
            if self.server is None:
                uri = str(params.get("uri"))
                params = {**params, "uri": f"{URI_PREFIX}{upstream.name}/{uri}"}
            if self.modern:  # the stateless era: on a listen stream that asked, only
                for listen in self.listens:
                    listen.deliver(self.peer, method, params)
                return
        elif method == "notifications/tasks/status" and self.server is None:
            task = params.get("taskId")
            if isinstance(task, str):
                params = {**params, "taskId": f"{upstream.name}{SEPARATOR}{task}"}
        elif method == "notifications/message" and self.server is None:
            logger_name = params.get("logger")
            params = {
                **params,
                "logger": f"{upstream.name}/{logger_name}" if logger_name else upstream.name,
            }
        # In the background, bounded: a client that does not read loses
        # notifications, and holds up nobody.
        self.peer.notify_soon(method, params)

    def lists_changed(self, upstream: Upstream, kinds: frozenset[str]) -> None:
        if self.modern:
            for kind in kinds:
                self._queue_notice(_NOTIFY_FOR_KIND[kind])
            return
        if not self.initialized:
            # Before `notifications/initialized` a server sends no notices
            # (MCP lifecycle); the lists the client asks for next are current.
            return
        for kind in kinds:
            self._queue_notice(_NOTIFY_FOR_KIND[kind])

    def _queue_notice(self, method: str) -> None:
        if self.modern:  # the stateless era: on a listen stream that asked, only
            for listen in self.listens:
                listen.deliver(self.peer, method, None)
            return
        # Coalesce: one list_changed per kind however many changes arrive at once.
        if method in self._queued_notices:
            return

        async def send() -> None:
            self._queued_notices.discard(method)
            await self.peer.notify(method)

        if self.peer.start_soon(send):
            self._queued_notices.add(method)


def _page_index(cursor: Any) -> int | None:
    if not isinstance(cursor, str) or not cursor.startswith(_CURSOR_PREFIX):
        return None
    digits = cursor[len(_CURSOR_PREFIX) :]
    return int(digits) if digits.isdigit() else None


def _name_tasks(server: str, method: str, result: dict[str, Any]) -> None:
    """Task ids in a result, named ``<server>__<id>`` (the aggregated view routes by them)."""
    task = result.get("task")
    if isinstance(task, dict) and isinstance(task.get("taskId"), str):
        result["task"] = {**task, "taskId": f"{server}{SEPARATOR}{task['taskId']}"}
    if method in _TASK_METHODS and isinstance(result.get("taskId"), str):
        result["taskId"] = f"{server}{SEPARATOR}{result['taskId']}"
    meta = result.get("_meta")
    related = meta.get(_RELATED_TASK) if isinstance(meta, dict) else None
    if isinstance(related, dict) and isinstance(related.get("taskId"), str):
        related_task = {**related, "taskId": f"{server}{SEPARATOR}{related['taskId']}"}
        result["_meta"] = {**meta, _RELATED_TASK: related_task}  # type: ignore[dict-item]


def _tool_error(text: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "isError": True}


def _version() -> str:
    from bicameral import __version__

    return str(__version__)


def _client_info(info: Any) -> dict[str, str] | None:
    """``name`` and ``version`` of a ``clientInfo``, as short strings (None: none given)."""
    if not isinstance(info, dict):
        return None
    return {k: str(info[k])[:100] for k in ("name", "version") if k in info}
