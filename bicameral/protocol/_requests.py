"""`RequestRunner`: what a connection does with one frame it has read.

A frame is a request, a notification, a batch, or junk. Requests that
cannot suspend (parse errors, invalid requests, handlers without an
``await``) are answered in line, without a task (`_answer_now` is the
poller's way in: it answers what it can and defers the rest to the
reader); the others run in a task each, after taking one of
``max_in_flight`` slots, given back *after* the response is written. A
batch's responses are sent together by whichever of its tasks finishes
last. On TCP, nothing but ``system.attach`` with the token is run before
the client has shown it (SPEC §7); ``system.attach`` runs to completion
before the next frame is read, so that it may upgrade the connection.
Reading the frames is `ServedConnection`'s part (`_served`).
"""

from __future__ import annotations

import enum
import hmac
import logging
import socket
from collections.abc import Callable
from typing import Any, Final, Literal

import trio

from bicameral.protocol._codes import INVALID_REQUEST, PARSE_ERROR, UNAUTHORIZED
from bicameral.protocol._connection import Connection
from bicameral.protocol._dispatcher import (
    Dispatcher,
    Request,
    encode_batch,
    encode_response,
    error_response,
    parse_request,
)
from bicameral.protocol._framing import FrameDecoder, ParseError, decode, encode
from bicameral.protocol._limits import InputBudget, Limits

__all__ = ["BARRIER_METHODS", "DEFER", "RequestRunner"]

logger = logging.getLogger("bicameral.protocol")

#: Methods the reader runs to completion before it reads the next frame, so
#: that a handler may upgrade the connection with nothing read past its own
#: request except into the buffer that the upgrade hands over.
BARRIER_METHODS = frozenset({"system.attach"})

_PARSE_ERROR = encode(error_response(None, PARSE_ERROR, "parse error"))


class _Batch:
    """The responses of one batch, sent together by whoever finishes last."""

    __slots__ = ("pending", "responses")

    def __init__(self) -> None:
        self.responses: list[dict[str, Any]] = []
        self.pending = 1  # the reader's own share, dropped once every element is started


class RequestRunner(Connection):
    """A `Connection` that runs the requests of the frames it is given."""

    def __init__(
        self,
        sock: socket.socket,
        dispatcher: Dispatcher,
        limits: Limits,
        *,
        transport: Literal["unix", "tcp"],
        peer_uid: int | None = None,
        token: str | None = None,
        budget: InputBudget | None = None,
        on_authenticated: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(
            sock,
            limits,
            transport=transport,
            peer_uid=peer_uid,
            authenticated=token is None,
            budget=budget,
        )
        self._dispatcher = dispatcher
        self._token = token.encode() if token is not None else None
        # Before the token, a stranger's lines are short (SPEC §7).
        self._decoder = FrameDecoder(
            limits.max_frame
            if token is None
            else min(limits.max_frame, limits.max_unauthenticated_frame)
        )
        self._on_authenticated = on_authenticated
        self._slots = trio.Semaphore(limits.max_in_flight)
        #: Where request tasks run (the serving nursery, once serving).
        self._nursery: trio.Nursery | None = None

    def _answer_now(self, frame: bytes) -> bytes | _Defer | None:
        """A frame's encoded response, None if none is due, or DEFER to the reader."""
        try:
            obj = decode(frame)
        except ParseError:
            return _PARSE_ERROR
        if type(obj) is list:
            return DEFER
        request = parse_request(obj)
        if type(request) is dict:
            return encode_response(request)
        assert type(request) is tuple
        method = request[1]
        if not self.authenticated or method in BARRIER_METHODS:
            return DEFER
        if self._dispatcher.immediate(method):
            response = self._dispatcher.execute_now(request, self)
            return None if response is None else encode_response(response)
        try:
            self._slots.acquire_nowait()
        except trio.WouldBlock:
            return DEFER  # the reader waits for a slot, and reads nothing meanwhile
        assert self._nursery is not None
        self._nursery.start_soon(self._run_request, request)
        return None

    async def _handle_frame(self, frame: bytes, nursery: trio.Nursery) -> None:
        try:
            obj = decode(frame)
        except ParseError:
            await self._out.send(_PARSE_ERROR)
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
        await self._out.send(encode_response(response))

    async def _respond_batch(self, responses: list[dict[str, Any]]) -> None:
        if not responses:
            return
        data = encode_batch(responses)
        await self._out.send(data)


class _Defer(enum.Enum):
    DEFER = 0


DEFER: Final = _Defer.DEFER  # _answer_now: the reader must handle this frame
