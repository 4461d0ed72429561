"""Reading and replacing the small files a daemon owns, safely.

Three files are replaced while something may be reading them: the
descriptor (clients poll it), ``config.toml`` (a reload may read it while
``bicameral mcp add`` edits it) and the service unit (a service manager may
read it at any time). :func:`write_atomic` is the one way they are
written: a new file beside the old one, fsynced, renamed over it, and the
directory fsynced, so a reader sees the old content or the new, never half,
and a crash mid-write leaves the old file and no debris.

:func:`read_regular` is the one way the configuration is read: it refuses
anything but a regular file, because a FIFO named ``config.toml`` would
block a daemon's start (or reload) forever in ``open`` or ``read``.

Standard library only: the CLI's fast paths import this.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["read_regular", "sweep_temporaries", "write_atomic"]


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data``, atomically, created with ``mode``.

    The temporary file is created exclusively (``O_EXCL``, so never through
    a planted symlink) under a name no concurrent writer shares, and is
    removed again if anything fails, cancellation included; what a killed
    writer left beside `path` is swept first (`sweep_temporaries`). Raises
    ``OSError``; callers turn it into their own one-line error.
    """
    sweep_temporaries(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        _write_replace(tmp, path, data, flags, mode)
    except OSError as exc:
        # errno's text alone ("No space left on device") names no file: say
        # which one could not be written, keeping the errno for callers.
        if exc.filename is None or str(exc.filename) == str(tmp):
            raise OSError(exc.errno, f"cannot write {path}: {exc.strerror}") from None
        raise
    _fsync_dir(path.parent)


def sweep_temporaries(path: Path) -> list[str]:
    """Remove the temporary files `write_atomic` left beside `path` when killed mid-write.

    They are named ``.<name>.<pid>.<random>.tmp``: one whose writer is no
    longer running is removed; a live writer's is left alone. Returns the
    names removed (nothing is raised: a sweep never stops a write).
    """
    prefix = f".{path.name}."
    removed: list[str] = []
    try:
        names = os.listdir(path.parent)
    except OSError:
        return removed
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid_text = name[len(prefix) :].split(".", 1)[0]
        if not pid_text.isdigit() or _running(int(pid_text)):
            continue
        with contextlib.suppress(OSError):
            os.unlink(path.parent / name)
            removed.append(name)
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's: running
    return True


def _write_replace(tmp: Path, path: Path, data: bytes, flags: int, mode: int) -> None:
    fd = os.open(tmp, flags, mode)
    try:
        try:
            if hasattr(os, "fchmod"):  # O_CREAT's mode is masked by the umask
                os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_regular(path: Path, *, limit: int | None = None, dir_fd: int | None = None) -> bytes:
    """The content of ``path`` (its first ``limit`` bytes), which must be a regular file.

    Raises ``FileNotFoundError``, ``IsADirectoryError``, or ``OSError`` with
    ``strerror`` "not a regular file" for a FIFO, socket or device. The open
    is non-blocking, so even a FIFO with no writer is refused at once.

    With `dir_fd`, ``path``'s name is opened in that directory (``openat``)
    without following a symlink: the file of the directory held, whatever
    its path names by now.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    flags |= getattr(os, "O_NOCTTY", 0)
    if dir_fd is not None:
        fd = os.open(path.name, flags | getattr(os, "O_NOFOLLOW", 0), dir_fd=dir_fd)
    else:
        fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        with open(fd, "rb", closefd=False) as f:
            return f.read(-1 if limit is None else limit)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` survive a crash (where the OS allows)."""
    if not hasattr(os, "O_DIRECTORY"):  # pragma: no cover - Windows
        return
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:  # pragma: no cover
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse
        pass
    finally:
        os.close(fd)
