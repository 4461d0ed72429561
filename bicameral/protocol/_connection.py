"""One client connection: reading frames, running requests, writing responses.

The reader task owns the socket's receiving side. It decodes one frame at a
time and starts a task per request, so a slow method never holds up a fast
one; each task writes its own response under a lock, whole lines only.
Before starting a task the reader takes one of ``max_in_flight`` slots, and
a finished task gives it back *after* its response is written. That single
rule gives both kinds of backpressure: a client that pipelines too much is
not read until earlier requests finish, and a client that never reads its
answers leaves tasks blocked in ``send``, holding their slots, so the reader
stops too and nothing grows without bound. Requests that cannot suspend
(parse errors, invalid requests, handlers without an ``await``) are answered
in line, without a task.

The socket is a non-blocking stdlib socket. Where the server has a
`Poller` (Linux), an idle reader parks in it, and the poller does the
reader's work for the common frames itself (`_on_readable`): one ``recv``,
the answers, one ``send`` per round, and no task switch nor ``epoll_ctl``;
the reader is woken only for what needs to wait. Elsewhere the reader waits
with `trio.lowlevel.wait_readable` before each ``recv``. Either way a
response is written with a direct ``send`` that waits only when the kernel
buffer is full, and at most ``INLINE_BUDGET`` frames are answered in a row
before other tasks get to run.
"""

from __future__ import annotations

import enum
import hmac
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal, TypeAlias

import trio

from bicameral.protocol import _poller
from bicameral.protocol._dispatcher import (
    Dispatcher,
    Request,
    error_response,
    internal_error,
    parse_request,
)
from bicameral.protocol._errors import INVALID_REQUEST, PARSE_ERROR, UNAUTHORIZED
from bicameral.protocol._framing import (
    EncodeError,
    FrameDecoder,
    FrameTooLarge,
    ParseError,
    decode,
    encode,
)
from bicameral.protocol._limits import InputBudget, Limits
from bicameral.protocol._poller import AGAIN, IDLE, INLINE_BUDGET, WAKE, Poller

__all__ = ["Connection", "UpgradeHandler"]

logger = logging.getLogger("bicameral.protocol")

#: ``async def handler(stream, buffered)``: takes the connection over after an
#: upgrade. ``stream`` is the connection as a `trio.SocketStream`;
#: ``buffered`` the bytes already received past the upgrading request.
UpgradeHandler: TypeAlias = Callable[[trio.SocketStream, bytes], Awaitable[object]]

#: Methods the reader runs to completion before it reads the next frame, so
#: that a handler may upgrade the connection with nothing read past its own
#: request except into the buffer that the upgrade hands over.
BARRIER_METHODS = frozenset({"system.attach"})

RECV_SIZE = 65536

_PARSE_ERROR = encode(error_response(None, PARSE_ERROR, "parse error"))

# Why input stopped, as the poller saw it.
_EOF = 1
_RECV_ERROR = 2


class _Batch:
    """The responses of one batch, sent together by whoever finishes last."""

    __slots__ = ("pending", "responses")

    def __init__(self) -> None:
        self.responses: list[dict[str, Any]] = []
        self.pending = 1  # the reader's own share, dropped once every element is started


class Connection:
    """Per-connection state, as a method handler sees it.

    Attributes:
      peer_uid: the client's user id from the kernel (Unix socket), or None
        where there is none (TCP) or the platform cannot tell.
      authenticated: True on a Unix socket (the peer credentials were
        checked); on TCP, True once ``system.attach`` presented the token.
      transport: ``"unix"`` or ``"tcp"``.
      state: free for the layers above (session ids, attach mode...).
    """

    def __init__(
        self,
        sock: socket.socket,
        dispatcher: Dispatcher,
        limits: Limits,
        *,
        transport: Literal["unix", "tcp"],
        peer_uid: int | None = None,
        token: str | None = None,
        poller: Poller | None = None,
        budget: InputBudget | None = None,
        on_authenticated: Callable[[], None] | None = None,
    ) -> None:
        self.peer_uid = peer_uid
        self.transport = transport
        self.authenticated = token is None
        self.state: dict[str, Any] = {}
        self._sock = sock
        self._fd = sock.fileno()
        self._dispatcher = dispatcher
        self._limits = limits
        self._token = token.encode() if token is not None else None
        # Before the token, a stranger's lines are short (SPEC §7).
        self._decoder = FrameDecoder(
            limits.max_frame
            if token is None
            else min(limits.max_frame, limits.max_unauthenticated_frame)
        )
        self._on_authenticated = on_authenticated
        self._slots = trio.Semaphore(limits.max_in_flight)
        # A write lock without trio.Lock's bookkeeping (it is on every
        # response's path): a flag, and a parking lot to wait in. Release
        # hands the lock straight to the first waiter, so nobody starves.
        self._writing = False
        self._write_waiters = trio.lowlevel.ParkingLot()
        self._broken = False
        self._in_barrier = False
        self._upgrade: UpgradeHandler | None = None
        self._nursery: trio.Nursery | None = None
        # What the poller leaves for the reader: a frame it could not answer
        # at once, bytes it could not write (holding the write lock or not),
        # and why input ended.
        self._pending: bytes | None = None
        self._unsent: bytes | None = None
        self._unsent_locked = False
        self._input_end = 0
        # The poller's view of this connection (see _poller).
        self._poller = poller
        self._parked: trio.lowlevel.Task | None = None
        self._armed = False
        self._backlog = False
        # Shared by all of the server's connections; `_held` is our part of it.
        self._budget = budget
        self._held = 0

    # -- the API for method handlers ---------------------------------------

    @property
    def limits(self) -> Limits:
        """The limits this connection is served under."""
        return self._limits

    @property
    def input_budget(self) -> InputBudget | None:
        """The server-wide budget of unfinished input (`Limits.max_buffered`).

        For an upgrade handler's own reader: counting its unfinished
        messages here keeps the one limit over everything the server holds.
        """
        return self._budget

    async def send_notification(self, method: str, params: Any = None) -> None:
        """Send a JSON-RPC notification to the client.

        Raises `ConnectionError` when the connection can no longer be written.
        """
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        if not await self._send(encode(message)):
            raise ConnectionError("connection closed")

    def upgrade(self, handler: UpgradeHandler) -> None:
        """Hand the connection to ``handler`` once the current request is answered.

        Only a request the reader runs to completion before reading on (a
        ``system.attach`` sent on its own, not inside a batch) can upgrade.
        When its handler returns successfully and the response is written,
        the server stops reading JSON-RPC, waits for the connection's other
        requests to finish (their responses are still written), and then
        calls ``await handler(stream, buffered)``; the connection is closed
        when that returns. If the handler raises instead, nothing happens.
        """
        if not self._in_barrier:
            raise RuntimeError("only a system.attach request sent on its own can upgrade")
        if self._upgrade is not None:
            raise RuntimeError("the connection is already being upgraded")
        self._upgrade = handler

    # -- serving -------------------------------------------------------------

    async def serve(self) -> None:
        """Serve until the client closes, misbehaves or the connection is upgraded."""
        poller = self._poller
        if poller is not None:
            poller.connections += 1
        try:
            await self._serve()
        finally:
            self._hold(0)
            if poller is not None:
                poller.connections -= 1
                poller.forget(self)

    async def _serve(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            deadline: trio.CancelScope | None = None
            if not self.authenticated:
                deadline = trio.CancelScope()
                nursery.start_soon(self._close_unless_authenticated, deadline, nursery)
            try:
                await self._read_loop(nursery)
            except FrameTooLarge:
                logger.warning(
                    "closing a connection that sent a frame over %d bytes", self._limits.max_frame
                )
                await self._refuse(nursery, "frame too large")
                return
            except _OverBudget:
                logger.warning(
                    "closing a connection whose unfinished line took the input held across "
                    "connections over %d bytes (max_buffered)",
                    self._limits.max_buffered,
                )
                await self._refuse(nursery, "server busy: too much unfinished input")
                return
            except _Stalled:
                logger.info(
                    "closing a connection stalled inside a frame for %ss",
                    self._limits.partial_frame_timeout,
                )
                nursery.cancel_scope.cancel()
                return
            finally:
                if deadline is not None:
                    deadline.cancel()
        # Every request task has finished: its response, if any, is written.
        if self._upgrade is not None and not self._broken:
            if self._poller is not None:
                self._poller.forget(self)
            stream = trio.SocketStream(trio.socket.from_stdlib_socket(self._sock))
            await self._upgrade(stream, self._decoder.take_buffered())

    async def _close_unless_authenticated(
        self, scope: trio.CancelScope, nursery: trio.Nursery
    ) -> None:
        """Close a TCP connection that has not presented the token in time (SPEC §7)."""
        with scope:
            await trio.sleep(self._limits.auth_timeout)
            if not self.authenticated:
                logger.debug(
                    "closing a TCP connection without the token after %ss",
                    self._limits.auth_timeout,
                )
                nursery.cancel_scope.cancel()

    async def _refuse(self, nursery: trio.Nursery, message: str) -> None:
        """Answer -32600 ``message`` (waiting no longer than for a stall), then close."""
        error = encode(error_response(None, INVALID_REQUEST, message))
        with trio.move_on_after(self._limits.partial_frame_timeout):
            await self._send(error)
        nursery.cancel_scope.cancel()

    async def _read_loop(self, nursery: trio.Nursery) -> None:
        decoder = self._decoder
        poller = self._poller
        fd = self._fd
        answered = 0
        while True:
            if self._unsent is not None:
                await self._flush_unsent()
            frame = self._pending
            if frame is not None:
                self._pending = None
            else:
                frame = decoder.next_frame()
            if frame is None:
                answered = 0
                if self._input_end:
                    if self._input_end == _EOF:
                        await self._end_of_input(nursery)
                    return
                # Wait for input (this loop's checkpoint: it blocks until
                # there is some, and raises Cancelled when the connection is
                # cancelled). Written out here, not in a helper coroutine:
                # every await layer costs the round trip of a lone client.
                if decoder.has_partial():
                    await self._fill_partial()
                    continue
                if self._held:
                    self._hold(0)
                if poller is not None and poller.connections >= _poller.SHARE_FROM:
                    # The poller may receive and answer frames itself before
                    # it wakes the reader; then there is nothing to receive.
                    await poller.park(self)
                else:
                    if self._armed:
                        # Parked in the poller before: stop its watching.
                        assert poller is not None
                        poller.forget(self)
                    await trio.lowlevel.wait_readable(fd)
                    self._receive()
                continue
            if not frame or frame.isspace():
                continue
            await self._handle_frame(frame, nursery)
            if self._upgrade is not None:
                return
            answered += 1
            if answered >= INLINE_BUDGET:
                # A client pipelining a flood of requests answered in line
                # must not keep every other task from running: yield now
                # and then (the wait for input is the usual checkpoint).
                answered = 0
                await trio.lowlevel.checkpoint()

    async def _end_of_input(self, nursery: trio.Nursery) -> None:
        # A last line without its newline still counts.
        rest = self._decoder.take_buffered()
        if rest and not rest.isspace():
            await self._handle_frame(rest, nursery)

    async def _fill_partial(self) -> None:
        """Receive the next chunk of a partial frame, or raise `_Stalled`.

        The reader receives each chunk itself, so that the stall timeout
        restarts with every byte that arrives: the poller wakes a parked
        reader whose decoder holds part of a line without receiving.
        """
        stalled = True
        with trio.move_on_after(self._limits.partial_frame_timeout):
            poller = self._poller
            if poller is not None and poller.shared():
                await poller.park(self)
            else:
                if self._armed:
                    assert poller is not None
                    poller.forget(self)
                await trio.lowlevel.wait_readable(self._fd)
            stalled = False
        if stalled:
            raise _Stalled
        self._receive()
        if self._budget is None:
            return
        held = self._decoder.buffered()
        if held <= InputBudget.COUNT_FROM:
            held = 0
        if held != self._held and not self._hold(held):
            raise _OverBudget

    def _hold(self, held: int) -> bool:
        """This connection now holds ``held`` bytes of unfinished input; within budget?"""
        ok = True
        if self._budget is not None:
            ok = self._budget.claim(self._held, held)
        self._held = held
        return ok

    def _receive(self) -> None:
        """One non-blocking ``recv`` into the decoder, or the reason input ended."""
        try:
            data = self._sock.recv(RECV_SIZE)
        except BlockingIOError:
            return
        except OSError:
            self._fail()
            return
        if not data:
            self._input_end = _EOF
            return
        self._decoder.feed(data)

    # -- the poller's fast path ------------------------------------------------

    def _abort_park(self, _: object) -> trio.lowlevel.Abort:
        self._parked = None
        return trio.lowlevel.Abort.SUCCEEDED

    def _fail(self) -> None:
        self._broken = True
        self._input_end = _RECV_ERROR

    def _on_readable(self, readable: bool) -> int:
        """Do a parked reader's work, synchronously, for the poller.

        ``readable``: the socket is ready (else the decoder still holds
        frames from an earlier round). Returns what the poller must do next:
        IDLE, WAKE the reader, or serve the connection AGAIN next round.
        """
        decoder = self._decoder
        if readable:
            if decoder.has_partial():
                return WAKE  # the reader receives and keeps the stall timeout
            self._receive()
            if self._input_end:
                return WAKE
        out: list[bytes] = []
        action = IDLE
        budget = INLINE_BUDGET
        while True:
            try:
                frame = decoder.next_frame()
            except FrameTooLarge:
                action = WAKE  # the reader meets it again, and answers it
                break
            if frame is None:
                if decoder.has_partial():
                    action = WAKE
                break
            if not frame or frame.isspace():
                continue
            data = self._answer_now(frame)
            if data is _DEFER:
                self._pending = frame
                action = WAKE
                break
            if data is not None:
                out.append(data)
            budget -= 1
            if budget == 0:
                action = AGAIN
                break
        if out and not self._broken and not self._write_now(b"".join(out)):
            action = WAKE
        return action

    def _answer_now(self, frame: bytes) -> bytes | _Defer | None:
        """A frame's encoded response, None if none is due, or _DEFER to the reader."""
        try:
            obj = decode(frame)
        except ParseError:
            return _PARSE_ERROR
        if type(obj) is list:
            return _DEFER
        request = parse_request(obj)
        if type(request) is dict:
            return self._encode_response(request)
        assert type(request) is tuple
        method = request[1]
        if not self.authenticated or method in BARRIER_METHODS:
            return _DEFER
        if self._dispatcher.immediate(method):
            response = self._dispatcher.execute_now(request, self)
            return None if response is None else self._encode_response(response)
        try:
            self._slots.acquire_nowait()
        except trio.WouldBlock:
            return _DEFER  # the reader waits for a slot, and reads nothing meanwhile
        assert self._nursery is not None
        self._nursery.start_soon(self._run_request, request)
        return None

    def _write_now(self, data: bytes) -> bool:
        """Write without waiting; False if the reader must finish (``_unsent``)."""
        if self._writing:
            self._unsent = data
            self._unsent_locked = False
            return False
        try:
            sent = self._sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._broken = True
            return True
        if sent < len(data):
            # Take the write lock for the reader, so that no other response
            # lands in the middle of this one.
            self._writing = True
            self._unsent = data[sent:]
            self._unsent_locked = True
            return False
        return True

    async def _flush_unsent(self) -> None:
        data = self._unsent
        assert data is not None
        self._unsent = None
        if self._unsent_locked:
            self._unsent_locked = False
            await self._send(data, held=True)
        else:
            await self._send(data)

    async def _handle_frame(self, frame: bytes, nursery: trio.Nursery) -> None:
        try:
            obj = decode(frame)
        except ParseError:
            await self._send(_PARSE_ERROR)
            return
        if type(obj) is list:
            await self._handle_batch(obj, nursery)
            return
        request = parse_request(obj)
        if type(request) is dict:
            await self._respond(request)
            return
        assert type(request) is tuple
        if not self.authenticated:
            response = await self._gated(request, allow_upgrade=True)
            if response is not None:
                await self._respond(response)
        elif request[1] in BARRIER_METHODS:
            response = await self._run_barrier(request, allow_upgrade=True)
            if response is not None:
                await self._respond(response)
        elif self._dispatcher.immediate(request[1]):
            response = self._dispatcher.execute_now(request, self)
            if response is not None:
                await self._respond(response)
        else:
            await self._take_slot()
            nursery.start_soon(self._run_request, request)

    async def _handle_batch(self, items: list[Any], nursery: trio.Nursery) -> None:
        if not items:
            await self._respond(
                error_response(None, INVALID_REQUEST, "invalid request: empty batch")
            )
            return
        if not self.authenticated:
            await self._respond(
                error_response(
                    None, UNAUTHORIZED, "unauthorized: system.attach with the token first"
                )
            )
            return
        if len(items) > self._limits.max_batch:
            await self._respond(
                error_response(
                    None,
                    INVALID_REQUEST,
                    f"invalid request: batch of {len(items)} entries "
                    f"(at most {self._limits.max_batch})",
                )
            )
            return
        batch = _Batch()
        for item in items:
            request = parse_request(item)
            if type(request) is dict:
                batch.responses.append(request)
                continue
            assert type(request) is tuple
            if self._dispatcher.immediate(request[1]):
                response = self._dispatcher.execute_now(request, self)
                if response is not None:
                    batch.responses.append(response)
                continue
            await self._take_slot()
            batch.pending += 1
            nursery.start_soon(self._run_batch_item, request, batch)
        batch.pending -= 1
        if batch.pending == 0:
            await self._respond_batch(batch.responses)

    async def _take_slot(self) -> None:
        # Uncontended, this is a plain counter decrement; the reader's next
        # wait_readable is its checkpoint.
        try:
            self._slots.acquire_nowait()
        except trio.WouldBlock:
            await self._slots.acquire()

    async def _run_request(self, request: Request) -> None:
        try:
            response = await self._dispatcher.execute(request, self)
            if response is not None:
                await self._respond(response)
        finally:
            self._slots.release()

    async def _run_batch_item(self, request: Request, batch: _Batch) -> None:
        try:
            response = await self._dispatcher.execute(request, self)
            if response is not None:
                batch.responses.append(response)
            batch.pending -= 1
            if batch.pending == 0:
                await self._respond_batch(batch.responses)
        finally:
            self._slots.release()

    async def _run_barrier(self, request: Request, *, allow_upgrade: bool) -> dict[str, Any] | None:
        self._in_barrier = allow_upgrade
        try:
            response = await self._dispatcher.execute(request, self)
        finally:
            self._in_barrier = False
        if response is not None and "error" in response:
            self._upgrade = None
        return response

    async def _gated(self, request: Request, *, allow_upgrade: bool) -> dict[str, Any] | None:
        """Answer a request on a TCP connection that has not presented the token yet."""
        msg_id, method, params, notification = request
        if (
            method == "system.attach"
            and type(params) is dict
            and self._token_ok(params.get("token"))
        ):
            self.authenticated = True
            response = await self._run_barrier(request, allow_upgrade=allow_upgrade)
            if response is not None and "error" in response:
                self.authenticated = False
            else:
                self._decoder.set_max_frame(self._limits.max_frame)
                if self._on_authenticated is not None:
                    self._on_authenticated()
            return response
        if notification:
            return None
        return error_response(
            msg_id, UNAUTHORIZED, "unauthorized: system.attach with the token first"
        )

    def _token_ok(self, value: Any) -> bool:
        if type(value) is not str or self._token is None:
            return False
        return hmac.compare_digest(value.encode("utf-8", "surrogatepass"), self._token)

    # -- writing -------------------------------------------------------------

    async def _respond(self, response: dict[str, Any]) -> None:
        await self._send(self._encode_response(response))

    @staticmethod
    def _encode_response(response: dict[str, Any]) -> bytes:
        try:
            return encode(response)
        except EncodeError:
            logger.exception("a result could not be encoded as JSON")
            return encode(internal_error(response.get("id")))

    async def _respond_batch(self, responses: list[dict[str, Any]]) -> None:
        if not responses:
            return
        try:
            data = encode(responses)
        except EncodeError:
            fixed = []
            for response in responses:
                try:
                    encode(response)
                except EncodeError:
                    logger.exception("a result could not be encoded as JSON")
                    fixed.append(internal_error(response.get("id")))
                else:
                    fixed.append(response)
            data = encode(fixed)
        await self._send(data)

    async def _send(self, data: bytes, *, held: bool = False) -> bool:
        """Write one whole line; False if the connection is broken.

        A write cancelled half-way would leave half a line on the wire, so the
        connection is marked broken and nothing more is written to it.
        ``held``: the poller took the write lock for us, having written the
        start of ``data`` already (so even a cancelled wait leaves half a line).
        """
        if held:
            pass
        elif self._writing:
            await self._write_waiters.park()  # woken as the lock's new owner
        else:
            self._writing = True
        sock = self._sock
        sent = 0
        try:
            if self._broken:
                return False
            total = len(data)
            try:
                sent = sock.send(data)
            except BlockingIOError:
                sent = 0
            if sent < total:
                view = memoryview(data)
                while sent < total:
                    try:
                        sent += sock.send(view[sent:])
                    except BlockingIOError:
                        await trio.lowlevel.wait_writable(self._fd)
            return True
        except OSError:
            self._broken = True
            return False
        except BaseException:
            if sent or held:
                self._broken = True
            raise
        finally:
            if self._write_waiters:
                self._write_waiters.unpark()
            else:
                self._writing = False


class _Defer(enum.Enum):
    DEFER = 0


_DEFER: Final = _Defer.DEFER  # _answer_now: the reader must handle this frame


class _OverBudget(Exception):
    """This connection's unfinished line took the server over `Limits.max_buffered`."""


class _Stalled(Exception):
    """The client stopped sending in the middle of a frame."""
