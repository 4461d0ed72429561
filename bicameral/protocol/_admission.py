"""`Admission`: the accept loop, the connection caps, and strangers kept apart.

One mechanism for every listener the daemon runs (the control socket, its TCP
transport, the HTTP listener). It follows `trio.serve_listeners` (accept,
start a task per connection in a nursery, sleep through running out of
descriptors or kernel memory instead of crashing), and applies what must
hold before a client gets to say anything:

- **the cap**: at most `max_connections` connections that showed who they
  are (a Unix socket's peer is known at once);
- **strangers apart** (where a token is needed: TCP, HTTP): connections that
  have not yet presented the token are counted apart, at most
  `max_strangers`; at that cap the *oldest* stranger is dropped, not the
  newcomer (as OpenSSH's ``MaxStartups`` drops early), so a flood of
  strangers evicts itself and the owner's connection, which shows the token
  at once, gets in. Silent strangers (nothing sent) go first; one younger
  than `min_age` (one that sent something: `SPEAKER_AGE` times that) is not
  dropped: accepting waits for it (newcomers queue in the backlog), so a
  burst of the owner's own connections, each a stranger until its first
  request is read, is served whole even when its clients are slow to write
  or the daemon slow to read;
- **the grace**: a stranger is closed after `auth_timeout` seconds
  (OpenSSH's ``LoginGraceTime``), when given;
- **quiet logs**: refusals and ``EMFILE`` are logged once per burst with a
  count (`BurstLog`), never a traceback per retry.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import socket
from collections.abc import Awaitable, Callable

import trio

from bicameral.platform import bytes_waiting
from bicameral.protocol._burst import BurstLog

__all__ = ["ACCEPT_CAPACITY_ERRNOS", "BACKLOG", "Admission", "Ticket"]

logger = logging.getLogger("bicameral.protocol")

# Errors that accept(2) returns when the system is overloaded (as in
# trio._highlevel_serve_listeners): wait and accept again.
ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
ACCEPT_RETRY_DELAY = 0.100
BACKLOG = 4096
"""listen(2)'s backlog: the kernel caps it at ``somaxconn`` (4096 on Linux 5.4+)."""
SCAN = 64
"""Strangers looked at, oldest first, to choose the one to drop."""
SPEAKER_AGE = 4
"""A stranger that has sent something may be dropped at this many times `min_age`."""


class Ticket:
    """One admitted connection: the scope that closes it, and whether it showed the token."""

    __slots__ = ("_admission", "_key", "born", "scope", "sock", "spoke", "trusted")

    def __init__(
        self, admission: Admission, key: int, scope: trio.CancelScope, sock: socket.socket
    ) -> None:
        self._admission = admission
        self._key = key
        self.scope = scope
        self.sock = sock
        self.born = trio.current_time()
        self.trusted = False
        #: The handler has read bytes from it (set by the handler).
        self.spoke = False

    def silent(self) -> bool:
        """Nothing came from the client yet: no bytes read, none waiting in the kernel."""
        if self.spoke:
            return False
        # Unknown (Windows, a closed socket): what the handler saw.
        return bytes_waiting(self.sock) in (None, 0)

    def authenticated(self) -> None:
        """The connection presented the token: it is no stranger any more."""
        if not self.trusted:
            self.trusted = True
            self._admission._trust(self._key)

    def close(self) -> None:
        """Close the connection (cancel its task)."""
        self.scope.cancel()


class Admission:
    """What one listener's accept loop and its connection tasks share.

    `max_strangers` is ``None`` where every connection is known at accept
    (a Unix socket); `auth_timeout` ``None`` leaves the grace to the handler.
    `what` names the connections in the log ("TCP", "HTTP").
    """

    def __init__(
        self,
        *,
        max_connections: int,
        max_strangers: int | None = None,
        auth_timeout: float | None = None,
        min_age: float = 0.0,
        what: str = "",
        log: logging.Logger = logger,
    ) -> None:
        self.max_connections = max_connections
        self.max_strangers = max_strangers
        self.auth_timeout = auth_timeout
        self.min_age = min_age
        self.what = f"{what} " if what else ""
        self.active = 0
        self.trusted = 0
        # Connections that have not shown the token yet, oldest first.
        self.strangers: dict[int, Ticket] = {}
        self._left = trio.Event()  # set (and replaced) when a stranger leaves
        self._next = 0
        self.refused = BurstLog(log, logging.WARNING)
        self.overloaded = BurstLog(log, logging.ERROR)

    async def accept_loop(
        self,
        listener: socket.socket,
        nursery: trio.Nursery,
        handler: Callable[[socket.socket, Ticket], Awaitable[None]],
    ) -> None:
        """Accept on `listener` until cancelled; run ``handler(sock, ticket)`` in `nursery`.

        The handler owns `sock` (and closes it); it runs inside
        ``ticket.scope``, which the admission cancels to drop the connection.
        """
        while True:
            await self._room_for_a_stranger()
            await trio.lowlevel.wait_readable(listener)
            try:
                sock, _ = listener.accept()
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                    raise
                # Out of descriptors: every other connection keeps working, and
                # clients queue in the backlog until some are closed.
                self.overloaded.note(
                    f"accept returned {errno.errorcode[exc.errno]} ({os.strerror(exc.errno)}) "
                    f"with {self.active} {self.what}connections open "
                    f"({len(self.strangers)} without the token); "
                    f"retrying every {ACCEPT_RETRY_DELAY} seconds"
                )
                await trio.sleep(ACCEPT_RETRY_DELAY)
                continue
            ticket = self._admit(sock)
            if ticket is not None:
                nursery.start_soon(self._run, handler, sock, ticket)

    async def _room_for_a_stranger(self) -> None:
        """Past the cap, drop the oldest stranger that may be dropped (`_droppable`)."""
        if self.max_strangers is None:
            return
        while len(self.strangers) >= self.max_strangers:
            victim, wake = self._droppable()
            if victim is None:
                with trio.move_on_at(wake):
                    await self._left.wait()
                continue
            del self.strangers[victim._key]
            victim.scope.cancel()
            self.refused.note(
                f"dropping the oldest of {self.max_strangers} {self.what}connections "
                "without the token (max_unauthenticated)"
            )

    def _droppable(self) -> tuple[Ticket | None, float]:
        """The stranger to drop: the oldest *silent* one at least `min_age` old, else the
        oldest one at least `SPEAKER_AGE` times that; or None and when to look again.

        Silent first: a flood's idle connections go before the owner's, which
        has sent its request (read, or waiting in the kernel) and is about to
        show the token, even when the loop is too busy to have read it yet.
        Only the `SCAN` oldest are looked at, so a drop costs the same at any cap.
        """
        now = trio.current_time()
        wake = math.inf
        speaker: Ticket | None = None
        for n, ticket in enumerate(self.strangers.values()):
            if n >= SCAN:
                break
            if ticket.silent():
                if ticket.born + self.min_age <= now:
                    return ticket, now
                wake = min(wake, ticket.born + self.min_age)
            else:
                speaker = speaker or ticket
        if speaker is not None:
            due = speaker.born + self.min_age * SPEAKER_AGE
            if due <= now:
                return speaker, now
            wake = min(wake, due)
        return None, wake

    def _admit(self, sock: socket.socket) -> Ticket | None:
        if self.max_strangers is not None:
            full = self.trusted >= self.max_connections
        else:
            full = self.active >= self.max_connections
        if full:
            self.refused.note(
                f"refusing a {self.what}connection: {self.active} connections already "
                f"(max_connections {self.max_connections})"
            )
            sock.close()
            return None
        self.active += 1
        self._next += 1
        scope = trio.CancelScope()
        ticket = Ticket(self, self._next, scope, sock)
        if self.max_strangers is None:
            ticket.trusted = True
            self.trusted += 1
        else:
            self.strangers[self._next] = ticket
            if self.auth_timeout is not None:
                scope.deadline = trio.current_time() + self.auth_timeout
        return ticket

    def _trust(self, key: int) -> None:
        entry = self.strangers.pop(key, None)
        if entry is not None:
            entry.scope.deadline = math.inf
            self._stranger_left()
        self.trusted += 1

    def _stranger_left(self) -> None:
        self._left.set()
        self._left = trio.Event()

    async def _run(
        self,
        handler: Callable[[socket.socket, Ticket], Awaitable[None]],
        sock: socket.socket,
        ticket: Ticket,
    ) -> None:
        try:
            with ticket.scope:
                await handler(sock, ticket)
        finally:
            if self.strangers.pop(ticket._key, None) is not None:
                self._stranger_left()
            if ticket.trusted:
                self.trusted -= 1
            self.active -= 1
            sock.close()
