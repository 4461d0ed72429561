"""The HTTP listener's accept loop and connections: hypercorn's protocol, our bounds.

hypercorn parses HTTP (h11, h2) and drives the ASGI app; the accept loop and
the connection around its protocol are ours, because what an exposed
listener must bound is not in its own server loop (SPEC §10):

- **admission** (`bicameral.protocol.Admission`, as for the control
  socket's TCP transport): connections that have not yet shown the token
  are capped apart (``max_unauthenticated``; at the cap the oldest is
  dropped) and closed after ``auth_timeout``; all connections together stay
  under the descriptor budget (`FdTable`), so a flood never takes the
  descriptors the owner's requests, the control socket, bridges and starting
  servers need; ``EMFILE`` is logged once per burst;
- **read timeouts**: a request's headers must arrive within
  ``header_timeout`` of its first byte, its body within ``body_timeout`` of
  its headers (408, then the connection is closed), authenticated or not; a
  connection idle between requests is closed after ``idle_timeout``. While a
  response is being sent nothing is asked of the client (a long call, an
  event stream);
- **write stalls**: a client that takes nothing of a response for
  `SEND_STALL` seconds is dropped (hypercorn shields its writes, so one such
  client would hold its connection for ever);
- **no lingering**: a connection the client closed is closed at once
  (hypercorn's idle timer would keep it in CLOSE-WAIT until it fires).
"""

from __future__ import annotations

import logging
import math
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.events import Closed, RawData, Updated
from hypercorn.protocol import ProtocolWrapper
from hypercorn.trio.task_group import TaskGroup
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import parse_socket_addr

from bicameral.daemon._http import TICKET
from bicameral.protocol import Admission, Ticket

__all__ = ["SEND_STALL", "HttpTimeouts", "serve_http"]

logger = logging.getLogger("bicameral.daemon")

MAX_RECV = 2**16
SEND_STALL = 60.0
"""Seconds a client may take nothing of a response before it is dropped."""


@dataclass(frozen=True)
class HttpTimeouts:
    """The read timeouts of one listener (``[daemon.http]``, docs/reliability.md)."""

    header: float
    body: float
    idle: float


async def serve_http(
    sock: socket.socket,
    app: Any,
    *,
    config: Config,
    admission: Admission,
    timeouts: HttpTimeouts,
    stopping: Any,
    grace: float,
    on_drain: Callable[[], None],
) -> None:
    """Serve `app` (hypercorn's wrapped ASGI app) on `sock` until `stopping` is set.

    Then stop accepting, close idle connections, give requests in flight
    `grace` seconds, and cancel what is left (`on_drain` is called first, to
    end long-lived streams).
    """
    context = WorkerContext(None)
    live: set[_Connection] = set()

    async def handle(conn_sock: socket.socket, ticket: Ticket) -> None:
        conn_sock.setblocking(False)
        conn_sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(conn_sock))
        conn = _Connection(
            stream, ticket, app=app, config=config, context=context, timeouts=timeouts
        )
        live.add(conn)
        try:
            await conn.run()
        finally:
            live.discard(conn)

    accepting = trio.CancelScope()

    async def accept(connections: trio.Nursery) -> None:
        try:
            with accepting:
                await admission.accept_loop(sock, connections, handle)
        finally:
            sock.close()  # new clients are refused, not queued, while the rest drains

    async with trio.open_nursery() as connections:
        connections.start_soon(accept, connections)
        await stopping.wait()
        accepting.cancel()
        logger.info("HTTP listener: draining (up to %g s)", grace)
        await context.terminated.set()
        on_drain()
        for conn in list(live):
            if conn.idle:
                conn.ticket.close()
        connections.cancel_scope.deadline = trio.current_time() + grace


class _Connection:
    """One accepted connection: hypercorn's protocol between our reads and writes."""

    def __init__(
        self,
        stream: trio.SocketStream,
        ticket: Ticket,
        *,
        app: Any,
        config: Config,
        context: WorkerContext,
        timeouts: HttpTimeouts,
    ) -> None:
        self.app = app
        self.config = config
        self.context = context
        self.stream = stream
        self.ticket = ticket
        self.timeouts = timeouts
        self.send_lock = trio.Lock()
        #: Between requests (no request being read or answered).
        self.idle = True
        self.idle_since = trio.current_time()
        #: When the first byte of the request being read arrived (None: none yet).
        self.request_began: float | None = None
        self.protocol: ProtocolWrapper

    async def run(self) -> None:
        sock = self.stream.socket
        try:
            client = parse_socket_addr(sock.family, sock.getpeername())
            server = parse_socket_addr(sock.family, sock.getsockname())
            async with TaskGroup() as task_group:
                self.protocol = ProtocolWrapper(
                    self._app,
                    self.config,
                    self.context,
                    task_group,
                    ConnectionState({TICKET: self.ticket}),
                    False,
                    client,
                    server,
                    self._protocol_send,
                    "http/1.1",
                )
                await self.protocol.initiate()
                await self._read()
        except OSError:
            pass
        finally:
            self.stream.socket.close()

    def _deadline(self) -> float:
        if not self.idle:
            return math.inf  # a request is being answered: the client may be silent
        if self.request_began is not None:
            return self.request_began + self.timeouts.header
        return self.idle_since + self.timeouts.idle

    async def _read(self) -> None:
        while True:
            try:
                with trio.fail_at(self._deadline()):
                    data = await self.stream.receive_some(MAX_RECV)
            except trio.TooSlowError:
                what = "headers" if self.request_began is not None else "a request"
                logger.debug("HTTP: closing a connection that sent no %s in time", what)
                break
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                break
            if self.idle and self.request_began is None:
                self.request_began = trio.current_time()
            self.ticket.spoke = True
            await self.protocol.handle(RawData(bytes(data)))
            if not data:
                break
        # Nothing more will be read: close now, whatever hypercorn's timers say.
        self.stream.socket.close()
        await self.protocol.handle(Closed())

    async def _protocol_send(self, event: Any) -> None:
        if isinstance(event, RawData):
            async with self.send_lock:
                try:
                    with trio.fail_after(SEND_STALL):
                        await self.stream.send_all(event.data)
                except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
                    self.stream.socket.close()
                    await self.protocol.handle(Closed())
        elif isinstance(event, Closed):
            self.stream.socket.close()
            await self.protocol.handle(Closed())
        elif isinstance(event, Updated):
            self.idle = event.idle
            self.request_began = None
            if event.idle:
                self.idle_since = trio.current_time()
                if self.context.terminated.is_set():
                    self.ticket.close()

    async def _app(
        self,
        scope: Any,
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
        sync_spawn: Any,
        call_soon: Any,
    ) -> None:
        """The app, with the body's read timeout around `receive`."""
        if scope.get("type") != "http":
            await self.app(scope, receive, send, sync_spawn, call_soon)
            return
        deadline = trio.current_time() + self.timeouts.body
        state = {"body": False, "started": False}

        async def timed_receive() -> Any:
            if state["body"]:
                return await receive()
            with trio.move_on_at(deadline):
                message = await receive()
                if message.get("type") != "http.request" or not message.get("more_body"):
                    state["body"] = True
                return message
            logger.info(
                "HTTP: %s %s: the body did not arrive within %g s (body_timeout)",
                scope.get("method"),
                scope.get("path"),
                self.timeouts.body,
            )
            if not state["started"]:
                await _timed_out(send, self.timeouts.body)
            self.ticket.close()
            await trio.sleep_forever()  # cancelled with the connection

        async def tracked_send(message: Any) -> None:
            if message and message.get("type") == "http.response.start":
                state["started"] = True
            await send(message)

        await self.app(scope, timed_receive, tracked_send, sync_spawn, call_soon)


async def _timed_out(send: Callable[[Any], Awaitable[None]], seconds: float) -> None:
    text = f"request timeout: the body did not arrive within {seconds:g} s (body_timeout)\n"
    await send(
        {
            "type": "http.response.start",
            "status": 408,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": text.encode()})
