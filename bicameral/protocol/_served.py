"""`ServedConnection`: reading a client connection's frames, running its requests.

The reader task owns the socket's receiving side. It decodes one frame at a
time and starts a task per request, so a slow method never holds up a fast
one; each task writes its own response (whole lines, `LineWriter`).
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
with `trio.lowlevel.wait_readable` before each ``recv``. Either way at most
``INLINE_BUDGET`` frames are answered in a row before other tasks get to run.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Literal

import trio

from bicameral.protocol import _poller
from bicameral.protocol._codes import INVALID_REQUEST
from bicameral.protocol._dispatcher import Dispatcher, error_response
from bicameral.protocol._framing import FrameTooLarge, encode
from bicameral.protocol._limits import InputBudget, Limits
from bicameral.protocol._poller import AGAIN, IDLE, INLINE_BUDGET, WAKE, Poller, Watch
from bicameral.protocol._requests import DEFER, RequestRunner

__all__ = ["ServedConnection"]

logger = logging.getLogger("bicameral.protocol")

RECV_SIZE = 65536

# Why input stopped, as the poller saw it.
_EOF = 1
_RECV_ERROR = 2


class ServedConnection(RequestRunner):
    """A `Connection` as the server runs it: `serve` reads and answers it until it ends."""

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
        super().__init__(
            sock,
            dispatcher,
            limits,
            transport=transport,
            peer_uid=peer_uid,
            token=token,
            budget=budget,
            on_authenticated=on_authenticated,
        )
        self._fd = sock.fileno()
        # What the poller leaves for the reader: a frame it could not answer
        # at once, and why input ended.
        self._pending: bytes | None = None
        self._input_end = 0
        # The poller's view of this connection.
        self._poller = poller
        self._watch = Watch(self._fd, self._on_readable, self._fail) if poller is not None else None
        # Our part of the server-wide input budget.
        self._held = 0

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
                assert self._watch is not None
                poller.connections -= 1
                poller.forget(self._watch)

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
        if self._upgrade is not None and not self._out.broken:
            if self._poller is not None:
                assert self._watch is not None
                self._poller.forget(self._watch)
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
        """Answer `INVALID_REQUEST` ``message`` (waiting no longer than for a stall), then close."""
        error = encode(error_response(None, INVALID_REQUEST, message))
        with trio.move_on_after(self._limits.partial_frame_timeout):
            await self._out.send(error)
        nursery.cancel_scope.cancel()

    async def _read_loop(self, nursery: trio.Nursery) -> None:
        decoder = self._decoder
        poller = self._poller
        watch = self._watch
        out = self._out
        fd = self._fd
        answered = 0
        while True:
            if out.unsent is not None:
                await out.flush_unsent()
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
                    assert watch is not None
                    await poller.park(watch)
                else:
                    if watch is not None and watch.armed:
                        # Parked in the poller before: stop its watching.
                        assert poller is not None
                        poller.forget(watch)
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
            watch = self._watch
            if poller is not None and poller.shared():
                assert watch is not None
                await poller.park(watch)
            else:
                if watch is not None and watch.armed:
                    assert poller is not None
                    poller.forget(watch)
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

    def _fail(self) -> None:
        self._out.broken = True
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
            if data is DEFER:
                self._pending = frame
                action = WAKE
                break
            if data is not None:
                out.append(data)
            budget -= 1
            if budget == 0:
                action = AGAIN
                break
        if out and not self._out.broken and not self._out.write_now(b"".join(out)):
            action = WAKE
        return action


class _OverBudget(Exception):
    """This connection's unfinished line took the server over `Limits.max_buffered`."""


class _Stalled(Exception):
    """The client stopped sending in the middle of a frame."""
