"""`Peer`: one JSON-RPC 2.0 endpoint over a byte stream, requests both ways.

Every MCP stream the daemon holds is a `Peer`: an MCP client's socket or
passed stdio (the daemon is the server there) and an MCP server's pipes (the
daemon is the client). Both directions carry requests, responses and
notifications, so one class does all of it, and the bounds that keep a
hostile stream from costing anyone else live in one place (SPEC §8.3):

* **Input.** Lines are cut at ``max_frame`` (the stream ends: a client is
  told why, a server is restarted by its owner), unfinished input counts
  against the daemon's one `InputBudget`, and the reader passes a
  scheduling point after every message and after every chunk that finished
  none, so a stream that never pauses (``/dev/urandom``) cannot starve
  anybody. Malformed messages are answered (``answers_malformed``: the peer
  serves that side) or logged once per burst, never fatal.
* **Requests in.** `PeerHandler.in_line` requests are answered by the reader
  itself, in order (an ``initialize`` pipelined before a ``tools/list`` is
  answered first); the others run in a task each, at most ``max_inbound``
  at once: past that the reader waits (backpressure on a client) or the
  request is refused (a server's). ``notifications/cancelled`` cancels the
  task, and a cancelled request gets no answer (as MCP says).
* **Requests out.** `request` gives each its own integer id, so many callers
  share the stream without collisions. Progress for it is handed to its
  ``on_progress`` by the requesting task itself, before the response is
  returned, so it can never overtake the response. A caller that stops
  waiting tells the other side (``notifications/cancelled``).
* **Notifications in.** `PeerHandler.note` sees each in receive order
  (cheap, synchronous); the rest run in a task each, at most
  ``max_notify_tasks`` at once: a flood beyond that is dropped and logged.
* **Output.** Whole lines, one writer at a time. `notify_soon` sends in the
  background, at most ``max_notify_tasks`` pending (more are dropped); a
  write that cannot finish within ``send_timeout`` (the other side does not
  read) ends the stream.
* **End.** At end of input, requests still running get ``drain`` seconds to
  be answered (a client that pipelined and closed its stdin still gets its
  answers); then every pending outbound request fails with `PeerClosed`.

It is written on Trio directly (nursery, cancel scopes, events): on the
``tools/call`` path a message crosses two peers each way, and anyio's
wrappers cost 2-3x as much per message.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import anyio
import orjson
import trio

from bicameral.protocol._burst import BurstLog
from bicameral.protocol._codes import INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, PARSE_ERROR
from bicameral.protocol._errors import PeerClosed, RPCError
from bicameral.protocol._framing import FrameDecoder, FrameTooLarge
from bicameral.protocol._limits import InputBudget, Limits
from bicameral.protocol._outbound import Outbound, ProgressFn, valid_id
from bicameral.protocol._wire import Wire

__all__ = ["EOF", "OVER_BUDGET", "TOO_LARGE", "Peer", "PeerHandler"]

logger = logging.getLogger("bicameral.protocol.peer")

#: Entries in one batch a client may send (SPEC §7, as the protocol server's).
MAX_BATCH = Limits().max_batch

_NO_ID = object()

# Why input ended.
EOF = "eof"
TOO_LARGE = "too-large"
OVER_BUDGET = "over-budget"


class PeerHandler(Protocol):
    """What a `Peer` calls for what arrives."""

    def in_line(self, method: str) -> bool:
        """Whether the reader answers a request for `method` itself, before reading on.

        For requests whose answers must keep their order and that never
        wait long (or wait for something only this stream is waiting for).
        """
        ...

    async def on_request(self, request_id: Any, method: str, params: dict[str, Any] | None) -> Any:
        """The result of a request; raise `RPCError` to answer with an error."""
        ...

    def note(self, method: str, params: dict[str, Any] | None) -> bool:
        """See a notification in receive order; True when it needs nothing more."""
        ...

    async def on_notification(self, method: str, params: dict[str, Any] | None) -> None:
        """Handle a notification `note` left (in a task of its own)."""
        ...


class Peer:
    """One JSON-RPC stream: `run` reads it, `request` / `notify` write to it.

    Arguments:
      wire: the stream.
      handler: what is called for what arrives (`PeerHandler`).
      name: names the other side in log lines ("MCP server 'git'").
      max_frame: the longest line accepted; a longer one ends the stream.
      budget: the daemon-wide budget unfinished input counts against.
      answers_malformed: answer a malformed message with a JSON-RPC error
        (this side serves the other); else log it, once per burst.
      max_inbound: requests from the other side running at once.
      refuse_when_busy: past ``max_inbound``, refuse a request (else stop
        reading until one finishes).
      max_notify_tasks: notifications being handled at once, and those
        being sent by `notify_soon`; more are dropped and logged.
      drain: at end of input, how long running requests may take to be
        answered before the stream is closed.
      send_timeout: how long one write may wait for the other side to read.
      on_close: called (synchronously) once input ended, before pending
        requests are failed, so the owner stops sending new work this way.
    """

    def __init__(
        self,
        wire: Wire,
        handler: PeerHandler,
        *,
        name: str,
        max_frame: int,
        budget: InputBudget | None = None,
        answers_malformed: bool = False,
        max_inbound: int = 64,
        refuse_when_busy: bool = False,
        max_notify_tasks: int = 256,
        drain: float = 0.0,
        send_timeout: float = 60.0,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.wire = wire
        self.name = name
        self._handler = handler
        self._max_frame = max_frame
        self._budget = budget
        self._answers = answers_malformed
        self._max_inbound = max_inbound
        self._refuse_when_busy = refuse_when_busy
        self._slots = trio.Semaphore(max_inbound)
        self._max_notify = max_notify_tasks
        self._drain = drain
        self._send_timeout = send_timeout
        self._on_close = on_close
        # anyio's lock with fast_acquire: no scheduler round when it is free
        # (trio.Lock takes one on every acquire, on every message's path).
        self._writing = anyio.Lock(fast_acquire=True)
        self._out = Outbound(name)
        self._inbound: dict[Any, trio.CancelScope] = {}
        self._notify_in = 0
        self._notify_out = 0
        self._nursery: trio.Nursery | None = None
        self._idle: trio.Event | None = None
        self.closed = False
        self._closed_event = trio.Event()
        self.end: str | None = None  # why input ended (EOF, TOO_LARGE, ...)
        self._junk = BurstLog(logger, logging.WARNING)
        self._dropped = BurstLog(logger, logging.WARNING)

    @property
    def running(self) -> bool:
        """Whether `run` is reading the stream (requests can be sent)."""
        return self._nursery is not None and not self.closed

    # -- running ------------------------------------------------------------------

    async def run(
        self,
        buffered: bytes = b"",
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Read and handle the stream until it ends (then `end` says why) or is cancelled."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                self.end = await self._read_loop(buffered)
                if self.end == EOF and self._drain > 0 and self._inbound:
                    with trio.move_on_after(self._drain):
                        while self._inbound:
                            self._idle = trio.Event()
                            await self._idle.wait()
                nursery.cancel_scope.cancel()
        finally:
            self._nursery = None
            self._close()

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._closed_event.set()
        if self._on_close is not None:
            self._on_close()
        self._out.close()

    async def wait_closed(self) -> None:
        """Wait until the stream has ended (or been closed)."""
        await self._closed_event.wait()

    async def aclose(self) -> None:
        """Close the stream (after `run` returned, or to end it from outside)."""
        self._close()
        await self.wire.aclose()

    async def _read_loop(self, buffered: bytes) -> str:
        decoder = FrameDecoder(self._max_frame)
        decoder.feed(buffered)
        budget = self._budget
        held = 0
        try:
            while True:
                try:
                    handled = False
                    while (line := decoder.next_frame()) is not None:
                        if line.strip():
                            await self._handle_line(line)
                        # One scheduling point per message: a stream that
                        # never pauses cannot keep anyone else from running.
                        await trio.lowlevel.checkpoint()
                        handled = True
                    if not handled and decoder.has_partial():
                        await trio.lowlevel.checkpoint()  # a long line, chunk by chunk
                except FrameTooLarge:
                    self._malformed(None, INVALID_REQUEST, "message too long")
                    logger.warning(
                        "%s wrote a line over %d bytes (max_frame); closing it",
                        self.name,
                        self._max_frame,
                    )
                    await self._refuse_and_end("message too long")
                    return TOO_LARGE
                if budget is not None:
                    partial = decoder.buffered()
                    now = partial if partial > budget.COUNT_FROM else 0
                    ok = budget.claim(held, now)
                    held = now
                    if not ok:
                        logger.warning(
                            "closing %s: its unfinished message took the input held across "
                            "connections over %d bytes (max_buffered)",
                            self.name,
                            budget.limit,
                        )
                        await self._refuse_and_end("server busy: too much unfinished input")
                        return OVER_BUDGET
                chunk = await self.wire.receive()
                if not chunk:
                    rest = decoder.take_buffered()
                    if rest.strip():
                        await self._handle_line(rest)  # a last line without its newline
                    return EOF
                decoder.feed(chunk)
        finally:
            if budget is not None:
                budget.claim(held, 0)

    async def _refuse_and_end(self, message: str) -> None:
        if self._answers:
            with trio.move_on_after(5):
                await self._send_quietly(_error(None, INVALID_REQUEST, message))

    # -- inbound --------------------------------------------------------------------

    def _malformed(self, rid: Any, code: int, message: str, line: bytes = b"") -> bool:
        """Log a malformed message; True when it must be answered (with `code`)."""
        if self._answers:
            return True
        detail = f": {line[:200]!r}" if line else ""
        self._junk.note(f"{self.name} wrote {message}{detail}")
        return False

    async def _handle_line(self, line: bytes) -> None:
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError:
            if self._malformed(None, PARSE_ERROR, "a line that is not JSON", line):
                await self._send_quietly(_error(None, PARSE_ERROR, "parse error"))
            return
        if type(message) is dict:
            await self._handle(message, line)
        elif type(message) is list and message and self._answers:
            if len(message) > MAX_BATCH:
                await self._send_quietly(
                    _error(None, INVALID_REQUEST, f"batch of {len(message)} (at most {MAX_BATCH})")
                )
                return
            for item in message:
                if type(item) is dict:
                    await self._handle(item, line)
                else:
                    await self._send_quietly(_error(None, INVALID_REQUEST, "invalid request"))
        elif self._malformed(None, INVALID_REQUEST, "a line that is not a JSON-RPC message", line):
            await self._send_quietly(_error(None, INVALID_REQUEST, "invalid request"))

    async def _handle(self, message: dict[str, Any], line: bytes) -> None:
        method = message.get("method")
        if method is None:
            self._out.on_response(message)
            return
        rid = message.get("id", _NO_ID)
        if type(method) is not str:
            if self._malformed(rid, INVALID_REQUEST, "a message whose method is not a string"):
                await self._send_quietly(
                    _error(rid if valid_id(rid) else None, INVALID_REQUEST, "invalid request")
                )
            return
        params = message.get("params")
        if params is not None and type(params) is not dict:
            if rid is not _NO_ID:
                await self._send_quietly(
                    _error(
                        rid if valid_id(rid) else None, INVALID_PARAMS, "params must be an object"
                    )
                )
            return
        if rid is _NO_ID:
            self._on_notification(method, params)
            return
        if not valid_id(rid) or rid in self._inbound:
            what = f"a request with an unusable id {rid!r:.100}"
            if self._malformed(None, INVALID_REQUEST, what):
                await self._send_quietly(_error(None, INVALID_REQUEST, "invalid request id"))
            return
        if self._handler.in_line(method):
            scope = trio.CancelScope()
            self._inbound[rid] = scope
            await self._answer(rid, method, params, scope)
            return
        if len(self._inbound) >= self._max_inbound and self._refuse_when_busy:
            await self._send_quietly(_error(rid, INTERNAL_ERROR, "too many requests at once"))
            return
        try:
            self._slots.acquire_nowait()
        except trio.WouldBlock:
            await self._slots.acquire()  # backpressure: read nothing more meanwhile
        scope = trio.CancelScope()
        self._inbound[rid] = scope
        assert self._nursery is not None
        self._nursery.start_soon(self._request_task, rid, method, params, scope)

    async def _request_task(
        self, rid: Any, method: str, params: dict[str, Any] | None, scope: trio.CancelScope
    ) -> None:
        try:
            await self._answer(rid, method, params, scope)
        finally:
            self._slots.release()

    async def _answer(
        self, rid: Any, method: str, params: dict[str, Any] | None, scope: trio.CancelScope
    ) -> None:
        response: dict[str, Any] | None = None
        try:
            with scope:
                try:
                    result = await self._handler.on_request(rid, method, params)
                    response = {"jsonrpc": "2.0", "id": rid, "result": result}
                except RPCError as exc:
                    response = {"jsonrpc": "2.0", "id": rid, "error": exc.to_dict()}
                except Exception:
                    logger.exception("handling %s from %s failed", method, self.name)
                    response = _error(rid, INTERNAL_ERROR, "internal error")
        finally:
            if self._inbound.get(rid) is scope:
                del self._inbound[rid]
            if not self._inbound and self._idle is not None:
                self._idle.set()
        if response is not None and not scope.cancel_called:
            await self._send_quietly(response)

    def _on_notification(self, method: str, params: dict[str, Any] | None) -> None:
        if method == "notifications/cancelled":
            target = (params or {}).get("requestId")
            scope = self._inbound.get(target) if valid_id(target) else None
            if scope is not None:
                scope.cancel()
            return
        if (
            method == "notifications/progress"
            and params is not None
            and self._out.on_progress(params)
        ):
            return
        try:
            if self._handler.note(method, params):
                return
        except Exception:
            logger.exception("handling %s from %s failed", method, self.name)
            return
        if self._notify_in >= self._max_notify or self._nursery is None:
            self._dropped.note(f"{self.name} floods notifications: dropped some ({method})")
            return
        self._notify_in += 1
        self._nursery.start_soon(self._notification_task, method, params)

    async def _notification_task(self, method: str, params: dict[str, Any] | None) -> None:
        try:
            await self._handler.on_notification(method, params)
        except Exception:
            logger.exception("handling %s from %s failed", method, self.name)
        finally:
            self._notify_in -= 1

    # -- outbound -------------------------------------------------------------------

    async def request(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        on_progress: ProgressFn | None = None,
        cancel_on_abandon: bool = True,
    ) -> Any:
        """Send a request and return its result.

        A caller that stops waiting (cancelled, or timed out by its own cancel
        scope) tells the other side with ``notifications/cancelled``, unless
        ``cancel_on_abandon`` is False.

        Raises:
          RPCError: the other side answered with an error.
          PeerClosed: the stream closed first (or was not running).
        """
        if self.closed or self._nursery is None:
            raise PeerClosed()
        outbound = self._out
        rid, message, waiter = outbound.start(method, params, on_progress)
        written = False
        try:
            try:
                await self._send(message)
            except BrokenPipeError:
                raise PeerClosed() from None
            written = True
            await outbound.wait(waiter)
        except trio.Cancelled:
            if written and cancel_on_abandon and not waiter.answered:
                with trio.CancelScope(shield=True):
                    await self._abandon(rid, "the caller stopped waiting")
            raise
        finally:
            outbound.finish(rid)
        return waiter.result()

    async def _abandon(self, rid: int, reason: str) -> None:
        if self.closed:
            return
        with trio.move_on_after(5):
            await self.notify("notifications/cancelled", {"requestId": rid, "reason": reason})

    async def notify(self, method: str, params: Mapping[str, Any] | None = None) -> None:
        """Send a notification (dropped, quietly, once the stream is closed)."""
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        await self._send_quietly(message)

    def notify_soon(self, method: str, params: Mapping[str, Any] | None = None) -> None:
        """Send a notification in the background; dropped when too many are pending."""
        if self._nursery is None or self.closed:
            return
        if self._notify_out >= self._max_notify:
            # A peer that does not read its output: drop, do not pile up.
            self._dropped.note(f"{self.name} does not read: dropped some {method}")
            return
        self._notify_out += 1
        self._nursery.start_soon(self._notify_task, method, params)

    def start_soon(self, fn: Callable[[], Awaitable[object]]) -> bool:
        """Run ``fn()`` in the stream's nursery (ended with it); False once it is closed."""
        if self._nursery is None or self.closed:
            return False
        self._nursery.start_soon(fn)
        return True

    async def _notify_task(self, method: str, params: Mapping[str, Any] | None) -> None:
        try:
            await self.notify(method, params)
        finally:
            self._notify_out -= 1

    async def _send_quietly(self, message: dict[str, Any]) -> None:
        try:
            await self._send(message)
        except BrokenPipeError:
            logger.debug("dropped a message for %s: the stream is closed", self.name)

    async def _send(self, message: dict[str, Any]) -> None:
        """Write one whole line, or raise `BrokenPipeError`.

        A write the other side does not take within ``send_timeout`` ends the
        stream; so does one cancelled half-way (half a line cannot be taken back).
        """
        try:
            data = orjson.dumps(message) + b"\n"
        except TypeError:
            logger.exception("a message for %s could not be encoded as JSON", self.name)
            data = orjson.dumps(_error(message.get("id"), INTERNAL_ERROR, "internal error")) + b"\n"
        wire = self.wire
        async with self._writing:
            if wire.closed:
                raise BrokenPipeError("the stream is closed")
            # Most lines fit in the pipe or socket buffer at once: no cancel
            # scope (and its deadline) for those, only for a write that waits.
            sent = wire.try_send(data)
            if sent == len(data):
                return
            done = False
            try:
                with trio.move_on_after(self._send_timeout):
                    await wire.send(data[sent:] if sent else data)
                    done = True
            finally:
                if not done:
                    wire.closed = True
            if not done:
                logger.warning(
                    "%s has not read its output for %gs; closing it", self.name, self._send_timeout
                )
                if self._nursery is not None:
                    self._nursery.cancel_scope.cancel()
                raise BrokenPipeError("the other side does not read")


def _error(rid: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}}
