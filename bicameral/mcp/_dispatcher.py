"""`LeanDispatcher`: a server's stream, on the daemon's one JSON-RPC `Peer`, in dicts.

The daemon speaks MCP to its servers without the official SDK's session:
the handshake is `bicameral.mcp._handshake`'s, and what the server sends
(its requests: sampling, elicitation, roots; its notifications) reaches the
owner's `ServerHandler` as method and params, plain dicts, with no model
built in between. The wire is the same bounded `Peer` that serves the
daemon's MCP clients (docs/architecture.md, "One peer"). Nothing here
imports the SDK: a daemon whose servers are all local never loads it.

bicameral's callers use `call`, which raises bicameral's errors: `RPCError`
for the server's error answer (or `REQUEST_TIMEOUT`), `PeerClosed` when the
stream closed first. A server's own requests run at most `MAX_INBOUND` at
once (more are refused); its notifications at most `MAX_NOTIFY_TASKS` (more
are dropped and logged). A ``ping`` from the server is answered here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import anyio
import anyio.abc
import trio
from anyio.abc import ByteReceiveStream, ByteSendStream

from bicameral.mcp._common import MAX_FRAME
from bicameral.protocol import (
    REQUEST_TIMEOUT,
    TOO_LARGE,
    FdReader,
    FdWriter,
    Peer,
    ProgressFn,
    RPCError,
    Wire,
)

__all__ = ["LeanDispatcher", "ServerHandler"]

logger = logging.getLogger("bicameral.mcp.dispatcher")

#: Notifications from one server being handled at once; more are dropped.
MAX_NOTIFY_TASKS = 256
#: Requests from one server (sampling, roots...) running at once; more are refused.
MAX_INBOUND = 64


class ServerHandler(Protocol):
    """What the owner of a server's stream does with what the server sends."""

    async def on_request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """The result of the server's request; raise `RPCError` to answer with an error."""
        ...

    async def on_notification(self, method: str, params: dict[str, Any]) -> None:
        """A notification from the server (in a task of its own)."""
        ...


class _Handler:
    """The `PeerHandler` for a server's stream: ``ping`` answered, the rest to the owner."""

    def __init__(self, dispatcher: LeanDispatcher, owner: ServerHandler) -> None:
        self._seen = dispatcher.on_notification_seen
        self._owner = owner

    def in_line(self, method: str) -> bool:
        return method == "ping"

    async def on_request(self, request_id: Any, method: str, params: dict[str, Any] | None) -> Any:
        if method == "ping":
            return {}
        return await self._owner.on_request(method, params if isinstance(params, dict) else {})

    def note(self, method: str, params: dict[str, Any] | None) -> bool:
        if self._seen is not None:
            self._seen(method)
        return False

    async def on_notification(self, method: str, params: dict[str, Any] | None) -> None:
        await self._owner.on_notification(method, params if isinstance(params, dict) else {})


class LeanDispatcher:
    """A server's stream: its stdout (`reader`) and stdin (`writer`), or a remote transport's.

    `on_eof` runs (synchronously) as soon as the server's stdout ends, before
    the waiters are woken, so the owner can stop sending new work its way.
    `on_fatal` is told why when the server broke the protocol past repair
    (a line over `max_frame`); the connection is closed after it.
    `on_notification_seen` is told each notification's method as it is read,
    in order with the responses (the session's handlers run later, in tasks).
    """

    def __init__(
        self,
        reader: ByteReceiveStream | FdReader,
        writer: ByteSendStream | FdWriter,
        on_eof: Callable[[], None] | None = None,
        *,
        max_frame: int = MAX_FRAME,
        on_fatal: Callable[[str], None] | None = None,
        name: str = "?",
        on_notification_seen: Callable[[str], None] | None = None,
    ) -> None:
        self.on_notification_seen = on_notification_seen
        self._wire = Wire(reader, writer)
        self._on_eof = on_eof
        self._on_fatal = on_fatal
        self._max_frame = max_frame
        self._name = name
        self._peer: Peer | None = None
        #: The ``_meta`` envelope of a server spoken to in the 2026-07-28 era
        #: (set once it was discovered), added to every request; None: handshake era.
        self.envelope: dict[str, Any] | None = None

    def _require_peer(self) -> Peer:
        if self._peer is None:
            raise RuntimeError("LeanDispatcher used before run()")
        return self._peer

    async def call(
        self,
        method: str,
        params: Mapping[str, Any] | None,
        *,
        on_progress: ProgressFn | None = None,
        time_limit: float | None = None,
        cancel_on_abandon: bool = True,
    ) -> dict[str, Any]:
        """Send a request to the server and return its result (``{}`` for a non-object).

        Raises:
          RPCError: the server answered with an error; `REQUEST_TIMEOUT` when
            `time_limit` seconds passed without an answer.
          PeerClosed: the stream closed before the answer.
        """
        peer = self._require_peer()
        envelope = self.envelope
        if envelope is not None and method != "server/discover":
            # A 2026-07-28 server: every request says who asks (the envelope).
            params = dict(params or {})
            meta = params.get("_meta")
            params["_meta"] = {**meta, **envelope} if isinstance(meta, dict) else envelope
        abandon = cancel_on_abandon
        if time_limit is None:  # the common case: no cancel scope on the hot path
            result = await peer.request(
                method, params, on_progress=on_progress, cancel_on_abandon=abandon
            )
        else:
            result = None
            with trio.move_on_after(time_limit) as scope:
                result = await peer.request(
                    method, params, on_progress=on_progress, cancel_on_abandon=abandon
                )
            if scope.cancelled_caught:
                raise RPCError(REQUEST_TIMEOUT, f"Request {method!r} timed out")
        return result if isinstance(result, dict) else {}

    async def notify(self, method: str, params: Mapping[str, Any] | None) -> None:
        if self._peer is not None:
            await self._peer.notify(method, dict(params) if params is not None else None)

    async def run(
        self,
        owner: ServerHandler,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        peer = Peer(
            self._wire,
            _Handler(self, owner),
            name=f"MCP server {self._name!r}",
            max_frame=self._max_frame,
            max_inbound=MAX_INBOUND,
            refuse_when_busy=True,
            max_notify_tasks=MAX_NOTIFY_TASKS,
            on_close=self._closed,
        )
        self._peer = peer
        await peer.run(task_status=task_status)

    def _closed(self) -> None:
        # The peer's input ended: why first (the owner records the cause),
        # then that it ended.
        if self._peer is not None and self._peer.end == TOO_LARGE and self._on_fatal is not None:
            self._on_fatal(f"wrote a line over {self._max_frame} bytes (max_frame)")
        if self._on_eof is not None:
            self._on_eof()
