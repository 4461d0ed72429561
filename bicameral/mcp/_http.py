"""MCP clients over streamable HTTP: ``/mcp`` (aggregated) and ``/mcp/NAME`` (one server).

Mounted on the daemon's HTTP listener (``bicameral.daemon``'s, which has
already checked ``Host``, ``Origin`` and the bearer token). The HTTP side of
each exchange is the official SDK's `StreamableHTTPServerTransport` (SSE
framing, the GET stream, ``DELETE``, ``Mcp-Session-Id``); the MCP side is
the same `ClientConn` over the same bounded `bicameral.protocol.Peer` as a
client of the stdio bridge, so an HTTP client is routed, shared and isolated
exactly like any other (docs/mcp.md, "Sharing").

Both protocol eras:

* **handshake era** (``initialize``, up to 2025-11-25): a POST without a
  session id opens a session; its id (``Mcp-Session-Id``) binds the later
  requests, the GET stream and ``DELETE`` to it, and to the path it was
  opened on. A session idle for `SESSION_IDLE` seconds ends.
* **stateless era** (``Mcp-Protocol-Version: 2026-07-28``): every POST is a
  self-contained exchange with its envelope in ``_meta``; it is served by a
  `ClientConn` of its own that lives for that one request, so any replica of
  a hosted daemon can answer it.

The SDK's transport writes a server-to-client message on the stream of the
request it relates to only when told which one: `_Outbound` tells it
(progress by its token, anything else by the one request in flight, else the
GET stream).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anyio

from bicameral.mcp._common import MAX_FRAME
from bicameral.mcp._host import KNOWN_VERSIONS, MODERN_VERSIONS, ClientConn
from bicameral.protocol import Wire

if TYPE_CHECKING:
    from bicameral.mcp._host import McpHost

__all__ = ["HttpSessions"]

logger = logging.getLogger("bicameral.mcp.http")

#: A handshake-era session with no request in flight for this long ends.
SESSION_IDLE = 30 * 60.0
#: Open handshake-era sessions at most; past it a new one gets 503.
MAX_SESSIONS = 1000
_SESSION_HEADER = "mcp-session-id"
_VERSION_HEADER = "mcp-protocol-version"


class _Inbound:
    """The SDK transport's incoming messages as JSON lines, for the session's `Peer`.

    Notes each request in flight (and its progress token) for `_Outbound`.
    """

    def __init__(self, read_stream: Any, inflight: dict[str, Any]) -> None:
        self._read = read_stream
        self._inflight = inflight

    async def receive(self, max_bytes: int = 65536) -> bytes:
        from mcp_types import JSONRPCRequest

        while True:
            try:
                item = await self._read.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
                return b""
            if isinstance(item, Exception):
                logger.info("an HTTP client sent a message that is not JSON-RPC: %s", item)
                continue
            message = item.message
            if isinstance(message, JSONRPCRequest):
                meta = (message.params or {}).get("_meta")
                token = meta.get("progressToken") if isinstance(meta, dict) else None
                self._inflight[str(message.id)] = (message.id, token)
            data: bytes = message.model_dump_json(by_alias=True, exclude_unset=True).encode()
            return data + b"\n"


class _Outbound:
    """JSON lines from the session's `Peer`, as the SDK transport's outgoing messages."""

    def __init__(self, write_stream: Any, inflight: dict[str, Any]) -> None:
        self._write = write_stream
        self._inflight = inflight

    async def send(self, data: bytes) -> None:
        import mcp_types as types
        from mcp.shared.message import ServerMessageMetadata, SessionMessage

        for line in data.splitlines():
            if not line.strip():
                continue
            message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
            related = None
            if isinstance(message, types.JSONRPCResponse | types.JSONRPCError):
                self._inflight.pop(str(message.id), None)
            else:
                related = self._related(message)
            metadata = ServerMessageMetadata(related_request_id=related) if related else None
            await self._write.send(SessionMessage(message, metadata=metadata))

    def _related(self, message: Any) -> Any:
        """The request `message` belongs with: by progress token, else the one in flight."""
        params = getattr(message, "params", None) or {}
        if getattr(message, "method", None) == "notifications/progress":
            token = params.get("progressToken")
            for request_id, wanted in self._inflight.values():
                if wanted == token:
                    return request_id
            return None
        if self._inflight:
            # The newest request in flight: with one, certain; with several,
            # the one whose call most likely caused it (the GET stream may
            # not be open at all).
            return next(reversed(self._inflight.values()))[0]
        return None


class HttpSessions:
    """The ASGI app mounted at ``/mcp``: sessions of both eras, per path."""

    def __init__(self, host: McpHost, max_frame: int = MAX_FRAME) -> None:
        self.host = host
        self.max_frame = max_frame
        self.sessions: dict[str, tuple[Any, str | None]] = {}
        self.draining = False
        self.posts = 0  # POSTs being answered (a drain waits for them)
        self._posts_done = anyio.Event()
        self._group: anyio.abc.TaskGroup | None = None
        self._started = anyio.Event()

    async def run(self) -> None:
        """Load the SDK's transport, then hold the task group the sessions run in.

        The SDK is imported in a worker thread, as the servers' adapters
        import it (``_adapter``), never on the event loop; requests wait for
        it. Importing it on the loop while a thread imports it would also
        see its modules half-initialised.
        """
        import importlib

        def load() -> None:
            for module in ("bicameral.mcp._upstream", "mcp.server.streamable_http"):
                importlib.import_module(module)

        await anyio.to_thread.run_sync(load)
        async with anyio.create_task_group() as tg:
            self._group = tg
            self._started.set()
            await anyio.sleep_forever()

    def drain(self) -> None:
        """The daemon is stopping: no new sessions; requests in flight finish, then streams end.

        The listener has stopped accepting connections and gives what is in
        flight its grace; the sessions' GET streams (which never end on their
        own) are closed once no POST is left, so the listener can finish.
        """
        self.draining = True
        if self._group is not None:
            self._group.start_soon(self._close_streams_when_idle)

    async def _close_streams_when_idle(self) -> None:
        while self.posts:
            await self._posts_done.wait()
        for transport, _ in list(self.sessions.values()):
            with contextlib.suppress(Exception):
                transport.close_standalone_sse_stream()

    # -- ASGI -----------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        from mcp.server.transport_security import RequestBodyLimitMiddleware

        await self._started.wait()
        limited = RequestBodyLimitMiddleware(self._handle, self.max_frame)  # type: ignore[arg-type]
        await limited(scope, receive, send)

    async def _handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")[len(scope.get("root_path", "")) :].strip("/")
        server = path or None
        if server is not None and ("/" in server or self.host.registry.get(server) is None):
            configured = ", ".join(self.host.registry.configured) or "none"
            await _error(send, 404, f"no MCP server named {server!r} (configured: {configured})")
            return
        headers = _headers(scope)
        version = headers.get(_VERSION_HEADER)
        if version is not None and version not in KNOWN_VERSIONS:
            if version not in MODERN_VERSIONS:
                await _error(send, 400, f"unsupported MCP-Protocol-Version {version!r}")
                return
            await self._exchange(server, scope, receive, send)
            return
        session_id = headers.get(_SESSION_HEADER)
        if session_id is None:
            if self.draining:
                await _error(send, 503, "the daemon is stopping")
                return
            if len(self.sessions) >= MAX_SESSIONS:
                await _error(send, 503, "too many open MCP sessions")
                return
            await self._open(server, scope, receive, send)
            return
        found = self.sessions.get(session_id)
        if found is None or found[1] != server:
            await _error(send, 404, "Session not found")
            return
        transport = found[0]
        async with self._counting(scope):
            await transport.handle_request(scope, receive, send)
        if transport.is_terminated:
            self.sessions.pop(session_id, None)

    @contextlib.asynccontextmanager
    async def _counting(self, scope: dict[str, Any]) -> Any:
        """Count a POST in flight while it is answered (GETs are streams, not requests)."""
        if scope.get("method") != "POST":
            yield
            return
        self.posts += 1
        try:
            yield
        finally:
            self.posts -= 1
            if not self.posts:
                self._posts_done.set()
                self._posts_done = anyio.Event()

    async def _open(
        self, server: str | None, scope: dict[str, Any], receive: Any, send: Any
    ) -> None:
        """A new handshake-era session; kept only if its opening request succeeded."""
        from mcp.server.streamable_http import StreamableHTTPServerTransport

        session_id = os.urandom(16).hex()
        transport = StreamableHTTPServerTransport(
            mcp_session_id=session_id,
            is_json_response_enabled=False,
            event_store=None,
            security_settings=None,  # the listener checked Host and Origin
            idle_timeout=SESSION_IDLE,
        )
        self.sessions[session_id] = (transport, server)
        established = False
        try:
            assert self._group is not None
            await self._group.start(self._serve, transport, server, session_id)
            async with self._counting(scope):
                status = await _status_of(transport.handle_request, scope, receive, send)
            established = status is not None and status < 400
        finally:
            if not established:
                await self._discard(session_id, transport)

    async def _serve(
        self,
        transport: Any,
        server: str | None,
        session_id: str | None,
        *,
        task_status: Any = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run one session's `ClientConn` over `transport` until it ends."""
        async with transport.connect() as (read_stream, write_stream):
            task_status.started()
            inflight: dict[str, Any] = {}
            wire = Wire(_Inbound(read_stream, inflight), _Outbound(write_stream, inflight))
            conn = ClientConn(self.host, wire, server, None, self.max_frame)
            try:
                scope = transport.idle_scope or anyio.CancelScope()
                with scope:
                    await conn.run(b"")
            except Exception:
                logger.exception("an HTTP MCP session failed")
            finally:
                if session_id is not None:
                    await self._discard(session_id, transport)

    async def _exchange(
        self, server: str | None, scope: dict[str, Any], receive: Any, send: Any
    ) -> None:
        """One stateless-era request: a `ClientConn` for this exchange alone."""
        from mcp.server.streamable_http import StreamableHTTPServerTransport

        transport = StreamableHTTPServerTransport(
            mcp_session_id=None, is_json_response_enabled=False, event_store=None
        )
        try:
            assert self._group is not None
            await self._group.start(self._serve, transport, server, None)
            async with self._counting(scope):
                await transport.handle_request(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await transport.terminate()

    async def _discard(self, session_id: str, transport: Any) -> None:
        self.sessions.pop(session_id, None)
        if not transport.is_terminated:
            with anyio.CancelScope(shield=True):
                await transport.terminate()


def _headers(scope: Mapping[str, Any]) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


async def _error(send: Any, status: int, message: str) -> None:
    import json

    body = json.dumps(
        {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": message}}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _status_of(app: Any, scope: Any, receive: Any, send: Any) -> int | None:
    """Run `app` for one request; the HTTP status it answered with (None: none)."""
    status: int | None = None

    async def watch(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        await send(message)

    await app(scope, receive, watch)
    return status
