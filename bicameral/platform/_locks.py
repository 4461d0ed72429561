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

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "directory_lock",
    "lock_held_anywhere",
    "locks_pass_to_children",
    "probe_lock",
    "record_in_lock",
    "try_lock",
]


def locks_pass_to_children(platform: Platform = CURRENT) -> bool:
    """Whether a locked descriptor handed to a child keeps the lock (``flock``: yes)."""
    return platform.posix


def try_lock(fd: int) -> bool:
    """Take an exclusive lock on ``fd`` without blocking; ``False`` if another holds it."""
    if sys.platform == "win32":
        import msvcrt

        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
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


def probe_lock(path: str | os.PathLike[str]) -> bool | None:
    """Whether some process holds ``path``'s lock; ``None`` if there is no file (or no way to tell).

    POSIX: a shared, non-blocking ``flock``, released at once, which fails
    only against an exclusive lock. Windows: ``None``.
    """
    if sys.platform == "win32":
        return None
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops our shared lock, if we got it
    return False


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


@contextlib.contextmanager
def directory_lock(directory: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``directory`` for the block (blocking).

    POSIX only: Windows cannot open a directory as a file, and this lock
    serialises edits of a client's config file, which are rare and quick;
    there the block runs unlocked. Raises ``OSError`` when the directory
    cannot be opened.
    """
    if sys.platform == "win32":
        yield
        return
    import fcntl

    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock
