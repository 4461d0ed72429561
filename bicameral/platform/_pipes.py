"""Pipes: non-blocking ends, a line read with a timeout, a descriptor passed by number.

POSIX waits on a pipe with ``select``; Windows cannot (``select`` takes
sockets only), so a thread reads there. A descriptor handed to a child by
number in its environment is the number itself on POSIX; on Windows it is
the OS handle (a CRT descriptor number means nothing in another process).
"""

from __future__ import annotations

import os
import sys
import time

__all__ = ["fd_from_env", "fd_to_env", "read_chunk", "read_line", "set_nonblocking"]


def set_nonblocking(fd: int) -> None:
    """Make ``fd`` non-blocking (POSIX; Windows pipes are never waited on so)."""
    if sys.platform == "win32":
        raise OSError("non-blocking pipes are POSIX only")
    os.set_blocking(fd, False)


def fd_to_env(fd: int) -> str:
    """How a child finds ``fd`` (inherited by `spawn_detached`): its number, or its handle."""
    if sys.platform == "win32":
        import msvcrt

        return str(msvcrt.get_osfhandle(fd))
    return str(fd)


def fd_from_env(raw: str, flags: int = os.O_WRONLY) -> int:
    """The descriptor `fd_to_env` named; ``OSError``/``ValueError`` if it is not open."""
    if sys.platform == "win32":
        import msvcrt

        return msvcrt.open_osfhandle(int(raw), flags)
    fd = int(raw)
    os.fstat(fd)  # raises if it is not open
    return fd


def read_line(fd: int, timeout: float) -> bytes | None:
    """Read from ``fd`` until a newline or end of file, for at most ``timeout`` seconds.

    Returns what was read (``b""``: end of file at once), or ``None`` on
    timeout. Never sleeps: it wakes when the writer writes or closes.
    """
    if sys.platform == "win32":
        return _read_line_thread(fd, timeout)
    import selectors

    buf = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while b"\n" not in buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sel.select(remaining):
                return None
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
    return buf


def _read_line_thread(fd: int, timeout: float) -> bytes | None:
    """Windows: a blocking read in a daemon thread, joined with the timeout."""
    import threading

    result: list[bytes] = []

    def reader() -> None:
        buf = b""
        while b"\n" not in buf:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
        result.append(buf)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    thread.join(timeout)
    return result[0] if result else None


def read_chunk(fd: int, size: int, timeout: float) -> bytes | None:
    """One read of up to ``size`` bytes from ``fd`` within ``timeout`` seconds.

    ``b""`` at end of file (or a read error), ``None`` when nothing came in
    time. POSIX waits with ``select``; Windows reads in a daemon thread (left
    blocked in its read after a timeout: for a caller about to give up).
    """
    if sys.platform == "win32":
        import threading

        result: list[bytes] = []

        def reader() -> None:
            try:
                result.append(os.read(fd, size))
            except OSError:
                result.append(b"")

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        thread.join(timeout)
        return result[0] if result else None
    import select

    ready, _, _ = select.select([fd], [], [], timeout)
    if not ready:
        return None
    try:
        return os.read(fd, size)
    except OSError:
        return b""
