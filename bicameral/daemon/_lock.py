"""The single-instance lock: ``daemon.lock``, held for the daemon's whole life.

It is a ``flock`` (POSIX) or ``msvcrt.locking`` (Windows) lock, so the kernel
drops it when the holder dies, however it dies: a ``kill -9`` leaves a stale
descriptor behind, never a held lock. The file itself is never deleted:
deleting it would let one process lock the old inode while another creates
and locks a new file at the same path, and both would think they are alone.

``start`` takes the lock *before* spawning the daemon and hands the locked file
descriptor to it (``pass_fds``). A ``flock`` belongs to the open file
description, which parent and child then share, so the lock never has an owner
gap between the check and the spawn, and whichever ``start`` wins the lock is
the only one that spawns. The daemon marks the descriptor non-inheritable at
once so that its own child processes (MCP servers and their grandchildren)
never keep the lock alive after it exits.

The holder writes its pid into the file: informational only, for messages.

`flock` (`bicameral.platform.flock`, re-exported here) is the one place
bicameral takes a file lock: this lock, the doctor's probe of it, the config
editor's lock on its directory and the client records'.
"""

from __future__ import annotations

import os

from bicameral.daemon._errors import DaemonError
from bicameral.platform import flock, lock_held_anywhere, record_in_lock

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["LOCK_FD_ENV", "LockFile", "flock"]

LOCK_FD_ENV = "BICAMERAL_LOCK_FD"
"""Environment variable carrying the inherited, already locked ``daemon.lock`` descriptor."""


class LockFile:
    """An acquired ``daemon.lock``. Release it with :meth:`release` (or by exiting)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def try_acquire(cls, path: Path) -> LockFile | None:
        """Take the lock without blocking; ``None`` when another process holds it."""
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(path, flags, 0o600)
        except OSError as exc:
            raise DaemonError(f"cannot open lock file {path}: {exc.strerror}") from None
        if not flock(fd):
            os.close(fd)
            return None
        lock = cls(path, fd)
        lock.write_holder(os.getpid())
        return lock

    @classmethod
    def adopt(cls, fd: int, path: Path) -> LockFile:
        """Take over a lock that the spawning ``start`` acquired and passed down.

        Checks that ``fd`` really is ``path`` and really holds the lock (taking
        it again on the same open file description succeeds only then), and
        makes it non-inheritable.
        """
        try:
            os.set_inheritable(fd, False)
            fst = os.fstat(fd)
            pst = os.stat(path)
        except OSError as exc:
            raise DaemonError(f"inherited lock descriptor {fd} is unusable: {exc}") from None
        if (fst.st_dev, fst.st_ino) != (pst.st_dev, pst.st_ino):
            raise DaemonError(f"inherited lock descriptor {fd} is not {path}")
        if not flock(fd):
            raise DaemonError(f"inherited lock descriptor {fd} does not hold {path}")
        lock = cls(path, fd)
        lock.write_holder(os.getpid())
        return lock

    def fileno(self) -> int:
        if self._fd is None:
            raise ValueError("lock released")
        return self._fd

    def write_holder(self, pid: int) -> None:
        """Record ``pid`` in the file, for messages about who holds it."""
        if self._fd is not None:
            record_in_lock(self._fd, f"{pid}\n".encode())

    def release(self) -> None:
        """Close our file descriptor; the lock is free once every sharer has closed it."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> LockFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_holder(path: Path) -> int | None:
    """The pid last recorded in the lock file, if any."""
    try:
        with open(path, "rb") as f:
            text = f.read(32).strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def lock_held(path: Path) -> bool:
    """Whether some process holds the lock on ``path`` right now, without taking it.

    Linux reads ``/proc/locks`` (`bicameral.platform.lock_held_anywhere`), so a
    daemon starting at that very moment cannot lose its lock to someone who
    only looked; ``False`` elsewhere (status then cannot tell "starting").
    """
    return lock_held_anywhere(path)
