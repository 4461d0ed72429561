"""`LineWriter`: whole lines onto a non-blocking socket, one writer at a time.

Every response of a connection is written here. A line is written with a
direct ``send`` that waits (in `trio.lowlevel.wait_writable`) only when the
kernel buffer is full. Writers take turns through a lock that is a flag and
a parking lot, without `trio.Lock`'s bookkeeping (it is on every response's
path); its release hands the lock straight to the first waiter, so nobody
starves. A write cancelled half-way would leave half a line on the wire, so
the socket is then marked `broken` and nothing more is written to it.

The poller (`_poller`) writes without waiting at all (`write_now`); what the
socket did not take is left in `unsent` for the connection's reader to
finish (`flush_unsent`), holding the lock when part of it was written.
"""

from __future__ import annotations

import socket

import trio

__all__ = ["LineWriter"]


class LineWriter:
    """Writes whole lines to a non-blocking socket (see the module docstring)."""

    __slots__ = ("_fd", "_sock", "_unsent_locked", "_waiters", "_writing", "broken", "unsent")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._fd = sock.fileno()
        self._writing = False
        self._waiters = trio.lowlevel.ParkingLot()
        #: Nothing more can be written (the peer is gone, or half a line is out).
        self.broken = False
        #: Bytes `write_now` could not write, for `flush_unsent`.
        self.unsent: bytes | None = None
        self._unsent_locked = False

    def write_now(self, data: bytes) -> bool:
        """Write without waiting; False if the rest waits in `unsent` for `flush_unsent`."""
        if self._writing:
            self.unsent = data
            self._unsent_locked = False
            return False
        try:
            sent = self._sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.broken = True
            return True
        if sent < len(data):
            # Take the lock for whoever flushes, so that no other line lands
            # in the middle of this one.
            self._writing = True
            self.unsent = data[sent:]
            self._unsent_locked = True
            return False
        return True

    async def flush_unsent(self) -> None:
        """Finish what `write_now` left in `unsent`."""
        data = self.unsent
        assert data is not None
        self.unsent = None
        if self._unsent_locked:
            self._unsent_locked = False
            await self.send(data, held=True)
        else:
            await self.send(data)

    async def send(self, data: bytes, *, held: bool = False) -> bool:
        """Write one whole line; False if the socket is broken.

        ``held``: `write_now` took the lock for us, having written the start
        of the line already (so even a cancelled wait leaves half a line).
        """
        if held:
            pass
        elif self._writing:
            await self._waiters.park()  # woken as the lock's new owner
        else:
            self._writing = True
        sock = self._sock
        sent = 0
        try:
            if self.broken:
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
            self.broken = True
            return False
        except BaseException:
            if sent or held:
                self.broken = True
            raise
        finally:
            if self._waiters:
                self._waiters.unpark()
            else:
                self._writing = False
