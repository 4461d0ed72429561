"""One task that watches every idle connection of a server (where there is epoll: Linux).

Waiting in `trio.lowlevel.wait_readable` costs, per request, an
``epoll_ctl`` (Trio registers every wait one-shot) and a task switch: the
reader task is rescheduled, runs, and parks again. For a method answered
from memory that is a third of the server's CPU per request, and under
load it is the difference from a plain asyncio server.

So a server owns a second, level-triggered epoll in which a connection's
socket stays registered while its reader task is parked, and one poller
task waits for that epoll to be readable (one Trio wait per round for all
connections, whatever their number). For each ready connection the poller
calls the connection's ``on_readable`` (`ServedConnection._on_readable`),
which receives, answers the requests it can
answer at once (parse errors, invalid requests, methods that cannot
suspend) and starts tasks for the others, exactly as the reader would, and
writes the responses if the socket takes them whole. Anything else (a
batch, ``system.attach``, a request when every in-flight slot is taken, a
write that would block, a partial frame, the end of the input) wakes the
reader task, which carries on as it always did. The reader does not run at
all on the fast path, and the socket is never re-registered.

A connection whose reader is not parked (it is handling a frame, waiting
for a slot or for the socket to take a response) must not be read, or the
in-flight cap would be bypassed; since level-triggered readiness would then
fire every round, its socket is removed from the epoll when that happens
and added again when the reader parks. EPOLLHUP is reported even for an
empty event mask, so removal is the only way to stop watching.

A lone connection does not park: its reader waits on its own socket as
without a poller (see `Poller.shared`).

Fairness: a connection is served at most ``INLINE_BUDGET`` frames per
round, and at most one ``recv`` (64 KiB); frames left over are served in
the next round, after a checkpoint that lets every other task run.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import trio

from bicameral.platform import READABLE, EventPoll, event_poll, has_event_poll

__all__ = ["ENABLED", "INLINE_BUDGET", "SHARE_FROM", "Poller", "Watch"]

logger = logging.getLogger("bicameral.protocol")

#: Whether servers use a poller (tests turn it off to cover the other path).
ENABLED = has_event_poll()

#: Connections from which readers park in the poller (tests set 1).
SHARE_FROM = 2

#: Frames one connection may have answered per round without a checkpoint,
#: by the poller or by its own reader.
INLINE_BUDGET = 64

_MAX_EVENTS = 256

# What a connection's ``on_readable`` asks of the poller.
IDLE = 0  # nothing: the reader stays parked
WAKE = 1  # reschedule the reader: it has work the poller cannot do
AGAIN = 2  # frames are still buffered: serve the connection again next round


class Watch:
    """One connection's place in the poller: what the poller needs of it, and keeps for it.

    ``on_readable(readable)`` does the parked reader's work and returns
    `IDLE`, `WAKE` or `AGAIN`; ``fail()`` marks the connection broken (the
    poller's own bug must cost that connection only). The connection owns
    its `Watch` and hands it to `Poller.park` and `Poller.forget`.
    """

    __slots__ = ("armed", "backlog", "fail", "fd", "on_readable", "parked")

    def __init__(
        self, fd: int, on_readable: Callable[[bool], int], fail: Callable[[], None]
    ) -> None:
        self.fd = fd
        self.on_readable = on_readable
        self.fail = fail
        #: The socket is registered in the epoll.
        self.armed = False
        #: The reader task, while it is parked here.
        self.parked: trio.lowlevel.Task | None = None
        #: Queued to be served again next round (`AGAIN`).
        self.backlog = False

    def abort(self, _: object) -> trio.lowlevel.Abort:
        """The parked reader was cancelled: the poller must not touch it any more."""
        self.parked = None
        return trio.lowlevel.Abort.SUCCEEDED


class Poller:
    """The epoll of one server, and the task that serves it (`run`)."""

    def __init__(self) -> None:
        ep = event_poll()
        if ep is None:  # pragma: no cover - servers check ENABLED first
            raise RuntimeError("no epoll on this platform")
        self._ep: EventPoll = ep
        self._conns: dict[int, Watch] = {}
        self._again: list[Watch] = []
        #: Connections being served (parked or not), kept by `ServedConnection.serve`.
        self.connections = 0

    def close(self) -> None:
        self._ep.close()

    # -- called by a connection's reader ---------------------------------------

    def shared(self) -> bool:
        """Whether a reader should park here rather than wait on its own socket.

        With one connection there is nothing to share: the poller's round
        would cost one ``epoll_wait`` more than the reader's own wait (a
        few microseconds of a lone client's round trip) and save nothing.
        From two connections on, one round serves every ready connection.
        """
        return self.connections >= SHARE_FROM

    async def park(self, conn: Watch) -> None:
        """Wait, as ``conn``'s reader, until the poller wakes it (`WAKE`).

        Cancellable like any Trio wait: the abort function forgets the
        parked task, so the poller never touches a reader that left.
        """
        if not conn.armed:
            self._ep.register(conn.fd, READABLE)
            self._conns[conn.fd] = conn
            conn.armed = True
        conn.parked = trio.lowlevel.current_task()
        await trio.lowlevel.wait_task_rescheduled(conn.abort)

    def forget(self, conn: Watch) -> None:
        """Stop watching ``conn`` (it closes, or is upgraded to a raw stream)."""
        self._disarm(conn)
        conn.parked = None

    def _disarm(self, conn: Watch) -> None:
        if conn.armed:
            conn.armed = False
            del self._conns[conn.fd]
            with contextlib.suppress(OSError, ValueError):  # the fd is gone already
                self._ep.unregister(conn.fd)

    # -- the task ------------------------------------------------------------

    async def run(self) -> None:
        ep = self._ep
        epfd = ep.fileno()
        while True:
            if self._again:
                # Frames are still buffered: let every other task run first,
                # without waiting (a checkpoint is also where a cancelled
                # server stops this loop).
                await trio.lowlevel.checkpoint()
            else:
                await trio.lowlevel.wait_readable(epfd)
            events = ep.poll(0, _MAX_EVENTS)
            again, self._again = self._again, []
            conns = self._conns
            for fd, _ in events:
                conn = conns.get(fd)
                if conn is None or conn.backlog:
                    continue  # gone, or served below from its buffer
                if conn.parked is None:
                    # The reader is busy: do not read behind its back, and stop
                    # the level-triggered event from firing every round.
                    self._disarm(conn)
                    continue
                self._serve(conn, True)
            for conn in again:
                conn.backlog = False
                if conn.parked is not None:
                    self._serve(conn, False)

    def _serve(self, conn: Watch, readable: bool) -> None:
        try:
            action = conn.on_readable(readable)
        except Exception:
            # A bug here must cost one connection, not the server.
            logger.exception("connection handler failed")
            conn.fail()
            action = WAKE
        if action == AGAIN:
            conn.backlog = True
            self._again.append(conn)
        elif action == WAKE:
            task = conn.parked
            conn.parked = None
            assert task is not None
            trio.lowlevel.reschedule(task)
