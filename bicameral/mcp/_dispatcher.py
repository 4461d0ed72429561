"""`LeanDispatcher`: the SDK's `ClientSession` over the daemon's one JSON-RPC `Peer`.

The SDK's `ClientSession` runs on any object satisfying its `Dispatcher`
protocol (``ClientSession(dispatcher=...)``). Its own `JSONRPCDispatcher`
builds a pydantic model, an OpenTelemetry span and a memory-object stream
per message, which would be most of the daemon's share of a ``tools/call``
round trip (every client call crosses it twice). So the session keeps the
SDK's semantics (initialize, capabilities, callbacks for sampling,
elicitation, roots, logging) while the wire is the same bounded `Peer` that
serves the daemon's MCP clients: this module only translates between the
two (docs/architecture.md, "One peer").

Two faces for requests to the server. bicameral's own callers use `call`,
which raises bicameral's errors: `RPCError` for the server's error answer
(or `REQUEST_TIMEOUT`), `PeerClosed` when the stream closed first. The SDK's
session uses `send_raw_request`, with the SDK's contract
(`mcp.shared.dispatcher.Dispatcher`): ``opts`` understands ``timeout``,
``on_progress`` and ``cancel_on_abandon``, and every error is an `MCPError`
with the same code, message and data (the one place bicameral's errors are
made into the SDK's). A server's own requests
(sampling, roots...) run at most `MAX_INBOUND` at once (more are refused);
its notifications at most `MAX_NOTIFY_TASKS` (more are dropped and logged).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.abc
import trio
from anyio.abc import ByteReceiveStream, ByteSendStream
from mcp.shared.dispatcher import CallOptions, OnNotify, OnNotifyIntercept, OnRequest
from mcp.shared.exceptions import MCPError
from mcp.shared.transport_context import TransportContext

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

__all__ = ["LeanDispatcher"]

logger = logging.getLogger("bicameral.mcp.dispatcher")

_TRANSPORT = TransportContext(kind="stdio", can_send_request=True)
#: Notifications from one server being handled at once; more are dropped.
MAX_NOTIFY_TASKS = 256
#: Requests from one server (sampling, roots...) running at once; more are refused.
MAX_INBOUND = 64


class _Context:
    """The `DispatchContext` handed to the session's handlers (stdio: no extras)."""

    def __init__(self, dispatcher: LeanDispatcher, request_id: Any) -> None:
        self._dispatcher = dispatcher
        self.request_id = request_id
        self.transport = _TRANSPORT
        self.message_metadata = None
        self.cancel_requested = anyio.Event()
        self.can_send_request = request_id is not None

    async def notify(
        self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None
    ) -> None:
        await self._dispatcher.notify(method, params, opts)

    async def send_raw_request(
        self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None
    ) -> dict[str, Any]:
        return await self._dispatcher.send_raw_request(method, params, opts)

    async def progress(
        self, progress: float, total: float | None = None, message: str | None = None
    ) -> None:
        return None  # the server never asks a client for progress on stdio


class _Handler:
    """The `PeerHandler` for a server's stream: everything goes to the SDK session."""

    def __init__(
        self,
        dispatcher: LeanDispatcher,
        on_request: OnRequest,
        on_notify: OnNotify,
        intercept: OnNotifyIntercept | None,
    ) -> None:
        self._dispatcher = dispatcher
        self._seen = dispatcher.on_notification_seen
        self._on_request = on_request
        self._on_notify = on_notify
        self._intercept = intercept

    def in_line(self, method: str) -> bool:
        return False

    async def on_request(self, request_id: Any, method: str, params: dict[str, Any] | None) -> Any:
        dctx = _Context(self._dispatcher, request_id)
        try:
            return await self._on_request(dctx, method, params)
        except MCPError as exc:
            raise RPCError(exc.code, exc.message, exc.error.data) from None
        except trio.Cancelled:
            dctx.cancel_requested.set()
            raise

    def note(self, method: str, params: dict[str, Any] | None) -> bool:
        if self._seen is not None:
            self._seen(method)
        # The SDK's receive-order intercept; a raise is contained by the peer.
        return self._intercept is not None and bool(self._intercept(method, params))

    async def on_notification(self, method: str, params: dict[str, Any] | None) -> None:
        await self._on_notify(_Context(self._dispatcher, None), method, params)


class LeanDispatcher:
    """The SDK `Dispatcher` over a server's stdout (`reader`) and stdin (`writer`).

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

    async def send_raw_request(
        self,
        method: str,
        params: Mapping[str, Any] | None,
        opts: CallOptions | None = None,
    ) -> dict[str, Any]:
        """`call`, for the SDK's session: its errors are `MCPError`."""
        opts = opts or {}
        # The SDK gives its discover probe 10 s; the adapter bounds a
        # server's whole start itself (`STARTUP_TIMEOUT`, as for `initialize`,
        # which the SDK does not time), and a loaded machine needs it.
        try:
            return await self.call(
                method,
                params,
                on_progress=opts.get("on_progress"),
                time_limit=opts.get("timeout") if method != "server/discover" else None,
                cancel_on_abandon=opts.get("cancel_on_abandon", True),
            )
        except RPCError as exc:  # PeerClosed included: CONNECTION_CLOSED
            # Chained: bicameral code under the SDK's calls tells a closed
            # stream by its cause (`PeerClosed`), not by its code or text.
            raise MCPError(code=exc.code, message=exc.message, data=exc.data) from exc

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

    async def notify(
        self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None
    ) -> None:
        if self._peer is not None:
            await self._peer.notify(method, dict(params) if params is not None else None)

    async def run(
        self,
        on_request: OnRequest,
        on_notify: OnNotify,
        on_notify_intercept: OnNotifyIntercept | None = None,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        peer = Peer(
            self._wire,
            _Handler(self, on_request, on_notify, on_notify_intercept),
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
