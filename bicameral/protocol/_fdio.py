"""Non-blocking pipe I/O with as few trips through the scheduler as possible (POSIX).

On the ``tools/call`` path every message crosses four pipe ends in the
daemon (client in, server out, server in, client out). Trio's and the
supervisor's streams yield to the scheduler on every call, even when the
bytes are already there; these read or write at once and wait only when the
kernel says so. A reader that always finds data would keep its task running,
but the code above each of these awaits something else per message anyway.
"""

from __future__ import annotations

import contextlib
import os

import anyio
import anyio.lowlevel

from bicameral.platform import set_nonblocking

__all__ = ["FdReader", "FdWriter"]

_READ_SIZE = 65536


class _Fd:
    """A non-blocking fd; closing it closes the fd only when ``owned``."""

    def __init__(self, fd: int, *, owned: bool = False) -> None:
        set_nonblocking(fd)
        self.fd = fd
        self._owned = owned
        self._closed = False

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            if self._owned:
                anyio.notify_closing(self.fd)
                with contextlib.suppress(OSError):
                    os.close(self.fd)
        await anyio.lowlevel.checkpoint()


class FdReader(_Fd):
    """Reads from a non-blocking fd; ``b""`` at end of file (or once it is closed)."""

    async def receive(self, max_bytes: int = _READ_SIZE) -> bytes:
        while not self._closed:
            try:
                data = os.read(self.fd, max_bytes)
            except BlockingIOError:
                try:
                    await anyio.wait_readable(self.fd)
                except (anyio.ClosedResourceError, OSError):
                    return b""
            except OSError:
                return b""
            else:
                # No scheduling point here when data was there at once: the
                # readers pass one per message, and per chunk that completed
                # none (a long line arriving), which is what fairness needs
                # without a scheduler round on every read of the hot path.
                return data
        return b""


class FdWriter(_Fd):
    """Writes all of each buffer to a non-blocking fd, waiting only on a full pipe."""

    def try_send(self, data: bytes) -> int:
        """Write what the fd takes now, without waiting; how many bytes that was.

        Raises `anyio.BrokenResourceError` once the reader is gone (or the
        writer was closed).
        """
        if self._closed:
            raise anyio.ClosedResourceError
        try:
            return os.write(self.fd, data)
        except BlockingIOError:
            return 0
        except OSError as exc:  # BrokenPipeError: the reader is gone
            raise anyio.BrokenResourceError from exc

    async def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._closed:
                raise anyio.ClosedResourceError
            try:
                written = os.write(self.fd, view)
            except BlockingIOError:
                await anyio.wait_writable(self.fd)
                continue
            except OSError as exc:  # BrokenPipeError: the reader is gone
                raise anyio.BrokenResourceError from exc
            view = view[written:]
