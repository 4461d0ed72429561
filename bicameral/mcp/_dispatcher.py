"""A lean JSON-RPC `Dispatcher` for the SDK's `ClientSession`, over a server's pipes.

The SDK's `ClientSession` runs on any object satisfying its `Dispatcher`
protocol (``ClientSession(dispatcher=...)``); its own `JSONRPCDispatcher`
builds a pydantic model, an OpenTelemetry span and a memory-object stream
per message, which is most of the daemon's share of a ``tools/call`` round
trip. Every client call through the daemon crosses it twice, so this one
does the same job with ``orjson`` and plain dicts, and writes each line to
the server's stdin before ``send_raw_request`` awaits the answer.

Same contract as the SDK's (`mcp.shared.dispatcher.Dispatcher`): requests get
ids of our own (ints), answers resolve by id; ``opts`` understands
``timeout``, ``on_progress`` (the request id doubles as the progress token)
and ``cancel_on_abandon`` (a caller that stops waiting sends
``notifications/cancelled``); an error answer raises `MCPError`; the
connection closing wakes every waiter with ``CONNECTION_CLOSED`` "Connection
closed". Inbound requests run in their own task, and ``notifications/cancelled``
from the server cancels that task.

It runs on Trio (the daemon's event loop) and uses Trio's nursery, cancel
scopes and events directly: anyio's wrappers cost 2-3x as much per message.

Bounded against a server that misbehaves, so that it costs only itself
(SPEC §8.3): a line longer than ``max_frame`` ends the connection (``on_fatal``
says why, and the server is restarted); the reader passes a scheduling point
after every message, so a server that writes without pause cannot starve
anyone; at most `MAX_NOTIFY_TASKS` notifications are being handled at once
(more are dropped and counted in the log, once per burst), at most
`MAX_INBOUND` server requests run at once (more are answered with an
error); a response whose id no request can have, a line that is not JSON,
are logged (once per burst) and skipped, never fatal. A request's progress
notifications are delivered by the requesting task itself, before it
returns the response, so they can never arrive after it.
"""

from __future__ import annotations

import collections
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.abc
import orjson
import trio
from anyio.abc import ByteReceiveStream, ByteSendStream
from mcp.shared.dispatcher import CallOptions, OnNotify, OnNotifyIntercept, OnRequest
from mcp.shared.exceptions import MCPError
from mcp.shared.transport_context import TransportContext
from mcp_types import CONNECTION_CLOSED, INTERNAL_ERROR, REQUEST_TIMEOUT

from bicameral.mcp._common import MAX_FRAME
from bicameral.mcp._fdio import FdReader, FdWriter
from bicameral.protocol import BurstLog, FrameDecoder, FrameTooLarge

__all__ = ["LeanDispatcher"]

logger = logging.getLogger("bicameral.mcp.dispatcher")

_READ_SIZE = 65536
_TRANSPORT = TransportContext(kind="stdio", can_send_request=True)
_CLOSED = object()
#: Notifications from one server being handled at once; more are dropped.
MAX_NOTIFY_TASKS = 256
#: Requests from one server (sampling, roots...) running at once; more are refused.
MAX_INBOUND = 64
#: Progress notifications kept for one request while its task catches up.
MAX_PROGRESS = 64


class _Waiter:
    __slots__ = ("event", "on_progress", "outcome", "progress")

    def __init__(self, on_progress: Any) -> None:
        self.event = trio.Event()  # set by the answer, and by progress to deliver
        self.outcome: Any = _PENDING
        self.on_progress = on_progress
        self.progress: collections.deque[tuple[float, float | None, str | None]] = (
            collections.deque(maxlen=MAX_PROGRESS)
        )


_PENDING = object()


def _valid_id(value: Any) -> bool:
    """An id a request can have: a string or an integer (JSON-RPC; not a bool)."""
    return isinstance(value, str | int) and not isinstance(value, bool)


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


class LeanDispatcher:
    """JSON-RPC over a server's stdout (`reader`) and stdin (`writer`), newline-delimited.

    `on_eof` runs (synchronously) as soon as the server's stdout ends, before
    the waiters are woken, so the owner can stop sending new work its way.
    `on_fatal` is told why when the server broke the protocol past repair
    (a line over `max_frame`); the connection is closed after it.
    """

    def __init__(
        self,
        reader: ByteReceiveStream,
        writer: ByteSendStream,
        on_eof: Callable[[], None] | None = None,
        *,
        max_frame: int = MAX_FRAME,
        on_fatal: Callable[[str], None] | None = None,
        name: str = "?",
    ) -> None:
        self._max_frame = max_frame
        self._on_fatal = on_fatal
        self._name = name
        self._notify_tasks = 0
        self._dropped = BurstLog(logger, logging.WARNING)
        self._junk = BurstLog(logger, logging.WARNING)
        self._odd_ids = BurstLog(logger, logging.WARNING)
        # The supervisor's pipe streams expose their fds: use them directly.
        read_fd = getattr(reader, "fileno", None)
        write_fd = getattr(writer, "fileno", None)
        self._reader: Any = FdReader(read_fd()) if read_fd is not None else reader
        self._writer: Any = FdWriter(write_fd()) if write_fd is not None else writer
        self._on_eof = on_eof
        self._lock = anyio.Lock(fast_acquire=True)
        self._next_id = 0
        self._pending: dict[Any, _Waiter] = {}
        self._inbound: dict[Any, tuple[trio.CancelScope, _Context]] = {}
        self._tg: trio.Nursery | None = None
        self._closed = False
        self._running = False

    # -- outbound ---------------------------------------------------------------

    async def _write(self, message: dict[str, Any]) -> None:
        data = orjson.dumps(message) + b"\n"
        async with self._lock:
            await self._writer.send(data)

    async def send_raw_request(
        self,
        method: str,
        params: Mapping[str, Any] | None,
        opts: CallOptions | None = None,
    ) -> dict[str, Any]:
        if self._closed:
            raise MCPError(code=CONNECTION_CLOSED, message="Connection closed")
        if not self._running:
            raise RuntimeError("LeanDispatcher.send_raw_request called before run()")
        opts = opts or {}
        self._next_id += 1
        request_id = self._next_id
        on_progress = opts.get("on_progress")
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None or on_progress is not None:
            out = dict(params) if params is not None else {}
            if on_progress is not None:
                out["_meta"] = {**(out.get("_meta") or {}), "progressToken": request_id}
            message["params"] = out
        waiter = _Waiter(on_progress)
        self._pending[request_id] = waiter
        written = False
        try:
            try:
                await self._write(message)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                raise MCPError(code=CONNECTION_CLOSED, message="Connection closed") from None
            written = True
            timeout = opts.get("timeout")
            with trio.move_on_after(timeout if timeout is not None else float("inf")) as scope:
                await self._await_answer(waiter)
            if scope.cancelled_caught:
                await self._abandon(request_id, opts, f"timed out after {timeout}s")
                raise MCPError(code=REQUEST_TIMEOUT, message=f"Request {method!r} timed out")
        except anyio.get_cancelled_exc_class():
            if written:
                with anyio.CancelScope(shield=True):
                    await self._abandon(request_id, opts, "caller cancelled")
            raise
        finally:
            self._pending.pop(request_id, None)
        outcome = waiter.outcome
        if outcome is _CLOSED:
            raise MCPError(code=CONNECTION_CLOSED, message="Connection closed")
        if isinstance(outcome, dict) and "error" in outcome:
            error = outcome["error"]
            if not isinstance(error, dict):
                raise MCPError(code=INTERNAL_ERROR, message="malformed error from the server")
            raise MCPError(
                code=int(error.get("code", INTERNAL_ERROR)),
                message=str(error.get("message", "")),
                data=error.get("data"),
            )
        result = outcome.get("result") if isinstance(outcome, dict) else None
        return result if isinstance(result, dict) else {}

    async def _await_answer(self, waiter: _Waiter) -> None:
        """Wait for the answer, delivering the request's progress meanwhile, in order.

        Progress is handed to ``on_progress`` here, in the requesting task,
        and whatever arrived before the answer is delivered before this
        returns: a client never sees a request's progress after its response.
        """
        while True:
            await waiter.event.wait()
            while waiter.progress:
                progress, total, note = waiter.progress.popleft()
                try:
                    await waiter.on_progress(progress, total, note)
                except Exception:
                    logger.exception("progress callback raised")
            if waiter.outcome is not _PENDING:
                return
            waiter.event = trio.Event()

    async def _abandon(self, request_id: int, opts: CallOptions, reason: str) -> None:
        if not opts.get("cancel_on_abandon", True) or self._closed:
            return
        with anyio.move_on_after(5):
            await self.notify(
                "notifications/cancelled", {"requestId": request_id, "reason": reason}
            )

    async def notify(
        self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None
    ) -> None:
        if self._closed:
            return
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = dict(params)
        try:
            await self._write(message)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            logger.debug("dropped %s: the server's stdin is closed", method)

    # -- inbound ------------------------------------------------------------------

    async def run(
        self,
        on_request: OnRequest,
        on_notify: OnNotify,
        on_notify_intercept: OnNotifyIntercept | None = None,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            async with trio.open_nursery() as tg:
                self._tg = tg
                self._running = True
                task_status.started()
                await self._read_loop(on_request, on_notify, on_notify_intercept)
                tg.cancel_scope.cancel()
        finally:
            self._running = False
            self._tg = None
            self._close()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._on_eof is not None:
            self._on_eof()
        for waiter in self._pending.values():
            if waiter.outcome is _PENDING:
                waiter.outcome = _CLOSED
            waiter.event.set()

    async def _read_loop(
        self,
        on_request: OnRequest,
        on_notify: OnNotify,
        intercept: OnNotifyIntercept | None,
    ) -> None:
        # The protocol's decoder: a long message arriving in many chunks is
        # copied and searched once, and a line over max_frame is refused as
        # soon as that much has arrived without a newline.
        decoder = FrameDecoder(self._max_frame)
        while True:
            try:
                chunk = await self._reader.receive(_READ_SIZE)
            except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
                chunk = b""
            if not chunk:
                self._close()
                return
            decoder.feed(chunk)
            handled = False
            while True:
                try:
                    line = decoder.next_frame()
                except FrameTooLarge:
                    reason = f"wrote a line over {self._max_frame} bytes (max_frame)"
                    logger.error("MCP server %r %s; closing it", self._name, reason)
                    if self._on_fatal is not None:
                        self._on_fatal(reason)
                    self._close()
                    return
                if line is None:
                    break
                if line.strip():
                    self._dispatch(line, on_request, on_notify, intercept)
                # One scheduling point per message: a server that writes
                # without pause cannot keep anyone else from running.
                await trio.lowlevel.checkpoint()
                handled = True
            if not handled:
                await trio.lowlevel.checkpoint()  # a long line arriving chunk by chunk

    def _dispatch(
        self,
        line: bytes,
        on_request: OnRequest,
        on_notify: OnNotify,
        intercept: OnNotifyIntercept | None,
    ) -> None:
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError:
            self._junk.note(
                f"MCP server {self._name!r} wrote a line that is not JSON-RPC: {line[:200]!r}"
            )
            return
        if not isinstance(message, dict):
            self._junk.note(
                f"MCP server {self._name!r} wrote a line that is not JSON-RPC: {line[:200]!r}"
            )
            return
        method = message.get("method")
        if method is None:
            rid = message.get("id")
            waiter = self._pending.get(rid) if _valid_id(rid) else None
            if waiter is None:
                self._odd_ids.note(
                    f"MCP server {self._name!r} answered with an id no request has: {rid!r:.100}"
                )
            elif waiter.outcome is _PENDING:
                waiter.outcome = message
                waiter.event.set()
            return
        if not isinstance(method, str):
            self._junk.note(
                f"MCP server {self._name!r} wrote a line that is not JSON-RPC: {line[:200]!r}"
            )
            return
        params = message.get("params")
        if params is not None and not isinstance(params, dict):
            params = None
        assert self._tg is not None
        if "id" in message:
            request_id = message["id"]
            if not _valid_id(request_id) or request_id in self._inbound:
                self._odd_ids.note(
                    f"MCP server {self._name!r} sent a request with an unusable id: "
                    f"{request_id!r:.100}"
                )
                return
            if len(self._inbound) >= MAX_INBOUND:
                refusal = {
                    "jsonrpc": "2.0",
                    "id": request_id,
                    "error": {"code": INTERNAL_ERROR, "message": "too many requests at once"},
                }
                self._tg.start_soon(self._write_quietly, refusal)
                return
            dctx = _Context(self, request_id)
            scope = trio.CancelScope()
            self._inbound[request_id] = (scope, dctx)
            self._tg.start_soon(self._handle, on_request, dctx, scope, method, params)
            return
        if method == "notifications/cancelled":
            entry = self._inbound.get((params or {}).get("requestId"))
            if entry is not None:
                entry[1].cancel_requested.set()
                entry[0].cancel()
        elif method == "notifications/progress" and params is not None:
            token = params.get("progressToken")
            waiter = self._pending.get(token) if _valid_id(token) else None
            progress: Any = params.get("progress")
            if waiter is not None and waiter.on_progress is not None and _is_number(progress):
                total: Any = params.get("total")
                note = params.get("message")
                # Delivered by the requesting task (see _await_answer): in
                # order, and before the response.
                waiter.progress.append(
                    (
                        float(progress),
                        float(total) if _is_number(total) else None,
                        note if isinstance(note, str) else None,
                    )
                )
                waiter.event.set()
            return
        if intercept is not None:
            try:
                if intercept(method, params):
                    return
            except Exception:
                logger.exception("notification intercept raised")
        if self._notify_tasks >= MAX_NOTIFY_TASKS:
            self._dropped.note(
                f"MCP server {self._name!r} floods notifications: dropped some ({method})"
            )
            return
        self._notify_tasks += 1
        self._tg.start_soon(self._notify_task, on_notify, method, params)

    async def _notify_task(
        self, on_notify: OnNotify, method: str, params: dict[str, Any] | None
    ) -> None:
        try:
            await _call_notify(on_notify, _Context(self, None), method, params)
        finally:
            self._notify_tasks -= 1

    async def _write_quietly(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            await self._write(message)

    async def _handle(
        self,
        on_request: OnRequest,
        dctx: _Context,
        scope: trio.CancelScope,
        method: str,
        params: dict[str, Any] | None,
    ) -> None:
        request_id = dctx.request_id
        answer: dict[str, Any] | None = None
        try:
            with scope:
                try:
                    result = await on_request(dctx, method, params)
                    answer = {"jsonrpc": "2.0", "id": request_id, "result": result}
                except MCPError as exc:
                    error = exc.error.model_dump(by_alias=True, mode="json", exclude_none=True)
                    answer = {"jsonrpc": "2.0", "id": request_id, "error": error}
                except Exception:
                    logger.exception("handling %s from the MCP server failed", method)
                    error = {"code": INTERNAL_ERROR, "message": "internal error"}
                    answer = {"jsonrpc": "2.0", "id": request_id, "error": error}
        finally:
            self._inbound.pop(request_id, None)
        if answer is not None and not dctx.cancel_requested.is_set():
            try:
                await self._write(answer)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                logger.debug("dropped the answer to %s: the server's stdin is closed", method)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


async def _call_notify(
    fn: OnNotify, dctx: _Context, method: str, params: dict[str, Any] | None
) -> None:
    try:
        await fn(dctx, method, params)
    except Exception:
        logger.exception("notification handler for %r raised", method)
