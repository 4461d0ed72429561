"""File locks that the kernel drops with their holder, however it dies.

POSIX: ``flock`` (it belongs to the open file description, so a locked
descriptor passed to a child stays locked without a gap). Windows:
``msvcrt.locking`` on the file's first byte (it belongs to the handle, so a
child cannot inherit it: the daemon takes the lock itself there,
`locks_pass_to_children`).
"""

from __future__ import annotations

import contextlib
import os
import sys

from bicameral.platform._os import CURRENT, Platform

__all__ = [
    "can_lock_directories",
    "flock",
    "lock_held_anywhere",
    "locks_pass_to_children",
    "record_in_lock",
]


def locks_pass_to_children(platform: Platform = CURRENT) -> bool:
    """Whether a locked descriptor handed to a child keeps the lock (``flock``: yes)."""
    return platform.posix


def can_lock_directories(platform: Platform = CURRENT) -> bool:
    """Whether a directory can be opened and locked (POSIX; Windows opens no directory)."""
    return platform.posix


def flock(fd: int, *, shared: bool = False, wait: bool = False) -> bool:
    """Lock the open file (or directory) ``fd``: exclusive, or ``shared``.

    The lock belongs to the open file description: it is dropped when the
    last descriptor sharing it is closed, or when the holder dies. Without
    ``wait``, returns False at once when another holder's lock conflicts;
    with it, blocks until the lock is ours (and returns True).

    Windows has no ``flock``: there an exclusive lock that does not wait is
    taken with ``msvcrt.locking`` on the file's first byte, and the other
    kinds are not taken at all (True: callers there rely on nothing else).
    This is the one place bicameral takes a file lock.
    """
    if sys.platform == "win32":
        if shared or wait:
            return True
        import msvcrt

        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    operation = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    try:
        fcntl.flock(fd, operation if wait else operation | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def record_in_lock(fd: int, text: bytes) -> None:
    """Replace the lock file's content (the holder's pid, for messages).

    Not on Windows, where the locked byte cannot be written by anyone else
    and the holder is not recorded.
    """
    if sys.platform == "win32":
        return
    with contextlib.suppress(OSError):  # informational only
        os.ftruncate(fd, 0)
        os.pwrite(fd, text, 0)


def lock_held_anywhere(path: str | os.PathLike[str]) -> bool:
    """Whether some process holds the ``flock`` on ``path``, without touching the lock.

    Read from ``/proc/locks`` (Linux), which lists every lock with its inode:
    asking never takes the lock, so a daemon starting at that very moment
    cannot lose it to someone who only looked. ``False`` where there is no
    ``/proc/locks``.
    """
    if sys.platform != "linux":
        return False
    try:
        st = os.stat(path)
        with open("/proc/locks", "rb") as f:
            table = f.read()
    except OSError:
        return False
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}".encode()
    for line in table.splitlines():
        fields = line.split()
        if b"FLOCK" in fields[:3] and wanted in fields:
            return True
    return False
