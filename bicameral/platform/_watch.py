"""Waking up when files in a directory change, instead of sleeping in a loop.

Linux: inotify (through ctypes: the stdlib has no binding) on the
directory, for files created, renamed in, or closed. Elsewhere a 20 ms tick:
every wake-up only ever means "look again", so a tick is correct, only
busier.
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["DirectoryWatch"]

_IN_CLOSE_WRITE = 0x008
_IN_CLOSE_NOWRITE = 0x010
_IN_MOVED_TO = 0x080
_IN_CREATE = 0x100
_IN_DELETE_SELF = 0x400
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000
_TICK = 0.02


def _inotify_watch(directory: str) -> int:
    """An inotify fd watching ``directory`` for files being created, renamed in or closed."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    fd = int(libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    mask = _IN_CLOSE_WRITE | _IN_CLOSE_NOWRITE | _IN_MOVED_TO | _IN_CREATE | _IN_DELETE_SELF
    if libc.inotify_add_watch(fd, os.fsencode(directory), mask) < 0:
        err = ctypes.get_errno()
        os.close(fd)
        raise OSError(err, os.strerror(err))
    return fd


class DirectoryWatch:
    """Wakes a waiter when one of ``names`` in ``directory`` may have changed."""

    def __init__(self, directory: str | os.PathLike[str], names: Iterable[str]) -> None:
        self._names = {os.fsencode(n) for n in names}
        self._fd: int | None = None
        if sys.platform == "linux":
            try:
                self._fd = _inotify_watch(os.fspath(directory))
            except OSError:  # pragma: no cover - inotify unavailable or exhausted
                self._fd = None

    def wait(self, deadline: float) -> bool:
        """Block until something relevant happens (``True``) or ``deadline`` (``False``)."""
        import select

        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._fd is None:
                time.sleep(min(_TICK, remaining))
                return True
            ready, _, _ = select.select([self._fd], [], [], remaining)
            if not ready:
                return False
            if self._relevant(os.read(self._fd, 65536)):
                return True

    def _relevant(self, data: bytes) -> bool:
        import struct

        offset = 0
        while offset + 16 <= len(data):
            _wd, _mask, _cookie, length = struct.unpack_from("iIII", data, offset)
            name = data[offset + 16 : offset + 16 + length].rstrip(b"\0")
            offset += 16 + length
            if name in self._names or not name:
                return True
        return False

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
