"""The directories a running daemon opened at start, and paths that go through them.

SPEC §4: once started, the daemon makes every file relative to the
directory it opened then, so renaming the state dir (and putting another
directory at its old path) cannot make it write, or bind its socket,
anywhere but where it started. ``openat`` does that for reading; binding a
Unix socket, rotating a log or replacing a file by name take a *path*, so
on Linux the path goes through the held descriptor itself:
``/proc/self/fd/N/NAME`` resolves through the directory the descriptor
names, whatever its path has become (and is short, well under the AF_UNIX
limit). Where there is no ``/proc/self/fd`` (macOS, Windows) the original
path is used, and the reload check (`_Daemon.check_home_unchanged`) is the
guard that remains.

Standard library only.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from bicameral.platform import CURRENT

__all__ = ["HeldDirs"]

_PROC_FD = Path("/proc/self/fd")


def _proc_fd_usable() -> bool:
    return CURRENT.linux and _PROC_FD.is_dir()


class HeldDirs:
    """Descriptors of directories, held for the daemon's life, by their path at start."""

    def __init__(self) -> None:
        self._fds: dict[Path, int] = {}
        self._through_proc = _proc_fd_usable()

    def hold(self, directory: Path) -> int:
        """Open `directory` (once) and keep it open; its descriptor."""
        fd = self._fds.get(directory)
        if fd is None:
            flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
            fd = os.open(directory, flags)
            self._fds[directory] = fd
        return fd

    def fd(self, directory: Path) -> int | None:
        """The held descriptor of `directory`, or None."""
        return self._fds.get(directory)

    def directory(self, directory: Path) -> Path:
        """A path naming the held `directory` itself (itself when not held)."""
        fd = self._fds.get(directory)
        if fd is None or not self._through_proc:
            return directory
        return _PROC_FD / str(fd)

    def path(self, path: Path) -> Path:
        """`path`, through its held parent directory when there is one."""
        return self.directory(path.parent) / path.name

    def close(self) -> None:
        """Close every held descriptor (at exit)."""
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
